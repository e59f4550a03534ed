"""cocotb bench of :class:`hw.movers.linear_fetch.LinearFetch` on cocotbext-axi's AxiRam: the ``w``
and
``b`` beats must be those :mod:`model.packer` makes for the compute unit. With several ports, one
memory behind a RAM model on each, each port pausing at its own random times. Behind a memory
with latency, the next record's first beat follows the last one's without that latency."""

import mmap
import random

import numpy as np

import cocotb
from cocotbext.axi import AxiReadBus

from hw.movers.linear_fetch import LinearFetch, bus_name
from model.numerics import DEFAULT
from model.packer import bias_words, linear_record, linear_weight_tiles, planes, weight_beats
from sim.ddr import DdrRead, MemoryModel, Timing
from sim.runner import bench_config
from sim.stream import (PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes,
                        pack_struct)

ACT = DEFAULT.act


def make_design(config):
    return LinearFetch(**config)


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def run(dut, *, pause=0.0, backpressure=0.0, latency=0):
    """Fetch three records back to back and compare every beat with the packer's; returns
    the two sinks and each record's ``(weight beats, bias beats)``. ``latency``: cycles from an
    address to its data (0: cocotbext-axi's RAM as it is)."""
    c = bench_config()
    design = make_design(c)
    ports, port_bytes = c.get("ports", 1), c["data_width"] // 8
    C, lanes = c["cols"], ports * c["data_width"] // 16
    rows = C
    rng = np.random.default_rng(1)
    await clock_and_reset(dut)
    memory = mmap.mmap(-1, 1 << 20)
    timing = (Timing(MemoryModel("slow", latency_ns=latency * PERIOD_NS), 1000 / PERIOD_NS,
                     PERIOD_NS, port_bytes) if latency else None)
    rams = [DdrRead(AxiReadBus.from_prefix(dut, f"{bus_name(p)}_"), dut.clk, dut.rst,
                    mem=memory, timing=timing) for p in range(ports)]
    if pause:
        for p, ram in enumerate(rams):
            ram.r_channel.set_pause_generator(_pauses(2 + p, pause))
    cmd = StreamSource(dut, "cmd")
    w_sink = StreamSink(dut, "w", backpressure=backpressure, seed=3)
    b_sink = StreamSink(dut, "b", backpressure=backpressure, seed=4)
    addr, want_w, want_b, records = 0x100, [], [], []
    for out_dim, in_dim, bias in ((24, 40, True), (8, 8, False), (C * 3, 20, True)):
        w, _ = DEFAULT.quantize("weight", rng.normal(0, 0.3, (out_dim, in_dim)))
        b = DEFAULT.quantize("bias", rng.normal(0, 1, out_dim))[0] if bias else None
        record, wb, bb, shift = linear_record(w, b, ACT.frac, ACT.frac, rows, C,
                                              ports * port_bytes)
        memory[addr:addr + len(record)] = planes(record, ports, port_bytes)
        cmd.send([pack_struct(design.cmd.payload.shape(), addr=addr, weight_beats=wb,
                              bias_beats=bb)])
        want_w += [pack_lanes(beat, 16) for beat in
                   weight_beats(linear_weight_tiles(w.ints, rows, C), lanes)]
        want_b += [pack_lanes(word, c["acc_width"]) for word in
                   bias_words(b, out_dim, C, ACT.frac + w.fmt.frac, shift)]
        records.append((len(want_w) - sum(w for w, _ in records),
                        len(want_b) - sum(b for _, b in records)))
        addr += len(record) + 0x40
    got_w = await w_sink.wait_for(len(want_w), timeout_cycles=2000)
    got_b = await b_sink.wait_for(len(want_b), timeout_cycles=2000)
    assert got_w == want_w, "weight beats differ from the packer's"
    assert got_b == want_b, "bias beats differ from the packer's"
    assert int(dut.error.value) == 0
    return w_sink, b_sink, records


@cocotb.test()
async def test_full_rate(dut):
    await run(dut)


@cocotb.test()
async def test_pauses_and_backpressure(dut):
    await run(dut, pause=0.3, backpressure=0.5)


@cocotb.test()
async def test_next_record_behind_latency(dut):
    """Issue runs a record ahead of delivery: behind a memory of 40 cycles' latency, the first
    weight beat of record 1 comes within a few cycles of record 0's last bias beat, not 40
    cycles after it."""
    latency = 40
    w_sink, b_sink, records = await run(dut, latency=latency)
    (w0, b0), _, _ = records
    gap = (w_sink.times[w0] - b_sink.times[b0 - 1]) / PERIOD_NS
    dut._log.info(f"{gap:.0f} cycles from record 0's last beat to record 1's first")
    assert gap < latency / 4, f"{gap} cycles between records behind a {latency}-cycle memory"
