"""The host driver: load the weights, run an image for a task, wait, read the output and the
cycle counters.

Every register offset and field comes from :mod:`model.system.registers`, every buffer layout from
:mod:`model.weight_image`; the driver reaches the hardware only through a
:class:`host.memory.Memory` backend, so the same code drives a board (:class:`~host.memory.DevMem`),
a cocotb simulation of the RTL (:class:`~host.memory.CocotbBus`) or the register block's twin
(:class:`~host.memory.TwinMemory`). Its methods are coroutines; :class:`SyncDriver` wraps them
for scripts on a board::

    from host.driver import SyncDriver
    from model.config import M3VIT_TINY
    drv = SyncDriver.devmem(M3VIT_TINY, regs_base=0xA000_0000, dram_base=0x6000_0000,
                            dram_size=0x1000_0000)
    drv.check_bitstream()                 # run() and infer() refuse to run without it
    drv.load_weights(open("tiny.img", "rb").read())
    out = drv.infer(image, task=0)        # ints [tokens][dim] in DEFAULT.act
    print(drv.counters())
"""

import asyncio
import inspect
import time
from dataclasses import dataclass

import numpy as np

from model.machine import ZCU102
from model.system.registers import (BUFFERS, BY_NAME, ERROR_DESCRIPTIONS, MAGIC, PARTITION,
                                   STAGE_NAMES, VERSION_MAJOR, VERSION_MINOR, ErrorCode,
                                   Identity)
from model.weight_image import (SECTION_ALIGN, check, input_bytes,
                                input_layout, output_layout, unpack_output)

__all__ = ["Buffers", "Counters", "Driver", "SyncDriver", "AcceleratorError", "BitstreamError",
           "MachineBusy", "WaitTimeout"]

_REBUILD = ("the bitstream and this driver's configuration differ in a way check_bitstream() "
            "cannot see: rebuild the bitstream from this release's sources")
_HINTS = {
    ErrorCode.UNALIGNED_ADDRESS: "place the buffers with Buffers.plan, which aligns them",
    ErrorCode.ZERO_ADDRESS: "every buffer needs a nonzero address (Buffers.plan refuses 0)",
    ErrorCode.BAD_TASK: "the task must be below CONFIG.TASKS (check_bitstream() reads it)",
    ErrorCode.ADDRESS_TOO_HIGH: "the buffers must lie below 2**CONFIG.ADDR_WIDTH",
    ErrorCode.BUFFER_PAST_END: "the buffers must lie below 2**CONFIG.ADDR_WIDTH",
    ErrorCode.AXI_READ_ERROR: "the buffers must lie in DRAM that the accelerator's memory "
                              "ports can reach",
    ErrorCode.AXI_WRITE_ERROR: "the output buffer must lie in DRAM that the accelerator's "
                               "memory ports can reach",
    ErrorCode.TIMEOUT: "the run took longer than WATCHDOG cycles and was ended; raise it "
                       "with set_watchdog()",
    ErrorCode.BUS_HUNG: "the memory stopped answering: reset the PL (reload the bitstream) "
                        "before the next run",
    ErrorCode.DMA_COMMAND: _REBUILD,
    ErrorCode.SHIFT_TABLE: "check the weights image (python -m model.weight_image --check FILE "
                           "--config NAME) and load_weights() a good one",
    **{code: _REBUILD for code in (ErrorCode.COMPUTE_REJECTED, ErrorCode.EMBED_REJECTED,
                                   ErrorCode.ATTENTION_REJECTED, ErrorCode.MLP_REJECTED,
                                   ErrorCode.MOE_REJECTED)},
}
#: STATUS reads after a START, a short sleep apart, before the driver decides that the machine
#: did not answer it (the register block judges a START within a few cycles).
_START_POLLS, _START_POLL_SECONDS = 16, 1e-6


class AcceleratorError(RuntimeError):
    """The accelerator reported an error: ``code`` is the
    :class:`model.system.registers.ErrorCode`."""

    def __init__(self, code, detail=""):
        self.code = ErrorCode(code)
        text = (f"accelerator error {self.code.name} ({int(self.code)}): "
                f"{ERROR_DESCRIPTIONS[self.code]}")
        if detail:
            text += f" ({detail})"
        if self.code in _HINTS:
            text += f"; {_HINTS[self.code]}"
        super().__init__(text)


class BitstreamError(RuntimeError):
    """The register block is not this accelerator, or was built for another configuration."""


class MachineBusy(RuntimeError):
    """A run is in progress: a START now would be ignored."""


class WaitTimeout(TimeoutError):
    """:meth:`Driver.wait` gave up: the run neither finished nor reported an error."""


def _align(n, to):
    return -(-n // to) * to


@dataclass(frozen=True)
class Buffers:
    """Physical addresses of the three buffers (:data:`model.system.registers.BUFFERS`)."""

    weights: int
    image: int
    output: int
    end: int

    @classmethod
    def plan(cls, base, config, machine=ZCU102, *, alignment=SECTION_ALIGN):
        """Weights, then image, then output from ``base`` on, for ``config`` on ``machine``,
        each at a multiple of ``alignment`` (4 KB: at least any CONFIG.ALIGN_LOG2 of a 128-bit
        port)."""
        if not (isinstance(base, int) and base > 0):
            raise ValueError(f"the buffers need a nonzero base address (the machine refuses "
                             f"address 0), not {base!r}")
        size = Identity.of(config, machine).bytes
        weights = _align(base, alignment)
        image = _align(weights + size("WEIGHTS"), alignment)
        output = _align(image + size("IMAGE"), alignment)
        end = _align(output + size("OUTPUT"), alignment)
        return cls(weights, image, output, end)

    @property
    def size(self):
        return self.end - self.weights

    def address(self, buffer):
        return getattr(self, buffer.lower())


@dataclass(frozen=True)
class Counters:
    """Cycle counters of the last (or current) run: ``total`` and one per stage
    (:data:`model.system.registers.STAGES`). Once the run has ended, the stages of
    :data:`~model.system.registers.PARTITION` add up to ``total`` (:attr:`unaccounted` is 0)."""

    total: int
    stages: dict

    @property
    def unaccounted(self):
        """Cycles of ``total`` charged to no stage: 0 for a finished run (the 32-bit stage
        counters wrap after 2**32 cycles, about 14 s at 300 MHz)."""
        return self.total - sum(self.stages[name] for name in PARTITION)


def _reg(name):
    return BY_NAME[name]


class Driver:
    """Drive the accelerator through a :class:`host.memory.Memory` backend.

    Parameters
    ----------
    memory : host.memory.Memory
    config : model.config.ModelConfig
        The configuration the bitstream was built for.
    buffers : Buffers
        Where the buffers lie (:meth:`Buffers.plan`).
    machine : model.machine.MachineConfig
        The machine's shape the bitstream was built for (it fixes the weights image's layout).
    """

    def __init__(self, memory, config, buffers, machine=ZCU102):
        self.memory, self.config, self.buffers = memory, config, buffers
        self.machine = machine
        self.beat_bytes = machine.beat_bytes
        self.layout = machine.layout(config)
        self.identity = Identity.of(config, machine)
        self._checked = False
        spans = {b: self.identity.bytes(b) for b in BUFFERS}
        placed = sorted((buffers.address(b), b) for b in BUFFERS)
        for (addr, name), (next_addr, _) in zip(placed, placed[1:]):
            if addr + spans[name] > next_addr:
                raise ValueError(f"the {name.lower()} buffer ({spans[name]} bytes at "
                                 f"{addr:#x}) overlaps the next one at {next_addr:#x}")
        top = 1 << self.identity.addr_width
        for addr, name in placed:
            if addr + spans[name] > top:
                raise ValueError(f"the {name.lower()} buffer ({spans[name]} bytes at "
                                 f"{addr:#x}) ends beyond the {self.identity.addr_width}-bit "
                                 f"addresses of the memory ports ({top:#x})")

    # Registers.

    async def _read(self, name):
        return await self.memory.read32(_reg(name).offset)

    async def _write(self, name, value):
        await self.memory.write32(_reg(name).offset, value)

    async def _pulse(self, name, field):
        reg = _reg(name)
        await self.memory.write32(reg.offset, reg.field(field).mask)

    async def status(self):
        """STATUS as a dict: ``busy``, ``done``, ``error``, ``overflow``, ``start_ignored``,
        ``bus_hung`` (bools) and ``error_code``."""
        word, f = await self._read("STATUS"), _reg("STATUS").field
        flags = {name.lower(): bool(f(name).get(word))
                 for name in ("BUSY", "DONE", "ERROR", "OVERFLOW", "START_IGNORED", "BUS_HUNG")}
        return dict(flags, error_code=ErrorCode(f("ERROR_CODE").get(word)))

    async def check_bitstream(self):
        """Check ID, VERSION, CONFIG, LAYOUT_HASH and the buffer sizes against this driver's
        configuration and machine (:class:`model.system.registers.Identity`); return what was
        read. :meth:`run` refuses to start before this check has passed.

        Raises :class:`BitstreamError` saying which figure differs and what to rebuild.
        """
        self._checked = False
        ident = await self._read("ID")
        if ident != MAGIC:
            raise BitstreamError(f"no accelerator at the register base: ID reads {ident:#010x}, "
                                 f"not {MAGIC:#010x} (wrong regs_base, or the bitstream is not "
                                 f"loaded)")
        version = await self._read("VERSION")
        major = _reg("VERSION").field("MAJOR").get(version)
        minor = _reg("VERSION").field("MINOR").get(version)
        if major != VERSION_MAJOR:
            raise BitstreamError(f"register map version {major}.{minor}; this driver speaks "
                                 f"{VERSION_MAJOR}.x: use the driver of the bitstream's release")
        word, f = await self._read("CONFIG"), _reg("CONFIG").field
        hash_lo, hash_hi = await self._read("LAYOUT_HASH_LO"), await self._read("LAYOUT_HASH_HI")
        found = dict(version=(major, minor), tasks=f("TASKS").get(word),
                     alignment=1 << f("ALIGN_LOG2").get(word), stages=f("STAGES").get(word),
                     addr_width=f("ADDR_WIDTH").get(word), layout_hash=hash_hi << 32 | hash_lo,
                     buffer_bytes={b: await self._read(f"{b}_BYTES") for b in BUFFERS})
        want, name = self.identity, self.config.name
        problems = []
        if found["tasks"] != want.tasks:
            problems.append(f"CONFIG.TASKS is {found['tasks']}, {name} has {want.tasks}")
        if found["alignment"] != want.alignment:
            problems.append(f"its memory ports are {found['alignment']} bytes wide, the "
                            f"weights image is laid out for {want.alignment}-byte beats")
        if found["stages"] != len(STAGE_NAMES):
            problems.append(f"it has {found['stages']} stage counters, this driver's register "
                            f"map {len(STAGE_NAMES)}")
        if found["addr_width"] != want.addr_width:
            problems.append(f"its memory addresses are {found['addr_width']} bits, the machine "
                            f"{self.machine.name} has {want.addr_width}")
        if found["layout_hash"] != want.layout_hash:
            problems.append(f"LAYOUT_HASH is {found['layout_hash']:#018x}, the weight image "
                            f"layout of {name} on {self.machine.name} is "
                            f"{want.layout_hash:#018x} (another model, machine shape or "
                            f"numerics)")
        for buffer in BUFFERS:
            if found["buffer_bytes"][buffer] != want.bytes(buffer):
                problems.append(f"{buffer}_BYTES is {found['buffer_bytes'][buffer]}, "
                                f"{name} needs {want.bytes(buffer)}")
        if problems:
            raise BitstreamError(f"the bitstream does not fit {name} on {self.machine.name}: "
                                 + "; ".join(problems) + f". Build one for it (python -m "
                                 f"hw.build --board BOARD --config {name} --machine "
                                 f"{self.machine.name}) or drive it with its own configuration")
        if minor < VERSION_MINOR:
            found["note"] = f"register map {major}.{minor} is older than {VERSION_MAJOR}." \
                            f"{VERSION_MINOR}"
        self._checked = True
        return found

    # The buffers.

    async def load_weights(self, image_bytes, *, verify=True):
        """Check a weights image (:func:`model.weight_image.check`, raising ``ImageError``) and
        write it to the weights buffer; with ``verify``, read it back."""
        check(image_bytes, self.config, **self.layout.shape)
        await self.memory.write(self.buffers.weights, bytes(image_bytes))
        if verify:
            back = await self.memory.read(self.buffers.weights, len(image_bytes))
            if back != bytes(image_bytes):
                first = next(i for i, (a, b) in enumerate(zip(back, image_bytes)) if a != b)
                raise RuntimeError(f"the weights buffer reads back differently from byte "
                                   f"{first} ({self.buffers.weights + first:#x}) on: is the "
                                   f"DRAM window really memory?")

    async def write_addresses(self):
        for buffer in BUFFERS:
            addr, low = self.buffers.address(buffer), _reg(f"{buffer}_ADDR_LO").field("VALUE")
            await self._write(f"{buffer}_ADDR_LO", addr & low.mask)
            await self._write(f"{buffer}_ADDR_HI", addr >> low.width)

    def _image_buffer(self, images):
        """The image buffer's bytes for ``images``: one image (pixel codes ``[C][H][W]``, or
        its bytes from :func:`model.weight_image.input_bytes`), or a list of as many as the
        machine takes per run (:attr:`model.machine.MachineConfig.batch`)."""
        batch = self.machine.batch
        if isinstance(images, (list, tuple)):
            if len(images) != batch:
                raise ValueError(f"this bitstream takes {batch} image{'s' * (batch > 1)} per "
                                 f"run, not {len(images)}")
        elif batch == 1:
            images = [images]
        else:
            raise ValueError(f"this bitstream takes a list of {batch} images per run")
        want = input_layout(self.config, self.beat_bytes).length
        data = []
        for n, image in enumerate(images):
            if isinstance(image, (bytes, bytearray, memoryview)):
                if len(image) != want:
                    which = f" for each image, not {len(image)} for image {n}" if batch > 1 \
                        else f", not {len(image)}"
                    raise ValueError(f"the image buffer of {self.config.name} is {want} bytes"
                                     f"{which}")
                data.append(bytes(image))
            else:
                data.append(input_bytes(image, self.config, self.beat_bytes))
        return b"".join(data)

    async def run(self, images, task):
        """Start a run: write the image (pixel codes ``[C][H][W]``, or the image buffer's bytes
        from :func:`model.weight_image.input_bytes`; a list of them for a machine that takes a
        batch), the buffer addresses and TASK, then START; return once the machine took it.

        STATUS left from the last run (DONE, or an error :meth:`wait` reported) is cleared
        with :meth:`reset` first, so that STATUS then speaks of this START alone.

        Raises :class:`BitstreamError` if :meth:`check_bitstream` has not passed,
        :class:`MachineBusy` when a run is in progress (before touching memory, or when the
        machine ignored the START because another master started one first),
        :class:`AcceleratorError` when the machine refused the START (its error code) and
        :class:`WaitTimeout` if the machine does not answer the START at all.
        """
        if not self._checked:
            raise BitstreamError("check_bitstream() must pass before run(): it makes sure the "
                                 "bitstream was built for this configuration and its buffers")
        if not (isinstance(task, (int, np.integer))
                and 0 <= task < 1 << _reg("TASK").field("TASK").width):
            raise ValueError(f"task must be a non-negative integer, not {task!r}")
        data = self._image_buffer(images)
        status = await self.status()
        if status["busy"]:
            raise MachineBusy("a run is in progress: wait() for it, or reset() to end it")
        if status["done"] or status["error"]:
            await self.reset()
        await self.memory.write(self.buffers.image, data)
        await self.write_addresses()
        await self._write("TASK", int(task))
        await self._write("IRQ_STATUS", _reg("IRQ_STATUS").mask)     # W1C: stale causes
        await self._pulse("CONTROL", "START")
        for poll in range(_START_POLLS):
            if poll:
                await self.memory.sleep(_START_POLL_SECONDS)
            status = await self.status()
            if status["start_ignored"]:
                raise MachineBusy("the machine ignored START: another master started a run "
                                  "first; wait() for it, or reset() to end it")
            if status["error"]:
                raise AcceleratorError(status["error_code"], f"task {task}" if
                                       status["error_code"] is ErrorCode.BAD_TASK else "")
            if status["busy"] or status["done"]:
                return
        raise WaitTimeout(f"the machine neither started nor refused the run after "
                          f"{_START_POLLS} reads of STATUS (STATUS {status})")

    async def wait(self, timeout=10.0, *, interrupt=None, poll_interval=1e-3):
        """Wait for the run to end; return its :class:`Counters`.

        Polls STATUS (sleeping ``poll_interval`` between polls through the backend), or, with
        ``interrupt`` (a coroutine function ``interrupt(seconds)`` that returns when the
        interrupt line rises or ``seconds`` have passed, ``None`` meaning no limit: e.g. a
        ``select`` on ``/dev/uioN``, or cocotb's ``RisingEdge(dut.irq)``), enables the DONE and
        ERROR interrupts and awaits it between reads of STATUS; IRQ_STATUS is cleared on
        return. ``timeout`` is in wall-clock seconds (``None``: forever).

        Raises :class:`AcceleratorError` if the machine reports an error; at the deadline, ends
        the run with :meth:`reset` and raises :class:`WaitTimeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        irq = _reg("IRQ_ENABLE")
        if interrupt is not None:
            await self._write("IRQ_ENABLE", irq.field("DONE").mask | irq.field("ERROR").mask)
        try:
            while True:
                status = await self.status()
                if status["error"]:
                    raise AcceleratorError(status["error_code"])
                if status["done"] and not status["busy"]:
                    return await self.counters()
                if deadline is not None and time.monotonic() > deadline:
                    await self.reset()
                    raise WaitTimeout(f"the run had not finished after {timeout} s (STATUS busy="
                                      f"{int(status['busy'])}, done={int(status['done'])}) and "
                                      f"was ended with reset(); set_watchdog() makes the "
                                      f"machine end a stuck run by itself")
                if interrupt is not None:
                    await interrupt(None if deadline is None
                                    else max(0.0, deadline - time.monotonic()))
                else:
                    await self.memory.sleep(poll_interval)
        finally:
            if interrupt is not None:
                await self._write("IRQ_STATUS", _reg("IRQ_STATUS").mask)

    async def read_output(self):
        """The output buffer as integers ``[tokens][dim]`` (``numpy`` int64, ``DEFAULT.act``);
        for a machine that takes a batch, a list of them, one per image."""
        length = output_layout(self.config, self.beat_bytes).length
        data = await self.memory.read(self.buffers.output, self.identity.bytes("OUTPUT"))
        outputs = [unpack_output(data[n * length:(n + 1) * length], self.config,
                                 self.beat_bytes) for n in range(self.machine.batch)]
        return outputs if self.machine.batch > 1 else outputs[0]

    async def infer(self, images, task, *, timeout=10.0, interrupt=None):
        """:meth:`run`, :meth:`wait` and :meth:`read_output` in one."""
        await self.run(images, task)
        await self.wait(timeout, interrupt=interrupt)
        return await self.read_output()

    async def counters(self):
        """The cycle counters: CYCLES_TOTAL_LO is read first, which latches _HI."""
        lo = await self._read("CYCLES_TOTAL_LO")
        hi = await self._read("CYCLES_TOTAL_HI")
        stages = {name: await self._read(f"CYCLES_{name}") for name in STAGE_NAMES}
        return Counters(hi << _reg("CYCLES_TOTAL_LO").field("VALUE").width | lo, stages)

    async def set_watchdog(self, cycles):
        """Make the machine end a run busy for more than ``cycles`` with TIMEOUT (0: never)."""
        await self._write("WATCHDOG", cycles)

    async def reset(self, timeout=10.0, poll_interval=1e-3):
        """SOFT_RESET: abort the machine and clear STATUS and IRQ_STATUS; return once STATUS.BUSY
        is low (the machine finishes the memory transfers it had started first).

        Raises :class:`AcceleratorError` (BUS_HUNG) if the memory did not finish them and the
        machine gave up: the PL needs a reset.
        """
        await self._pulse("CONTROL", "SOFT_RESET")
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := await self.status())["busy"]:
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"the machine is still busy {timeout} s after SOFT_RESET")
            await self.memory.sleep(poll_interval)
        if status["bus_hung"]:
            raise AcceleratorError(ErrorCode.BUS_HUNG, "after SOFT_RESET")


class SyncDriver:
    """:class:`Driver` with plain methods, for scripts on a board: each call runs the
    coroutine with ``asyncio.run``."""

    def __init__(self, driver):
        self.driver = driver

    @classmethod
    def devmem(cls, config, machine=ZCU102, *, regs_base, dram_base, dram_size,
               path="/dev/mem"):
        """A driver on ``/dev/mem`` whose buffers start at ``dram_base``."""
        from .memory import DevMem
        buffers = Buffers.plan(dram_base, config, machine)
        if buffers.end > dram_base + dram_size:
            raise ValueError(f"the buffers of {config.name} need {buffers.end - dram_base} "
                             f"bytes from {dram_base:#x}; the DRAM window has {dram_size}")
        memory = DevMem(regs_base=regs_base, dram_base=dram_base, dram_size=dram_size,
                        path=path)
        return cls(Driver(memory, config, buffers, machine))

    def __getattr__(self, name):
        attr = getattr(self.driver, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args, **kwargs):
            return asyncio.run(attr(*args, **kwargs))
        call.__doc__ = attr.__doc__
        return call
