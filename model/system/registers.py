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
    "Access", "ErrorCode", "ERROR_DESCRIPTIONS", "STAGES", "STAGE_NAMES", "BUFFERS",
    "Field", "Register", "REGISTERS", "BY_NAME", "BY_OFFSET", "MAP_BYTES",
    "check_map", "version_word", "config_word", "RegisterFile", "markdown",
]

#: Reads of ID; a host that does not find it is not talking to this accelerator.
MAGIC = 0xED6E_40E0
#: Version of this register map: the major changes when a register moves or changes meaning,
#: the minor when one is added.
VERSION_MAJOR, VERSION_MINOR = 1, 0
WORD_BYTES = 4
ERROR_CODE_WIDTH = 4


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
    """Value of ``STATUS.ERROR_CODE``: the cause of the most recent error."""

    NONE = 0
    START_WHILE_BUSY = 1
    UNALIGNED_ADDRESS = 2
    ZERO_ADDRESS = 3
    BAD_TASK = 4
    AXI_READ_ERROR = 5
    AXI_WRITE_ERROR = 6
    TIMEOUT = 7
    INTERNAL = 8


ERROR_DESCRIPTIONS = {
    ErrorCode.NONE: "no error since the last good START or SOFT_RESET",
    ErrorCode.START_WHILE_BUSY: "START written while the machine was busy; the run goes on",
    ErrorCode.UNALIGNED_ADDRESS: "START refused: a buffer address is not a multiple of the "
                                 "alignment (CONFIG.ALIGN_LOG2)",
    ErrorCode.ZERO_ADDRESS: "START refused: a buffer address is zero (never written)",
    ErrorCode.BAD_TASK: "START refused: TASK is not below CONFIG.TASKS",
    ErrorCode.AXI_READ_ERROR: "the machine got SLVERR/DECERR reading memory",
    ErrorCode.AXI_WRITE_ERROR: "the machine got SLVERR/DECERR writing memory",
    ErrorCode.TIMEOUT: "watchdog: the run stayed busy for more than WATCHDOG cycles",
    ErrorCode.INTERNAL: "a unit of the machine rejected a command (a bitstream/weights "
                        "mismatch the start checks cannot see); the run was ended",
}

#: Per-stage cycle counters, in register order: name and what the machine counts.
STAGES = {
    "EMBED": "patch embedding, including the image read",
    "ATTENTION": "LayerNorm 1, QKV, attention and projection of every block",
    "MLP": "LayerNorm 2 and the dense MLP of the dense blocks",
    "GATE": "LayerNorm 2 and the task's gate (logits, softmax, top-k) of the MoE blocks",
    "MOE": "the experts of the MoE blocks",
    "HEAD": "final LayerNorm and the output write",
    "MEM_STALL": "waits of any unit for memory (they overlap the stages above)",
}
STAGE_NAMES = tuple(STAGES)

#: The buffers whose 64-bit addresses the host writes, each as ``<NAME>_ADDR_LO``/``_HI``.
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
                  Field("VARIANT", 16, 16, "build variant chosen by the integrator "
                                           "(e.g. which model configuration)")),
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
                  Field("ERROR_CODE", 8, ERROR_CODE_WIDTH, "cause of the most recent error",
                        ErrorCode))),
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
        _word("WATCHDOG", 0x24, rw, "TIMEOUT error after a run is busy for more than this "
                                    "many cycles; 0 disables"),
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


def _check_build(tasks, alignment, variant):
    config = BY_NAME["CONFIG"]
    if not (isinstance(tasks, int) and 0 < tasks < 1 << config.field("TASKS").width):
        raise ValueError(f"tasks must be an integer in 1..255, not {tasks!r}")
    if not (isinstance(alignment, int) and alignment > 0 and alignment & (alignment - 1) == 0
            and alignment.bit_length() - 1 < 1 << config.field("ALIGN_LOG2").width):
        raise ValueError(f"alignment must be a power of two in 1..32768 bytes, not {alignment!r}")
    if not (isinstance(variant, int) and 0 <= variant < 1 << config.field("VARIANT").width):
        raise ValueError(f"variant must be an integer in 0..65535, not {variant!r}")


def config_word(*, tasks, alignment, variant=0):
    """The value of CONFIG for these build parameters."""
    _check_build(tasks, alignment, variant)
    f = BY_NAME["CONFIG"].field
    return (f("TASKS").put(tasks) | f("ALIGN_LOG2").put(alignment.bit_length() - 1)
            | f("STAGES").put(len(STAGES)) | f("VARIANT").put(variant))


def _byte_mask(strobe):
    return sum(0xFF << (8 * i) for i in range(WORD_BYTES) if strobe >> i & 1)


class RegisterFile:
    """Behavioural twin of :class:`hw.system.registers.RegisterBlock`, one host access at a time.

    The host side is :meth:`read` and :meth:`write`; the machine side is the attributes
    ``busy``, ``cycles_total`` and ``stage_cycles`` (inputs, set freely), :meth:`pulse_done`,
    :meth:`pulse_fault` and :meth:`tick` (cycles passing, for the watchdog), and the outputs
    ``task``, ``addresses``, ``irq``, ``starts`` and ``soft_resets`` (pulses so far).

    Parameters
    ----------
    tasks : int
        Number of valid tasks.
    alignment : int
        Bytes that buffer addresses must be multiples of; a power of two.
    variant : int
        CONFIG.VARIANT.
    """

    def __init__(self, *, tasks, alignment, variant=0):
        self._config = config_word(tasks=tasks, alignment=alignment, variant=variant)
        self._tasks, self._alignment = tasks, alignment
        self.busy = False
        self.cycles_total = 0
        self.stage_cycles = dict.fromkeys(STAGE_NAMES, 0)
        self.starts = 0
        self.soft_resets = 0
        self._rw = {r.name: r.reset for r in REGISTERS if r.access is Access.RW}
        self._clear_status()
        self.irq_status = 0
        self._cycles_hi = 0

    def _clear_status(self):
        self.done, self.error, self.error_code = False, False, ErrorCode.NONE
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
        self.error, self.error_code = True, ErrorCode(code)
        self.irq_status |= BY_NAME["IRQ_STATUS"].field("ERROR").mask

    def pulse_done(self):
        """The machine finished a run."""
        self.done = True
        self.irq_status |= BY_NAME["IRQ_STATUS"].field("DONE").mask

    def pulse_fault(self, code):
        """The machine reports an error."""
        self._set_error(code)

    def tick(self, cycles=1):
        """``cycles`` clock cycles pass with ``busy`` as it is."""
        if not self.busy or self._watchdog_fired:
            return
        self._watchdog_count += cycles
        limit = self._rw["WATCHDOG"]
        if limit and self._watchdog_count > limit:
            self._watchdog_fired = True
            self._set_error(ErrorCode.TIMEOUT)

    # The host.

    def start_check(self):
        """The error a START would raise now, or ``ErrorCode.NONE``."""
        if self.busy:
            return ErrorCode.START_WHILE_BUSY
        addresses = self.addresses.values()
        if any(a == 0 for a in addresses):
            return ErrorCode.ZERO_ADDRESS
        if any(a % self._alignment for a in addresses):
            return ErrorCode.UNALIGNED_ADDRESS
        if self.task >= self._tasks:
            return ErrorCode.BAD_TASK
        return ErrorCode.NONE

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
        if name == "ID":
            return MAGIC
        if name == "VERSION":
            return version_word()
        if name == "CONFIG":
            return self._config
        if name == "STATUS":
            f = reg.field
            return (f("BUSY").put(int(self.busy)) | f("DONE").put(int(self.done))
                    | f("ERROR").put(int(self.error)) | f("ERROR_CODE").put(int(self.error_code)))
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
- START runs these checks in this order and, at the first that fails, sets STATUS.ERROR,
  STATUS.ERROR_CODE and IRQ_STATUS.ERROR and does nothing else (no run starts, DONE is kept):
  busy (START_WHILE_BUSY), a buffer address zero (ZERO_ADDRESS), a buffer address not a
  multiple of `2**CONFIG.ALIGN_LOG2` (UNALIGNED_ADDRESS), TASK not below CONFIG.TASKS
  (BAD_TASK). A START that passes clears STATUS.DONE, STATUS.ERROR and STATUS.ERROR_CODE and
  the watchdog, and starts the run; IRQ_STATUS is left to the host.
- SOFT_RESET aborts the machine and clears STATUS (but BUSY, which the machine drives) and
  IRQ_STATUS; TASK, the addresses, IRQ_ENABLE and WATCHDOG keep their values.
- ERROR_CODE holds the most recent error. The machine reports AXI errors; the block's watchdog
  reports TIMEOUT once per run, and does not stop the machine (write SOFT_RESET for that).
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
