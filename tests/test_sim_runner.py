"""Tests of the simulator runner (sim/runner.py) and stream drivers (sim/stream.py).

The example unit's bench runs under Verilator and Icarus; the runner's own behaviour (failure
reporting, skips, errors, caching, waveforms) is checked with ``sim.benches.runner_selftest``.
All Verilator runs of one design share one cached build.
"""

import multiprocessing
import re
import shutil
from concurrent.futures import ProcessPoolExecutor

import pytest

from sim.benches import runner_selftest
from sim.example import AddConstant
from sim.runner import (
    BuildError, CocotbTestFailure, SimulatorNotFoundError, VerilogDesign,
    build, cocotb_test_names, cocotb_tests, default_simulator, run,
)


# A positive constant saturates at the top of the range, a negative one at the bottom.
CONFIGS = [dict(width=8, constant=5), dict(width=8, constant=-100)]

test_example = cocotb_tests("sim.benches.example", AddConstant, configs=CONFIGS,
                            simulators=["verilator", "icarus"])


needs_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None,
    reason="Icarus Verilog (iverilog) is not on PATH: apt-get install iverilog")
BOTH = ["verilator", pytest.param("icarus", marks=needs_icarus)]

SELFTEST = "sim.benches.runner_selftest"


def selftest_design():
    # Same Verilog as the first example configuration, so it reuses that build.
    return AddConstant(**CONFIGS[0])


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache of this test's own, for builds that must start from nothing or that fail."""
    monkeypatch.setenv("EDGEMOE_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# Failure and skip reporting

@pytest.mark.parametrize("simulator", BOTH)
def test_failure_carries_cocotb_message(simulator):
    with pytest.raises(CocotbTestFailure) as info:
        run(selftest_design(), SELFTEST, testcase="test_fails_on_purpose", simulator=simulator)
    message = str(info.value)
    assert runner_selftest.FAILURE_MESSAGE in message
    assert f"cocotb test {SELFTEST}.test_fails_on_purpose failed ({simulator}" in message
    assert [test.name for test in info.value.results] == ["test_fails_on_purpose"]


def test_failure_is_an_assertion_error_of_the_pytest_test():
    selftest = cocotb_tests(SELFTEST, selftest_design)
    with pytest.raises(AssertionError, match=re.escape(runner_selftest.FAILURE_MESSAGE)):
        selftest("verilator", "test_fails_on_purpose")
    selftest("verilator", "test_passes")


def test_one_pytest_test_per_cocotb_test():
    selftest = cocotb_tests(SELFTEST, selftest_design, simulators=["verilator", "icarus"])
    parameters = {mark.args[0]: list(mark.args[1]) for mark in selftest.pytestmark}
    assert parameters == {
        "simulator": ["verilator", "icarus"],
        "testcase": ["test_passes", "test_fails_on_purpose", "test_skips_itself",
                     "test_marked_skip"],
    }
    assert cocotb_test_names("sim.benches.example") == [
        "test_full_rate", "test_backpressure", "test_corners"]


def test_skips_are_pytest_skips():
    selftest = cocotb_tests(SELFTEST, selftest_design)
    # cocotb's results file keeps no skip reason; its log (captured output) does.
    with pytest.raises(pytest.skip.Exception, match="cocotb skipped .*test_skips_itself"):
        selftest("verilator", "test_skips_itself")
    with pytest.raises(pytest.skip.Exception, match="marked skip=True"):
        selftest("verilator", "test_marked_skip")


def test_run_all_reports_only_the_failures():
    with pytest.raises(CocotbTestFailure) as info:
        run(selftest_design(), SELFTEST, simulator="verilator")
    assert [test.name for test in info.value.results] == ["test_fails_on_purpose"]
    assert "test_passes" not in str(info.value)


def test_unmatched_testcase_is_an_error():
    with pytest.raises(RuntimeError, match="No cocotb test .* matched testcase 'test_typo'"):
        run(selftest_design(), SELFTEST, testcase="test_typo", simulator="verilator")


# Toolchain errors

def test_unknown_simulator(monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown simulator 'modelsim' \(from the simulator "
                                         r"argument\); expected one of: verilator, icarus"):
        build("never_read.v", simulator="modelsim")
    monkeypatch.setenv("SIM", "xcelium")
    with pytest.raises(ValueError, match="Unknown simulator 'xcelium' .*SIM environment"):
        default_simulator()
    monkeypatch.setenv("SIM", "icarus")
    assert default_simulator() == "icarus"


def test_missing_icarus_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFoundError, match="apt-get install iverilog"):
        build(tmp_path / "never_read.v", simulator="icarus")


@pytest.mark.parametrize("simulator", BOTH)
def test_build_error_shows_compiler_log(simulator, private_cache, tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input a, output b);\n  assign b = ;\nendmodule\n")
    with pytest.raises(BuildError, match=f"{simulator} failed to build 'broken'") as info:
        build(source, simulator=simulator)
    # The tail of the log names the offending file and line.
    assert "broken.v:2" in str(info.value)


def test_bad_design_argument():
    with pytest.raises(TypeError, match="Design must be an amaranth wiring.Component"):
        build(42, simulator="verilator")


# Cache

def test_unchanged_design_is_not_rebuilt():
    first = build(selftest_design(), simulator="verilator")
    stamp = first.directory / "build-complete.json"
    binary = first.directory / first.toplevel
    mtimes = stamp.stat().st_mtime_ns, binary.stat().st_mtime_ns
    second = build(selftest_design(), simulator="verilator")
    assert second.cache_hit
    assert second.directory == first.directory
    assert (stamp.stat().st_mtime_ns, binary.stat().st_mtime_ns) == mtimes


def test_verilog_file_shares_the_cache_with_its_component(tmp_path):
    design = VerilogDesign.from_component(selftest_design())
    path = tmp_path / "add_constant.v"
    path.write_text(design.sources["add_constant.v"])
    from_component = build(design, simulator="verilator")
    from_file = build(path, simulator="verilator")
    assert from_file.cache_hit and from_file.directory == from_component.directory


@needs_icarus
def test_interrupted_build_is_redone(private_cache):
    first = build(selftest_design(), simulator="icarus")
    assert not first.cache_hit
    # What an interrupted build leaves: a directory without the completion stamp.
    (first.directory / "build-complete.json").unlink()
    (first.directory / "leftover").write_text("")
    second = build(selftest_design(), simulator="icarus")
    assert not second.cache_hit
    assert not (second.directory / "leftover").exists()
    assert build(selftest_design(), simulator="icarus").cache_hit


def _build_in_worker(design):
    return build(design, simulator="icarus").cache_hit


@needs_icarus
def test_concurrent_builds_of_one_design_build_once(private_cache):
    design = VerilogDesign.from_component(selftest_design())
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        hits = list(pool.map(_build_in_worker, [design] * 4))
    assert sorted(hits) == [False, True, True, True]


# Waveforms

@pytest.mark.parametrize("simulator", BOTH)
def test_waves_are_written_where_reported(simulator):
    result = run(selftest_design(), SELFTEST, testcase="test_passes", simulator=simulator,
                 waves=True)
    assert result.waves is not None and result.waves.stat().st_size > 0
    assert result.build.waves
