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
                             STAGE_NAMES, Access, ErrorCode, Field, Register, RegisterFile,
                             check_map, config_word, markdown)
from sim.benches.registers import make_design
from sim.runner import cocotb_tests

DOCS = Path(__file__).resolve().parent.parent / "docs" / "registers.md"

test_registers = cocotb_tests(
    "sim.benches.registers", lambda **c: make_design(c),
    configs=[dict(tasks=M3VIT_TINY.tasks, alignment=16, addr_width=12, variant=0x1234),
             dict(tasks=3, alignment=1, addr_width=8)])


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

def good_twin(tasks=2, alignment=16):
    twin = RegisterFile(tasks=tasks, alignment=alignment)
    for i, name in enumerate(("IMAGE", "WEIGHTS", "OUTPUT")):
        twin.write(BY_NAME[f"{name}_ADDR_LO"].offset, 0x1000 * (i + 1))
    return twin


def status(twin):
    return twin.read(BY_NAME["STATUS"].offset)


def test_twin_identity_and_unmapped():
    twin = RegisterFile(tasks=2, alignment=16, variant=7)
    assert twin.read(0) == MAGIC
    assert twin.read(BY_NAME["CONFIG"].offset) == config_word(tasks=2, alignment=16, variant=7)
    assert BY_NAME["CONFIG"].field("ALIGN_LOG2").get(twin.read(8)) == 4
    assert twin.read(0xC) == 0 and twin.read(0x800) == 0
    twin.write(0, 0)
    assert twin.read(0) == MAGIC


def test_twin_strobes_and_reserved_bits():
    twin = RegisterFile(tasks=2, alignment=16)
    task = BY_NAME["TASK"].offset
    twin.write(task, 0x1122_3344)
    twin.write(task, 0xAABB_CCDD, strobe=0b0100)
    assert twin.read(task) == 0x11BB_3344
    enable = BY_NAME["IRQ_ENABLE"].offset
    twin.write(enable, 0xFFFF_FFFF)
    assert twin.read(enable) == 0b11


@pytest.mark.parametrize("setup, code", [
    (lambda t: setattr(t, "busy", True), ErrorCode.START_WHILE_BUSY),
    (lambda t: t.write(BY_NAME["WEIGHTS_ADDR_LO"].offset, 0), ErrorCode.ZERO_ADDRESS),
    (lambda t: t.write(BY_NAME["OUTPUT_ADDR_LO"].offset, 0x1008), ErrorCode.UNALIGNED_ADDRESS),
    (lambda t: t.write(BY_NAME["TASK"].offset, 2), ErrorCode.BAD_TASK),
])
def test_twin_start_checks(setup, code):
    twin = good_twin()
    twin.pulse_done()
    setup(twin)
    twin.write(BY_NAME["CONTROL"].offset, 1)
    field = BY_NAME["STATUS"].field
    assert twin.starts == 0
    assert field("ERROR").get(status(twin)) == 1
    assert field("ERROR_CODE").get(status(twin)) == code
    assert field("DONE").get(status(twin)) == 1, "a refused START changes nothing else"
    assert twin.irq_status == BY_NAME["IRQ_STATUS"].field("ERROR").mask | 1


def test_twin_good_start_done_irq_and_watchdog():
    twin = good_twin()
    twin.pulse_fault(ErrorCode.AXI_WRITE_ERROR)
    twin.write(BY_NAME["IRQ_ENABLE"].offset, 1)
    twin.write(BY_NAME["WATCHDOG"].offset, 10)
    twin.write(BY_NAME["CONTROL"].offset, 1)
    assert twin.starts == 1 and status(twin) == 0 and not twin.irq
    twin.busy = True
    twin.tick(10)
    assert status(twin) == 1
    twin.tick()
    assert BY_NAME["STATUS"].field("ERROR_CODE").get(status(twin)) == ErrorCode.TIMEOUT
    twin.busy = False
    twin.pulse_done()
    assert twin.irq
    twin.write(BY_NAME["IRQ_STATUS"].offset, 1)
    assert not twin.irq
    twin.write(BY_NAME["CONTROL"].offset, 3)
    assert twin.soft_resets == 1 and twin.starts == 1 and status(twin) == 0


def test_twin_latches_cycles_high_half():
    twin = RegisterFile(tasks=1, alignment=1)
    twin.cycles_total = 0x5_0000_0007
    assert twin.read(BY_NAME["CYCLES_TOTAL_LO"].offset) == 7
    twin.cycles_total = 0x9_0000_0000
    assert twin.read(BY_NAME["CYCLES_TOTAL_HI"].offset) == 5


def test_bad_construction():
    with pytest.raises(ValueError, match="tasks must be an integer"):
        RegisterBlock(tasks=0, alignment=16)
    with pytest.raises(ValueError, match="alignment must be a power of two"):
        RegisterBlock(tasks=2, alignment=12)
    with pytest.raises(ValueError, match="addr_width must be an integer"):
        RegisterBlock(tasks=2, alignment=16, addr_width=4)
