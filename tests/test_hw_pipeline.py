# amaranth: UnusedElaboratable=no
"""Tests of the pipeline plumbing (hw/streams/pipeline.py) in Amaranth's own simulator: a delay line
and a valid pipeline under a random clock enable against a register model, their names and initial
values, and their argument checks."""

import random
import re

import pytest
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.sim import Simulator

from hw.streams.pipeline import countdown, delay, tree, tree_stages, valid_pipeline, wide_counter


def run(m, signals, drive, cycles):
    """Simulate ``m`` for ``cycles`` clock edges: before each edge ``drive(cycle)`` gives the
    values to set (pairs of a signal and its value); after it, the values of ``signals`` are
    recorded."""
    seen = []

    async def bench(ctx):
        for cycle in range(cycles):
            for signal, value in drive(cycle):
                ctx.set(signal, value)
            await ctx.tick()
            seen.append([ctx.get(signal) for signal in signals])

    simulator = Simulator(m)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return seen


def register_model(inputs, enables, stages, init=0):
    """What ``stages`` registers in a row show after each edge: the line moves only when the
    enable is high."""
    line, out = [init] * stages, []
    for value, en in zip(inputs, enables):
        if en and stages:
            line = [value] + line[:-1]
        out.append(line[-1] if stages else value)
    return out


@pytest.mark.parametrize("stages", [1, 2, 5])
@pytest.mark.parametrize("enable", [None, 0.7, 0.3])
def test_delay_under_random_enable(stages, enable):
    rng = random.Random(stages)
    m = Module()
    x = Signal(signed(9))
    en = None if enable is None else Signal()
    y = delay(m, x, stages, en=en, name="x")
    cycles = 200
    inputs = [rng.randint(-256, 255) for _ in range(cycles)]
    enables = [1 if enable is None else int(rng.random() < enable) for _ in range(cycles)]

    def drive(cycle):
        values = [(x, inputs[cycle])]
        if en is not None:
            values.append((en, enables[cycle]))
        return values

    got = [value for value, in run(m, [y], drive, cycles)]
    assert got == register_model(inputs, enables, stages)


@pytest.mark.parametrize("stages", [1, 3, 6])
def test_valid_pipeline_under_random_enable(stages):
    """``out`` is ``valid`` delayed by ``stages`` enabled edges, and holds while the enable is low
    (a stalled pipeline keeps its output)."""
    rng = random.Random(stages)
    m = Module()
    valid, en, out = Signal(), Signal(), Signal()
    valid_pipeline(m, valid, out, stages, en=en)
    cycles = 200
    inputs = [int(rng.random() < 0.5) for _ in range(cycles)]
    enables = [int(rng.random() < 0.6) for _ in range(cycles)]
    got = [value for value, in run(m, [out], lambda c: [(valid, inputs[c]), (en, enables[c])],
                                   cycles)]
    assert got == register_model(inputs, enables, stages)


def test_delay_keeps_data_in_step_with_its_valid():
    """A payload carried by a delay line and its valid bit by a valid pipeline, both under one
    enable: every valid bit that comes out is next to its own payload."""
    rng = random.Random(1)
    m = Module()
    payload, valid, en, out_valid = Signal(8), Signal(), Signal(), Signal()
    stages = 4
    out_payload = delay(m, payload, stages, en=en, name="payload")
    valid_pipeline(m, valid, out_valid, stages, en=en)
    cycles = 300
    sent, received, count = [], [], 0
    drives = []
    for _ in range(cycles):
        is_valid = int(rng.random() < 0.5)
        enabled = int(rng.random() < 0.7)
        value = count % 256 if is_valid else rng.randrange(256)
        if is_valid and enabled:
            sent.append(value)
            count += 1
        drives.append([(payload, value), (valid, is_valid), (en, enabled)])
    seen = run(m, [out_valid, out_payload, en], lambda c: drives[c], cycles)
    # A result is taken when the output is valid in the cycle the pipeline advances past it.
    for (was_valid, value, _), (_, _, enabled) in zip(seen, seen[1:]):
        if was_valid and enabled:
            received.append(value)
    assert received == sent[:len(received)]
    assert len(received) >= len(sent) - stages - 1


def test_delay_of_zero_stages_is_the_value():
    m = Module()
    x = Signal(4)
    assert delay(m, x, 0, name="x") is x


def test_names_count_stages():
    m = Module()
    shift = Signal(5)
    assert delay(m, shift, 3, en=Signal(), name="shift", first=2).name == "shift_4"
    assert delay(m, shift, 2, name="meta").name == "meta_2"
    assert delay(m, shift, 1, name="row", first=0).name == "row_0"


def test_delay_copies_shape_and_initial_value():
    """A register takes its source's shape and initial value: a flag that starts high (a row
    slot that starts fresh) is still high at the end of the line before any data arrives."""
    m = Module()
    fresh = Signal(init=1)
    wide = Signal(signed(12), init=-5)
    late_fresh = delay(m, fresh, 3, name="fresh")
    late_wide = delay(m, wide, 2, en=Signal(), name="wide")
    assert late_fresh.shape() == fresh.shape() and late_fresh.init == 1
    assert late_wide.shape() == signed(12) and late_wide.init == -5
    seen = run(m, [late_fresh, late_wide], lambda cycle: [], 1)
    assert seen == [[1, -5]]


def test_valid_pipeline_of_one_stage_is_out_alone():
    """One stage: ``out`` is the only register (``valid`` registered straight into it)."""
    m = Module()
    valid, out = Signal(), Signal()
    valid_pipeline(m, valid, out, 1, en=None)
    got = run(m, [out], lambda cycle: [(valid, cycle % 2)], 6)
    assert [value for value, in got] == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("stages", [-1, 1.5, None, True])
def test_delay_stages_are_checked(stages):
    with pytest.raises(ValueError, match=re.escape(
            f"delay stages must be an integer of at least 0, not {stages!r}")):
        delay(Module(), Signal(), stages, name="x")


def test_delay_first_is_checked():
    with pytest.raises(ValueError, match=re.escape("delay first must be an integer, not '1'")):
        delay(Module(), Signal(), 1, name="x", first="1")


@pytest.mark.parametrize("stages", [0, -2, 2.0, None])
def test_valid_pipeline_stages_are_checked(stages):
    with pytest.raises(ValueError, match=re.escape(
            f"valid_pipeline stages must be a positive integer, not {stages!r}")):
        valid_pipeline(Module(), Signal(), Signal(), stages, en=None)


@pytest.mark.parametrize("count, per_stage", [(2, 1), (5, 1), (16, 1), (16, 2), (7, 3)])
@pytest.mark.parametrize("enable", [None, 0.5])
def test_tree_sums_under_random_enable(count, per_stage, enable):
    """A registered adder tree gives the sum of its inputs ``tree_stages`` enabled cycles later,
    like a delay line of that many stages."""
    rng = random.Random(count * 10 + per_stage)
    m = Module()
    xs = [Signal(signed(8), name=f"x{i}") for i in range(count)]
    en = None if enable is None else Signal()
    y = tree(m, xs, lambda a, b: a + b, name="sum", en=en, per_stage=per_stage)
    stages = tree_stages(count, per_stage)
    cycles = 120
    inputs = [[rng.randint(-128, 127) for _ in range(count)] for _ in range(cycles)]
    enables = [1 if enable is None else int(rng.random() < enable) for _ in range(cycles)]

    def drive(cycle):
        values = list(zip(xs, inputs[cycle]))
        return values + ([] if en is None else [(en, enables[cycle])])
    seen = run(m, [y], drive, cycles)
    expected = register_model([sum(v) for v in inputs], enables, stages)
    # Before the first value has crossed the tree, its registers hold their initial zeros.
    assert [s[0] for s in seen] == expected
    assert stages == ((count - 1).bit_length() + per_stage - 1) // per_stage


def test_tree_of_maxima_names_its_registers():
    m = Module()
    xs = [Signal(8, name=f"x{i}") for i in range(4)]
    y = tree(m, xs, lambda a, b: Mux(a > b, a, b), name="high")
    assert y.name == "high_2_0"


def test_tree_of_one_value_is_the_value():
    m = Module()
    x = Signal(8)
    assert tree(m, [x], lambda a, b: a + b, name="sum") is x and tree_stages(1) == 0


@pytest.mark.parametrize("total", [0, 1, 2, 5])
def test_countdown_knows_its_last_step(total):
    """After a load of ``total``, ``active`` stays high for exactly ``total`` steps (random
    idles between them) and ``last`` is high exactly on the last."""
    rng = random.Random(total)
    m = Module()
    load, step = Signal(), Signal()
    limit = Signal(8, init=total)
    active, last = countdown(m, name="n", load=load, total=limit, step=step)
    cycles = 40
    loads = [int(c == 1) for c in range(cycles)]
    steps = [int(rng.random() < 0.6) for _ in range(cycles)]

    def drive(cycle):
        return [(load, loads[cycle]), (step, steps[cycle])]
    seen = run(m, [active, last], drive, cycles)
    # seen[c] is after edge c: the load at cycle 1 shows from seen[1] on.
    left = 0
    for c in range(1, cycles - 1):
        if c == 1:
            left = total
        assert seen[c] == [int(left > 0), int(left == 1)], (c, seen[c], left)
        if steps[c + 1] and left and not loads[c + 1]:
            left -= 1


@pytest.mark.parametrize("width, part", [(8, 3), (7, 7), (10, 4)])
def test_wide_counter_is_exact_once_still(width, part):
    """A count split into parts with registered carries wraps like one counter of ``width``
    bits, and reads exact ``parts - 1`` cycles after its last step."""
    rng = random.Random(width * part)
    m = Module()
    clear, step = Signal(), Signal()
    count = wide_counter(m, name="count", width=width, clear=clear, step=step, part=part)
    settle = -(-width // part) - 1
    drives, expected, true = [], [], 0
    for burst in range(12):
        cleared = burst == 6
        drives.append([(clear, int(cleared)), (step, 0)])
        true = 0 if cleared else true
        for _ in range(rng.randrange(1, 3 * 2 ** width)):
            on = int(rng.random() < 0.8)
            drives.append([(clear, 0), (step, on)])
            true += on
        drives += [[(clear, 0), (step, 0)]] * (settle + 1)
        expected.append((len(drives) - 1, true % 2 ** width))
    seen = run(m, [count], lambda c: drives[c], len(drives))
    for cycle, value in expected:
        assert seen[cycle][0] == value
