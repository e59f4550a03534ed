"""cocotb bench of :class:`hw.movers.axi_reader.AxiReader` on cocotbext-axi's AxiRam, against
:func:`model.movers.axi_reader.read_beats`, with the VALID/READY rule checked on AR
(:class:`sim.protocol.HandshakeChecker`)."""

import random

import cocotb
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiRamRead, AxiReadBus

from hw.movers.axi_reader import AxiReader
from model.movers.axi_reader import read_beats
from sim.protocol import HandshakeChecker, axi_master_channels
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_struct

SIZE = 1 << 16
#: Reads at or above this address answer SLVERR.
BAD = 0xF000


class FaultyRam(AxiRamRead):
    async def _read(self, address, length):
        if address >= BAD:
            raise ValueError("no memory here")
        return await super()._read(address, length)


def make_design(config):
    return AxiReader(**config)


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def run(dut, commands, *, pause=0.0, backpressure=0.0):
    c = bench_config()
    design = make_design(c)
    data_bytes = c["data_width"] // 8
    await clock_and_reset(dut)
    protocol = HandshakeChecker(dut, axi_master_channels(dut, "bus"))
    ram = FaultyRam(AxiReadBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=SIZE)
    content = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
    ram.write(0, content)
    if pause:
        ram.ar_channel.set_pause_generator(_pauses(2, pause))
        ram.r_channel.set_pause_generator(_pauses(3, pause))
    cmd = StreamSource(dut, "cmd", seed=4)
    sink = StreamSink(dut, "o", backpressure=backpressure, seed=5)
    want = []
    for addr, beats in commands:
        cmd.send([pack_struct(design.cmd.payload.shape(), addr=addr, beats=beats)])
        want += read_beats(content, addr, beats, data_bytes)
    got = await sink.wait_for(len(want), timeout_cycles=2000)
    assert got == want, "data differs from memory"
    protocol.check()
    return content


COMMANDS = [(0, 1), (0x40, 300), (0x0FF0, 3), (0x1F00, 700), (0x8000, 256)]


@cocotb.test()
async def test_reads_at_full_rate(dut):
    await run(dut, COMMANDS)
    await ClockCycles(dut.clk, 5)
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_reads_with_memory_pauses_and_backpressure(dut):
    await run(dut, COMMANDS, pause=0.3, backpressure=0.5)
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_error_response_sets_error_and_delivers_beats(dut):
    c = bench_config()
    design = make_design(c)
    await clock_and_reset(dut)
    FaultyRam(AxiReadBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=SIZE)
    cmd = StreamSource(dut, "cmd")
    sink = StreamSink(dut, "o")
    cmd.send([pack_struct(design.cmd.payload.shape(), addr=BAD - 32, beats=4)])
    await sink.wait_for(4)
    assert int(dut.error.value) == 1 and int(dut.resp_error.value) == 1


@cocotb.test()
async def test_unaligned_or_empty_command_is_dropped(dut):
    c = bench_config()
    design = make_design(c)
    await clock_and_reset(dut)
    ram = FaultyRam(AxiReadBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=SIZE)
    ram.write(0, bytes(range(64)))
    cmd = StreamSource(dut, "cmd")
    sink = StreamSink(dut, "o")
    layout = design.cmd.payload.shape()
    cmd.send([pack_struct(layout, addr=3, beats=2), pack_struct(layout, addr=16, beats=0),
              pack_struct(layout, addr=16, beats=1)])
    got = await sink.wait_for(1)
    assert got == read_beats(bytes(range(64)), 16, 1, c["data_width"] // 8)
    assert int(dut.error.value) == 1 and int(dut.resp_error.value) == 0
