# amaranth: UnusedElaboratable=no
"""python -m flow.resources: every unit builds at the size a machine gives it for a model, and bad
arguments get one line (the Yosys runs themselves are in the build's estimate)."""

import pytest
from amaranth.lib import wiring

from flow import resources
from model.config import M3VIT_TINY, MICRO
from model.machine import SMALL, ZCU102


@pytest.mark.parametrize("model, machine", [(M3VIT_TINY, ZCU102), (MICRO, SMALL)])
def test_every_unit_builds_for_the_machine(model, machine):
    for name, make in resources.UNITS.items():
        assert isinstance(make(model, machine), wiring.Component), name
    assert resources.UNITS["gelu"](model, machine).lanes == machine.lanes


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown unit 'nope'"),
    (["gelu", "--machine", "zcu104"], "unknown machine 'zcu104'"),
    (["gelu", "--config", "huge"], "unknown model configuration 'huge'"),
])
def test_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        resources.main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err
