"""cocotb bench of :class:`hw.units.compute_unit.ComputeUnit` against
:func:`model.units.compute_unit.linear`.

The design configuration comes from :func:`sim.runner.bench_config`. Each test runs a few calls
back to back (so weights of one call load while another computes), feeds weights, biases and
token rows through :mod:`model.packer`'s layout, and compares every result bit for bit.
"""

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles

from hw.units.compute_unit import ComputeUnit
from model.units.compute_unit import linear
from model.numerics import DEFAULT
from model.packer import bias_words, linear_weight_tiles, tiles, weight_beats
from sim.runner import bench_config
from sim.stream import (PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes,
                        pack_struct, unpack_lanes)

ACT = DEFAULT.act


def make_unit(config):
    """The design under test, as the pytest side builds it (see tests/test_hw_compute_unit.py)."""
    config = dict(config)
    if config.pop("with_gelu", False):
        from hw.arith.gelu import Gelu
        config["gelu"] = Gelu
    return ComputeUnit(**config)


class Call:
    """One linear call: inputs, parameters and what the golden model says."""

    def __init__(self, rng, tokens, in_dim, out_dim, *, out_fmt=ACT, gelu=False, scale=1.0,
                 bias=True):
        self.x = ACT.quantize(rng.normal(0, 2.0 * scale, (tokens, in_dim)))[0]
        self.w, _ = DEFAULT.quantize("weight", rng.normal(0, 0.3 * scale, (out_dim, in_dim)))
        self.b = DEFAULT.quantize("bias", rng.normal(0, 1.0, out_dim))[0] if bias else None
        self.out_fmt, self.gelu = out_fmt, gelu
        self.expected = linear(self.x, ACT.frac, self.w, self.b, out_fmt, DEFAULT,
                               apply_gelu=gelu)
        self.shift = ACT.frac + self.w.fmt.frac - out_fmt.frac


class TB:
    def __init__(self, dut):
        self.config = bench_config()
        self.unit = make_unit(self.config)
        self.dut = dut

    async def run(self, calls, *, idle=0.0, backpressure=0.0, seed=0, bad_first=False):
        u, dut = self.unit, self.dut
        R, C, O = u.rows, u.cols, u.out_lanes
        await clock_and_reset(dut)
        srcs = {name: StreamSource(dut, name, idle=idle, seed=seed + i)
                for i, name in enumerate(("cmd", "w", "b", "x"))}
        sink = StreamSink(dut, "o", backpressure=backpressure, seed=seed + 9)
        if bad_first:
            bad = dict(u.command(in_dim=1, out_dim=1, tokens=1, shift=1), tokens=0)
            srcs["cmd"].send([pack_struct(u.command_layout, **bad)])
        expected_beats = 0
        for call in calls:
            tokens, in_dim = call.x.shape
            out_dim = call.w.ints.shape[0]
            cmd = u.command(in_dim=in_dim, out_dim=out_dim, tokens=tokens, shift=call.shift,
                            out_width=call.out_fmt.width, gelu=call.gelu)
            srcs["cmd"].send([pack_struct(u.command_layout, **cmd)])
            beats = weight_beats(linear_weight_tiles(call.w.ints, R, C), u.weight_lanes)
            srcs["w"].send(pack_lanes(beat, u.weight_width) for beat in beats)
            words = bias_words(call.b, out_dim, C, ACT.frac + call.w.fmt.frac, call.shift)
            srcs["b"].send(pack_lanes(word, u.acc_width) for word in words)
            it = tiles(in_dim, R)
            padded = np.zeros((tokens, it * R), dtype=np.int64)
            padded[:, :in_dim] = call.x
            srcs["x"].send(pack_lanes(chunk, ACT.width) for chunk in padded.reshape(-1, R))
            expected_beats += tokens * tiles(out_dim, O)

        got = await sink.wait_for(expected_beats, timeout_cycles=20000)
        at = 0
        for n, call in enumerate(calls):
            tokens, out_dim = call.x.shape[0], call.w.ints.shape[0]
            beats = tiles(out_dim, O)
            rows = [unpack_lanes(word, ACT.width, O) for word in got[at:at + tokens * beats]]
            at += tokens * beats
            y = np.array(rows, dtype=np.int64).reshape(tokens, beats * O)[:, :out_dim]
            bad = np.argwhere(y != call.expected)
            assert bad.size == 0, (
                f"call {n}: {len(bad)} of {y.size} results differ from the golden model, first "
                f"at token {bad[0][0]} output {bad[0][1]}: RTL {y[tuple(bad[0])]}, golden "
                f"{call.expected[tuple(bad[0])]}")
        await ClockCycles(dut.clk, 2 * u.latency + 4)
        assert len(sink.payloads) == expected_beats, "results beyond the expected ones"
        assert int(dut.error.value) == int(bad_first), "error flag"
        return sink


def _calls(rng, config, *, gelu):
    max_in, max_out = config["max_in"], config["max_out"]
    calls = [
        Call(rng, 5, max_in, max_out, gelu=gelu),
        Call(rng, 3, max_in - 3, max_out - 5),                       # not tile multiples
        Call(rng, 4, 3, 2, bias=False),                               # smaller than one tile
        Call(rng, 6, max_in, max_out, out_fmt=DEFAULT.query, scale=4.0),  # narrow, saturating
    ]
    return calls


@cocotb.test()
async def test_calls_at_full_rate(dut):
    tb = TB(dut)
    rng = np.random.default_rng(1)
    await tb.run(_calls(rng, tb.config, gelu=tb.config.get("with_gelu", False)))


@cocotb.test()
async def test_calls_under_backpressure(dut):
    tb = TB(dut)
    rng = np.random.default_rng(2)
    await tb.run(_calls(rng, tb.config, gelu=tb.config.get("with_gelu", False)),
                 idle=0.3, backpressure=0.5, seed=7)


@cocotb.test()
async def test_saturation_at_both_ends(dut):
    tb = TB(dut)
    rng = np.random.default_rng(3)
    call = Call(rng, 4, tb.config["max_in"], tb.config["max_out"], scale=30.0)
    call.x[0] = ACT.max_int
    call.x[1] = ACT.min_int
    call.expected = linear(call.x, ACT.frac, call.w, call.b, ACT, DEFAULT)
    assert (call.expected == ACT.max_int).any() and (call.expected == ACT.min_int).any()
    await tb.run([call])


@cocotb.test()
async def test_bad_command_sets_error_and_is_skipped(dut):
    tb = TB(dut)
    rng = np.random.default_rng(4)
    await tb.run([Call(rng, 2, 5, 3)], bad_first=True)


@cocotb.test()
async def test_cycles_of_a_long_call(dut):
    """Back to back, a call takes tokens x ceil(out/cols) x ceil(in/rows) cycles (within 5%):
    its weights loaded while the previous call computed."""
    tb = TB(dut)
    u = tb.unit
    rng = np.random.default_rng(5)
    in_dim, out_dim = tb.config["max_in"], tb.config["max_out"]
    ot, it = tiles(out_dim, u.cols), tiles(in_dim, u.rows)
    first = Call(rng, 8, in_dim, out_dim)      # long enough to hide the next call's weights
    tokens = tb.config["max_tokens"]
    sink = await tb.run([first, Call(rng, tokens, in_dim, out_dim)])
    ideal = tokens * ot * it
    cycles = (sink.times[-1] - sink.times[8 * tiles(out_dim, u.out_lanes) - 1]) / PERIOD_NS
    dut._log.info(f"second call: {cycles:.0f} cycles after the first call's last result, "
                  f"ideal {ideal}")
    assert cycles <= ideal * 1.05, f"{cycles} cycles for {ideal} ideal"


def records_ahead(unit, sizes):
    """How many of the records of ``sizes`` tiles the weight ring takes with no token rows: in
    order, while a record slot is free and the ring has room for the next record's tiles."""
    n = 0
    while n < len(sizes) and n < unit.records and sum(sizes[:n + 1]) <= unit.ring_tiles:
        n += 1
    return n


@cocotb.test()
async def test_weights_load_ahead_as_the_ring_holds(dut):
    """With no token rows, the unit takes the weights of as many calls as its ring has room and
    record slots for, in order, no more (largest matrices first, then small ones, which go
    further ahead); the rows then come and every call is bit-exact."""
    tb = TB(dut)
    u = tb.unit
    rng = np.random.default_rng(6)
    big, small = (tb.config["max_in"], tb.config["max_out"]), (u.rows, u.cols)
    shapes = [big] * (u.ring_tiles // u.max_tiles) + [small] * (u.records + 1)
    calls = [Call(rng, 2, in_dim, out_dim) for in_dim, out_dim in shapes]
    sizes = [tiles(in_dim, u.rows) * tiles(out_dim, u.cols) for in_dim, out_dim in shapes]
    ahead = records_ahead(u, sizes)
    assert ahead < len(calls)
    await clock_and_reset(dut)
    srcs = {name: StreamSource(dut, name, seed=i) for i, name in enumerate(("cmd", "w", "b"))}
    sink = StreamSink(dut, "o")
    per_call = []
    for call in calls:
        tokens, in_dim = call.x.shape
        out_dim = call.w.ints.shape[0]
        cmd = u.command(in_dim=in_dim, out_dim=out_dim, tokens=tokens, shift=call.shift)
        srcs["cmd"].send([pack_struct(u.command_layout, **cmd)])
        beats = weight_beats(linear_weight_tiles(call.w.ints, u.rows, u.cols), u.weight_lanes)
        srcs["w"].send(pack_lanes(beat, u.weight_width) for beat in beats)
        per_call.append(len(beats))
        words = bias_words(call.b, out_dim, u.cols, ACT.frac + call.w.fmt.frac, call.shift)
        srcs["b"].send(pack_lanes(word, u.acc_width) for word in words)
    await ClockCycles(dut.clk, 4 * sum(per_call) + 50)
    assert srcs["w"].sent == sum(per_call[:ahead]), (
        f"{srcs['w'].sent} weight beats taken with no token rows, the ring of "
        f"{u.ring_tiles} tiles and {u.records} records holds the first {ahead} calls "
        f"({sum(per_call[:ahead])} beats)")
    x = StreamSource(dut, "x", seed=7)
    for call in calls:
        tokens, in_dim = call.x.shape
        padded = np.zeros((tokens, tiles(in_dim, u.rows) * u.rows), dtype=np.int64)
        padded[:, :in_dim] = call.x
        x.send(pack_lanes(chunk, ACT.width) for chunk in padded.reshape(-1, u.rows))
    got = await sink.wait_for(sum(2 * tiles(c.w.ints.shape[0], u.out_lanes) for c in calls),
                              timeout_cycles=20000)
    at = 0
    for n, call in enumerate(calls):
        beats = tiles(call.w.ints.shape[0], u.out_lanes)
        rows = [unpack_lanes(word, ACT.width, u.out_lanes) for word in got[at:at + 2 * beats]]
        at += 2 * beats
        y = np.array(rows, dtype=np.int64).reshape(2, beats * u.out_lanes)[:, :call.w.ints.shape[0]]
        assert (y == call.expected).all(), f"call {n} differs from the golden model"
