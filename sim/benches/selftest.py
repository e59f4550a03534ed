"""cocotb bench of :class:`hw.system.selftest.SelfTest`: the board self-test runs its inference from
the
on-chip ROM, reaches the expected verdict, and sends :func:`model.system.selftest.message` on the
UART, bit for bit (:func:`model.system.uart.frames`), repeated."""

import cocotb
from cocotb.triggers import (ClockCycles, FallingEdge, First, RisingEdge, SimTimeoutError,
                             with_timeout)

from hw.system.selftest import SelfTest
from model.config import config_by_name
from model.machine import machine_by_name
from model.system.selftest import message
from model.system.uart import frames
from sim.runner import bench_config
from sim.stream import PERIOD_NS, clock_and_reset


def make_design(config):
    return SelfTest(config_by_name(config["model"]),
                    machine_by_name(config.get("machine", "ulx3s-selftest")),
                    divisor=config["divisor"], repeat=config["repeat"],
                    watchdog=config.get("watchdog", 1 << 24))


async def receive(dut, chars, divisor):
    """Bit times of ``chars`` characters on ``tx``, each sampled in the middle."""
    bits = []
    for _ in range(chars):
        while int(dut.tx.value):
            await FallingEdge(dut.tx)
        await ClockCycles(dut.clk, divisor // 2 + 1)
        for i in range(10):
            bits.append(int(dut.tx.value))
            if i < 9:
                await ClockCycles(dut.clk, divisor)
    return bits


@cocotb.test()
async def test_selftest(dut):
    config = bench_config()
    expect_pass = config.get("expect", "pass") == "pass"
    await clock_and_reset(dut)
    assert not int(dut.passed.value) and not int(dut.failed.value)
    budget = config.get("max_cycles", 100_000)
    try:
        await with_timeout(First(RisingEdge(dut.passed), RisingEdge(dut.failed)),
                           budget * PERIOD_NS, "ns")
    except SimTimeoutError:
        acc = dut.accelerator
        raise AssertionError(f"no verdict within {budget} cycles: running "
                             f"{int(dut.running.value)}, accelerator progress "
                             f"{int(acc.progress.value)}, irq {int(acc.irq.value)}") from None
    await RisingEdge(dut.clk)
    assert (int(dut.passed.value), int(dut.failed.value)) == (expect_pass, not expect_pass), (
        f"STATUS {int(dut.status.value):#x}, output checksum {int(dut.checksum.value):#010x} "
        f"over {int(dut.beats.value)} beats")
    assert not int(dut.running.value)
    cycles = int(dut.cycles.value)
    if expect_pass:
        assert cycles > 1000, cycles
    line = message(expect_pass, cycles)
    dut._log.info(f"self-test line: {line!r}")
    # Twice: once at the verdict, again after ``repeat`` cycles.
    for _ in range(2):
        assert await receive(dut, len(line), config["divisor"]) == frames(line)
