"""cocotb bench of :class:`hw.movers.axi_rom.AxiRom`: cocotbext-axi read masters on every port at
once, random bursts against the ROM's bytes, at full rate and with random pauses on both channels of
every port (one port stalled must not stall the others); reads past the end answer SLVERR."""

import random

import cocotb
from cocotb.triggers import Combine
from cocotbext.axi import AxiMasterRead, AxiReadBus, AxiResp

from hw.movers.axi_rom import AxiRom
from sim.runner import bench_config
from sim.stream import clock_and_reset

BASE = 0x1000
PORTS = ("a", "b", "c")


def contents(size):
    return random.Random(1).randbytes(size)


def make_design(config):
    return AxiRom(contents(config["bytes"]), base=BASE, ports=PORTS,
                  data_width=config["data_width"], addr_width=32)


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def _reads(master, rom, beat, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        start = rng.randrange(len(rom) // beat)
        beats = rng.randint(1, min(40, len(rom) // beat - start))
        got = await master.read(BASE + start * beat, beats * beat)
        assert got.resp == AxiResp.OKAY
        assert got.data == rom[start * beat:(start + beats) * beat], (start, beats)


async def run(dut, pause):
    config = bench_config()
    beat = config["data_width"] // 8
    rom = contents(config["bytes"])
    await clock_and_reset(dut)
    masters = [AxiMasterRead(AxiReadBus.from_prefix(dut, f"{p}_"), dut.clk, dut.rst)
               for p in PORTS]
    for i, m in enumerate(masters):
        m.log.setLevel("WARNING")
        if pause:
            m.ar_channel.set_pause_generator(_pauses(10 + i, pause))
            m.r_channel.set_pause_generator(_pauses(20 + i, pause * (i + 1)))
    await Combine(*(cocotb.start_soon(_reads(m, rom, beat, i, 30)).complete
                    for i, m in enumerate(masters)))
    # Past the end: SLVERR. (The ROM's last beat is padding only when bytes is not whole.)
    end = BASE + -(-len(rom) // beat) * beat
    got = await masters[1].read(end, 2 * beat)
    assert got.resp == AxiResp.SLVERR


@cocotb.test()
async def test_full_rate(dut):
    await run(dut, 0)


@cocotb.test()
async def test_pauses(dut):
    await run(dut, 0.3)
