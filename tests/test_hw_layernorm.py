# amaranth: UnusedElaboratable=no
"""Tests of the LayerNorm unit (hw/units/layernorm.py) against its twin (model/units/layernorm.py):
the cocotb bench ``sim.benches.layernorm`` under Verilator, other shapes in Amaranth's simulator,
and the argument checks."""

import random
import re

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.units.layernorm import MAX_DIM, LayerNorm
from model.units.layernorm import layer_norm
from model.numerics import DEFAULT, Fixed
from sim.benches.layernorm import corner_rows, layernorm_design, random_parameters, random_rows
from sim.runner import cocotb_tests, default_simulator


# The machine's gamma format; a power-of-two row, so that constant rows give beta exactly.
# Icarus too: it leaves a combinational block unknown until one of its inputs changes, which an
# internal handshake once turned into a hang (see hw/units/layernorm.py).
test_layernorm = cocotb_tests("sim.benches.layernorm", layernorm_design,
                              configs=[dict(dim=32, lanes=4, gamma_frac=DEFAULT.small_frac,
                                            eps=1e-6)],
                              simulators=sorted({default_simulator(), "icarus"}))


def simulate(unit, sets, rows, *, idle=0.0, backpressure=0.0, seed=0):
    """Stream parameter sets and ``rows`` through ``unit`` in Amaranth's simulator.

    ``sets`` is a list of ``(gamma, beta, cycle)``: each set is offered on ``p`` from ``cycle``
    on (and after the sets before it); rows are offered once the first set is in. Returns the
    results as a [rows][dim] array and, per set, the number of rows taken on ``i`` before it.
    """
    rng = random.Random(seed)
    L, B = unit.lanes, unit.beats
    parameters = [(cycle, [[{"gamma": int(g), "beta": int(b)} for g, b in
                            zip(gamma.ints[k * L:(k + 1) * L], beta.ints[k * L:(k + 1) * L])]
                           for k in range(B)])
                  for gamma, beta, cycle in sets]
    beats = [[int(v) for v in row[k * L:(k + 1) * L]] for row in rows for k in range(B)]
    received, rows_before = [], []

    async def bench(ctx):
        cycle, p_offer, i_offer, taken, p_taken = 0, False, False, 0, 0
        while len(received) < len(beats):
            p_offer = p_offer or (bool(parameters) and cycle >= parameters[0][0]
                                  and rng.random() >= idle)
            i_offer = i_offer or (len(rows_before) > 0 and p_taken == 0 and taken < len(beats)
                                  and rng.random() >= idle)
            ctx.set(unit.p.valid, p_offer)
            if p_offer:
                ctx.set(unit.p.payload, parameters[0][1][p_taken])
            ctx.set(unit.i.valid, i_offer)
            if i_offer:
                ctx.set(unit.i.payload, beats[taken])
            ctx.set(unit.o.ready, rng.random() >= backpressure)
            _, _, p_ready, i_ready, o_valid, o_ready, o_payload = await ctx.tick().sample(
                unit.p.ready, unit.i.ready, unit.o.valid, unit.o.ready, unit.o.payload)
            cycle += 1
            if p_offer and p_ready:
                if p_taken == 0:
                    assert taken % B == 0, "a parameter set went in in the middle of a row"
                    rows_before.append(taken // B)
                p_taken, p_offer = p_taken + 1, False
                if p_taken == B:
                    parameters.pop(0)
                    p_taken = 0
            if i_offer and i_ready:
                taken, i_offer = taken + 1, False
            if o_valid and o_ready:
                received.append(list(o_payload))
            assert cycle < 10 * unit.row_cycles * len(rows) + 200, "the unit is stuck"

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return np.array(received).reshape(len(rows), unit.dim), rows_before


def twin(unit, sets, rows, rows_before):
    """The twin's results when set ``k`` applies from row ``rows_before[k]`` on."""
    bounds = list(rows_before[1:]) + [len(rows)]
    parts = [layer_norm(rows[start:end], unit.fmt, gamma, beta, unit.eps, DEFAULT)
             for (gamma, beta, _), start, end in zip(sets, rows_before, bounds) if end > start]
    return np.concatenate(parts)


@pytest.mark.parametrize("dim,lanes,gamma_frac,eps,backpressure", [
    # Not a power of two: the mean's multiplier is rounded. Two beats: shorter than the
    # pipeline.
    (12, 6, 15, 1e-5, 0.0),
    # One lane; gamma with few fraction bits; back-pressure.
    (6, 1, 12, 1e-6, 0.4),
])
def test_other_shapes(dim, lanes, gamma_frac, eps, backpressure):
    unit = LayerNorm(dim=dim, lanes=lanes, gamma_fmt=Fixed(DEFAULT.small_width, gamma_frac),
                     eps=eps)
    gamma, beta = random_parameters(dim, unit.gamma_fmt, unit.fmt, seed=1)
    rows = np.concatenate([random_rows(dim, unit.fmt, 12, seed=2), corner_rows(dim, unit.fmt)])
    sets = [(gamma, beta, 0)]
    got, rows_before = simulate(unit, sets, rows, idle=0.2, backpressure=backpressure, seed=3)
    want = twin(unit, sets, rows, rows_before)
    assert (got == want).all(), np.argwhere(got != want)[:8].tolist()


@pytest.mark.parametrize("offered", [60, 75, 200])
def test_parameters_change_between_rows(offered):
    # A second set offered while rows stream in goes in at the next row boundary, once the
    # rows before it have read the first set; the rows after it wait.
    unit = layernorm_design(dim=16, lanes=4, gamma_frac=16, eps=1e-6)
    sets = [(*random_parameters(16, unit.gamma_fmt, unit.fmt, seed=seed), cycle)
            for seed, cycle in ((1, 0), (2, offered))]
    rows = random_rows(16, unit.fmt, 12, seed=3)
    got, rows_before = simulate(unit, sets, rows, idle=0.1, backpressure=0.3, seed=4)
    assert rows_before[0] == 0 and 0 < rows_before[1] < len(rows)
    want = twin(unit, sets, rows, rows_before)
    assert (got == want).all(), np.argwhere(got != want)[:8].tolist()


def test_ports_and_properties():
    unit = layernorm_design(dim=32, lanes=4, gamma_frac=16, eps=1e-6)
    act = DEFAULT.act
    assert unit.i.payload.shape() == data.ArrayLayout(signed(act.width), 4)
    assert unit.o.payload.shape() == data.ArrayLayout(signed(act.width), 4)
    assert unit.p.payload.shape() == data.ArrayLayout(data.StructLayout({
        "gamma": signed(DEFAULT.small_width), "beta": signed(act.width)}), 4)
    assert (unit.dim, unit.lanes, unit.beats, unit.eps) == (32, 4, 8, 1e-6)
    assert (unit.fmt, unit.beta_fmt, unit.out_fmt) == (act, act, act)
    assert unit.gamma_fmt == Fixed(DEFAULT.small_width, 16)
    assert unit.row_cycles == 2 * 8 + LayerNorm.ROW_OVERHEAD
    # Two levels of lanes in pass 1's trees; the normaliser, not the loader, sets the pace.
    assert unit.stats_stages == 2
    assert unit.load_overhead == 2 + LayerNorm.MULTIPLIER_LATENCY + LayerNorm.LOAD_EXTRA
    assert unit.latency == (2 * 8 + unit.load_overhead + LayerNorm.ROW_OVERHEAD
                            + LayerNorm.PIPELINE)
    # eps * D in units of the squares, and S for 1024-value rows within the rsqrt default.
    assert unit.eps_int == round(1e-6 * 32 * 2.0 ** 32)
    assert LayerNorm(dim=MAX_DIM, lanes=16, gamma_fmt=Fixed(18, 16), eps=1e-6).s_width <= 46


def _make(**overrides):
    arguments = dict(dim=32, lanes=4, gamma_fmt=Fixed(18, 16), eps=1e-6)
    arguments.update(overrides)
    return LayerNorm(**arguments)


@pytest.mark.parametrize("name,value", [
    ("dim", 0), ("dim", -4), ("dim", 32.0), ("dim", True), ("lanes", 0), ("lanes", None)])
def test_dimensions_are_checked(name, value):
    with pytest.raises(ValueError, match=re.escape(
            f"LayerNorm {name} must be a positive integer, not {value!r}")):
        _make(**{name: value})


def test_dim_must_be_a_multiple_of_lanes():
    with pytest.raises(ValueError, match=re.escape(
            "LayerNorm dim (30) must be a multiple of lanes (4)")):
        _make(dim=30)


def test_dim_is_limited():
    with pytest.raises(ValueError, match=re.escape(
            f"LayerNorm dim must be at most {MAX_DIM}, not {MAX_DIM + 1}")):
        _make(dim=MAX_DIM + 1, lanes=1)


@pytest.mark.parametrize("eps", [0, -1e-6, None, "1e-6", True])
def test_eps_is_checked(eps):
    with pytest.raises(ValueError, match=re.escape(
            f"LayerNorm eps must be a positive number, not {eps!r}")):
        _make(eps=eps)


@pytest.mark.parametrize("name", ["fmt", "gamma_fmt", "beta_fmt", "out_fmt"])
def test_formats_are_checked(name):
    with pytest.raises(TypeError, match=re.escape(
            f"LayerNorm {name} must be a model.numerics.Fixed, not 16")):
        _make(**{name: 16})


def test_formats_must_fit_the_multipliers():
    with pytest.raises(ValueError, match=re.escape(
            "LayerNorm input format <27,16> is too wide: x - mean must fit the multiplier's "
            "27-bit port, so at most 26 bits")):
        _make(fmt=Fixed(27, 16))
    with pytest.raises(ValueError, match=re.escape(
            "LayerNorm gamma format <19,16> is too wide for the multiplier's 18-bit port")):
        _make(gamma_fmt=Fixed(19, 16))


def test_beta_needs_no_more_fraction_bits_than_the_output():
    with pytest.raises(ValueError, match=re.escape(
            "LayerNorm beta format <26,17> has more fraction bits than the output format "
            "<26,16>")):
        _make(beta_fmt=Fixed(26, 17))


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        LayerNorm(32, 4)
