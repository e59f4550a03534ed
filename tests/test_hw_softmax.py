# amaranth: UnusedElaboratable=no
"""Tests of the softmax units (hw/units/softmax.py) against their twins (model/units/softmax.py):
the cocotb benches ``sim.benches.softmax`` (the statistics) and ``sim.benches.softmax_prob`` (the
probabilities) under Verilator, more rows and formats in Amaranth's simulator, and the argument
checks."""

import re

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

import model.units.softmax
from hw.arith.exp import Exp2Datapath
from hw.arith.reciprocal import K_WIDTH, ReciprocalDatapath
from hw.units.softmax import SoftmaxProb, SoftmaxStats
from model.numerics import DEFAULT, EDGEMOE, MANT_FRAC, PROB_FRAC, SUM_WIDTH, Fixed
from model.arith.reciprocal import reciprocal
from model.units.softmax import SUM_FORMAT, probabilities, running_stats
from sim.benches.softmax import expected, interleave, softmax_stats_design
from sim.benches.softmax_prob import softmax_prob_design, twin as prob_twin
from sim.runner import cocotb_tests
from sim.pysim import stream_through


test_softmax_stats = cocotb_tests("sim.benches.softmax", softmax_stats_design,
                                  configs=[dict(rows=SoftmaxStats.MIN_ROWS, numerics="default")])
test_softmax_prob = cocotb_tests("sim.benches.softmax_prob", softmax_prob_design,
                                 configs=[dict(lanes=2, numerics="default")])


simulate = stream_through


def run_stats(unit, slots, **kwargs):
    beats, ends = interleave(slots)
    received, times_in, times_out = simulate(
        unit, [{"score": score, "last": last} for score, last in beats],
        lambda o: (o.row, o.m, o.s, o.r, o.k), expect=len(ends), **kwargs)
    return received, expected(ends, unit.fmt.frac), beats, times_in, times_out


def real_rows(rng, fmt, rows, total):
    """Rows of random lengths and spreads, ``total`` scores for each of ``rows`` slots."""
    slots = []
    for _ in range(rows):
        rows_of_slot, count = [], 0
        while count < total:
            length = min(int(rng.integers(1, 140)), total - count)
            row = rng.normal(0.0, rng.uniform(0.1, 20.0), length) * 2.0 ** fmt.frac
            rows_of_slot.append(np.clip(np.round(row), fmt.min_int, fmt.max_int)
                                .astype(int).tolist())
            count += length
        slots.append(rows_of_slot)
    return slots


@pytest.mark.parametrize("rows,fmt", [(5, DEFAULT.act), (3, EDGEMOE.act), (4, Fixed(16, 8))])
def test_stats_of_random_rows_under_backpressure(rows, fmt):
    unit = SoftmaxStats(rows=rows, fmt=fmt)
    slots = real_rows(np.random.default_rng(rows), fmt, rows, 400)
    received, want, *_ = run_stats(unit, slots, idle=0.3, backpressure=0.5, seed=1)
    assert received == want


def test_stats_take_one_score_per_cycle():
    unit = SoftmaxStats(rows=4)
    slots = real_rows(np.random.default_rng(7), DEFAULT.act, 4, 200)
    received, want, beats, times_in, times_out = run_stats(unit, slots)
    assert received == want
    assert times_in == list(range(1, len(beats) + 1))
    last_beats = [times_in[index] for index, (_, last) in enumerate(beats) if last]
    assert [out - into for into, out in zip(last_beats, times_out)] == (
        [SoftmaxStats.LATENCY] * len(want))


def test_stats_saturate_the_sum(monkeypatch):
    # Rows longer than MAX_ROW, which the twin refuses unless told otherwise: 300 equal scores
    # add up past the sum's largest value, and stay there.
    monkeypatch.setattr(model.units.softmax, "MAX_ROW", 1000)
    unit = SoftmaxStats(rows=3)
    slots = [[[7] * 300], [[-5] * 299 + [1 << 16]], [list(range(300))]]
    received, want, *_ = run_stats(unit, slots)
    assert received == want
    assert received[0][2] == SUM_FORMAT.max_int


def test_single_score_rows():
    unit = SoftmaxStats(rows=3)
    slots = [[[score]] for score in (0, DEFAULT.act.min_int, DEFAULT.act.max_int)]
    received, want, *_ = run_stats(unit, slots * 1)
    assert received == want
    assert [result[2] for result in received] == [1 << 18] * 3


def test_probabilities_of_the_upstream_format_under_backpressure():
    fmt, lanes = EDGEMOE.act, 3
    unit = SoftmaxProb(lanes=lanes, fmt=fmt)
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(6):
        row = np.round(rng.normal(0.0, rng.uniform(0.1, 20.0), 129) * 2.0 ** fmt.frac)
        row = np.clip(row, fmt.min_int, fmt.max_int).astype(np.int64)
        m, s = running_stats([row], fmt.frac)
        cases += [(int(a), int(m[0]), int(s[0])) for a in row]
    a, m, s = (np.array(column) for column in zip(*cases))
    r, k = reciprocal(s)
    lanes_in = [{"a": int(x), "m": int(y), "r": int(z), "k": int(w)}
                for x, y, z, w in zip(a, m, r, k)]
    words = [lanes_in[start:start + lanes] for start in range(0, len(lanes_in), lanes)]
    received, times_in, times_out = simulate(unit, words, list, idle=0.2, backpressure=0.4)
    want = probabilities(a[:, None], m, s, fmt.frac)[:, 0].tolist()
    assert [p for word in received for p in word] == want


def test_probability_of_a_score_above_the_maximum():
    unit = SoftmaxProb(lanes=2)
    r, k = reciprocal(3 << 18)
    words = [[{"a": 1, "m": 0, "r": int(r), "k": int(k)},
              {"a": DEFAULT.act.max_int, "m": DEFAULT.act.min_int, "r": int(r), "k": int(k)}]]
    received, _, _ = simulate(unit, words, list)
    assert received == [prob_twin([1, DEFAULT.act.max_int], [0, DEFAULT.act.min_int],
                                  [3 << 18] * 2, DEFAULT.act.frac)]


def test_ports_and_properties():
    unit = SoftmaxStats(rows=12)
    assert (unit.rows, unit.fmt) == (12, DEFAULT.act)
    assert unit.i.payload.shape() == data.StructLayout({"score": signed(26), "last": 1})
    assert unit.o.payload.shape() == data.StructLayout({
        "row": unsigned(4), "m": signed(26), "s": unsigned(SUM_WIDTH - 1),
        "r": unsigned(MANT_FRAC), "k": unsigned(K_WIDTH)})
    assert SoftmaxStats(rows=3).result_layout["row"].shape == unsigned(2)
    assert SoftmaxStats.MIN_ROWS == SoftmaxStats.MULTIPLIER_LATENCY + 1 == 3
    assert SoftmaxStats.LATENCY == (1 + Exp2Datapath.LATENCY + SoftmaxStats.MULTIPLIER_LATENCY
                                    + 1 + ReciprocalDatapath.LATENCY) == 16
    unit = SoftmaxProb(lanes=2, fmt=EDGEMOE.act)
    assert (unit.lanes, unit.fmt) == (2, EDGEMOE.act)
    lane = data.StructLayout({"a": signed(32), "m": signed(32), "r": unsigned(MANT_FRAC),
                              "k": unsigned(K_WIDTH)})
    assert unit.i.payload.shape() == data.ArrayLayout(lane, 2)
    assert unit.o.payload.shape() == data.ArrayLayout(unsigned(PROB_FRAC), 2)
    assert SoftmaxProb.LATENCY == Exp2Datapath.LATENCY + 3 == 9


@pytest.mark.parametrize("rows", [2, 0, -1, 3.0, True, None])
def test_rows_are_checked(rows):
    with pytest.raises(ValueError, match=f"SoftmaxStats rows must be an integer of at least 3, "
                                         f"not {rows!r}"):
        SoftmaxStats(rows=rows)


@pytest.mark.parametrize("lanes", [0, -1, 2.0, True, None])
def test_lanes_are_checked(lanes):
    with pytest.raises(ValueError, match=f"SoftmaxProb lanes must be a positive integer, "
                                         f"not {lanes!r}"):
        SoftmaxProb(lanes=lanes)


@pytest.mark.parametrize("unit", [SoftmaxStats, SoftmaxProb])
def test_format_is_checked(unit):
    kwargs = {"rows": 3} if unit is SoftmaxStats else {}
    name = unit.__name__
    with pytest.raises(TypeError, match=f"{name} format must be a model.numerics.Fixed, not 26"):
        unit(fmt=26, **kwargs)
    with pytest.raises(ValueError, match=re.escape(
            f"{name} needs an integer of at least 6 fraction bits (the table step is 2**-6), "
            f"not frac=5")):
        unit(fmt=Fixed(16, 5), **kwargs)
    with pytest.raises(ValueError, match=re.escape("which no DSP48E2")):
        unit(fmt=Fixed(40, 24), **kwargs)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        SoftmaxStats(3)
    with pytest.raises(TypeError):
        SoftmaxProb(2)
