"""cocotb bench of :class:`hw.movers.axi_read_share.AxiReadShare`: two real read DMAs
(:class:`hw.movers.axi_reader.AxiReader`) on one memory port, every beat each reads checked
against the memory (:func:`model.movers.axi_reader.read_beats`), the VALID/READY rule checked on
the shared port, under random memory pauses and consumer back-pressure, with the memory ideal and
with the DDR timing model."""

import random

import cocotb
from amaranth import Module
from amaranth.lib import wiring
from cocotbext.axi import AxiReadBus

from hw.movers.axi import axi4_read
from hw.movers.axi_read_share import AxiReadShare
from hw.movers.axi_reader import AxiReader
from model.movers.axi_reader import read_beats
from sim.ddr import DdrRead, MemoryModel, Timing
from sim.protocol import HandshakeChecker, axi_master_channels
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_struct

PORTS = ("a", "b")
SIZE = 1 << 16


class SharedReaders(wiring.Component):
    """Two AXI read DMAs, streams ``a_cmd``/``a_o`` and ``b_cmd``/``b_o``, sharing port ``bus``."""

    def __init__(self, *, addr_width, data_width, max_beats):
        self._readers = {p: AxiReader(addr_width=addr_width, data_width=data_width,
                                      max_beats=max_beats) for p in PORTS}
        self._share = AxiReadShare(masters=len(PORTS), addr_width=addr_width,
                                   data_width=data_width)
        members = {f"{p}_{name}": reader.signature.members[name]
                   for p, reader in self._readers.items() for name in ("cmd", "o")}
        super().__init__({**members, "bus": wiring.Out(axi4_read(addr_width=addr_width,
                                                                  data_width=data_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.share = self._share
        for k, (p, reader) in enumerate(self._readers.items()):
            m.submodules[p] = reader
            wiring.connect(m, wiring.flipped(getattr(self, f"{p}_cmd")), reader.cmd)
            wiring.connect(m, reader.o, wiring.flipped(getattr(self, f"{p}_o")))
            wiring.connect(m, reader.bus, self._share.masters[k])
        wiring.connect(m, self._share.bus, wiring.flipped(self.bus))
        return m


def make_design(config):
    return SharedReaders(**config)


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def run(dut, *, timed=False, pause=0.0, backpressure=0.0):
    """Each reader reads its own commands at once; every beat checked."""
    c = bench_config()
    design, beat = make_design(c), c["data_width"] // 8
    await clock_and_reset(dut)
    protocol = HandshakeChecker(dut, axi_master_channels(dut, "bus"))
    timing = (Timing(MemoryModel("bench", latency_ns=200.0, gbytes_per_second=1.2), 100.0,
                     PERIOD_NS, beat) if timed else None)
    ram = DdrRead(AxiReadBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=SIZE,
                  timing=timing)
    content = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
    ram.write(0, content)
    if pause:
        ram.ar_channel.set_pause_generator(_pauses(2, pause))
        ram.r_channel.set_pause_generator(_pauses(3, pause))
    rng = random.Random(4)
    want = {}
    for n, p in enumerate(PORTS):
        cmd = StreamSource(dut, f"{p}_cmd", seed=5 + n)
        commands = [(rng.randrange(0, SIZE // 2, beat), rng.randrange(1, 600)) for _ in range(6)]
        for addr, beats in commands:
            cmd.send([pack_struct(design.a_cmd.payload.shape(), addr=addr, beats=beats)])
        want[p] = [b for addr, beats in commands for b in read_beats(content, addr, beats, beat)]
    sinks = {p: StreamSink(dut, f"{p}_o", backpressure=backpressure, seed=9 + n)
             for n, p in enumerate(PORTS)}
    for p in PORTS:
        got = await sinks[p].wait_for(len(want[p]), timeout_cycles=5000)
        assert got == want[p], f"reader {p}: data differs from memory"
    protocol.check()


@cocotb.test()
async def test_two_readers_at_full_rate(dut):
    await run(dut)


@cocotb.test()
async def test_memory_pauses_and_backpressure(dut):
    await run(dut, pause=0.3, backpressure=0.5)


@cocotb.test()
async def test_timed_memory(dut):
    await run(dut, timed=True, backpressure=0.2)
