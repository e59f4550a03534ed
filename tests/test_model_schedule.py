"""The schedule as data (model.schedule): the program's shape, and the golden model following
it."""

import numpy as np
import pytest

from model import golden
from model.config import M3VIT_TINY, MICRO, NANO
from model.machine import SMALL, ZCU102
from model.quantize import quantize
from model.numerics import DEFAULT
from model.schedule import (CALLS_PER_COMMAND, Command, End, Fetch, Mark, Read, Route, Source,
                            Unit, Until, Wait, Write, commands, listing, main, program)
from model.weights import synthetic, synthetic_image


@pytest.mark.parametrize("config", [MICRO, NANO, M3VIT_TINY])
def test_program_walks_the_network(config):
    ops = program(config)
    assert isinstance(ops[-1], End) and isinstance(ops[-2], Wait)
    assert ops[-2].until is Until.OUTPUT_WRITTEN and isinstance(ops[-3], Write)
    assert [op.stage for op in ops if isinstance(op, Mark)] == list(range(config.depth + 2))
    for task in range(config.tasks):
        units = [(c.unit, c.block) for c in commands(config, task)]
        want = [(Unit.EMBED, None)]
        for b in range(config.depth):
            want += [(Unit.ATTENTION, b), (Unit.MOE if config.is_moe(b) else Unit.MLP, b)]
        assert units == want
    # Every stage waits for its calls before the next is launched.
    waits = [op for op in ops if isinstance(op, Wait) and op.until is Until.CALLS]
    assert [w.count for w in waits if w.unit is Unit.ATTENTION] == [
        CALLS_PER_COMMAND[Unit.ATTENTION] * (b + 1) for b in range(config.depth)]
    # The last stage's rows go to the output, nowhere else.
    assert ops[-5] == Route(Source.NONE, Unit.MOE if config.is_moe(config.depth - 1)
                            else Unit.MLP, Source.MOE if config.is_moe(config.depth - 1)
                            else Source.MLP)


def test_program_reads_every_section_it_needs():
    ops = program(MICRO)
    lay = ZCU102.layout(MICRO)
    fetched = [op.record for op in ops if isinstance(op, Fetch)]
    linears = [s.name for s in lay.sections if s.kind == "linear" and "gate" not in s.name]
    assert sorted(fetched) == sorted(linears)
    reads = {op.what for op in ops if isinstance(op, Read)}
    assert {"shifts", "image", "pos_embed", "l0.ln1", "l0.ln2", "l1.ln1", "l1.ln2"} == reads
    moe = [op for op in ops if isinstance(op, Command) and op.unit is Unit.MOE]
    assert [c.task for c in moe] == [0, 1]


def test_machine_shapes_the_program_not_its_order():
    a, b = program(MICRO, ZCU102), program(MICRO, SMALL)
    assert [type(op) for op in a] == [type(op) for op in b]
    assert a != b                                  # beats and offsets differ


def test_golden_runs_the_programs_commands(monkeypatch):
    qm = quantize(synthetic(MICRO, seed=1), DEFAULT)
    image = synthetic_image(MICRO, seed=2)
    reference = golden.forward(qm, image, 1)
    # Drop the MoE command from the program the golden model follows: its output changes.
    full = golden.commands

    def without_moe(config, task, machine):
        return [c for c in full(config, task, machine) if c.unit is not Unit.MOE]
    monkeypatch.setattr(golden, "commands", without_moe)
    changed = golden.forward(qm, image, 1)
    assert not np.array_equal(reference, changed)


def test_listing_and_cli(capsys):
    text = listing(program(MICRO))
    assert text.splitlines()[0].strip().startswith("0  route") and "command moe l1 [task 1]" in text
    assert main(["--config", "micro", "--machine", "small"]) == 0
    assert "fetch   l0.k" in capsys.readouterr().out
    assert main(["--machine", "nope"]) == 2
    assert "unknown machine 'nope'" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        program("micro")
    with pytest.raises(TypeError, match="machine must be a MachineConfig"):
        program(MICRO, "zcu102")


def test_batch_program():
    """A batch of three: an embedding per image, one attention command over the three (its
    records fetched per image), one MLP or MoE command over every token, the outputs one after
    the other."""
    machine = ZCU102.batched(3)
    ops = program(MICRO, machine)
    embeds = [op for op in ops if isinstance(op, Command) and op.unit is Unit.EMBED]
    assert len(embeds) == 3
    images = [op for op in ops if isinstance(op, Read) and op.what.startswith("image")]
    length = program(MICRO)[5].beats * ZCU102.beat_bytes
    assert [op.offset for op in images] == [0, length, 2 * length]
    for op in commands(MICRO, 0, machine)[3:]:
        fields = dict(op.fields)
        assert fields["tokens"] == 3 * MICRO.tokens
        if op.unit is Unit.ATTENTION:
            assert fields["images"] == 3 and fields["image_tokens"] == MICRO.tokens
    waits = [op.count for op in ops if isinstance(op, Wait) and op.unit is Unit.ATTENTION]
    assert waits == [3 * CALLS_PER_COMMAND[Unit.ATTENTION] * (b + 1)
                     for b in range(MICRO.depth)]
    assert [op for op in ops if isinstance(op, Fetch) and op.record == "l0.k"] == [
        op for op in ops if isinstance(op, Fetch) and op.record == "l0.k"][:1] * 3
    assert ops[-3].beats == 3 * program(MICRO)[-3].beats
    # The golden model runs the images one by one: the batch's results are theirs.
    qm = quantize(synthetic(MICRO, seed=1), DEFAULT)
    image = synthetic_image(MICRO, seed=2)
    assert np.array_equal(golden.forward(qm, image, 0, machine=machine),
                          golden.forward(qm, image, 0))
