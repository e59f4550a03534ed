"""The accelerator's register map, described once: the RTL (:mod:`hw.system.registers`), the host
driver
and ``docs/registers.md`` all read it from here. :class:`RegisterFile` is the behavioural twin of
:class:`hw.system.registers.RegisterBlock`.

Print the documentation with ``python -m model.system.registers --markdown`` (it is committed as
``docs/registers.md``; a test keeps the two equal).
"""

import argparse
import enum
import sys
from dataclasses import dataclass

__all__ = [
    "MAGIC", "VERSION_MAJOR", "VERSION_MINOR", "WORD_BYTES", "ERROR_CODE_WIDTH",
    "Access", "ErrorCode", "ERROR_DESCRIPTIONS", "START_CHECKS", "STAGES", "STAGE_NAMES",
    "PARTITION", "BUFFERS",
    "Field", "Register", "REGISTERS", "BY_NAME", "BY_OFFSET", "MAP_BYTES",
    "check_map", "version_word", "Identity", "RegisterFile", "markdown",
]

#: Reads of ID; a host that does not find it is not talking to this accelerator.
MAGIC = 0xED6E_40E0
#: Version of this register map: the major changes when a register moves or changes meaning,
#: the minor when one is added.
VERSION_MAJOR, VERSION_MINOR = 2, 1
WORD_BYTES = 4
ERROR_CODE_WIDTH = 5


class Access(enum.Enum):
    """How a register responds to the host."""

    RW = "RW"
    RO = "RO"
    W1C = "W1C"
    WO = "WO"

    @property
    def meaning(self):
        return {
            Access.RW: "read/write; bytes whose write strobe is low keep their value",
            Access.RO: "read-only; writes are ignored (OKAY response)",
            Access.W1C: "write 1 to clear; a 0, or a bit in a byte whose strobe is low, keeps the "
                        "bit; events that set a bit win over a clear in the same cycle",
            Access.WO: "write-pulse: writing 1 to a bit (its byte strobed) acts once; "
                       "reads return 0",
        }[self]


class ErrorCode(enum.IntEnum):
    """Value of ``STATUS.ERROR_CODE``: the cause of the first error since the last good START
    (or SOFT_RESET)."""

    NONE = 0
    UNALIGNED_ADDRESS = 1
    ZERO_ADDRESS = 2
    BAD_TASK = 3
    ADDRESS_TOO_HIGH = 4
    BUFFER_PAST_END = 5
    AXI_READ_ERROR = 6
    AXI_WRITE_ERROR = 7
    TIMEOUT = 8
    BUS_HUNG = 9
    DMA_COMMAND = 10
    COMPUTE_REJECTED = 11
    EMBED_REJECTED = 12
    ATTENTION_REJECTED = 13
    MLP_REJECTED = 14
    MOE_REJECTED = 15
    SHIFT_TABLE = 16


#: The start checks, in the order START runs them.
START_CHECKS = (ErrorCode.ZERO_ADDRESS, ErrorCode.ADDRESS_TOO_HIGH, ErrorCode.BUFFER_PAST_END,
                ErrorCode.UNALIGNED_ADDRESS, ErrorCode.BAD_TASK)

_REJECTED = ("rejected a command: its configuration differs from the sequencer's (a bitstream "
             "built from mismatched sources); the run was ended")
ERROR_DESCRIPTIONS = {
    ErrorCode.NONE: "no error since the last good START or SOFT_RESET",
    ErrorCode.UNALIGNED_ADDRESS: "START refused: a buffer address is not a multiple of the "
                                 "alignment (CONFIG.ALIGN_LOG2)",
    ErrorCode.ZERO_ADDRESS: "START refused: a buffer address is zero (never written)",
    ErrorCode.BAD_TASK: "START refused: TASK is not below CONFIG.TASKS",
    ErrorCode.ADDRESS_TOO_HIGH: "START refused: a buffer address is at or beyond "
                                "`2**CONFIG.ADDR_WIDTH`, which the memory ports cannot reach",
    ErrorCode.BUFFER_PAST_END: "START refused: a buffer's end (its address plus its "
                               "`<BUFFER>_BYTES`) is beyond `2**CONFIG.ADDR_WIDTH`",
    ErrorCode.AXI_READ_ERROR: "the machine got SLVERR/DECERR reading memory; the run was ended",
    ErrorCode.AXI_WRITE_ERROR: "the machine got SLVERR/DECERR writing memory; the run was ended",
    ErrorCode.TIMEOUT: "watchdog: the run stayed busy for more than WATCHDOG cycles; it was "
                       "ended",
    ErrorCode.BUS_HUNG: "ending a run, the memory did not finish the transfers the machine had "
                        "started within the drain limit; the machine gave up on them and is "
                        "idle, but the memory interconnect may still hold them (reset the PL "
                        "before the next run)",
    ErrorCode.DMA_COMMAND: "a DMA engine dropped a command of the sequencer (zero beats or an "
                           "unaligned address): a sequencer fault; the run was ended",
    ErrorCode.COMPUTE_REJECTED: f"the compute unit {_REJECTED}",
    ErrorCode.EMBED_REJECTED: f"the patch embedding {_REJECTED}",
    ErrorCode.ATTENTION_REJECTED: f"the attention half {_REJECTED}",
    ErrorCode.MLP_REJECTED: f"the MLP half {_REJECTED}",
    ErrorCode.MOE_REJECTED: f"the MoE half (gate, expert queues or expert engine) {_REJECTED}",
    ErrorCode.SHIFT_TABLE: "the weights image's shift table holds a shift the compute unit "
                           "cannot take (0, or not below its accumulator width): a weights "
                           "image not made by model.weight_image.pack; the run was ended",
}

#: Per-stage cycle counters, in register order: name and what the machine charges to it.
#: EMBED to HEAD partition the run: every cycle that CYCLES_TOTAL counts is charged to exactly
#: one of them, the stage the machine waits for (the oldest stage of the program not yet
#: finished), so they add up to CYCLES_TOTAL. OVERLAP counts along: the cycles in which two or
#: more units run at once.
STAGES = {
    "EMBED": "from START until the patch embedding has finished (shift table, image read, "
             "embedding)",
    "ATTENTION": "an attention half (LayerNorm 1, QKV, attention, projection) is the oldest "
                 "unfinished stage",
    "MLP": "a dense MLP half (LayerNorm 2, fc1, GELU, fc2) is the oldest unfinished stage",
    "GATE": "an MoE half is the oldest unfinished stage and has not routed every token yet "
            "(LayerNorm 2, gate logits, softmax, top-k)",
    "MOE": "an MoE half is the oldest unfinished stage and has routed every token (the "
           "experts, the rows out)",
    "HEAD": "every block has finished: the output write, until DONE",
    "OVERLAP": "two or more units run at once (counted besides the partition above)",
}
STAGE_NAMES = tuple(STAGES)
#: The stages that partition the run: their counters add up to CYCLES_TOTAL.
PARTITION = STAGE_NAMES[:STAGE_NAMES.index("OVERLAP")]

#: The buffers whose 64-bit addresses the host writes, each as ``<NAME>_ADDR_LO``/``_HI``, and
#: whose sizes the machine states in ``<NAME>_BYTES``.
BUFFERS = ("IMAGE", "WEIGHTS", "OUTPUT")


@dataclass(frozen=True)
class Field:
    """Bits ``lsb .. lsb + width - 1`` of a register.

    ``values`` is an ``IntEnum`` naming the field's values, if it has names.
    """

    name: str
    lsb: int
    width: int
    description: str
    values: type = None

    @property
    def msb(self):
        return self.lsb + self.width - 1

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb

    def get(self, word):
        return (word >> self.lsb) & ((1 << self.width) - 1)

    def put(self, value):
        if not 0 <= value < 1 << self.width:
            raise ValueError(f"Field {self.name} holds {self.width} bits, not {value!r}")
        return value << self.lsb

    @property
    def bits(self):
        return f"{self.lsb}" if self.width == 1 else f"{self.msb}:{self.lsb}"


@dataclass(frozen=True)
class Register:
    """A 32-bit register at a byte offset. ``reset`` is ``None`` for a constant set by build
    parameters (CONFIG)."""

    name: str
    offset: int
    access: Access
    description: str
    fields: tuple
    reset: int = 0

    @property
    def mask(self):
        mask = 0
        for f in self.fields:
            mask |= f.mask
        return mask

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"Register {self.name} has no field {name!r}")


def _word(name, offset, access, description, reset=0):
    """A register that is one 32-bit value."""
    return Register(name, offset, access, description,
                    (Field("VALUE", 0, 32, description),), reset)


def _registers():
    rw, ro = Access.RW, Access.RO
    regs = [
        Register("ID", 0x00, ro, "identifies the accelerator",
                 (Field("MAGIC", 0, 32, f"always {MAGIC:#010x}"),), MAGIC),
        Register("VERSION", 0x04, ro, "version of this register map",
                 (Field("MINOR", 0, 16, "registers added"),
                  Field("MAJOR", 16, 16, "registers moved or changed meaning")),
                 (VERSION_MAJOR << 16) | VERSION_MINOR),
        Register("CONFIG", 0x08, ro, "build parameters, so that a host can check the bitstream",
                 (Field("TASKS", 0, 8, "number of tasks; TASK must be below it"),
                  Field("ALIGN_LOG2", 8, 4, "buffer addresses must be multiples of "
                                            "`2**ALIGN_LOG2` bytes (the memory ports' width)"),
                  Field("STAGES", 12, 4, "number of per-stage cycle counters"),
                  Field("ADDR_WIDTH", 16, 7, "bits of the memory ports' addresses: every "
                                             "buffer must lie below `2**ADDR_WIDTH`")),
                 None),
        Register("CONTROL", 0x10, Access.WO, "starts or aborts a run",
                 (Field("START", 0, 1, "start a run with TASK and the buffer addresses, if "
                                       "the start checks pass; else set an error"),
                  Field("SOFT_RESET", 1, 1, "abort the machine and clear STATUS and "
                                            "IRQ_STATUS; wins over START in the same write"))),
        Register("STATUS", 0x14, ro, "state of the machine and of the last run",
                 (Field("BUSY", 0, 1, "a run is in progress"),
                  Field("DONE", 1, 1, "the last run finished; cleared by a good START"),
                  Field("ERROR", 2, 1, "an error happened since the last good START; "
                                       "ERROR_CODE says which"),
                  Field("OVERFLOW", 3, 1, "more errors happened after the first; "
                                          "ERROR_CODE keeps the first"),
                  Field("START_IGNORED", 4, 1, "a START came while the machine was busy and "
                                               "was ignored; the run goes on untouched"),
                  Field("BUS_HUNG", 5, 1, "the machine gave up on transfers the memory did "
                                          "not finish (a BUS_HUNG error, first or not): "
                                          "reset the PL before the next START"),
                  Field("ERROR_CODE", 8, ERROR_CODE_WIDTH, "cause of the first error since "
                                                           "the last good START", ErrorCode))),
        Register("IRQ_ENABLE", 0x18, rw, "which IRQ_STATUS bits raise the interrupt",
                 (Field("DONE", 0, 1, "interrupt at the end of a run"),
                  Field("ERROR", 1, 1, "interrupt on an error"))),
        Register("IRQ_STATUS", 0x1C, Access.W1C, "pending interrupt causes; the interrupt "
                                                 "line is high while IRQ_STATUS & IRQ_ENABLE "
                                                 "is nonzero",
                 (Field("DONE", 0, 1, "a run finished"),
                  Field("ERROR", 1, 1, "STATUS.ERROR was set"))),
        Register("TASK", 0x20, rw, "task of the next run (selects the MoE gates)",
                 (Field("TASK", 0, 32, "task index, below CONFIG.TASKS"),)),
        _word("WATCHDOG", 0x24, rw, "a run busy for more than this many cycles is ended with "
                                    "a TIMEOUT error; 0 disables"),
    ]
    for index, buffer in enumerate(BUFFERS):
        offset = 0x30 + 8 * index
        what = buffer.lower()
        regs += [_word(f"{buffer}_ADDR_LO", offset, rw, f"{what} buffer address, bits 31:0"),
                 _word(f"{buffer}_ADDR_HI", offset + 4, rw, f"{what} buffer address, bits 63:32")]
    regs += [_word("CYCLES_TOTAL_LO", 0x50, ro, "cycles of the last (or current) run, bits "
                                                "31:0; reading it latches CYCLES_TOTAL_HI"),
             _word("CYCLES_TOTAL_HI", 0x54, ro, "bits 63:32 of the cycle count, as latched "
                                                "by the last read of CYCLES_TOTAL_LO")]
    for index, (stage, what) in enumerate(STAGES.items()):
        regs.append(_word(f"CYCLES_{stage}", 0x60 + 4 * index, ro,
                          f"cycles of stage {stage}: {what}"))
    regs += [Register("LAYOUT_HASH_LO", 0x80, ro, "bits 31:0 of the weight image layout's "
                                                  "hash, as in the image's header",
                      (Field("VALUE", 0, 32, "`model.weight_image.config_hash`, bits 31:0"),),
                      None),
             Register("LAYOUT_HASH_HI", 0x84, ro, "bits 63:32 of the weight image layout's "
                                                  "hash",
                      (Field("VALUE", 0, 32, "`model.weight_image.config_hash`, bits 63:32"),),
                      None)]
    for index, buffer in enumerate(BUFFERS):
        what = buffer.lower()
        regs.append(Register(f"{buffer}_BYTES", 0x88 + 4 * index, ro,
                             f"bytes of the {what} buffer the machine reads or writes, from "
                             f"{buffer}_ADDR on", (Field("VALUE", 0, 32, "bytes"),), None))
    return tuple(regs)


REGISTERS = _registers()
BY_NAME = {r.name: r for r in REGISTERS}
BY_OFFSET = {r.offset: r for r in REGISTERS}
#: Bytes the map spans, a power of two: the smallest AXI4-Lite address space that holds it.
MAP_BYTES = 1 << (max(r.offset for r in REGISTERS) + WORD_BYTES - 1).bit_length()


def check_map(registers=REGISTERS, error_codes=ErrorCode):
    """Raise ``ValueError`` unless the map is consistent: unique names, word-aligned distinct
    offsets, fields within 32 bits and not overlapping, reset values within the fields, and
    distinct error codes that fit STATUS.ERROR_CODE."""
    names, offsets = set(), set()
    for reg in registers:
        if reg.name in names:
            raise ValueError(f"Two registers are named {reg.name}")
        names.add(reg.name)
        if reg.offset % WORD_BYTES or reg.offset < 0:
            raise ValueError(f"Register {reg.name} offset {reg.offset:#x} is not word-aligned")
        if reg.offset in offsets:
            raise ValueError(f"Register {reg.name} offset {reg.offset:#x} is used twice")
        offsets.add(reg.offset)
        if not reg.fields:
            raise ValueError(f"Register {reg.name} has no fields")
        used, field_names = 0, set()
        for f in reg.fields:
            if f.name in field_names:
                raise ValueError(f"Register {reg.name} has two fields named {f.name}")
            field_names.add(f.name)
            if f.width < 1 or f.lsb < 0 or f.msb > 31:
                raise ValueError(f"Field {reg.name}.{f.name} [{f.bits}] is not within 32 bits")
            if used & f.mask:
                raise ValueError(f"Field {reg.name}.{f.name} overlaps another field")
            used |= f.mask
            if f.values is not None:
                for value in f.values:
                    if value >= 1 << f.width:
                        raise ValueError(f"{value!r} does not fit {reg.name}.{f.name}")
        if reg.reset is not None and reg.reset & ~reg.mask:
            raise ValueError(f"Register {reg.name} reset {reg.reset:#x} sets reserved bits")
    # An IntEnum makes a repeated value an alias, which only __members__ shows.
    values = [int(code) for code in error_codes.__members__.values()]
    if len(set(values)) != len(values):
        raise ValueError(f"Error codes are not distinct: {sorted(values)}")
    if int(error_codes.NONE) != 0:
        raise ValueError("ErrorCode.NONE must be 0")


check_map()


def version_word():
    return BY_NAME["VERSION"].field("MAJOR").put(VERSION_MAJOR) | VERSION_MINOR


@dataclass(frozen=True)
class Identity:
    """What a bitstream tells the host about itself: the build parameters behind CONFIG, the
    weight image layout's hash (LAYOUT_HASH) and the bytes of each buffer (``<BUFFER>_BYTES``).
    The register block is built from one, and the host compares what it reads with the one it
    expects (:meth:`of`).

    Parameters
    ----------
    tasks : int
        Number of valid tasks, 1..255.
    alignment : int
        Buffer addresses must be multiples of this many bytes: a power of two (the memory
        ports' beat).
    addr_width : int
        Bits of a memory address, 1..64: every buffer must lie below ``2**addr_width``.
    buffer_bytes : dict
        Bytes the machine touches in each buffer of :data:`BUFFERS`, from its address on.
    layout_hash : int
        The weight image layout's 64-bit hash (:func:`model.weight_image.config_hash`).

    Raises
    ------
    ValueError
        If a parameter does not fit its register; the message names it.
    """

    tasks: int
    alignment: int
    addr_width: int = 40
    buffer_bytes: tuple = ()
    layout_hash: int = 0

    def __post_init__(self):
        config = BY_NAME["CONFIG"]
        if not (isinstance(self.tasks, int) and 0 < self.tasks < 1 << config.field("TASKS").width):
            raise ValueError(f"tasks must be an integer in 1..255, not {self.tasks!r}")
        alignment = self.alignment
        if not (isinstance(alignment, int) and alignment > 0 and alignment & (alignment - 1) == 0
                and alignment.bit_length() - 1 < 1 << config.field("ALIGN_LOG2").width):
            raise ValueError(f"alignment must be a power of two in 1..32768 bytes, "
                             f"not {alignment!r}")
        if not (isinstance(self.addr_width, int) and 1 <= self.addr_width <= 64):
            raise ValueError(f"addr_width must be an integer in 1..64, not {self.addr_width!r}")
        sizes = dict(self.buffer_bytes)
        object.__setattr__(self, "buffer_bytes", tuple(sizes.items()))
        if sorted(sizes) != sorted(BUFFERS):
            raise ValueError(f"buffer_bytes must give the bytes of each of {', '.join(BUFFERS)}, "
                             f"not of {', '.join(sizes) or 'none'}")
        for buffer, size in sizes.items():
            if not (isinstance(size, int) and 0 < size < min(1 << 32, 1 << self.addr_width)):
                raise ValueError(f"the {buffer.lower()} buffer's bytes must be an integer in "
                                 f"1..{min(1 << 32, 1 << self.addr_width) - 1}, not {size!r}")
        if not (isinstance(self.layout_hash, int) and 0 <= self.layout_hash < 1 << 64):
            raise ValueError(f"layout_hash must be a 64-bit unsigned integer, "
                             f"not {self.layout_hash!r}")

    @classmethod
    def of(cls, config, machine):
        """The identity of the accelerator for ``config`` (a :class:`model.config.ModelConfig`)
        on ``machine`` (a :class:`model.machine.MachineConfig`): a machine that takes a batch
        reads its images from one buffer and writes their outputs to another, one after the
        other."""
        from model.weight_image import input_layout, output_layout
        layout, beat, images = machine.layout(config), machine.beat_bytes, machine.batch
        return cls(tasks=config.tasks, alignment=beat, addr_width=machine.addr_width,
                   buffer_bytes={"IMAGE": images * input_layout(config, beat).length,
                                 "WEIGHTS": layout.total_bytes,
                                 "OUTPUT": images * output_layout(config, beat).length},
                   layout_hash=layout.hash)

    def bytes(self, buffer):
        """Bytes the machine touches in ``buffer`` (one of :data:`BUFFERS`)."""
        return dict(self.buffer_bytes)[buffer]

    @property
    def config_word(self):
        """The value of CONFIG."""
        f = BY_NAME["CONFIG"].field
        return (f("TASKS").put(self.tasks) | f("ALIGN_LOG2").put(self.alignment.bit_length() - 1)
                | f("STAGES").put(len(STAGES)) | f("ADDR_WIDTH").put(self.addr_width))

    def constants(self):
        """The value of every build-time RO register: CONFIG, LAYOUT_HASH_LO/HI and the
        ``<BUFFER>_BYTES``."""
        return {"ID": MAGIC, "VERSION": version_word(), "CONFIG": self.config_word,
                "LAYOUT_HASH_LO": self.layout_hash & 0xFFFF_FFFF,
                "LAYOUT_HASH_HI": self.layout_hash >> 32,
                **{f"{buffer}_BYTES": self.bytes(buffer) for buffer in BUFFERS}}

    def start_check(self, addresses, task):
        """The error a START with these buffer ``addresses`` (a dict by buffer) and ``task``
        raises, in the order of :data:`START_CHECKS`; ``ErrorCode.NONE`` if it passes."""
        limit = 1 << self.addr_width
        failed = {
            ErrorCode.ZERO_ADDRESS: any(a == 0 for a in addresses.values()),
            ErrorCode.ADDRESS_TOO_HIGH: any(a >= limit for a in addresses.values()),
            ErrorCode.BUFFER_PAST_END: any(a + self.bytes(b) > limit
                                           for b, a in addresses.items()),
            ErrorCode.UNALIGNED_ADDRESS: any(a % self.alignment for a in addresses.values()),
            ErrorCode.BAD_TASK: task >= self.tasks,
        }
        return next((code for code in START_CHECKS if failed[code]), ErrorCode.NONE)


def _byte_mask(strobe):
    return sum(0xFF << (8 * i) for i in range(WORD_BYTES) if strobe >> i & 1)


class RegisterFile:
    """Behavioural twin of :class:`hw.system.registers.RegisterBlock`, one host access at a time.

    The host side is :meth:`read` and :meth:`write`; the machine side is the attributes
    ``busy``, ``cycles_total`` and ``stage_cycles`` (inputs, set freely), :meth:`pulse_done`,
    :meth:`pulse_fault` and :meth:`tick` (cycles passing, for the watchdog), and the outputs
    ``task``, ``addresses``, ``irq``, and the counts of pulses so far ``starts``,
    ``soft_resets`` and ``timeouts`` (the watchdog ending a run).

    Parameters
    ----------
    identity : Identity
        The build's parameters.
    """

    def __init__(self, identity):
        if not isinstance(identity, Identity):
            raise TypeError(f"RegisterFile takes an Identity, not {identity!r}")
        self.identity = identity
        self.busy = False
        self.cycles_total = 0
        self.stage_cycles = dict.fromkeys(STAGE_NAMES, 0)
        self.starts = self.soft_resets = self.timeouts = 0
        self._rw = {r.name: r.reset for r in REGISTERS if r.access is Access.RW}
        self._clear_status()
        self.irq_status = 0
        self._cycles_hi = 0

    def _clear_status(self):
        self.done = self.error = self.overflow = self.start_ignored = self.bus_hung = False
        self.error_code = ErrorCode.NONE
        self._watchdog_count, self._watchdog_fired = 0, False

    # Outputs towards the machine.

    @property
    def task(self):
        return self._rw["TASK"]

    def address(self, buffer):
        return self._rw[f"{buffer}_ADDR_LO"] | self._rw[f"{buffer}_ADDR_HI"] << 32

    @property
    def addresses(self):
        return {buffer: self.address(buffer) for buffer in BUFFERS}

    @property
    def irq(self):
        return bool(self.irq_status & self._rw["IRQ_ENABLE"])

    # Events from the machine.

    def _set_error(self, code):
        if self.error:
            self.overflow = True
        else:
            self.error, self.error_code = True, ErrorCode(code)
        self.irq_status |= BY_NAME["IRQ_STATUS"].field("ERROR").mask

    def pulse_done(self):
        """The machine finished a run."""
        self.done = True
        self.irq_status |= BY_NAME["IRQ_STATUS"].field("DONE").mask

    def pulse_fault(self, code):
        """The machine reports an error."""
        self._set_error(code)
        if code == ErrorCode.BUS_HUNG:
            self.bus_hung = True

    def tick(self, cycles=1):
        """``cycles`` clock cycles pass with ``busy`` as it is."""
        if not self.busy or self._watchdog_fired:
            return
        self._watchdog_count += cycles
        limit = self._rw["WATCHDOG"]
        if limit and self._watchdog_count > limit:
            self._watchdog_fired = True
            self.timeouts += 1
            self._set_error(ErrorCode.TIMEOUT)

    # The host.

    def start_check(self):
        """The error a START would raise now (:meth:`Identity.start_check`), or
        ``ErrorCode.NONE``; a START while busy is ignored, not checked."""
        return self.identity.start_check(self.addresses, self.task)

    def read(self, offset):
        """The word at byte ``offset`` (its low two bits ignored); 0 if nothing is mapped."""
        reg = BY_OFFSET.get(offset & ~(WORD_BYTES - 1))
        if reg is None or reg.access is Access.WO:
            return 0
        if reg.access is Access.RW:
            return self._rw[reg.name]
        if reg.access is Access.W1C:
            return self.irq_status
        name = reg.name
        constants = self.identity.constants()
        if name in constants:
            return constants[name]
        if name == "STATUS":
            f = reg.field
            return (f("BUSY").put(int(self.busy)) | f("DONE").put(int(self.done))
                    | f("ERROR").put(int(self.error)) | f("OVERFLOW").put(int(self.overflow))
                    | f("START_IGNORED").put(int(self.start_ignored))
                    | f("BUS_HUNG").put(int(self.bus_hung))
                    | f("ERROR_CODE").put(int(self.error_code)))
        if name == "CYCLES_TOTAL_LO":
            self._cycles_hi = self.cycles_total >> 32 & 0xFFFF_FFFF
            return self.cycles_total & 0xFFFF_FFFF
        if name == "CYCLES_TOTAL_HI":
            return self._cycles_hi
        return self.stage_cycles[name.removeprefix("CYCLES_")] & 0xFFFF_FFFF

    def write(self, offset, value, strobe=0b1111):
        """Write ``value`` at byte ``offset`` (its low two bits ignored), only the bytes whose
        bit in ``strobe`` is set."""
        reg = BY_OFFSET.get(offset & ~(WORD_BYTES - 1))
        if reg is None:
            return
        bits = value & _byte_mask(strobe) & reg.mask
        if reg.access is Access.RW:
            keep = ~_byte_mask(strobe) & reg.mask
            self._rw[reg.name] = (self._rw[reg.name] & keep) | bits
        elif reg.access is Access.W1C:
            self.irq_status &= ~bits
        elif reg.access is Access.WO:
            if bits & reg.field("SOFT_RESET").mask:
                self.soft_resets += 1
                self._clear_status()
                self.irq_status = 0
            elif bits & reg.field("START").mask:
                if self.busy:
                    self.start_ignored = True
                    return
                code = self.start_check()
                if code:
                    self._set_error(code)
                else:
                    self.starts += 1
                    self._clear_status()


_SEMANTICS = """\
## Behaviour

- 32-bit registers on an AXI4-Lite slave ({map_bytes} bytes of address space used); the low
  two address bits are ignored, byte strobes are honoured.
- Unmapped offsets read as 0 and ignore writes, with an OKAY response, as do writes to RO
  registers: a stray access from a host driver must not become a bus error (on the Zynq
  UltraScale+ an error response to a CPU access is an asynchronous abort).
- START, while the machine is busy, is ignored: the run goes on untouched, and only
  STATUS.START_IGNORED says that it came. Otherwise START runs these checks in this order
  and, at the first that fails, reports its error (below) and does nothing else (no run
  starts, DONE is kept): a buffer address zero (ZERO_ADDRESS), at or beyond
  `2**CONFIG.ADDR_WIDTH` (ADDRESS_TOO_HIGH), a buffer whose end, its address plus
  `<BUFFER>_BYTES`, is beyond `2**CONFIG.ADDR_WIDTH` (BUFFER_PAST_END), a buffer address not a
  multiple of `2**CONFIG.ALIGN_LOG2` (UNALIGNED_ADDRESS), TASK not below CONFIG.TASKS
  (BAD_TASK). A START that passes clears STATUS (but BUSY) and the watchdog, and starts the
  run; IRQ_STATUS is left to the host. The machine reads only the `<BUFFER>_BYTES` bytes of
  the image and weights buffers from their addresses on, and writes only those of the output
  buffer.
- Errors: the first since the last good START (or SOFT_RESET) sets STATUS.ERROR and
  STATUS.ERROR_CODE; a later one sets STATUS.OVERFLOW and leaves the code; each sets
  IRQ_STATUS.ERROR. An error of the machine (an AXI error response, a unit rejecting a
  command, the watchdog's TIMEOUT) ends the run.
- Ending a run, by an error or SOFT_RESET, the machine finishes the bus transfers it has
  started (a request on offer stays until taken; the read data of every request is taken;
  a write burst whose address was taken or whose data began is completed, with zeros) and
  starts no new one; STATUS.BUSY stays high until then. If the memory does not finish them
  within the drain limit, the machine gives up, reports BUS_HUNG and is idle: the
  interconnect may still hold those transfers, so reset the PL (or at least the memory
  interconnect) before the next START.
- SOFT_RESET ends a run as above and clears STATUS (but BUSY, which the machine drives) and
  IRQ_STATUS; TASK, the addresses, IRQ_ENABLE and WATCHDOG keep their values.
- 64-bit counters: read CYCLES_TOTAL_LO first; it latches the high half, which
  CYCLES_TOTAL_HI returns, so the pair is consistent while the counter runs.
"""


def _hex(value):
    return f"0x{value:08X}"


def markdown():
    """The register map as Markdown (``docs/registers.md``)."""
    lines = [
        "# Register map",
        "",
        "<!-- Generated by `python -m model.system.registers --markdown > docs/registers.md` from "
        "model/system/registers.py; do not edit. -->",
        "",
        f"Version {VERSION_MAJOR}.{VERSION_MINOR}; ID reads {_hex(MAGIC)}. The AXI4-Lite slave "
        "is `hw.system.registers.RegisterBlock`; its behavioural twin is "
        "`model.system.registers.RegisterFile`.",
        "",
        "Access types:",
        "",
        *(f"- **{a.value}**: {a.meaning}." for a in Access),
        "",
        _SEMANTICS.format(map_bytes=MAP_BYTES).rstrip(),
        "",
        "## Registers",
        "",
        "| offset | name | access | reset | description |",
        "|---|---|---|---|---|",
    ]
    for reg in REGISTERS:
        reset = "build" if reg.reset is None else _hex(reg.reset)
        lines.append(f"| 0x{reg.offset:03X} | [{reg.name}](#{reg.name.lower()}) | "
                     f"{reg.access.value} | {reset} | {reg.description} |")
    lines += ["", "## Fields", ""]
    for reg in REGISTERS:
        lines += [f"### {reg.name}", "",
                  f"0x{reg.offset:03X}, {reg.access.value}: {reg.description}.", "",
                  "| bits | field | reset | description |", "|---|---|---|---|"]
        for f in reg.fields:
            reset = "build" if reg.reset is None else f"{f.get(reg.reset):#x}"
            text = f.description + (" (see [error codes](#error-codes))" if f.values else "")
            lines.append(f"| {f.bits} | {f.name} | {reset} | {text} |")
        lines.append("")
    lines += ["## Error codes", "", "| code | name | meaning |", "|---|---|---|"]
    for code in ErrorCode:
        lines.append(f"| {int(code)} | {code.name} | {ERROR_DESCRIPTIONS[code]} |")
    lines += ["", "## Stages", "",
              "Per-stage counters are `CYCLES_<stage>`, fed by the machine.", "",
              "| stage | counts |", "|---|---|"]
    for stage, what in STAGES.items():
        lines.append(f"| {stage} | {what} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.system.registers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true",
                        help="print the register map as Markdown (docs/registers.md)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
    else:
        for reg in REGISTERS:
            print(f"0x{reg.offset:03X} {reg.access.value:3} {reg.name}")


if __name__ == "__main__":
    main()
