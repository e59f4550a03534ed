"""cocotb bench: the host driver (:class:`host.driver.Driver`) through
:class:`host.memory.CocotbBus` against the RTL register block
(:class:`hw.system.registers.RegisterBlock`), with a small machine played here: a START makes it
busy for a few hundred cycles, after which
it writes the output buffer, sets the counters and pulses ``done`` (or reports a fault and
ends the run, as it does on SOFT_RESET and on the watchdog's timeout)."""

import logging

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from host.driver import AcceleratorError, Buffers, Driver, MachineBusy
from host.memory import CocotbBus
from hw.system.registers import RegisterBlock, stage_layout
from model.config import MICRO
from model.machine import ZCU102
from model.numerics import DEFAULT
from model.quantize import quantize
from model.system.registers import STAGE_NAMES, ErrorCode, Identity
from model.weight_image import pack, pack_output
from model.weights import synthetic, synthetic_image
from sim.stream import clock_and_reset, pack_struct


DRAM = 0x1000_0000


def make_design(config):
    """The register block of MICRO on the ZCU102 machine, on a control bus of
    ``config["addr_width"]`` bits."""
    return RegisterBlock(Identity.of(MICRO, ZCU102), addr_width=config["addr_width"])


class Ram:
    """DRAM for the driver (the register block has no memory port of its own)."""

    def __init__(self, size):
        self.data = bytearray(size)

    def read(self, address, length):
        return bytes(self.data[address:address + length])

    def write(self, address, data):
        self.data[address:address + len(data)] = data


class Machine:
    def __init__(self, dut, ram):
        self.dut, self.ram = dut, ram
        self.run_cycles, self.fault, self.output = 200, None, None
        self.starts = []

    async def run(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if not int(dut.start.value):
                continue
            self.starts.append((int(dut.task_id.value), int(dut.output_addr.value)))
            output_addr = int(dut.output_addr.value)
            await RisingEdge(dut.clk)
            dut.busy.value = 1
            aborted = False
            for cycle in range(self.run_cycles):
                await RisingEdge(dut.clk)
                await ReadOnly()
                if int(dut.soft_reset.value) or int(dut.timeout.value):
                    aborted = True
                    break
                if self.fault is not None and cycle == 100:
                    await RisingEdge(dut.clk)
                    dut.fault.value, dut.fault_code.value = 1, int(self.fault)
                    await RisingEdge(dut.clk)
                    dut.fault.value = 0
                    aborted = True
                    break
            await RisingEdge(dut.clk)
            dut.busy.value = 0
            if aborted:
                continue
            if self.output is not None:
                self.ram.write(output_addr - DRAM, pack_output(self.output, MICRO))
            dut.cycles.value = (1 << 32) + self.run_cycles
            dut.stage_cycles.value = pack_struct(
                stage_layout(), **{n.lower(): 10 + i for i, n in enumerate(STAGE_NAMES)})
            dut.done.value = 1
            await RisingEdge(dut.clk)
            dut.done.value = 0


async def setup(dut):
    for name in ("busy", "done", "fault", "fault_code", "cycles", "stage_cycles"):
        getattr(dut, name).value = 0
    await clock_and_reset(dut)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "bus_"), dut.clk, dut.rst)
    for interface in (axil.write_if, axil.read_if):
        interface.log.setLevel(logging.WARNING)
    ram = Ram(1 << 20)
    machine = Machine(dut, ram)
    cocotb.start_soon(machine.run())
    mem = CocotbBus(ram, axil, clock=dut.clk, dram_base=DRAM)
    return mem, machine


async def expect_error(coroutine, code):
    try:
        await coroutine
    except AcceleratorError as e:
        assert e.code is code, f"raised {e.code.name}, expected {code.name}: {e}"
    else:
        raise AssertionError(f"no {code.name} raised")


@cocotb.test()
async def test_driver_session(dut):
    mem, machine = await setup(dut)
    drv = Driver(mem, MICRO, Buffers.plan(DRAM, MICRO))
    await drv.check_bitstream()
    await drv.load_weights(pack(quantize(synthetic(MICRO, seed=2), DEFAULT)))
    image = synthetic_image(MICRO, seed=2)
    rng = np.random.default_rng(0)
    machine.output = rng.integers(DEFAULT.act.min_int, DEFAULT.act.max_int + 1,
                                  (MICRO.tokens, MICRO.dim))

    # Start errors.
    await expect_error(drv.run(image, MICRO.tasks), ErrorCode.BAD_TASK)
    plan = drv.buffers
    for buffers, code in ((Buffers(0, plan.image, plan.output, plan.end), ErrorCode.ZERO_ADDRESS),
                          (Buffers(plan.weights, plan.image, plan.output + 4, plan.end),
                           ErrorCode.UNALIGNED_ADDRESS)):
        other = Driver(mem, MICRO, buffers)
        await other.check_bitstream()
        await expect_error(other.run(image, 0), code)
    assert machine.starts == []

    # A run, polled.
    await drv.run(image, 1)
    try:
        await drv.run(image, 0)
        raise AssertionError("a second run() while busy did not raise")
    except MachineBusy:
        pass
    counters = await drv.wait(timeout=30)
    assert counters.total == (1 << 32) + machine.run_cycles
    assert counters.stages == {n: 10 + i for i, n in enumerate(STAGE_NAMES)}
    assert (await drv.read_output() == machine.output).all()
    assert machine.starts == [(1, plan.output)]

    # A run, woken by the interrupt line.
    async def interrupt(seconds):
        if not int(dut.irq.value):
            await RisingEdge(dut.irq)
    machine.output = machine.output[::-1].copy()
    assert (await drv.infer(image, 0, timeout=30, interrupt=interrupt) == machine.output).all()
    await ClockCycles(dut.clk, 2)
    assert int(dut.irq.value) == 0

    # A fault from the machine, then a soft reset.
    machine.fault = ErrorCode.AXI_READ_ERROR
    await drv.run(image, 0)
    await expect_error(drv.wait(timeout=30), ErrorCode.AXI_READ_ERROR)
    machine.fault = None
    await drv.reset()
    status = await drv.status()
    assert not status["error"] and status["error_code"] is ErrorCode.NONE

    # The watchdog: a run longer than WATCHDOG cycles, aborted by reset().
    machine.run_cycles = 100000
    await drv.set_watchdog(300)
    await drv.run(image, 0)
    await expect_error(drv.wait(timeout=30), ErrorCode.TIMEOUT)
    await drv.reset()
    await ClockCycles(dut.clk, 4)
    assert not (await drv.status())["busy"]
