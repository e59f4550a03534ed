"""The host driver against the register block's bit-exact twin (model.system.registers.RegisterFile)
through host.memory.TwinMemory, a small machine played by the test; DevMem on a temporary file;
and (cocotb) against the RTL register block through CocotbBus."""

import asyncio
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from host.driver import (AcceleratorError, BitstreamError, Buffers, Counters, Driver,
                         MachineBusy, SyncDriver, WaitTimeout)
from host.memory import DevMem, Memory, TwinMemory
from model.config import M3VIT_TINY, MICRO
from model.numerics import DEFAULT
from model.quantize import quantize
from model.machine import ZCU102
from model.system.registers import BY_NAME, MAGIC, STAGE_NAMES, ErrorCode, Identity, RegisterFile
from model.weight_image import ImageError, input_bytes, layout, pack, pack_output
from model.weights import synthetic, synthetic_image
from sim.runner import cocotb_tests


DRAM = 0x1000_0000


@pytest.fixture(scope="module")
def weights():
    return pack(quantize(synthetic(MICRO, seed=4), DEFAULT))


class Machine:
    """Plays the accelerator behind the twin: a START makes it busy for ``run_polls`` polls,
    then it writes ``output`` to the output buffer, sets the counters and pulses done; a
    SOFT_RESET ends the run."""

    def __init__(self, output, run_polls=3, fault=None, cycles=(1 << 33) + 5):
        self.output, self.run_polls, self.fault, self.cycles = output, run_polls, fault, cycles
        self.seen_starts, self.seen_resets, self.left, self.runs = 0, 0, 0, []

    def __call__(self, mem):
        regs = mem.regs
        if regs.soft_resets > self.seen_resets:           # SOFT_RESET aborts the run
            self.seen_resets = regs.soft_resets
            regs.busy = False
            return
        if regs.starts > self.seen_starts:
            self.seen_starts = regs.starts
            regs.busy, self.left = True, self.run_polls
            self.runs.append((regs.task, dict(regs.addresses)))
        if not regs.busy:
            return
        regs.tick(1000)
        if self.fault is not None:
            regs.pulse_fault(self.fault)
            self.fault = None
            return
        self.left -= 1
        if self.left == 0:
            addresses = regs.addresses
            out = pack_output(self.output, MICRO)
            start = addresses["OUTPUT"] - mem.dram_base
            mem.dram[start:start + len(out)] = out
            regs.cycles_total = self.cycles
            regs.stage_cycles = {name: 100 + i for i, name in enumerate(STAGE_NAMES)}
            regs.busy = False
            regs.pulse_done()


def make(machine=None, *, buffers=None, checked=True, **identity):
    """The twin behind TwinMemory, built for MICRO on ZCU102 with ``identity``'s fields
    replaced, and a driver for MICRO (its bitstream check passed, if ``checked``)."""
    regs = RegisterFile(dataclasses.replace(Identity.of(MICRO, ZCU102), **identity))
    mem = TwinMemory(regs, dram_base=DRAM, dram_size=1 << 20, on_sleep=machine)
    buffers = buffers or Buffers.plan(DRAM, MICRO)
    drv = Driver(mem, MICRO, buffers)
    if checked:
        run(drv.check_bitstream())
    return mem, drv


def run(coroutine):
    return asyncio.run(coroutine)


def expected_output(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(DEFAULT.act.min_int, DEFAULT.act.max_int + 1, (MICRO.tokens, MICRO.dim))


def test_backends_implement_the_protocol():
    mem, _ = make()
    assert isinstance(mem, Memory)


def test_buffers_plan():
    b = Buffers.plan(DRAM + 1, MICRO)
    assert b.weights == DRAM + 4096 and b.weights % 4096 == b.image % 4096 == 0
    assert b.image >= b.weights + layout(MICRO).total_bytes
    assert b.output % 4096 == 0 and b.end - b.output >= MICRO.tokens * MICRO.dim * 4
    with pytest.raises(ValueError, match="nonzero base"):
        Buffers.plan(0, MICRO)
    with pytest.raises(ValueError, match="overlaps"):
        Driver(make()[0], MICRO, Buffers(DRAM, DRAM + 4096, DRAM + 0x10_0000, 0))


def test_a_whole_run(weights):
    y = expected_output()
    machine = Machine(y)
    mem, drv = make(machine)
    image = synthetic_image(MICRO, seed=1)

    async def session():
        found = await drv.check_bitstream()
        assert found["tasks"] == MICRO.tasks
        assert found["layout_hash"] == layout(MICRO).hash
        await drv.load_weights(weights)
        await drv.run(image, 1)
        counters = await drv.wait(timeout=5)
        return counters, await drv.read_output()

    counters, out = run(session())
    assert (out == y).all()
    assert counters == Counters((1 << 33) + 5, {n: 100 + i for i, n in enumerate(STAGE_NAMES)})
    b = drv.buffers
    assert machine.runs == [(1, {"IMAGE": b.image, "WEIGHTS": b.weights, "OUTPUT": b.output})]
    assert bytes(mem.dram[b.weights - DRAM:b.weights - DRAM + len(weights)]) == weights
    data = input_bytes(image, MICRO)
    assert bytes(mem.dram[b.image - DRAM:b.image - DRAM + len(data)]) == data
    # CYCLES_TOTAL_LO is read before _HI (it latches the high half).
    reads = [off for op, off, _ in mem.register_log if op == "read"]
    lo, hi = BY_NAME["CYCLES_TOTAL_LO"].offset, BY_NAME["CYCLES_TOTAL_HI"].offset
    assert reads.index(lo) < reads.index(hi)


def test_run_with_buffer_bytes_and_interrupt(weights):
    y = expected_output(1)
    machine = Machine(y, run_polls=2)
    mem, drv = make(machine)
    wakeups = []

    async def interrupt(seconds):
        # The "interrupt line": let the machine run until IRQ_STATUS & IRQ_ENABLE is set.
        while not mem.regs.irq:
            machine(mem)
        wakeups.append(mem.regs.irq_status)

    async def session():
        await drv.load_weights(weights, verify=False)
        await drv.run(input_bytes(synthetic_image(MICRO), MICRO), 0)
        await drv.wait(interrupt=interrupt)
        return await drv.read_output()

    assert (run(session()) == y).all()
    assert wakeups == [BY_NAME["IRQ_STATUS"].field("DONE").mask]
    assert mem.regs.irq_status == 0 and not mem.regs.irq
    assert mem.regs.read(BY_NAME["IRQ_ENABLE"].offset) == 0b11


@pytest.mark.parametrize("case, code", [
    ("zero", ErrorCode.ZERO_ADDRESS),
    ("unaligned", ErrorCode.UNALIGNED_ADDRESS),
    ("task", ErrorCode.BAD_TASK),
])
def test_start_errors_raise_their_code(case, code):
    plan = Buffers.plan(DRAM, MICRO)
    buffers = {"zero": Buffers(0, plan.image, plan.output, plan.end),
               "unaligned": Buffers(plan.weights, plan.image + 8, plan.output, plan.end)
               }.get(case, plan)
    mem, drv = make(buffers=buffers)
    task = 2 if case == "task" else 0
    with pytest.raises(AcceleratorError, match=code.name) as info:
        run(drv.run(synthetic_image(MICRO), task))
    assert info.value.code is code
    assert mem.regs.starts == 0
    if case == "task":
        assert "task 2" in str(info.value)


def test_a_start_another_master_beat_is_ignored():
    mem, drv = make()
    write = mem.write32

    async def racing_write(offset, value):
        # Another host starts a run after the driver looked at STATUS.
        if offset == BY_NAME["TASK"].offset:
            mem.regs.busy = True
        await write(offset, value)
    mem.write32 = racing_write
    with pytest.raises(MachineBusy, match="ignored START"):
        run(drv.run(synthetic_image(MICRO), 0))
    assert mem.regs.starts == 0 and not run(drv.status())["error"]


def test_busy_machine_is_refused_before_memory_is_touched():
    mem, drv = make()
    mem.regs.busy = True
    with pytest.raises(MachineBusy, match="a run is in progress"):
        run(drv.run(synthetic_image(MICRO), 0))
    assert not any(mem.dram) and not [w for w in mem.register_log if w[0] == "write"]


def test_run_needs_the_bitstream_check():
    _, drv = make(checked=False)
    with pytest.raises(BitstreamError, match="check_bitstream\\(\\) must pass before run"):
        run(drv.run(synthetic_image(MICRO), 0))


def test_buffers_beyond_the_address_width_are_refused():
    high = Buffers.plan(1 << 40, MICRO)
    with pytest.raises(ValueError, match="ends beyond the 40-bit addresses"):
        Driver(make()[0], MICRO, high)


def test_a_leftover_error_is_cleared_before_the_next_start():
    mem, drv = make(Machine(expected_output()))
    mem.regs.pulse_fault(ErrorCode.AXI_READ_ERROR)
    run(drv.run(synthetic_image(MICRO), 0))
    assert mem.regs.soft_resets == 1 and mem.regs.starts == 1


@pytest.mark.parametrize("code", [ErrorCode.AXI_READ_ERROR, ErrorCode.AXI_WRITE_ERROR])
def test_machine_errors_raise_during_wait(code):
    mem, drv = make(Machine(expected_output(), fault=code))

    async def session():
        await drv.run(synthetic_image(MICRO), 0)
        await drv.wait(timeout=5)
    with pytest.raises(AcceleratorError, match=code.name) as info:
        run(session())
    assert info.value.code is code and "memory ports can reach" in str(info.value)


def test_watchdog_timeout_then_reset():
    mem, drv = make(Machine(expected_output(), run_polls=10 ** 9))

    async def session():
        await drv.set_watchdog(5000)
        await drv.run(synthetic_image(MICRO), 0)
        await drv.wait(timeout=5)
    with pytest.raises(AcceleratorError, match="TIMEOUT") as info:
        run(session())
    assert info.value.code is ErrorCode.TIMEOUT
    assert mem.regs.timeouts == 1
    run(drv.reset())
    status = run(drv.status())
    assert status["error_code"] is ErrorCode.NONE and not status["error"]
    assert mem.regs.soft_resets == 1 and mem.regs.irq_status == 0


def test_interrupt_wait_gives_up_at_the_deadline():
    mem, drv = make(Machine(expected_output(), run_polls=10 ** 9))
    limits = []

    async def interrupt(seconds):      # a line that never rises: wait out the limit
        limits.append(seconds)
        await asyncio.sleep(seconds)

    async def session():
        await drv.run(synthetic_image(MICRO), 0)
        await drv.wait(timeout=0.05, interrupt=interrupt)
    with pytest.raises(WaitTimeout, match="was ended with reset"):
        run(session())
    assert limits and all(0 <= s <= 0.05 for s in limits)
    assert mem.regs.soft_resets == 1 and not mem.regs.busy


def test_wait_gives_up_at_the_deadline():
    _, drv = make(Machine(expected_output(), run_polls=10 ** 9))

    async def session():
        await drv.run(synthetic_image(MICRO), 0)
        await drv.wait(timeout=0.01, poll_interval=0)
    with pytest.raises(WaitTimeout, match="was ended with reset\\(\\)"):
        run(session())


@pytest.mark.parametrize("kwargs, message", [
    (dict(tasks=3), "CONFIG.TASKS is 3, micro has 2"),
    (dict(alignment=32), "memory ports are 32 bytes wide"),
    (dict(addr_width=32), "memory addresses are 32 bits, the machine zcu102 has 40"),
    (dict(layout_hash=0x1234), "LAYOUT_HASH is 0x0000000000001234"),
    (dict(buffer_bytes=dict(IMAGE=768, WEIGHTS=4096, OUTPUT=64)), "WEIGHTS_BYTES is 4096"),
])
def test_check_bitstream_mismatch(kwargs, message):
    _, drv = make(checked=False, **kwargs)
    with pytest.raises(BitstreamError, match=message) as info:
        run(drv.check_bitstream())
    assert "python -m hw.build" in str(info.value)
    with pytest.raises(BitstreamError, match="must pass before run"):
        run(drv.run(synthetic_image(MICRO), 0))


def test_check_bitstream_wrong_id():
    mem, drv = make(checked=False)
    read = mem.read32

    async def no_accelerator(offset):
        return 0xFFFF_FFFF if offset == BY_NAME["ID"].offset else await read(offset)
    mem.read32 = no_accelerator
    with pytest.raises(BitstreamError, match="ID reads 0xffffffff"):
        run(drv.check_bitstream())


def test_load_weights_refuses_a_wrong_image(weights):
    _, drv = make()
    tiny = Driver(TwinMemory(RegisterFile(Identity.of(M3VIT_TINY, ZCU102))), M3VIT_TINY,
                  Buffers.plan(DRAM, M3VIT_TINY))
    with pytest.raises(ImageError, match="packed for micro, this bitstream is m3vit-tiny"):
        run(tiny.load_weights(weights))
    with pytest.raises(ValueError, match="image buffer of micro is 768 bytes, not 5"):
        run(drv.run(b"12345", 0))
    with pytest.raises(ValueError, match="task must be"):
        run(drv.run(synthetic_image(MICRO), -1))


def test_sync_driver(weights):
    y = expected_output(2)
    mem, drv = make(Machine(y))
    sync = SyncDriver(drv)
    sync.check_bitstream()
    sync.load_weights(weights)
    assert (sync.infer(synthetic_image(MICRO), 1, timeout=5) == y).all()
    assert sync.counters().total == (1 << 33) + 5
    assert sync.config is MICRO


def test_driver_has_no_register_numbers():
    source = (Path(__file__).resolve().parent.parent / "host" / "driver.py").read_text()
    code = re.sub(r'""".*?"""', "", source, flags=re.S)
    assert not re.findall(r"0x[0-9A-Fa-f]+", code)


# DevMem on a file.

def test_devmem_on_a_file(tmp_path, weights):
    path = tmp_path / "mem"
    regs_base, dram_base, dram_size = 0x2000, 0x10000, 0x40000
    path.write_bytes(bytes(dram_base + dram_size))
    with DevMem(regs_base=regs_base, dram_base=dram_base, dram_size=dram_size,
                path=str(path)) as mem:
        drv = Driver(mem, MICRO, Buffers.plan(dram_base, MICRO))
        y = expected_output(3)

        async def session():
            await mem.write32(BY_NAME["ID"].offset, MAGIC)
            assert await mem.read32(BY_NAME["ID"].offset) == MAGIC
            await drv.load_weights(weights)
            await drv.write_addresses()
            await mem.write(drv.buffers.output, pack_output(y, MICRO))
            return await drv.read_output()
        assert (run(session()) == y).all()
        with pytest.raises(ValueError, match="outside the DRAM window"):
            run(mem.read(dram_base + dram_size - 4, 8))
        with pytest.raises(ValueError, match="register offset"):
            run(mem.read32(2))
    raw = path.read_bytes()
    assert int.from_bytes(raw[regs_base:regs_base + 4], "little") == MAGIC
    lo = BY_NAME["WEIGHTS_ADDR_LO"].offset
    assert int.from_bytes(raw[regs_base + lo:regs_base + lo + 4], "little") == dram_base
    start = drv.buffers.weights
    assert raw[start:start + len(weights)] == weights


def test_devmem_copies_unaligned_ranges_in_whole_words(tmp_path):
    path = tmp_path / "mem"
    path.write_bytes(bytes(0x30000))
    with DevMem(regs_base=0x1000, dram_base=0x10000, dram_size=0x10000, path=str(path)) as mem:
        run(mem.write(0x10003, b"hello, board"))
        run(mem.write(0x10010, bytes(range(16))))
        assert run(mem.read(0x10003, 12)) == b"hello, board"
        assert run(mem.read(0x10000, 3)) == bytes(3), "the bytes around were kept"
        assert run(mem.read(0x10010, 16)) == bytes(range(16))


def test_devmem_mapping_failure_says_why(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(bytes(0x20000))
    with pytest.raises(OSError, match="cannot map the DRAM window .* reserved-memory node"):
        DevMem(regs_base=0x1000, dram_base=0x10000, dram_size=0x100000, path=str(path))


def test_devmem_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DevMem(regs_base=0, dram_base=0x1000, dram_size=0x1000, path=str(tmp_path / "no"))


# The RTL register block, through cocotbext-axi.

def _rtl_design(**config):
    from sim.benches.host_driver import make_design
    return make_design(config)


test_driver_on_rtl_registers = cocotb_tests(
    "sim.benches.host_driver", _rtl_design, configs=[dict(addr_width=8)])


def test_a_batch_of_images(weights):
    """A machine that takes two images per run: run() writes them one after the other into a
    buffer planned for two, refuses any other count, and read_output() gives one output each."""
    two = ZCU102.batched(2)
    y = expected_output()
    regs = RegisterFile(Identity.of(MICRO, two))
    mem = TwinMemory(regs, dram_base=DRAM, dram_size=1 << 20, on_sleep=Machine(y))
    buffers = Buffers.plan(DRAM, MICRO, two)
    assert buffers.output - buffers.image >= 2 * len(input_bytes(synthetic_image(MICRO), MICRO))
    drv = Driver(mem, MICRO, buffers, two)
    images = [synthetic_image(MICRO, seed=n) for n in (1, 2)]

    async def session():
        await drv.check_bitstream()
        await drv.load_weights(weights)
        for wrong, message in ((images[:1], "takes 2 images per run, not 1"),
                               (images[0], "takes a list of 2 images per run")):
            with pytest.raises(ValueError, match=message):
                await drv.run(wrong, 0)
        await drv.run(images, 0)
        await drv.wait(timeout=5)
        return await drv.read_output()

    outputs = run(session())
    assert len(outputs) == 2 and (outputs[0] == y).all()     # the played machine writes one
    data = b"".join(input_bytes(image, MICRO) for image in images)
    start = buffers.image - DRAM
    assert bytes(mem.dram[start:start + len(data)]) == data
