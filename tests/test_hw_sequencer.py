# amaranth: UnusedElaboratable=no
"""The sequencer (hw.system.sequencer) runs model.schedule's program from its ROM: every stream
carries
the payloads of model.system.sequencer.transfers, in order, for every task, at full rate and under
back-pressure; bad programs are refused when the sequencer is built."""

import pytest

from hw.system.accelerator import Accelerator
from hw.system.sequencer import Sequencer
from model.config import MICRO
from model.schedule import End, Mark, Unit
from sim.benches.sequencer import make_design
from sim.runner import cocotb_tests

test_sequencer = cocotb_tests(
    "sim.benches.sequencer", lambda **c: make_design(c),
    configs=[dict(model="micro"), dict(model="micro", machine="small"),
             dict(model="nano", machine="ulx3s-selftest")])


def _commands():
    acc = Accelerator(MICRO)
    return {unit: getattr(acc, unit.name.lower()).cmd.payload.shape() for unit in Unit}


def test_program_must_end():
    with pytest.raises(ValueError, match="must end with End"):
        Sequencer((Mark(0),), commands=_commands(), shift_count=4, accept_width=16, tasks=2,
                  addr_width=40)


def test_program_one_word_per_operation():
    acc = Accelerator(MICRO)
    seq = acc.sequencer
    assert isinstance(seq.program[-1], End)
    words = [seq.encode(op) for op in seq.program]
    assert len(words) == len(acc.program) == 42
