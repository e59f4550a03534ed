"""Each golden unit against its exact float function, on random and corner inputs."""

import math

import numpy as np
import pytest

from model import reference as R
from model.units.attention import attention, key_order, passes, schedule
from model.units.compute_unit import linear, scale_accumulate
from model.arith.exp import exp2
from model.units.expert_queues import expert_queues
from model.units.gate import gate, top_k
from model.arith.gelu import gelu
from model.arith.interp import InterpTable
from model.units.layernorm import layer_norm
from model.numerics import (DEFAULT, EDGEMOE, EXP_FRAC, MANT_FRAC, PROB_FRAC, SUM_FRAC, Fixed,
                            Quantized)
from model.arith.reciprocal import reciprocal
from model.units.residual import residual_add
from model.arith.rsqrt import rsqrt
from model.units.softmax import MAX_ROW, running_stats, softmax

ACT = DEFAULT.act
F = ACT.frac
rng = np.random.default_rng(1234)


def test_interp_table_is_exact_at_its_end_nodes_and_checks_range():
    t = InterpTable.build(np.exp2, lo=0.0, segments=4, step_log2=2, frac=10)
    assert t.evaluate(np.array([0, 4 << 4]), 6).tolist() == [1024, 2048]
    with pytest.raises(ValueError, match="outside"):
        t.evaluate(np.array([(4 << 4) + 1]), 6)
    with pytest.raises(ValueError, match="fraction bits"):
        t.evaluate(np.array([0]), 1)


@pytest.mark.parametrize("fmt", [DEFAULT.act, EDGEMOE.act])
def test_gelu_within_1e4_on_minus8_to_8(fmt):
    x = np.arange(-8 << fmt.frac, (8 << fmt.frac) + 1, 1 << (fmt.frac - 14))
    err = np.abs(fmt.to_float(gelu(x, fmt)) - R.gelu(fmt.to_float(x)))
    assert err.max() <= 1e-4


def test_gelu_corners():
    big = np.array([0, ACT.max_int, ACT.min_int, 6 << F, -(6 << F)])
    assert gelu(big, ACT).tolist() == [0, ACT.max_int, 0, 6 << F, 0]


def test_exp2_relative_error_and_exact_one():
    x = np.arange(-8 << F, 1)
    exact = np.exp2(ACT.to_float(x))
    assert (np.abs(exp2(x, F) / 2.0 ** EXP_FRAC - exact) / exact).max() <= 1e-4
    assert exp2(np.array([0]), F).tolist() == [1 << EXP_FRAC]
    assert exp2(np.array([ACT.min_int]), F).tolist() == [0]
    with pytest.raises(ValueError, match="non-positive"):
        exp2(np.array([1]), F)


def test_reciprocal_relative_error():
    s = np.concatenate([[1 << SUM_FRAC], rng.integers(1 << SUM_FRAC, MAX_ROW << SUM_FRAC, 50000)])
    r, k = reciprocal(s)
    assert (np.abs(r * 2.0 ** -(MANT_FRAC + k) * s / 2.0 ** SUM_FRAC - 1)).max() <= 3e-5
    assert r.max() < 1 << MANT_FRAC  # an 18-bit signed operand
    with pytest.raises(ValueError):
        reciprocal(np.array([(1 << SUM_FRAC) - 1]))


def test_rsqrt_relative_error():
    S = np.concatenate([np.arange(1, 3000), rng.integers(1, 1 << 50, 50000)])
    r, e = rsqrt(S)
    assert (np.abs(r * 2.0 ** -(MANT_FRAC + e) * np.sqrt(S) - 1)).max() <= 3e-5
    with pytest.raises(ValueError):
        rsqrt(np.array([0]))


def _random_scores(rows, n, spread):
    return ACT.quantize(rng.normal(0, spread, (rows, n)))[0]


@pytest.mark.parametrize("spread", [0.1, 3.0, 20.0])
def test_softmax_probabilities_within_1e4(spread):
    scores = _random_scores(200, 129, spread)
    p = softmax(scores, F, np.arange(200) % 4) / 2.0 ** PROB_FRAC
    exact = R.softmax(ACT.to_float(scores) * math.log(2))
    assert np.abs(p - exact).max() <= 1e-4


def test_softmax_corners():
    equal = np.zeros((1, 8), dtype=np.int64)
    assert (softmax(equal, F) == 1 << (PROB_FRAC - 3)).all()
    one_hot = np.array([[0, 0, 40 << F, 0]])
    assert softmax(one_hot, F).tolist() == [[0, 0, (1 << PROB_FRAC) - 1, 0]]
    with pytest.raises(ValueError, match="exceed"):
        running_stats(np.zeros((1, MAX_ROW + 1), dtype=np.int64), F)


def test_softmax_order_is_part_of_the_specification():
    scores = _random_scores(64, 129, 5.0)
    m0, s0 = running_stats(scores, F, np.zeros(64, dtype=int))
    m1, s1 = running_stats(scores, F, np.full(64, 3))
    assert (m0 == m1).all() and (s0 == s1).mean() < 1 and np.abs(s0 - s1).max() < 1 << 6


@pytest.mark.parametrize("numerics", [DEFAULT, EDGEMOE])
def test_layer_norm_within_1e3(numerics):
    fmt = numerics.act
    x = rng.normal(0, 3, (64, 192)) + rng.normal(0, 5, (64, 1))
    x[0, 7] = 60.0  # an outlier channel, as ViTs have
    xi = fmt.quantize(x)[0]
    g, _ = numerics.quantize("small", rng.normal(1, 0.5, 192))
    b, _ = numerics.quantize("bias", rng.normal(0, 1, 192))
    y = fmt.to_float(layer_norm(xi, fmt, g, b, 1e-6, numerics))
    exact = R.layer_norm(fmt.to_float(xi), g.to_float(), b.to_float(), 1e-6)
    assert np.abs(y - exact).max() <= 1e-3


def test_layer_norm_of_a_constant_row_is_the_shift():
    xi = np.full((2, 32), 5 << F)
    g, _ = DEFAULT.quantize("small", np.full(32, 2.0))
    b, _ = DEFAULT.quantize("bias", np.linspace(-1, 1, 32))
    assert (layer_norm(xi, ACT, g, b, 1e-6, DEFAULT) == b.ints).all()


def _q(role, values, numerics=DEFAULT):
    return numerics.quantize(role, values)[0]


def test_linear_rounds_once_and_saturates():
    x = ACT.quantize(rng.normal(0, 2, (9, 40)))[0]
    w = _q("weight", rng.normal(0, 0.1, (7, 40)))
    b = _q("bias", rng.normal(0, 1, 7))
    y = linear(x, F, w, b, ACT, DEFAULT)
    exact = ACT.to_float(x) @ w.to_float().T + b.to_float()
    assert np.abs(ACT.to_float(y) - exact).max() <= ACT.resolution / 2
    huge = np.full((1, 40), ACT.max_int)
    ones = Quantized(np.full((2, 40), 1 << 14), Fixed(16, 14))
    assert linear(huge, F, ones, None, ACT, DEFAULT).tolist() == [[ACT.max_int] * 2]
    assert (linear(-huge, F, ones, None, ACT, DEFAULT) == ACT.min_int).all()


def test_linear_upstream_floors_every_product_and_wraps():
    fmt = EDGEMOE.act
    x = np.array([[3, 5]])
    w = Quantized(np.array([[1, 1]]), Fixed(16, 1))     # each product is x/2
    assert linear(x, fmt.frac, w, None, fmt, EDGEMOE).tolist() == [[1 + 2]]
    big = np.array([[fmt.max_int, fmt.max_int]])
    one = Quantized(np.array([[1, 1]]), Fixed(16, 0))
    assert linear(big, fmt.frac, one, None, fmt, EDGEMOE).tolist() == [[-2]]


def test_linear_with_gelu_applies_gelu_to_the_rounded_output():
    x = ACT.quantize(rng.normal(0, 2, (5, 16)))[0]
    w = _q("weight", rng.normal(0, 0.3, (8, 16)))
    y = linear(x, F, w, None, ACT, DEFAULT)
    assert (linear(x, F, w, None, ACT, DEFAULT, apply_gelu=True) == gelu(y, ACT)).all()


def test_scale_accumulate_and_residual_saturate():
    dst = np.array([0, ACT.max_int - 1])
    y = np.array([1 << F, 1 << F])
    half = np.array([1 << (PROB_FRAC - 1)] * 2)
    assert scale_accumulate(dst, y, half, DEFAULT, ACT).tolist() == [1 << (F - 1), ACT.max_int]
    assert residual_add([ACT.max_int, 1], [5, 2], ACT, DEFAULT).tolist() == [ACT.max_int, 3]
    assert residual_add([ACT.max_int], [1], ACT, EDGEMOE).tolist() == [ACT.min_int]


def test_top_k_ties_go_to_the_lower_index_for_every_k():
    logits = np.array([[2, 5, 5, 1, 5]])
    for k in range(1, 6):
        assert top_k(logits, k).tolist() == [[1, 2, 4, 0, 3][:k]]
    with pytest.raises(ValueError, match="k=6"):
        top_k(logits, 6)


def test_gate_probabilities_and_choices():
    h = ACT.quantize(rng.normal(0, 1, (20, 32)))[0]
    w = _q("gate_weight", rng.normal(0, 0.3, (4, 32)))
    chosen, probs = gate(h, ACT, w, 2, DEFAULT)
    logits = ACT.to_float(h) @ w.to_float().T
    assert (chosen == R.top_k(logits, 2)).all()
    np.testing.assert_allclose(probs / 2.0 ** PROB_FRAC, R.softmax(logits * math.log(2)),
                               atol=1e-4)


def test_expert_queues_one_expert_takes_every_token():
    chosen = np.array([[2, 0]] * 5)
    probs = np.tile(np.arange(4), (5, 1))
    queues = expert_queues(chosen, probs, 4)
    assert [e for e, _, _ in queues] == [0, 2]
    assert all(t.tolist() == list(range(5)) for _, t, _ in queues)
    assert queues[1][2].tolist() == [2] * 5
    with pytest.raises(ValueError, match="outside"):
        expert_queues(np.array([[4, 0]]), probs, 4)


def test_expert_queues_longest_and_shortest_in_turn_ties_by_index():
    # Queue lengths: expert 0 one token, 1 four, 2 none, 3 two, 4 two, 5 three: ranked 1, 5,
    # 3, 4, 0 (3 before 4 by index), taken from both ends in turn.
    chosen = np.array([[1, 5], [3, 1], [4, 5], [0, 1], [5, 3], [4, 1]])
    probs = np.tile(np.arange(6), (6, 1))
    queues = expert_queues(chosen, probs, 6)
    assert [e for e, _, _ in queues] == [1, 0, 5, 4, 3]
    assert queues[0][1].tolist() == [0, 1, 3, 5]


@pytest.mark.parametrize("tokens, slots", [(129, 1), (129, 2), (129, 4), (129, 8), (17, 4),
                                           (10, 3)])
def test_schedule_meets_every_key_once_in_the_stated_passes(tokens, slots):
    steps = list(schedule(tokens, slots))
    assert len(steps) == passes(tokens, slots) * tokens
    assert passes(tokens, slots) == math.ceil((tokens + slots - 1) / slots)
    loaded_at = {}
    for i, (_, key, loads) in enumerate(steps):
        assert len(loads) <= 1                    # one query row read per step
        for slot, q in loads.items():
            assert slot == key and q not in loaded_at
            loaded_at[q] = i
    assert sorted(loaded_at) == list(range(tokens))
    for q, i in loaded_at.items():
        seen = [steps[j][1] for j in range(i, i + tokens)]
        assert seen == key_order(q, tokens, slots)
        assert sorted(seen) == list(range(tokens))


def test_attention_against_float():
    T, D, heads = 33, 32, 2
    q = DEFAULT.query.quantize(rng.normal(0, 0.5, (T, D)))[0]
    k = ACT.quantize(rng.normal(0, 2, (T, D)))[0]
    v = ACT.quantize(rng.normal(0, 2, (T, D)))[0]
    out = attention(q, DEFAULT.query, k, v, ACT, heads, 4, DEFAULT)
    qf = DEFAULT.query.to_float(q) * math.log(2) * math.sqrt(D // heads)
    exact = R.attention(qf, ACT.to_float(k), ACT.to_float(v), heads)
    assert np.abs(ACT.to_float(out) - exact).max() <= 2e-3
    with pytest.raises(ValueError, match="divisible"):
        attention(q, DEFAULT.query, k, v, ACT, 3, 4, DEFAULT)
