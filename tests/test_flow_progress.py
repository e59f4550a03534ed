"""The progress displays: what they draw on a terminal, and nothing elsewhere."""

import io
import time

from flow.progress import ProgressBar, clock, ticking


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_shows_the_stage_the_cycles_and_the_time_left():
    bar = ProgressBar(4, stream=Terminal(), width=8)
    text = bar.line(1, "block 0 of 2", cycles=12345, now=bar.start + 30)
    assert text == "[##......] block 0 of 2  12,345 cycles  0:30, about 1:30 left"
    assert bar.line(0, "embed", now=bar.start + 5).endswith("0:05")         # no estimate yet
    assert "left" not in bar.line(4, "output", now=bar.start + 90)


def test_the_bar_redraws_in_place_and_ends_its_line():
    terminal = Terminal()
    bar = ProgressBar(3, stream=terminal)
    bar.update(1, "block 0")
    bar.update(2, "block 1")
    bar.close()
    out = terminal.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and "block 1" in out


def test_nothing_is_drawn_off_a_terminal_or_when_disabled():
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        bar = ProgressBar(3, stream=stream, enabled=enabled)
        bar.update(1, "block 0")
        bar.close()
        with ticking("yosys", stream=stream, enabled=enabled, period=0.01):
            time.sleep(0.03)
        assert stream.getvalue() == ""


def test_ticking_shows_the_time_spent():
    terminal = Terminal()
    with ticking("yosys", stream=terminal, period=0.01):
        time.sleep(0.05)
    assert "\r  yosys  0:00" in terminal.getvalue()
    assert terminal.getvalue().endswith("0:00, done\n")


def test_clock():
    assert clock(0) == "0:00" and clock(61.4) == "1:01" and clock(3725) == "1:02:05"
