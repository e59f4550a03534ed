"""cocotb bench of the DRAM timing model (:mod:`sim.ddr`) against its parameters: two real read
DMAs (:class:`hw.movers.axi_reader.AxiReader`) on :class:`sim.ddr.DdrRead` ports that share one
bandwidth, every beat checked against the memory (:func:`model.movers.axi_reader.read_beats`)
and every handshake on the buses timed."""

import random

import cocotb
from amaranth.lib import wiring
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiReadBus

from hw.movers.axi_reader import AxiReader
from model.movers.axi_reader import read_beats
from sim.ddr import DdrRead, MemoryModel, Timing, waited
from sim.protocol import HandshakeChecker, axi_master_channels
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_struct

PORTS = ("a", "b")
SIZE = 1 << 16
#: The bench's clock, to which the model's nanoseconds and GB/s are converted: one cycle per
#: simulated period.
CLOCK_MHZ = 1000 / PERIOD_NS
#: 250 ns (25 cycles) to the first beat, 1 GB/s (10 bytes per cycle, less than one 16-byte port
#: alone could take), two bursts outstanding per port.
MODEL = MemoryModel("bench", latency_ns=250.0, gbytes_per_second=1.0, outstanding=2)


class TwoReaders(wiring.Component):
    """Two AXI read DMAs side by side, ports ``a_*`` and ``b_*``."""

    def __init__(self, **config):
        self._readers = {p: AxiReader(**config) for p in PORTS}
        super().__init__({f"{p}_{name}": member for p, reader in self._readers.items()
                          for name, member in reader.signature.members.items()})

    def elaborate(self, platform):
        from amaranth import Module
        m = Module()
        for p, reader in self._readers.items():
            m.submodules[p] = reader
            for name, member in reader.signature.members.items():
                outer = getattr(self, f"{p}_{name}")
                if member.is_port:
                    inner = getattr(reader, name)
                    m.d.comb += (outer.eq(inner) if member.flow == wiring.Out
                                 else inner.eq(outer))
                else:
                    wiring.connect(m, wiring.flipped(outer), getattr(reader, name))
        return m


def make_design(config):
    return TwoReaders(**config)


class Bench:
    """The readers, their memory ports under :data:`MODEL` (those in ``ideal_ports`` as
    cocotbext-axi's RAM as it is), and a log of the bus handshakes:
    ``ar[p]`` the cycles of port ``p``'s AR handshakes, ``r[p]`` those of its R beats, ``done[p]``
    those of its last beats."""

    def __init__(self, dut, ideal_ports=()):
        c = bench_config()
        self.dut, self.design = dut, make_design(c)
        self.beat = c["data_width"] // 8
        timing = Timing(MODEL, CLOCK_MHZ, PERIOD_NS, self.beat)
        self.content = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
        self.rams = {p: DdrRead(AxiReadBus.from_prefix(dut, f"{p}_bus_"), dut.clk, dut.rst,
                                size=SIZE, timing=None if p in ideal_ports else timing)
                     for p in PORTS}
        for ram in self.rams.values():
            ram.write(0, self.content)
        self.cmd = {p: StreamSource(dut, f"{p}_cmd", seed=4) for p in PORTS}
        self.o = {p: StreamSink(dut, f"{p}_o", seed=5) for p in PORTS}
        self.protocol = HandshakeChecker(dut, [ch for p in PORTS
                                               for ch in axi_master_channels(dut, f"{p}_bus")])
        self.ar = {p: [] for p in PORTS}
        self.r = {p: [] for p in PORTS}
        self.done = {p: [] for p in PORTS}
        self.want = {p: [] for p in PORTS}             # every beat asked for so far
        cocotb.start_soon(self._watch())

    async def _watch(self):
        def high(name):
            return int(getattr(self.dut, name).value)
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            now = round(get_sim_time("ns") / PERIOD_NS)
            for p in PORTS:
                if high(f"{p}_bus__arvalid") and high(f"{p}_bus__arready"):
                    self.ar[p].append(now)
                if high(f"{p}_bus__rvalid") and high(f"{p}_bus__rready"):
                    self.r[p].append(now)
                    if high(f"{p}_bus__rlast"):
                        self.done[p].append(now)

    def outstanding(self, p):
        """The most bursts port ``p`` had accepted and not finished at once."""
        events = sorted([(t, 1) for t in self.ar[p]] + [(t, -1) for t in self.done[p]])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    async def read(self, commands):
        """Issue ``{port: [(addr, beats), ...]}`` and check every beat against the memory."""
        for p, cmds in commands.items():
            for addr, beats in cmds:
                self.cmd[p].send([pack_struct(self.design.a_cmd.payload.shape(), addr=addr,
                                              beats=beats)])
                self.want[p] += read_beats(self.content, addr, beats, self.beat)
        for p in commands:
            got = await self.o[p].wait_for(len(self.want[p]), timeout_cycles=20_000)
            assert got == self.want[p], f"port {p}: data differs from memory"
        self.protocol.check()


async def start(dut, ideal_ports=()):
    await clock_and_reset(dut)
    return Bench(dut, ideal_ports)


@cocotb.test()
async def test_first_beat_after_the_latency(dut):
    """Each lone burst's first beat is taken exactly the model's latency after its request
    (two cycles on the ideal memory, port b), and the port is counted as waiting for all but
    the one cycle a beat takes on the ideal memory too."""
    bench = await start(dut, ideal_ports=("b",))
    for addr in (0x100, 0x2000, 0x7F0):
        for p in PORTS:
            await bench.read({p: [(addr, 1)]})
    delays = {p: [r - ar for ar, r in zip(bench.ar[p], bench.r[p])] for p in PORTS}
    latency = MODEL.latency_cycles(CLOCK_MHZ)
    assert latency == 25
    assert delays == {"a": [latency] * 3, "b": [2] * 3}, delays
    assert waited([bench.rams["a"]], 0, bench.r["a"][-1] + 1) == 3 * (latency - 1)


@cocotb.test()
async def test_bandwidth_is_shared(dut):
    """Both ports streaming at once move the model's bytes per cycle between them, in turn."""
    bench = await start(dut)
    await bench.read({p: [(0x1000 * i, 1024)] for i, p in enumerate(PORTS)})
    first, last = min(bench.r[p][0] for p in PORTS), max(bench.r[p][-1] for p in PORTS)
    moved = sum(len(bench.r[p]) for p in PORTS) * bench.beat
    rate, cap = moved / (last - first + 1), MODEL.bytes_per_cycle(CLOCK_MHZ)
    assert cap == 10.0
    assert abs(rate - cap) <= 0.01 * cap, f"{rate:.3f} bytes per cycle against a cap of {cap}"
    # Neither port gets ahead: halfway through the stream each has had about half of its beats.
    middle = (first + last) // 2
    for p in PORTS:
        share = sum(t <= middle for t in bench.r[p]) / len(bench.r[p])
        assert 0.45 <= share <= 0.55, f"port {p} had {share:.0%} of its beats by mid-stream"


@cocotb.test()
async def test_outstanding_bursts(dut):
    """A port accepts exactly ``outstanding`` bursts ahead of their data, though the DMA
    would send four."""
    bench = await start(dut)
    await bench.read({"a": [(0x100 * i, 16) for i in range(8)]})
    assert len(bench.done["a"]) == 8
    assert bench.outstanding("a") == MODEL.outstanding, bench.outstanding("a")
