"""cocotb bench of :class:`hw.units.attention.AttentionEngine` against
:func:`model.units.attention.attention`.

The configuration names the model whose dimensions the engine takes (``micro`` or
``m3vit-tiny``), the slots ``P`` and the lanes, plus optional ``idle`` (random gaps on the
input streams) and ``backpressure`` (on ``o``). The tests feed Q, K and V of the golden model's
block 0 (``weights="edge-moe"`` for the published weights, else synthetic), runs of random and
corner-case values back to back, and bad commands. With ``$EDGEMOE_MEASURE_OUT`` set, the golden
run's sweep cycles and buffer reads are written there as JSON.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from hw.units.attention import AttentionEngine
from model.units.attention import attention, passes
from model.units.compute_unit import linear
from model.config import config_by_name
from model.units.layernorm import layer_norm
from model.numerics import DEFAULT
from sim.benches.mlp_half import embedded_image
from sim.runner import bench_config
from sim.stream import (assert_bit_exact, StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct,
                        unpack_lanes)

ACT, QUERY = DEFAULT.act, DEFAULT.query


def make_design(config):
    """The engine of a bench configuration (the pytest side builds it the same way)."""
    model = config_by_name(config["model"])
    return AttentionEngine(dim=model.dim, heads=model.heads, max_tokens=model.tokens,
                           slots=config.get("slots", 4), lanes=config["lanes"])


def golden_qkv(config):
    """Q, K and V of block 0 as the golden model computes them (LN1 of the embedded image)."""
    qm, x = embedded_image(config)
    p = lambda n: qm.block(0, n)  # noqa: E731
    h = layer_norm(x, ACT, p("norm1_weight"), p("norm1_bias"), qm.config.ln_eps, DEFAULT)
    q = linear(h, ACT.frac, p("q_weight"), p("q_bias"), QUERY, DEFAULT)
    k = linear(h, ACT.frac, p("k_weight"), p("k_bias"), ACT, DEFAULT)
    v = linear(h, ACT.frac, p("v_weight"), p("v_bias"), ACT, DEFAULT)
    return q, k, v


class TB:
    def __init__(self, dut, config):
        self.dut, self.config = dut, config
        self.engine = make_design(config)
        idle = config.get("idle", 0.0)
        self.sources = {n: StreamSource(dut, n, idle=idle, seed=i)
                        for i, n in enumerate(("cmd", "q", "k", "v"))}
        self.sink = StreamSink(dut, "o", backpressure=config.get("backpressure", 0.0), seed=7)

    async def run(self, q, k, v):
        """One run: the engine's output ``[tokens][dim]``, checked against the twin."""
        e, L = self.engine, self.engine.lanes
        T, D = q.shape
        self.sources["cmd"].send([pack_struct(e.command_layout, **e.command(tokens=T))])
        # The compute unit's order: K, Q, then V (which may still come during the Q K^T sweep).
        for name, values in (("k", k), ("q", q), ("v", v)):
            self.sources[name].send(pack_lanes(beat, ACT.width) for beat in values.reshape(-1, L))
        budget = 4 * (e.sweep_cycles(T) + 200) + 4 * T * D // L
        # The sink counts every payload since the start of the test.
        done = len(self.sink.payloads)
        got = (await self.sink.wait_for(done + T * D // L, timeout_cycles=budget))[done:]
        y = np.array([unpack_lanes(word, ACT.width, L) for word in got]).reshape(T, D)
        expected = attention(q, QUERY, k, v, ACT, e.heads, e.slots, DEFAULT)
        assert_bit_exact(y, expected, f"model.units.attention ({T} tokens)")
        assert int(self.dut.error.value) == 0
        return y


def _random_run(rng, tokens, dim, style):
    """Q, K, V of ``tokens`` rows: ``typical`` spreads, ``extreme`` saturating values, ``ties``
    equal scores everywhere."""
    if style == "extreme":
        q = rng.choice([QUERY.min_int, QUERY.max_int, 0, 1, -1], size=(tokens, dim))
        k = rng.choice([ACT.min_int, ACT.max_int, 0, 1, -1], size=(tokens, dim))
        v = rng.choice([ACT.min_int, ACT.max_int, 0, 1, -1], size=(tokens, dim))
    elif style == "ties":
        q = np.zeros((tokens, dim), dtype=np.int64)
        k = rng.integers(ACT.min_int, ACT.max_int, size=(tokens, dim), endpoint=True)
        v = rng.integers(ACT.min_int, ACT.max_int, size=(tokens, dim), endpoint=True)
    else:
        q = rng.integers(-(1 << 15), 1 << 15, size=(tokens, dim))
        k = rng.integers(-(1 << 17), 1 << 17, size=(tokens, dim))
        v = rng.integers(-(1 << 18), 1 << 18, size=(tokens, dim))
    return q.astype(np.int64), k.astype(np.int64), v.astype(np.int64)


@cocotb.test()
async def test_block0(dut):
    """Q, K, V of the golden model's block 0; the sweeps' cycles and reads on record."""
    config = bench_config()
    await clock_and_reset(dut)
    tb = TB(dut, config)
    q, k, v = golden_qkv(config)
    await tb.run(q, k, v)
    # The last rows may leave before the sweep's last steps (slots without a query).
    while not int(dut.cmd__ready.value):
        await RisingEdge(dut.clk)
    e, T = tb.engine, q.shape[0]
    report = {"model": config["model"], "slots": e.slots, "tokens": T, "heads": e.heads,
              "head_dim": e.head_dim, "passes": passes(T, e.slots),
              "sweep_steps": e.sweep_cycles(T)}
    for name in ("qk_cycles", "av_cycles", "q_blocks", "k_blocks", "v_blocks"):
        report[name] = int(getattr(dut, name).value)
    # Each sweep reads its blocks in exactly its steps; the rest is pipeline.
    assert report["k_blocks"] == passes(T, e.slots) * T * e.heads
    assert report["q_blocks"] == T * e.heads
    assert report["v_blocks"] == report["k_blocks"]
    assert e.sweep_cycles(T) < report["qk_cycles"] <= e.sweep_cycles(T) + 40
    dut._log.info(f"attention engine: {report}")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump(report, f)


@cocotb.test()
async def test_runs_back_to_back(dut):
    """Random and corner-case runs, token counts from 1 to the maximum, without reset."""
    config = bench_config()
    await clock_and_reset(dut)
    tb = TB(dut, config)
    e = tb.engine
    rng = np.random.default_rng(config.get("seed", 3))
    P, T = e.slots, e.max_tokens
    counts = sorted({1, 2, P - 1 if P > 1 else 1, P, P + 1, T - 1, T})
    styles = ["typical", "extreme", "ties"]
    for n, tokens in enumerate(counts):
        await tb.run(*_random_run(rng, tokens, e.dim, styles[n % len(styles)]))


@cocotb.test()
async def test_bad_command(dut):
    """Zero tokens or more than the engine was built for: error set, command dropped, and the
    next good run still right."""
    config = bench_config()
    await clock_and_reset(dut)
    tb = TB(dut, config)
    e = tb.engine
    width = e.command_layout["tokens"].shape.width
    assert int(dut.error.value) == 0
    for tokens in (0, e.max_tokens + 1):
        if tokens >= 1 << width:
            continue
        tb.sources["cmd"].send([pack_struct(e.command_layout, tokens=tokens)])
        await tb.sources["cmd"].wait_sent(timeout_cycles=100)
        await ClockCycles(dut.clk, 2)
        assert int(dut.error.value) == 1, f"tokens={tokens} was not rejected"
        assert int(dut.o__valid.value) == 0 and int(dut.cmd__ready.value) == 1
    # The engine is idle again: a good run is still bit-exact (error stays set: sticky).
    rng = np.random.default_rng(5)
    q, k, v = _random_run(rng, 3, e.dim, "typical")
    tb.sources["cmd"].send([pack_struct(e.command_layout, tokens=3)])
    for name, values in (("k", k), ("q", q), ("v", v)):
        tb.sources[name].send(pack_lanes(beat, ACT.width) for beat in values.reshape(-1, e.lanes))
    got = await tb.sink.wait_for(3 * e.dim // e.lanes, timeout_cycles=5000)
    y = np.array([unpack_lanes(word, ACT.width, e.lanes) for word in got]).reshape(3, e.dim)
    assert (y == attention(q, QUERY, k, v, ACT, e.heads, e.slots, DEFAULT)).all()
    await RisingEdge(dut.clk)
