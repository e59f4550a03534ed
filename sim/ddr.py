"""DRAM timing for the benches: a first-beat latency, a bandwidth cap shared by every port, and a
limit on the bursts each port may have outstanding.

    python -m sim.bench --config m3vit-tiny --memory zcu102-ddr4     # the default
    python -m sim.bench --config m3vit-tiny --memory ideal

A :class:`MemoryModel` names the figures; :class:`DdrRead` and :class:`DdrWrite` are
cocotbext-axi RAM ports that keep to them, all ports of one machine drawing on one
:class:`SharedBandwidth`. The ``ideal`` memory is cocotbext-axi's RAM untouched (every port
answers at full rate, two or three cycles after the request): the behaviour of every figure
measured before the model existed.

How a read burst is answered under a model:

- the port accepts a burst (AR handshake) while fewer than ``outstanding`` of its bursts are
  unfinished, and answers them in order;
- the burst's first beat is on the bus ``latency`` cycles after its request was accepted, at
  the earliest (the ideal memory takes two);
- every beat, on every port and in either direction, takes its bytes from one token bucket
  refilled at ``bytes_per_cycle`` (the DDR's sustained rate at the machine's clock) and holding
  at most one cycle's worth plus one beat, so no port can bank idle time; ports are served in
  the order they asked;
- a beat is asked for only when the master can take it (the R channel has room), so
  back-pressure costs the memory nothing.

A port *waits for memory* while it has a burst accepted whose next beat the memory has not
yet given though the master could take it, beyond the one cycle any memory takes (the latency,
or the bandwidth taken by others); :attr:`DdrRead.intervals` records those spans, and
:func:`waited` gives the cycles in which any port waited.

Writes draw on the same bandwidth but are posted: their latency is not modelled (the machine
writes 99 KB per m3vit-tiny image, and waits for no write response before the last).
"""

import math
from collections import deque
from dataclasses import dataclass

import cocotb
from cocotb.triggers import Event, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiRamRead, AxiRamWrite, AxiResp

__all__ = ["MemoryModel", "IDEAL", "ZCU102_DDR4", "MEMORIES", "memory_by_name",
           "SharedBandwidth", "DdrRead", "DdrWrite", "waited"]


@dataclass(frozen=True)
class MemoryModel:
    """A memory's timing, in the units of its data sheet.

    Parameters
    ----------
    name : str
    latency_ns : float
        From the AR handshake to the burst's first beat, at the earliest.
    gbytes_per_second : float
        Sustained bandwidth shared by every port, reads and writes (``math.inf``: no cap).
    outstanding : int
        Read bursts a port accepts ahead of their data.
    """

    name: str
    latency_ns: float = 0.0
    gbytes_per_second: float = math.inf
    outstanding: int = 8

    @property
    def ideal(self):
        """No latency and no cap: cocotbext-axi's RAM as it is."""
        return self.latency_ns == 0 and math.isinf(self.gbytes_per_second)

    def latency_cycles(self, clock_mhz):
        """The latency in whole cycles of a ``clock_mhz`` clock."""
        return math.ceil(self.latency_ns * clock_mhz / 1000)

    def bytes_per_cycle(self, clock_mhz):
        """The bandwidth in bytes per cycle of a ``clock_mhz`` clock."""
        return self.gbytes_per_second * 1000 / clock_mhz

    def describe(self, clock_mhz):
        """One line for reports."""
        if self.ideal:
            return f"{self.name}: no latency, no bandwidth cap (cocotbext-axi RAM)"
        return (f"{self.name}: first beat {self.latency_ns:g} ns after the request "
                f"({self.latency_cycles(clock_mhz)} cycles at {clock_mhz:g} MHz), "
                f"{self.gbytes_per_second:g} GB/s shared "
                f"({self.bytes_per_cycle(clock_mhz):.1f} bytes per cycle), "
                f"{self.outstanding} bursts outstanding per port")


#: cocotbext-axi's RAM: every port at full rate, no cap.
IDEAL = MemoryModel("ideal")

#: The ZCU102's PS DDR4 as the PL's HP ports see it:
#:
#: - bandwidth: a 64-bit DDR4 at 2,133 MT/s (the board preset) peaks at 17.06 GB/s; 75 % of that,
#:   12.8 GB/s, is the sustained figure taken for long streams of reads from several ports
#:   (refresh, page misses and the turnarounds of the PS's other traffic take the rest);
#: - latency: 200 ns from the request to the first beat, the top of the 100-200 ns range an
#:   idle PS shows through the AXI FIFO interface (AFI) and the DDR controller;
#: - outstanding: the AFI's read command acceptance capability of eight (UG1085, "AXI
#:   Interface Programming").
ZCU102_DDR4 = MemoryModel("zcu102-ddr4", latency_ns=200.0, gbytes_per_second=12.8,
                          outstanding=8)

MEMORIES = {m.name: m for m in (ZCU102_DDR4, IDEAL)}


def memory_by_name(name):
    """Look a memory model up by name; an unknown name lists the valid ones."""
    try:
        return MEMORIES[name]
    except KeyError:
        raise ValueError(f"unknown memory {name!r}; choose one of: "
                         f"{', '.join(MEMORIES)}") from None


class SharedBandwidth:
    """A token bucket of bytes refilled at ``bytes_per_cycle``, shared by every port: a beat
    waits until the bucket holds its bytes, in the order the beats asked (``period_ns``: the
    simulation's clock period)."""

    def __init__(self, bytes_per_cycle, period_ns, beat_bytes):
        self.rate, self.period = bytes_per_cycle, period_ns
        self.depth = bytes_per_cycle + beat_bytes
        self.tokens, self.at = self.depth, self.now()
        self.queue, self.serving = deque(), False

    def now(self):
        """The simulation time in cycles."""
        return get_sim_time("ns") / self.period

    def _refill(self):
        now = self.now()
        self.tokens = min(self.depth, self.tokens + (now - self.at) * self.rate)
        self.at = now

    async def take(self, nbytes):
        """Return when ``nbytes`` may move."""
        self._refill()
        if not self.queue and self.tokens >= nbytes:
            self.tokens -= nbytes
            return
        granted = Event()
        self.queue.append((nbytes, granted))
        if not self.serving:
            self.serving = True
            cocotb.start_soon(self._serve())
        await granted.wait()

    async def _serve(self):
        while self.queue:
            nbytes, granted = self.queue[0]
            self._refill()
            if self.tokens < nbytes:
                await Timer(math.ceil((nbytes - self.tokens) / self.rate) * self.period, "ns")
                continue
            self.tokens -= nbytes
            self.queue.popleft()
            granted.set()
        self.serving = False


class Timing:
    """A :class:`MemoryModel` at a machine's clock, with the bandwidth its ports share."""

    def __init__(self, memory, clock_mhz, period_ns, beat_bytes):
        self.memory = memory
        self.latency = memory.latency_cycles(clock_mhz)
        self.outstanding = memory.outstanding
        self.bandwidth = SharedBandwidth(memory.bytes_per_cycle(clock_mhz), period_ns,
                                         beat_bytes)
        self.period = period_ns

    def now(self):
        return self.bandwidth.now()


class DdrRead(AxiRamRead):
    """A cocotbext-axi RAM read port that keeps to ``timing`` (a :class:`Timing`; None: the
    RAM as it is). Only full-width INCR bursts, the only kind the machine issues."""

    def __init__(self, *args, timing=None, **kwargs):
        self.timing = timing
        self.bursts = deque()                       # (AR, cycle accepted), oldest first
        self.intervals = []                         # (from, to) cycles the port waited
        self._arrived = Event()
        self._deliver_cr = None
        super().__init__(*args, **kwargs)

    def _handle_reset(self, state):
        super()._handle_reset(state)
        if self.timing is None:
            return
        if state:
            if self._deliver_cr is not None:
                self._deliver_cr.cancel()
                self._deliver_cr = None
            self.bursts.clear()
            self._limit_acceptance()
        elif self._deliver_cr is None:
            self._deliver_cr = cocotb.start_soon(self._deliver())

    async def _process_read(self):
        if self.timing is None:
            return await super()._process_read()
        while True:
            ar = await self.ar_channel.recv()
            self.bursts.append((ar, self.timing.now()))
            self._limit_acceptance()
            self._arrived.set()

    def _limit_acceptance(self):
        # cocotbext-axi's sink sets ARREADY after each handshake from its queue's fill and from
        # ``pause`` as it was a cycle before: a one-entry limit from the last free place on
        # drops ARREADY right after the burst that fills the port, and ``pause`` holds it low.
        taken, limit = len(self.bursts), self.timing.outstanding
        self.ar_channel.queue_occupancy_limit = 1 if taken >= limit - 1 else -1
        self.ar_channel.pause = taken >= limit

    async def _deliver(self):
        t = self.timing
        while True:
            while not self.bursts:
                self._arrived.clear()
                await self._arrived.wait()
            ar, accepted = self.bursts[0]
            address, beats = int(ar.araddr), int(ar.arlen) + 1
            for n in range(beats):
                while self.r_channel.full():                # the master holds the data back
                    self.r_channel.dequeue_event.clear()
                    await self.r_channel.dequeue_event.wait()
                since, first = t.now(), accepted + t.latency - 1   # given a cycle before the bus
                if n == 0 and since < first:
                    await Timer((first - since) * t.period, "ns")
                await t.bandwidth.take(self.byte_lanes)
                if t.now() > since:
                    self.intervals.append((since, t.now()))
                r = self.r_channel._transaction_obj()
                r.rid, r.rlast, r.rresp = int(getattr(ar, "arid", 0)), n == beats - 1, AxiResp.OKAY
                try:
                    data = await self._read(address + n * self.byte_lanes, self.byte_lanes)
                except Exception:
                    data, r.rresp = bytes(self.byte_lanes), AxiResp.SLVERR
                r.rdata = int.from_bytes(data, "little")
                self.r_channel.send_nowait(r)
            self.bursts.popleft()
            self._limit_acceptance()


class DdrWrite(AxiRamWrite):
    """A cocotbext-axi RAM write port whose beats draw on ``timing``'s bandwidth (None: the RAM
    as it is)."""

    def __init__(self, *args, timing=None, **kwargs):
        self.timing = timing
        super().__init__(*args, **kwargs)

    async def _write(self, address, data):
        if self.timing is not None:
            await self.timing.bandwidth.take(len(data))
        return await super()._write(address, data)


def waited(ports, start, end):
    """Cycles in ``[start, end)`` in which at least one of ``ports`` (:class:`DdrRead`) waited
    for memory: the union of their wait intervals."""
    spans = sorted((max(a, start), min(b, end)) for port in ports for a, b in port.intervals
                   if b > start and a < end)
    total, reach = 0.0, start
    for a, b in spans:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return round(total)
