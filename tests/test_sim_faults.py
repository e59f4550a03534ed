"""The fault campaign (python -m sim.faults) on micro: every kind of scenario once, no hang, no
stray access, no wrong output, no handshake breach; and the command's checks of its arguments.
The campaign of 500 scenarios is `python -m sim.faults --scenarios 500` (docs/simulation.md)."""

import pytest

from sim.benches.faults import KINDS
from sim.faults import FAILURES, campaign, main


def test_every_kind_of_fault_once():
    report = campaign("micro", scenarios=len(KINDS), seed=2)
    assert report["kinds"] == dict.fromkeys(KINDS, 1)
    assert {key: report[key] for key in FAILURES} == dict.fromkeys(FAILURES, 0), report
    # The faults were real: the machine reported them.
    assert {"AXI_READ_ERROR", "AXI_WRITE_ERROR", "TIMEOUT", "BAD_TASK"} <= set(report["outcomes"])


@pytest.mark.parametrize("argv, message", [
    (["--config", "nano-x"], "unknown config 'nano-x'"),
    (["--machine", "zcu104"], "unknown machine 'zcu104'"),
    (["--scenarios", "0"], "--scenarios must be at least 1"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err
