"""cocotb bench used only by ``tests/test_sim_runner.py`` to check how the runner reports results.

It runs on :class:`sim.example.AddConstant` but tests the runner, not the design: one test
passes, one fails on purpose with a known message, one skips itself and one is marked skipped.
"""

import cocotb
import pytest
from cocotb.triggers import ClockCycles

from sim.stream import clock_and_reset


#: The failure message ``test_fails_on_purpose`` raises; the pytest side looks for it.
FAILURE_MESSAGE = "deliberate failure: 2 + 2 gave 5"


@cocotb.test()
async def test_passes(dut):
    await clock_and_reset(dut)
    await ClockCycles(dut.clk, 2)


@cocotb.test()
async def test_fails_on_purpose(dut):
    await clock_and_reset(dut)
    assert False, FAILURE_MESSAGE


@cocotb.test()
async def test_skips_itself(dut):
    pytest.skip("nothing to see here")


@cocotb.test(skip=True)
async def test_marked_skip(dut):
    assert False, "a test marked skip=True must not run"
