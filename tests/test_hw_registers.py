# amaranth: UnusedElaboratable=no
"""The register block against its twin under cocotbext-axi's AxiLiteMaster; the twin and the
register map's description on their own; the committed docs/registers.md against its
generator."""

import enum
from pathlib import Path

import pytest

from hw.system.registers import RegisterBlock
from model.config import M3VIT_TINY
from model.system.registers import (BY_NAME, ERROR_DESCRIPTIONS, MAGIC, MAP_BYTES, REGISTERS,
                                   STAGE_NAMES, Access, ErrorCode, Field, Identity, Register,
                                   RegisterFile, check_map, markdown)
from sim.benches.registers import make_design
from sim.runner import cocotb_tests

DOCS = Path(__file__).resolve().parent.parent / "docs" / "registers.md"

test_registers = cocotb_tests(
    "sim.benches.registers", lambda **c: make_design(c),
    configs=[dict(tasks=M3VIT_TINY.tasks, alignment=16, addr_width=12, memory_addr_width=40,
                  buffer_bytes=0x12340, layout_hash=0x0123_4567_89AB_CDEF),
             dict(tasks=3, alignment=1, addr_width=8, memory_addr_width=33, buffer_bytes=5)])


# The description.

def test_map_is_consistent():
    check_map()
    offsets = [r.offset for r in REGISTERS]
    assert len(set(offsets)) == len(offsets)
    assert max(offsets) + 4 <= MAP_BYTES
    for reg in REGISTERS:
        assert all(0 <= f.lsb and f.msb < 32 for f in reg.fields), reg.name
    assert len({int(c) for c in ErrorCode}) == len(ErrorCode.__members__)
    assert set(ERROR_DESCRIPTIONS) == set(ErrorCode)
    for name in STAGE_NAMES:
        assert BY_NAME[f"CYCLES_{name}"].access is Access.RO


@pytest.mark.parametrize("registers, message", [
    ((Register("A", 0, Access.RW, "", (Field("X", 0, 1, ""),)),
      Register("B", 0, Access.RW, "", (Field("X", 0, 1, ""),))), "used twice"),
    ((Register("A", 2, Access.RW, "", (Field("X", 0, 1, ""),)),), "not word-aligned"),
    ((Register("A", 0, Access.RW, "", (Field("X", 30, 4, ""),)),), "not within 32 bits"),
    ((Register("A", 0, Access.RW, "", (Field("X", 0, 4, ""), Field("Y", 3, 1, ""))),),
     "overlaps"),
    ((Register("A", 0, Access.RW, "", (Field("X", 0, 4, ""),), reset=0x10),), "reserved bits"),
])
def test_check_map_catches(registers, message):
    with pytest.raises(ValueError, match=message):
        check_map(registers)


def test_check_map_catches_repeated_error_codes():
    class Codes(enum.IntEnum):
        NONE = 0
        A = 1
        B = 1
    with pytest.raises(ValueError, match="not distinct"):
        check_map(error_codes=Codes)


def test_docs_are_generated():
    assert DOCS.read_text() == markdown(), (
        "docs/registers.md differs from model/system/registers.py; regenerate it with "
        "`python -m model.system.registers --markdown > docs/registers.md`")


# The twin.

SIZES = dict(IMAGE=0x400, WEIGHTS=0x10000, OUTPUT=0x100)


def identity(tasks=2, alignment=16, addr_width=40, layout_hash=0):
    return Identity(tasks=tasks, alignment=alignment, addr_width=addr_width,
                    buffer_bytes=SIZES, layout_hash=layout_hash)


def good_twin(**kwargs):
    twin = RegisterFile(identity(**kwargs))
    for i, name in enumerate(("IMAGE", "WEIGHTS", "OUTPUT")):
        twin.write(BY_NAME[f"{name}_ADDR_LO"].offset, 0x1000 * (i + 1))
    return twin


def status(twin, field=None):
    word = twin.read(BY_NAME["STATUS"].offset)
    return word if field is None else BY_NAME["STATUS"].field(field).get(word)


def test_twin_identity_and_unmapped():
    ident = identity(layout_hash=0xFEDC_BA98_7654_3210)
    twin = RegisterFile(ident)
    assert twin.read(0) == MAGIC
    config = twin.read(BY_NAME["CONFIG"].offset)
    assert config == ident.config_word
    f = BY_NAME["CONFIG"].field
    assert (f("ALIGN_LOG2").get(config), f("ADDR_WIDTH").get(config), f("TASKS").get(config)) \
        == (4, 40, 2)
    assert twin.read(BY_NAME["LAYOUT_HASH_LO"].offset) == 0x7654_3210
    assert twin.read(BY_NAME["LAYOUT_HASH_HI"].offset) == 0xFEDC_BA98
    for name, size in SIZES.items():
        assert twin.read(BY_NAME[f"{name}_BYTES"].offset) == size
    assert twin.read(0xC) == 0 and twin.read(0x800) == 0
    twin.write(0, 0)
    assert twin.read(0) == MAGIC


def test_identity_of_a_machine():
    from model.machine import ZCU102
    from model.weight_image import input_layout, output_layout
    ident = Identity.of(M3VIT_TINY, ZCU102)
    layout = ZCU102.layout(M3VIT_TINY)
    assert ident.layout_hash == layout.hash and ident.bytes("WEIGHTS") == layout.total_bytes
    assert ident.bytes("IMAGE") == input_layout(M3VIT_TINY, 16).length
    assert ident.bytes("OUTPUT") == output_layout(M3VIT_TINY, 16).length
    assert ident.addr_width == ZCU102.addr_width and ident.alignment == ZCU102.beat_bytes


def test_twin_strobes_and_reserved_bits():
    twin = RegisterFile(identity())
    task = BY_NAME["TASK"].offset
    twin.write(task, 0x1122_3344)
    twin.write(task, 0xAABB_CCDD, strobe=0b0100)
    assert twin.read(task) == 0x11BB_3344
    enable = BY_NAME["IRQ_ENABLE"].offset
    twin.write(enable, 0xFFFF_FFFF)
    assert twin.read(enable) == 0b11


def _set(name, value):
    def setup(twin):
        twin.write(BY_NAME[f"{name}_ADDR_LO"].offset, value & 0xFFFF_FFFF)
        twin.write(BY_NAME[f"{name}_ADDR_HI"].offset, value >> 32)
    return setup


@pytest.mark.parametrize("setup, code", [
    (_set("WEIGHTS", 0), ErrorCode.ZERO_ADDRESS),
    (_set("OUTPUT", 0x1008), ErrorCode.UNALIGNED_ADDRESS),
    (lambda t: t.write(BY_NAME["TASK"].offset, 2), ErrorCode.BAD_TASK),
    (_set("IMAGE", 1 << 40), ErrorCode.ADDRESS_TOO_HIGH),
    (_set("IMAGE", 1 << 63), ErrorCode.ADDRESS_TOO_HIGH),
    (_set("IMAGE", (1 << 40) - SIZES["IMAGE"] + 16), ErrorCode.BUFFER_PAST_END),
    (_set("OUTPUT", (1 << 40) - 16), ErrorCode.BUFFER_PAST_END),
])
def test_twin_start_checks(setup, code):
    twin = good_twin()
    twin.pulse_done()
    setup(twin)
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 0
    assert status(twin, "ERROR") == 1 and status(twin, "ERROR_CODE") == code
    assert status(twin, "DONE") == 1, "a refused START changes nothing else"
    assert twin.irq_status == BY_NAME["IRQ_STATUS"].field("ERROR").mask | 1


def test_twin_buffer_may_end_at_the_top():
    twin = good_twin()
    _set("IMAGE", (1 << 40) - SIZES["IMAGE"])(twin)
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 1 and status(twin, "ERROR") == 0


def test_twin_keeps_the_first_error_and_ignores_start_while_busy():
    twin = good_twin()
    twin.write(BY_NAME["CONTROL"].offset, 1)
    twin.busy = True
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 1 and status(twin, "START_IGNORED") == 1
    assert status(twin, "ERROR") == 0, "a START while busy is not an error of the run"
    twin.pulse_fault(ErrorCode.AXI_READ_ERROR)
    twin.pulse_fault(ErrorCode.BUS_HUNG)
    assert status(twin, "ERROR_CODE") == ErrorCode.AXI_READ_ERROR
    assert status(twin, "OVERFLOW") == 1
    assert status(twin, "BUS_HUNG") == 1, "a BUS_HUNG shows even when it is not the first"
    twin.busy = False
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 2 and status(twin) == 0, "a good START clears STATUS"


def test_twin_good_start_done_irq_and_watchdog():
    twin = good_twin()
    twin.pulse_fault(ErrorCode.AXI_WRITE_ERROR)
    twin.write(BY_NAME["IRQ_ENABLE"].offset, 1)
    twin.write(BY_NAME["WATCHDOG"].offset, 10)
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 1 and status(twin) == 0 and not twin.irq
    twin.busy = True
    twin.tick(10)
    assert status(twin) == 1 and twin.timeouts == 0
    twin.tick()
    assert status(twin, "ERROR_CODE") == ErrorCode.TIMEOUT and twin.timeouts == 1
    twin.tick(100)
    assert twin.timeouts == 1, "the watchdog ends a run once"
    twin.busy = False
    twin.pulse_done()
    assert twin.irq
    twin.write(BY_NAME["IRQ_STATUS"].offset, 1)
    assert not twin.irq
    twin.write(BY_NAME["CONTROL"].offset, 3)
    assert twin.soft_resets == 1 and twin.starts == 1 and status(twin) == 0


def test_twin_latches_cycles_high_half():
    twin = RegisterFile(identity(tasks=1, alignment=1))
    twin.cycles_total = 0x5_0000_0007
    assert twin.read(BY_NAME["CYCLES_TOTAL_LO"].offset) == 7
    twin.cycles_total = 0x9_0000_0000
    assert twin.read(BY_NAME["CYCLES_TOTAL_HI"].offset) == 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(tasks=0), "tasks must be an integer"),
    (dict(alignment=12), "alignment must be a power of two"),
    (dict(addr_width=0), "addr_width must be an integer in 1..64"),
    (dict(addr_width=65), "addr_width must be an integer in 1..64"),
    (dict(layout_hash=1 << 64), "layout_hash must be a 64-bit"),
    (dict(buffer_bytes=dict(IMAGE=1)), "buffer_bytes must give the bytes of each"),
    (dict(buffer_bytes=dict(IMAGE=1, WEIGHTS=0, OUTPUT=1)), "weights buffer's bytes"),
    (dict(addr_width=8, buffer_bytes=dict(IMAGE=1, WEIGHTS=257, OUTPUT=1)),
     "weights buffer's bytes must be an integer in 1..255"),
])
def test_bad_identity(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Identity(**{**dict(tasks=2, alignment=16, buffer_bytes=SIZES), **kwargs})


def test_bad_construction():
    with pytest.raises(TypeError, match="takes a model.system.registers.Identity"):
        RegisterBlock(dict(tasks=2))
    with pytest.raises(ValueError, match="addr_width must be an integer"):
        RegisterBlock(identity(), addr_width=4)
