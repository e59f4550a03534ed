"""cocotb drivers for ``amaranth.lib.stream`` ports, plus clock and reset.

Amaranth's Verilog flattens a stream port ``i`` of a top-level component into three top-level
ports: ``i__payload`` (the whole payload, ``data.Struct`` layouts included, as one vector),
``i__valid`` and ``i__ready``; a component's ``sync`` domain becomes ``clk`` and ``rst``.
``StreamSource(dut, "i")`` and ``StreamSink(dut, "o")`` find the ports by those names.

Timing model. Both drivers change what they drive just after a rising edge of the clock and
sample the handshake in the ``ReadOnly`` phase of the same time step, when everything has
settled and nothing can change before the next edge. A transfer therefore happens exactly when
both ``valid`` and ``ready`` were high in that sample, and is recorded at the following edge.
This avoids the question of whether a simulator shows values from just before or just after an
edge when a coroutine wakes up on it, which Verilator and Icarus answer differently.

Payloads are plain integers: the source takes signed or unsigned values that fit the port and
drives their bit pattern; the sink returns bit patterns as non-negative integers, so benches
compare them bit for bit with their twin's results masked to the port width.

Typical use in a bench::

    await clock_and_reset(dut)
    source = StreamSource(dut, "i", idle=0.3, seed=1)
    sink = StreamSink(dut, "o", backpressure=0.5, seed=2)
    source.send(operands)
    results = await sink.wait_for(len(operands))
"""

import random

import numpy as np
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


__all__ = ["PERIOD_NS", "clock_and_reset", "StreamSource", "StreamSink", "pack_lanes",
           "unpack_lanes", "pack_struct"]


#: Default clock period; its value is irrelevant to results, it only scales waveform time.
PERIOD_NS = 10


async def clock_and_reset(dut, *, period_ns=PERIOD_NS, reset_cycles=2, clock="clk", reset="rst"):
    """Start the clock and hold the design in reset.

    Returns just after the rising edge at which reset is released, so that drivers created next
    see the design out of reset from their first edge on.

    Parameters
    ----------
    dut : cocotb handle
        Top-level design handle.
    period_ns : int
        Clock period in nanoseconds, even.
    reset_cycles : int
        Rising edges during which reset is held, at least 1.
    clock, reset : str
        Port names of the clock and the synchronous reset (``clk`` and ``rst`` for an Amaranth
        ``sync`` domain).

    Returns
    -------
    cocotb.clock.Clock
        The running clock.
    """
    if reset_cycles < 1:
        raise ValueError(f"Reset must be held for at least 1 cycle, not {reset_cycles!r}")
    rst = getattr(dut, reset)
    rst.value = 1
    clk = Clock(getattr(dut, clock), period_ns, unit="ns")
    clk.start()
    await ClockCycles(clk.signal, reset_cycles)
    rst.value = 0
    return clk


def pack_lanes(values, width):
    """One payload integer from lane values (lane 0 in the low bits), as ``data.ArrayLayout``."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack_lanes(word, width, count):
    """Signed lane values from a payload integer (the inverse of :func:`pack_lanes`)."""
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    return [(((word >> (i * width)) & mask) ^ sign) - sign for i in range(count)]


def pack_struct(layout, **fields):
    """One payload integer for an ``amaranth.lib.data.StructLayout`` from field values."""
    word = 0
    for name, value in fields.items():
        field = layout[name]
        word |= (int(value) & ((1 << field.width) - 1)) << field.offset
    return word


def _probability(name, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
    return value


class _StreamPort:
    def __init__(self, dut, name, clock):
        self.name = name
        self._clock = dut.clk if clock is None else clock
        try:
            self._payload = getattr(dut, f"{name}__payload")
            self._valid = getattr(dut, f"{name}__valid")
            self._ready = getattr(dut, f"{name}__ready")
        except AttributeError:
            raise ValueError(
                f"Design has no stream port {name!r}: expected {name}__payload, {name}__valid "
                f"and {name}__ready (an always-ready or always-valid stream cannot be a "
                f"top-level port in Amaranth 0.5)") from None
        self.width = len(self._payload)
        #: Simulation time in ns of the clock edge at which each transfer happened.
        self.times = []


class StreamSource(_StreamPort):
    """Drive payloads into a stream input of the design, in order.

    Parameters
    ----------
    dut : cocotb handle
        Top-level design handle.
    name : str
        Name of the stream port on the Amaranth component (``"i"`` drives ``i__payload``,
        ``i__valid`` and reads ``i__ready``).
    clock : cocotb handle, optional
        Clock the stream belongs to; ``dut.clk`` by default.
    idle : float
        Probability of inserting an idle cycle (``valid`` low) before offering each payload.
        Zero offers payloads back to back at full rate.
    seed : int
        Seed of this source's own random generator, so idle patterns repeat from run to run.

    Attributes
    ----------
    sent : int
        Number of payloads transferred so far.
    times : list of float
        Simulation time in ns of the edge at which each payload was transferred.
    """

    def __init__(self, dut, name, *, clock=None, idle=0.0, seed=0):
        super().__init__(dut, name, clock)
        self._idle = _probability("Idle", idle)
        self._random = random.Random(seed)
        self._queue = deque()
        self.sent = 0
        self._valid.value = 0
        self._task = cocotb.start_soon(self._drive())

    def send(self, payloads):
        """Queue payloads to be sent after those already queued; returns immediately.

        Raises
        ------
        ValueError
            If a payload fits the port neither as a signed nor as an unsigned integer.
        """
        low, high = -(1 << (self.width - 1)), (1 << self.width) - 1
        mask = (1 << self.width) - 1
        for payload in payloads:
            payload = int(payload)
            if not low <= payload <= high:
                raise ValueError(
                    f"Payload {payload} does not fit {self.name}__payload, which is "
                    f"{self.width} bits wide")
            self._queue.append(payload & mask)

    @property
    def pending(self):
        """Number of queued payloads not yet transferred."""
        return len(self._queue)

    async def wait_sent(self, *, timeout_cycles=1000):
        """Wait until every queued payload has been transferred.

        Parameters
        ----------
        timeout_cycles : int
            Fail if this many cycles pass without a single transfer, which means the design is
            stuck, rather than hang the simulation.
        """
        stalled = 0
        while self._queue:
            sent = self.sent
            await RisingEdge(self._clock)
            stalled = 0 if self.sent != sent else stalled + 1
            if stalled >= timeout_cycles:
                raise AssertionError(
                    f"{self.name}: no transfer for {timeout_cycles} cycles with "
                    f"{len(self._queue)} payloads still queued ({self.sent} sent)")

    def _idles(self):
        return self._idle and self._random.random() < self._idle

    async def _drive(self):
        offering = False
        transfer = False
        while True:
            await RisingEdge(self._clock)
            if transfer:
                self._queue.popleft()
                self.sent += 1
                self.times.append(get_sim_time("ns"))
            # A payload on offer must stay on offer until taken (stream rules 2 and 4), so
            # idle cycles are only ever inserted between payloads.
            holding = offering and not transfer
            if holding or self._queue and not self._idles():
                self._payload.value = self._queue[0]
                self._valid.value = 1
                offering = True
            else:
                self._valid.value = 0
                offering = False
            await ReadOnly()
            transfer = offering and self._ready.value == 1


class StreamSink(_StreamPort):
    """Collect payloads from a stream output of the design, checking the stream rules.

    Parameters
    ----------
    dut : cocotb handle
        Top-level design handle.
    name : str
        Name of the stream port on the Amaranth component (``"o"`` reads ``o__payload`` and
        ``o__valid`` and drives ``o__ready``).
    clock : cocotb handle, optional
        Clock the stream belongs to; ``dut.clk`` by default.
    backpressure : float
        Probability of holding ``ready`` low in any cycle. Zero keeps ``ready`` high.
    seed : int
        Seed of this sink's own random generator, so back-pressure patterns repeat.
    reset : cocotb handle or None, optional
        Reset of the transmitting design, during which the rule checks are relaxed (stream rule
        3); ``dut.rst`` by default when it exists.

    Attributes
    ----------
    payloads : list of int
        Bit patterns transferred so far, in order.
    times : list of float
        Simulation time in ns of the edge at which each payload was transferred.

    Raises
    ------
    AssertionError
        From the driver task (failing the test) if the design drops ``valid`` or changes
        ``payload`` before a transfer (stream rules 2 and 4), or transfers X or Z bits.
    """

    _default = object()

    def __init__(self, dut, name, *, clock=None, backpressure=0.0, seed=0, reset=_default):
        super().__init__(dut, name, clock)
        self._backpressure = _probability("Back-pressure", backpressure)
        self._random = random.Random(seed)
        self._reset = getattr(dut, "rst", None) if reset is self._default else reset
        self.payloads = []
        self._ready.value = 0
        self._task = cocotb.start_soon(self._drive())

    async def wait_for(self, count, *, timeout_cycles=1000):
        """Wait until ``count`` payloads have arrived in total and return the first ``count``.

        Parameters
        ----------
        count : int
            Number of payloads to wait for.
        timeout_cycles : int
            Fail if this many cycles pass without a single transfer.

        Returns
        -------
        list of int
            ``payloads[:count]``.
        """
        stalled = 0
        while len(self.payloads) < count:
            received = len(self.payloads)
            await RisingEdge(self._clock)
            stalled = 0 if len(self.payloads) != received else stalled + 1
            if stalled >= timeout_cycles:
                raise AssertionError(
                    f"{self.name}: no transfer for {timeout_cycles} cycles, received "
                    f"{len(self.payloads)} of {count} payloads")
        return self.payloads[:count]

    async def _drive(self):
        transfer = False
        offered = None  # payload seen with valid high and ready low, which must persist
        while True:
            await RisingEdge(self._clock)
            if transfer:
                self.payloads.append(sample)
                self.times.append(get_sim_time("ns"))
            ready = not self._backpressure or self._random.random() >= self._backpressure
            self._ready.value = int(ready)
            await ReadOnly()
            valid = self._valid.value == 1
            in_reset = self._reset is not None and self._reset.value == 1
            if valid:
                try:
                    sample = int(self._payload.value)
                except ValueError:
                    raise AssertionError(
                        f"{self.name}__payload is {self._payload.value} (has X or Z bits) "
                        f"while {self.name}__valid is high at {get_sim_time('ns')} ns") from None
            if offered is not None and not in_reset:
                if not valid:
                    raise AssertionError(
                        f"{self.name}__valid fell at {get_sim_time('ns')} ns before payload "
                        f"{offered:#x} was transferred (stream rule 2)")
                if sample != offered:
                    raise AssertionError(
                        f"{self.name}__payload changed from {offered:#x} to {sample:#x} at "
                        f"{get_sim_time('ns')} ns before it was transferred (stream rule 4)")
            transfer = valid and ready
            offered = sample if valid and not ready and not in_reset else None


def assert_bit_exact(got, expected, what="the golden model"):
    """Fail, naming how many values differ and the first of them (row, column, both values),
    unless the integer arrays ``got`` (the RTL's) and ``expected`` are equal."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"RTL gave shape {got.shape}, {what} {expected.shape}"
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{len(bad)} of {got.size} values differ from {what}, first at "
                           f"token {bad[0][0]} channel {bad[0][1]}: RTL {got[tuple(bad[0])]}, "
                           f"golden {expected[tuple(bad[0])]}")
