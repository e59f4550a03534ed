"""cocotb bench of :class:`hw.system.registers.RegisterBlock` driven by cocotbext-axi's
AxiLiteMaster, against its twin :class:`model.system.registers.RegisterFile`."""

import logging
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw.system.registers import RegisterBlock, stage_layout
from model.system.registers import (BUFFERS, BY_NAME, BY_OFFSET, REGISTERS, STAGE_NAMES, Access,
                                   ErrorCode, Identity, RegisterFile)
from sim.runner import bench_config
from sim.stream import clock_and_reset, pack_struct


def identity(config):
    """The block's build parameters from a bench configuration: ``tasks``, ``alignment``,
    ``memory_addr_width``, ``buffer_bytes`` (one size for every buffer) and ``layout_hash``."""
    return Identity(tasks=config["tasks"], alignment=config["alignment"],
                    addr_width=config["memory_addr_width"],
                    buffer_bytes=dict.fromkeys(BUFFERS, config["buffer_bytes"]),
                    layout_hash=config.get("layout_hash", 0))


def make_design(config):
    return RegisterBlock(identity(config), addr_width=config["addr_width"])


def offset(name):
    return BY_NAME[name].offset


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


class TB:
    """Clock, reset, an AXI4-Lite master, the machine's inputs, a monitor of the pulses and of
    the bus handshakes, and the twin."""

    def __init__(self, dut):
        self.dut = dut
        self.config = bench_config()
        self.tasks, self.alignment = self.config["tasks"], self.config["alignment"]
        self.identity = identity(self.config)
        self.twin = RegisterFile(self.identity)
        self.cycle = 0
        self.starts = []          # (cycle, task_id, addresses) at each start pulse
        self.soft_resets = []     # cycles of soft_reset pulses
        self.timeouts = []        # cycles of timeout pulses
        self.handshakes = {channel: [] for channel in ("aw", "w", "b", "ar", "r")}
        self.first_valid = {"b": [], "r": []}

    async def reset(self, *, pause=0.0, seed=0):
        dut = self.dut
        for name in ("busy", "done", "fault", "fault_code", "cycles", "stage_cycles"):
            getattr(dut, name).value = 0
        await clock_and_reset(dut)
        self.axi = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "bus_"), dut.clk, dut.rst)
        for interface in (self.axi.write_if, self.axi.read_if):
            interface.log.setLevel(logging.WARNING)   # a line per access
        self._garble_unstrobed_bytes(random.Random(seed + 100))
        if pause:
            channels = (self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
                        self.axi.write_if.b_channel, self.axi.read_if.ar_channel,
                        self.axi.read_if.r_channel)
            for index, channel in enumerate(channels):
                channel.set_pause_generator(_pauses(seed * 10 + index, pause))
        cocotb.start_soon(self._monitor())

    def _garble_unstrobed_bytes(self, rng):
        """AXI leaves the data of bytes whose strobe is low undefined; AxiLiteMaster zeroes
        them, which would hide a slave that looks at them (a W1C clearing bits there)."""
        channel = self.axi.write_if.w_channel
        send = channel.send

        async def send_garbled(w):
            strobed = sum(0xFF << 8 * i for i in range(4) if int(w.wstrb) >> i & 1)
            w.wdata = int(w.wdata) | rng.getrandbits(32) & ~strobed
            await send(w)
        channel.send = send_garbled

    async def _monitor(self):
        dut = self.dut
        was_valid = {"b": False, "r": False}
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            self.cycle += 1
            if int(dut.start.value):
                self.starts.append((self.cycle, int(dut.task_id.value),
                                    {b: int(getattr(dut, f"{b.lower()}_addr").value)
                                     for b in BUFFERS}))
            if int(dut.soft_reset.value):
                self.soft_resets.append(self.cycle)
            if int(dut.timeout.value):
                self.timeouts.append(self.cycle)
            for channel in self.handshakes:
                valid = int(getattr(dut, f"bus__{channel}valid").value)
                ready = int(getattr(dut, f"bus__{channel}ready").value)
                if valid and ready:
                    self.handshakes[channel].append(self.cycle)
                if channel in was_valid:
                    if valid and not was_valid[channel]:
                        self.first_valid[channel].append(self.cycle)
                    was_valid[channel] = bool(valid) and not ready

    # The host.

    async def read(self, address, length=4):
        """Read and check against the twin; returns the word's bytes read."""
        result = await self.axi.read(address, length)
        assert result.resp == AxiResp.OKAY, f"read of {address:#x} answered {result.resp!r}"
        lane = address % 4
        want = self.twin.read(address).to_bytes(4, "little")[lane:lane + length]
        assert result.data == want, (
            f"read of {length} bytes at {address:#x} ({_name(address)}) gave "
            f"{result.data.hex()}, twin says {want.hex()}")
        return result.data

    async def write(self, address, value, length=4):
        """Write ``length`` bytes of the little-endian ``value`` at ``address`` (one word)."""
        lane = address % 4
        data = value.to_bytes(4, "little")[:length]
        result = await self.axi.write(address, data)
        assert result.resp == AxiResp.OKAY, f"write of {address:#x} answered {result.resp!r}"
        self.twin.write(address, value << 8 * lane, strobe=((1 << length) - 1) << lane)

    async def read_field(self, register, field):
        word = int.from_bytes(await self.read(offset(register)), "little")
        return BY_NAME[register].field(field).get(word)

    async def set_buffers(self, **addresses):
        for buffer, address in addresses.items():
            await self.write(offset(f"{buffer}_ADDR_LO"), address & 0xFFFF_FFFF)
            await self.write(offset(f"{buffer}_ADDR_HI"), address >> 32)

    async def control(self, *fields):
        """Write CONTROL, then wait until a START has been judged (a machine raises busy only
        after the start pulse)."""
        reg = BY_NAME["CONTROL"]
        await self.write(reg.offset, sum(reg.field(f).mask for f in fields))
        await ClockCycles(self.dut.clk, 3)

    # The machine.

    async def set_inputs(self, **values):
        await RisingEdge(self.dut.clk)
        for name, value in values.items():
            getattr(self.dut, name).value = int(value)
            if name == "busy":
                self.twin.busy = bool(value)
            elif name == "cycles":
                self.twin.cycles_total = value

    async def set_stage_cycles(self, counts):
        await RisingEdge(self.dut.clk)
        self.dut.stage_cycles.value = pack_struct(
            stage_layout(), **{name.lower(): counts[name] for name in STAGE_NAMES})
        self.twin.stage_cycles = dict(counts)

    async def pulse(self, name, code=None):
        """Pulse ``done`` or ``fault`` (with ``code``) for one cycle."""
        await RisingEdge(self.dut.clk)
        getattr(self.dut, name).value = 1
        if code is not None:
            self.dut.fault_code.value = int(code)
        await RisingEdge(self.dut.clk)
        getattr(self.dut, name).value = 0
        if name == "done":
            self.twin.pulse_done()
        else:
            self.twin.pulse_fault(code)

    # Checks.

    async def check_outputs(self, what):
        """After a few quiet cycles, the pulses seen and the outputs match the twin."""
        await ClockCycles(self.dut.clk, 3)
        dut, twin = self.dut, self.twin
        assert len(self.starts) == twin.starts, (
            f"{what}: {len(self.starts)} start pulses, twin says {twin.starts}")
        assert len(self.soft_resets) == twin.soft_resets, (
            f"{what}: {len(self.soft_resets)} soft_reset pulses, twin says {twin.soft_resets}")
        assert len(self.timeouts) == twin.timeouts, (
            f"{what}: {len(self.timeouts)} timeout pulses, twin says {twin.timeouts}")
        assert int(dut.irq.value) == twin.irq, f"{what}: irq is {int(dut.irq.value)}"
        width = len(dut.task_id)
        assert int(dut.task_id.value) == twin.task & ((1 << width) - 1), f"{what}: task_id"
        for buffer, address in twin.addresses.items():
            got = int(getattr(dut, f"{buffer.lower()}_addr").value)
            assert got == address, f"{what}: {buffer.lower()}_addr {got:#x}, twin {address:#x}"


def _name(address):
    reg = BY_OFFSET.get(address & ~3)
    return reg.name if reg else "unmapped"


#: Errors the machine reports, as opposed to those of the start checks and the watchdog.
MACHINE_ERRORS = (ErrorCode.AXI_READ_ERROR, ErrorCode.AXI_WRITE_ERROR, ErrorCode.BUS_HUNG,
                  ErrorCode.DMA_COMMAND, ErrorCode.MOE_REJECTED)


def aligned(rng, tb):
    """A good buffer address: aligned, and the buffer below 2**memory_addr_width."""
    top = (1 << tb.identity.addr_width) - tb.config["buffer_bytes"]
    return rng.randrange(1, top // tb.alignment + 1) * tb.alignment


async def good_setup(tb, rng):
    await tb.set_buffers(**{b: aligned(rng, tb) for b in BUFFERS})
    await tb.write(offset("TASK"), tb.tasks - 1)


@cocotb.test()
async def test_identity(dut):
    tb = TB(dut)
    await tb.reset()
    for name in ("ID", "VERSION", "CONFIG"):
        await tb.read(offset(name))
    for name, want in tb.identity.constants().items():
        got = int.from_bytes(await tb.read(offset(name)), "little")
        assert got == want, f"{name} reads {got:#x}, want {want:#x}"
    # RO registers ignore writes; WO reads as 0.
    for name in ("ID", "CONFIG", "STATUS", "CYCLES_TOTAL_LO", "LAYOUT_HASH_HI", "OUTPUT_BYTES"):
        await tb.write(offset(name), 0x1234_5678)
        await tb.read(offset(name))
    await tb.read(offset("CONTROL"))
    await tb.check_outputs("after writes to RO registers")


async def expect_error(tb, code, what):
    starts = len(tb.starts)
    await tb.control("START")
    await tb.check_outputs(what)
    assert len(tb.starts) == starts, f"{what}: start pulsed"
    assert await tb.read_field("STATUS", "ERROR") == 1, f"{what}: STATUS.ERROR not set"
    got = await tb.read_field("STATUS", "ERROR_CODE")
    assert got == code, f"{what}: ERROR_CODE {got}, want {code!r}"
    assert await tb.read_field("IRQ_STATUS", "ERROR") == 1, f"{what}: IRQ_STATUS.ERROR not set"
    # ERROR_CODE keeps the first error until a good START or SOFT_RESET.
    await tb.control("SOFT_RESET")


@cocotb.test()
async def test_start_checks(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(1)
    await expect_error(tb, ErrorCode.ZERO_ADDRESS, "START with no addresses")
    await good_setup(tb, rng)
    await tb.set_buffers(WEIGHTS=0)
    await expect_error(tb, ErrorCode.ZERO_ADDRESS, "START with WEIGHTS_ADDR zero")
    aw, size = tb.identity.addr_width, tb.config["buffer_bytes"]
    await tb.set_buffers(WEIGHTS=1 << 63)    # only the top bit set: not zero, aligned
    await expect_error(tb, ErrorCode.ADDRESS_TOO_HIGH, "START with WEIGHTS_ADDR at 2**63")
    await tb.set_buffers(WEIGHTS=1 << aw)
    await expect_error(tb, ErrorCode.ADDRESS_TOO_HIGH, "START with WEIGHTS_ADDR at 2**aw")
    last = ((1 << aw) - size) // tb.alignment * tb.alignment
    await tb.set_buffers(WEIGHTS=last + tb.alignment)
    await expect_error(tb, ErrorCode.BUFFER_PAST_END, "START with the weights past the end")
    await tb.set_buffers(WEIGHTS=last)
    if tb.alignment > 1:
        await tb.write(offset("OUTPUT_ADDR_LO") + 0, tb.alignment // 2, length=2)
        await expect_error(tb, ErrorCode.UNALIGNED_ADDRESS, "START with OUTPUT_ADDR unaligned")
        await tb.set_buffers(OUTPUT=aligned(rng, tb))
    await tb.write(offset("TASK"), tb.tasks)
    await expect_error(tb, ErrorCode.BAD_TASK, "START with TASK == tasks")
    await tb.write(offset("TASK") + 3, 1, length=1)   # TASK's bit 24 only: still bad
    await expect_error(tb, ErrorCode.BAD_TASK, "START with TASK >= 2**24")
    await tb.write(offset("TASK"), tb.tasks - 1)
    # START while busy is ignored: no error, no pulse, only START_IGNORED.
    await tb.set_inputs(busy=1)
    await tb.control("START")
    await tb.check_outputs("START while busy")
    assert await tb.read_field("STATUS", "START_IGNORED") == 1
    await tb.set_inputs(busy=0)

    # A good start: one pulse with the registers' values, and the error status cleared.
    await tb.control("START")
    await tb.check_outputs("good START")
    assert len(tb.starts) == 1, f"{len(tb.starts)} start pulses"
    _, task, addresses = tb.starts[0]
    assert task == tb.tasks - 1 and addresses == tb.twin.addresses, tb.starts[0]
    assert await tb.read_field("STATUS", "ERROR") == 0
    assert await tb.read_field("STATUS", "ERROR_CODE") == ErrorCode.NONE
    assert await tb.read_field("STATUS", "START_IGNORED") == 0, "a good START clears it"
    # The start pulse counts as busy: a second START right behind the first is ignored.
    events = [tb.axi.init_write(offset("CONTROL"), (1).to_bytes(4, "little")) for _ in range(2)]
    for event in events:
        await event.wait()
    await ClockCycles(dut.clk, 3)
    assert len(tb.starts) == 2, f"back-to-back STARTs gave {len(tb.starts) - 1} pulses, want 1"
    tb.twin.write(offset("CONTROL"), 1)
    tb.twin.busy = True
    tb.twin.write(offset("CONTROL"), 1)
    tb.twin.busy = False
    assert await tb.read_field("STATUS", "START_IGNORED") == 1
    assert await tb.read_field("STATUS", "ERROR") == 0


@cocotb.test()
async def test_done_and_interrupt(dut):
    tb = TB(dut)
    await tb.reset()
    await good_setup(tb, random.Random(2))
    await tb.pulse("done")                # DONE is raised even with interrupts off
    await tb.check_outputs("done with IRQ disabled")
    assert int(dut.irq.value) == 0
    await tb.write(offset("IRQ_STATUS"), 1)
    await tb.write(offset("IRQ_ENABLE"), BY_NAME["IRQ_ENABLE"].field("DONE").mask)
    await tb.control("START")
    await tb.set_inputs(busy=1)
    assert await tb.read_field("STATUS", "BUSY") == 1
    assert await tb.read_field("STATUS", "DONE") == 0, "a good START clears DONE"
    await tb.set_inputs(busy=0, cycles=0x1_2345_6789)
    await tb.pulse("done")
    await tb.check_outputs("done with IRQ enabled")
    assert int(dut.irq.value) == 1
    assert await tb.read_field("STATUS", "DONE") == 1
    await tb.read(offset("CYCLES_TOTAL_LO"))
    await tb.set_inputs(cycles=0x7_0000_0000)   # the high half was latched by the LO read
    assert int.from_bytes(await tb.read(offset("CYCLES_TOTAL_HI")), "little") == 1
    await tb.write(offset("IRQ_STATUS"), 0x2)   # the wrong bit
    await tb.check_outputs("W1C of ERROR")
    assert int(dut.irq.value) == 1
    await tb.write(offset("IRQ_STATUS") + 1, 0xFF, length=1)   # the right bit, wrong byte
    await tb.check_outputs("W1C of DONE with its strobe low")
    assert int(dut.irq.value) == 1
    await tb.write(offset("IRQ_STATUS"), 0x1)
    await tb.check_outputs("W1C of DONE")
    assert int(dut.irq.value) == 0
    assert await tb.read_field("STATUS", "DONE") == 1, "W1C leaves STATUS.DONE"


@cocotb.test()
async def test_fault_and_soft_reset(dut):
    tb = TB(dut)
    await tb.reset()
    await good_setup(tb, random.Random(3))
    await tb.write(offset("IRQ_ENABLE"), 0x2)
    await tb.control("START")
    await tb.set_inputs(busy=1)
    await tb.pulse("fault", ErrorCode.AXI_READ_ERROR)
    await tb.check_outputs("fault")
    assert int(dut.irq.value) == 1
    assert await tb.read_field("STATUS", "ERROR_CODE") == ErrorCode.AXI_READ_ERROR
    assert await tb.read_field("STATUS", "OVERFLOW") == 0
    await tb.pulse("fault", ErrorCode.AXI_WRITE_ERROR)
    assert await tb.read_field("STATUS", "ERROR_CODE") == ErrorCode.AXI_READ_ERROR, (
        "ERROR_CODE holds the first error")
    assert await tb.read_field("STATUS", "OVERFLOW") == 1
    await tb.control("SOFT_RESET", "START")     # SOFT_RESET wins
    await tb.check_outputs("SOFT_RESET")
    assert len(tb.soft_resets) == 1 and len(tb.starts) == 1
    assert int(dut.irq.value) == 0
    await tb.read(offset("STATUS"))
    await tb.read(offset("IRQ_STATUS"))
    await tb.read(offset("TASK"))


@cocotb.test()
async def test_watchdog(dut):
    tb = TB(dut)
    await tb.reset()
    await good_setup(tb, random.Random(4))
    await tb.write(offset("WATCHDOG"), 60)
    await tb.control("START")
    await tb.set_inputs(busy=1)
    await ClockCycles(dut.clk, 30)
    assert await tb.read_field("STATUS", "ERROR") == 0, "watchdog fired early"
    await tb.set_inputs(busy=0)               # the count pauses while not busy
    await ClockCycles(dut.clk, 40)
    assert await tb.read_field("STATUS", "ERROR") == 0, "watchdog counted idle cycles"
    await tb.set_inputs(busy=1)
    await ClockCycles(dut.clk, 40)
    tb.twin.tick(100)
    await tb.read(offset("STATUS"))
    assert await tb.read_field("STATUS", "ERROR_CODE") == ErrorCode.TIMEOUT
    await tb.check_outputs("watchdog fired")     # one timeout pulse, to end the run
    await tb.control("SOFT_RESET")
    await tb.set_inputs(busy=0)
    await tb.read(offset("STATUS"))


# Random sessions against the twin.

def _random_value(rng, tb, name):
    if name.endswith("_ADDR_LO"):
        return rng.choice([0, 0, rng.getrandbits(32), *(aligned(rng, tb) & 0xFFFF_FFFF,) * 7])
    if name.endswith("_ADDR_HI"):
        return rng.choice([0, 0, 0, 0, rng.randrange(16), rng.getrandbits(32)])
    if name == "TASK":
        return rng.choice([*range(tb.tasks), tb.tasks, rng.getrandbits(32), *(0,) * 6])
    if name == "CONTROL":
        return rng.choice([1, 1, 1, 2, 3, 0, rng.getrandbits(32)])
    return rng.getrandbits(32)


async def spoil(tb, rng):
    """Make the next START fail one of its checks, and only that one; returns what it did."""
    await good_setup(tb, rng)
    buffer = rng.choice(BUFFERS)
    kinds = ["busy", "zero", "high", "past_end", "task"]
    kinds += ["unaligned"] if tb.alignment > 1 else []
    kind = rng.choice(kinds)
    await tb.set_inputs(busy=int(kind == "busy"))
    aw, size = tb.identity.addr_width, tb.config["buffer_bytes"]
    if kind == "zero":
        await tb.set_buffers(**{buffer: 0})
    elif kind == "high":
        await tb.set_buffers(**{buffer: rng.randrange(1 << aw, 1 << 64, tb.alignment)})
    elif kind == "past_end":
        first_bad = ((1 << aw) - size) // tb.alignment * tb.alignment + tb.alignment
        await tb.set_buffers(**{buffer: rng.randrange(first_bad, 1 << aw, tb.alignment)})
    elif kind == "unaligned":
        lo = offset(f"{buffer}_ADDR_LO")
        await tb.write(lo, rng.randrange(1, tb.alignment), length=1)
    else:
        await tb.write(offset("TASK"), rng.randrange(tb.tasks, 1 << 32))
    return f"spoil: {kind} ({buffer})"


async def random_session(tb, rng, steps):
    unmapped = [a for a in range(0, min(1 << tb.config.get("addr_width", 12), 0x400), 4)
                if a not in BY_OFFSET]
    # WATCHDOG's timing has its own test; what START checks is written more often.
    writable = [r for r in REGISTERS if r.name != "WATCHDOG"]
    writable += [BY_NAME[name] for name in ("CONTROL", "TASK") for _ in range(5)]
    writable += [BY_NAME[f"{buffer}_ADDR_LO"] for buffer in BUFFERS]
    control = BY_NAME["CONTROL"]
    await good_setup(tb, rng)
    starts = {}     # outcome of each START: "GOOD" or the error code's name
    for step in range(steps):
        choice = rng.random()
        lane, length = (0, 4) if rng.random() < 0.6 else _lanes(rng)
        if choice < 0.35:
            reg = rng.choice(REGISTERS) if rng.random() < 0.85 else None
            address = reg.offset if reg else rng.choice(unmapped)
            what = f"read {_name(address)}"
            await tb.read(address + lane, length)
        elif choice < 0.80:
            if choice < 0.45:       # a plain START
                reg, lane, length = control, 0, 4
            else:
                reg = rng.choice(writable) if rng.random() < 0.85 else None
            address = reg.offset if reg else rng.choice(unmapped)
            value = _random_value(rng, tb, reg.name) if reg else rng.getrandbits(32)
            if choice < 0.45:
                value = control.field("START").mask
            what = f"write {value:#x} to {_name(address)} bytes {lane}..{lane + length - 1}"
            bits = value & (((1 << 8 * length) - 1) << 8 * lane)
            if (reg is control and bits & control.field("START").mask
                    and not bits & control.field("SOFT_RESET").mask):
                outcome = start_outcome(tb.twin)
                starts[outcome] = starts.get(outcome, 0) + 1
            await tb.write(address + lane, value >> 8 * lane, length)
        elif choice < 0.83:
            what = "good buffer addresses and TASK"
            await good_setup(tb, rng)
        elif choice < 0.88:
            what = await spoil(tb, rng)
            if rng.random() < 0.5:
                what += ", START"
                outcome = start_outcome(tb.twin)
                starts[outcome] = starts.get(outcome, 0) + 1
                await tb.control("START")
        else:
            event = rng.choice(["done", "fault", "busy", "counters"])
            what = f"machine event {event}"
            if event == "done":
                await tb.pulse("done")
            elif event == "fault":
                await tb.pulse("fault", rng.choice(MACHINE_ERRORS))
            elif event == "busy":
                await tb.set_inputs(busy=int(rng.random() < 0.3))
            else:
                await tb.set_inputs(cycles=rng.getrandbits(64))
                await tb.set_stage_cycles({n: rng.getrandbits(32) for n in STAGE_NAMES})
        await tb.check_outputs(f"step {step}, {what}")
        # Poll like a host, so that a status bit set or cleared wrongly is seen at once.
        await tb.read(offset("STATUS"))
        await tb.read(offset("IRQ_STATUS"))
    tb.dut._log.info(f"outcomes of START: {starts}")
    for reg in REGISTERS:
        await tb.read(reg.offset)
    want = {"GOOD", "IGNORED", "ZERO_ADDRESS", "ADDRESS_TOO_HIGH", "BUFFER_PAST_END", "BAD_TASK"}
    if tb.alignment > 1:
        want.add("UNALIGNED_ADDRESS")
    assert want <= set(starts), f"the session missed START outcomes {want - set(starts)}"


def start_outcome(twin):
    """What a START does now: "IGNORED" (busy), "GOOD" or the error's name."""
    return "IGNORED" if twin.busy else twin.start_check().name.replace("NONE", "GOOD")


def _lanes(rng):
    lane = rng.randrange(4)
    return lane, rng.randrange(1, 5 - lane)


@cocotb.test()
async def test_random_accesses(dut):
    tb = TB(dut)
    await tb.reset()
    await random_session(tb, random.Random(5), 400)


@cocotb.test()
async def test_random_accesses_with_pauses(dut):
    tb = TB(dut)
    await tb.reset(pause=0.4, seed=6)
    await random_session(tb, random.Random(6), 400)


@cocotb.test()
async def test_latency_and_throughput(dut):
    """The latencies the docstring states, and back-to-back accesses in flight at once."""
    tb = TB(dut)
    await tb.reset()
    await tb.write(offset("TASK"), 1)
    aw, w, b = (tb.handshakes[c][-1] for c in ("aw", "w", "b"))
    assert tb.first_valid["b"][-1] - max(aw, w) == 2, (aw, w, tb.first_valid["b"][-1])
    assert b == tb.first_valid["b"][-1], "the master takes B at once"
    await tb.read(offset("TASK"))
    assert tb.first_valid["r"][-1] - tb.handshakes["ar"][-1] == 2
    names = [r.name for r in REGISTERS if r.access is Access.RW and r.name != "WATCHDOG"]
    rng = random.Random(7)
    values = {name: rng.getrandbits(32) for name in names}
    first = tb.cycle
    events = [tb.axi.init_write(offset(name), values[name].to_bytes(4, "little"))
              for name in names]
    for event in events:
        await event.wait()
    writes = tb.cycle - first
    for name in names:
        tb.twin.write(offset(name), values[name])
    first = tb.cycle
    events = [tb.axi.init_read(offset(name), 4) for name in names]
    for event in events:
        await event.wait()
    reads = tb.cycle - first
    for name, event in zip(names, events):
        got = int.from_bytes(event.data.data, "little")
        assert got == tb.twin.read(offset(name)), f"{name}: {got:#x}"
    dut._log.info(f"{len(names)} writes in flight took {writes} cycles, {len(names)} reads "
                  f"{reads} cycles")
    aws = tb.handshakes["aw"][-len(names):]
    assert any(y - x == 1 for x, y in zip(aws, aws[1:])), f"no back-to-back AW: {aws}"
    ars = tb.handshakes["ar"][-len(names):]
    assert any(y - x == 1 for x, y in zip(ars, ars[1:])), f"no back-to-back AR: {ars}"
