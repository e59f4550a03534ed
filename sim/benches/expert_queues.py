"""cocotb bench of :class:`hw.units.expert_queues.ExpertQueues` against
:func:`model.units.expert_queues.expert_queues`."""

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles

from hw.units.expert_queues import ExpertQueues
from model.units.expert_queues import expert_queues
from model.numerics import PROB_FRAC
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_struct


def make_design(config):
    return ExpertQueues(**config)


def _unpack(word, layout):
    out = {}
    for name in ("expert", "token", "score", "last"):
        f = layout[name]
        v = (word >> f.offset) & ((1 << f.width) - 1)
        if name == "score" and v >> (f.width - 1):
            v -= 1 << f.width
        out[name] = v
    return out


def _tokens(rng, max_tokens, experts, mode):
    if mode == "random":
        return int(rng.integers(1, max_tokens + 1))
    if mode == "all_tied":
        return max_tokens // experts * experts or max_tokens
    if mode == "some_tied":
        return int(rng.integers(2, 5))
    return max_tokens


def _lengths(chosen, experts):
    return [int((chosen == e).any(axis=1).sum()) for e in range(experts)]


def _choices(rng, tokens, experts, k, mode):
    if mode == "all_tied":
        # Token t takes experts t, t + 1, ...: every expert gets the same number of tokens
        # when the tokens are a multiple of the experts.
        return np.array([[(t + j) % experts for j in range(k)]
                         for t in rng.permutation(tokens)])
    if mode == "some_tied":
        # A few tokens, drawn until the queues' lengths have a tie and also differ.
        while True:
            chosen = _choices(rng, tokens, experts, k, "random")
            active = [n for n in _lengths(chosen, experts) if n]
            if len(set(active)) not in (1, len(active)):
                return chosen
    if mode == "one_expert_takes_all":
        first = np.full(tokens, 2)
        rest = np.array([rng.permutation([e for e in range(experts) if e != 2])[:k - 1]
                         for _ in range(tokens)]).reshape(tokens, k - 1)
        return np.concatenate([first[:, None], rest], axis=1)
    if mode == "few_active":
        pool = [0, experts - 1, 1][:max(k, 2)]
        return np.array([rng.permutation(pool)[:k] for _ in range(tokens)])
    return np.array([rng.permutation(experts)[:k] for _ in range(tokens)])


async def run(dut, modes, *, idle=0.0, backpressure=0.0):
    c = bench_config()
    design = make_design(c)
    E, K = c["experts"], c["top_k"]
    rng = np.random.default_rng(3)
    await clock_and_reset(dut)
    cmd = StreamSource(dut, "cmd", idle=idle, seed=1)
    src = StreamSource(dut, "i", idle=idle, seed=2)
    sink = StreamSink(dut, "o", backpressure=backpressure, seed=3)
    in_layout = design.i.payload.shape()
    for mode in modes:
        tokens = _tokens(rng, c["max_tokens"], E, mode)
        chosen = _choices(rng, tokens, E, K, mode)
        probs = rng.integers(0, 1 << PROB_FRAC, (tokens, E))
        cmd.send([pack_struct(design.cmd.payload.shape(), tokens=tokens)])
        scores = np.take_along_axis(probs, chosen, axis=1)
        for t in range(tokens):
            word = 0
            for j in range(K):
                word |= int(chosen[t, j]) << in_layout["experts"].offset + j * in_layout[
                    "experts"].shape.elem_shape.width
                sw = in_layout["scores"].shape.elem_shape.width
                word |= (int(scores[t, j]) & ((1 << sw) - 1)) << (in_layout["scores"].offset +
                                                                   j * sw)
            src.send([word])
        want = []
        queues = expert_queues(chosen, probs, E)
        for e, toks, sc in queues:
            for n, (t, s) in enumerate(zip(toks, sc)):
                want.append(dict(expert=e, token=int(t), score=int(s),
                                 last=int(n == len(toks) - 1)))
        got = await sink.wait_for(len(sink.payloads) + len(want), timeout_cycles=2000)
        got = [_unpack(w, design.o.payload.shape()) for w in got[-len(want):]]
        assert got == want, f"{mode}: queues differ from the twin (first: {got[:2]} vs {want[:2]})"
        if mode == "few_active":
            assert len(queues) <= 3
        if mode == "all_tied" and tokens % E == 0:
            assert len({len(t) for _, t, _ in queues}) == 1
    await ClockCycles(dut.clk, 10)
    assert int(dut.error.value) == 0


@cocotb.test()
async def test_queues_at_full_rate(dut):
    await run(dut, ["random", "one_expert_takes_all", "few_active", "all_tied", "some_tied",
                    "some_tied", "random"])


@cocotb.test()
async def test_queues_under_backpressure(dut):
    await run(dut, ["random", "few_active", "one_expert_takes_all", "all_tied", "some_tied"],
              idle=0.3, backpressure=0.5)


@cocotb.test()
async def test_bad_expert_index_sets_error(dut):
    c = bench_config()
    design = make_design(c)
    await clock_and_reset(dut)
    cmd = StreamSource(dut, "cmd")
    src = StreamSource(dut, "i")
    sink = StreamSink(dut, "o")
    layout = design.i.payload.shape()
    width = layout["experts"].shape.elem_shape.width
    cmd.send([pack_struct(design.cmd.payload.shape(), tokens=1)])
    # Token 0 chooses expert E (out of range) and expert 1; only the second is queued.
    src.send([c["experts"] | (1 << width) if c["top_k"] == 2 else c["experts"]])
    got = await sink.wait_for(c["top_k"] - 1)
    assert _unpack(got[0], design.o.payload.shape())["expert"] == 1
    assert int(dut.error.value) == 1
