"""Progress on a terminal for the long commands: a bar for the simulations (stage i of N, cycles so
far, time left) and a ticking clock for the tool steps of the builds.

Both draw one line on ``stream`` (stderr by default), redrawn in place, and only when that stream
is a terminal and they are enabled: piped, logged or under ``--json`` they print nothing, so
machine-read output stays clean.
"""

import sys
import threading
import time
from contextlib import contextmanager

__all__ = ["ProgressBar", "ticking", "every", "clock"]


def clock(seconds):
    """``m:ss`` (or ``h:mm:ss``)."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours
            else f"{rest // 60}:{rest % 60:02d}")


def _shown(stream, enabled):
    return enabled and getattr(stream, "isatty", lambda: False)()


class ProgressBar:
    """``[#####.....] block 3 of 12  1,234,567 cycles  2:01, about 4:10 left``.

    ``update(done, label, cycles)`` redraws it with ``done`` of ``total`` steps finished; the
    time left is the elapsed time scaled by the steps still to go (shown from the first finished
    step on). ``close()`` ends the line.
    """

    def __init__(self, total, *, stream=None, enabled=True, width=30):
        self.total, self.width = max(1, total), width
        self.stream = sys.stderr if stream is None else stream
        self.active = _shown(self.stream, enabled)
        self.start = time.monotonic()
        self._last = None

    def line(self, done, label="", cycles=None, now=None):
        """The text of the bar (without the carriage return)."""
        elapsed = (time.monotonic() if now is None else now) - self.start
        done = min(max(done, 0), self.total)
        filled = self.width * done // self.total
        text = f"[{'#' * filled}{'.' * (self.width - filled)}] {label}"
        if cycles is not None:
            text += f"  {cycles:,} cycles"
        text += f"  {clock(elapsed)}"
        if 0 < done < self.total:
            text += f", about {clock(elapsed * (self.total - done) / done)} left"
        return text

    def update(self, done, label="", cycles=None):
        if not self.active:
            return
        text = self.line(done, label, cycles)
        if text != self._last:
            pad = max(0, len(self._last or "") - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
            self._last = text

    def close(self):
        if self.active and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._last = None


@contextmanager
def every(period, action):
    """Call ``action()`` once a ``period`` (seconds), in a thread, while the block runs."""
    stop = threading.Event()

    def loop():
        while not stop.wait(period):
            action()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def ticking(label, *, stream=None, enabled=True, period=1.0):
    """While the block runs (a tool that prints nothing for minutes), redraw ``label  m:ss`` once
    a ``period``; on a terminal only."""
    stream = sys.stderr if stream is None else stream
    if not _shown(stream, enabled):
        yield
        return
    start = time.monotonic()

    def tick():
        stream.write(f"\r  {label}  {clock(time.monotonic() - start)}")
        stream.flush()
    try:
        with every(period, tick):
            yield
    finally:
        stream.write(f"\r  {label}  {clock(time.monotonic() - start)}, done\n")
        stream.flush()
