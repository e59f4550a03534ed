# amaranth: UnusedElaboratable=no
"""The board self-test (hw.system.selftest) on the ULX3S's shape of the accelerator: it passes with
the golden checksum and reports the cycle count on its UART line; with a watchdog shorter than the
run it fails and says so. Also its parts' construction checks."""

import pytest

from hw.movers.axi_rom import AxiRom
from hw.system.uart import UartTx
from model.config import config_by_name
from model.machine import ULX3S_SELFTEST
from model.system.selftest import checksum, memory, message
from model.system.uart import frames
from sim.benches.axi_rom import make_design as axi_rom_design
from sim.benches.selftest import make_design
from sim.runner import cocotb_tests

#: The accelerator as the ULX3S builds it (model.machine.ULX3S_SELFTEST).
ULX3S = dict(model="nano", machine="ulx3s-selftest", divisor=4, repeat=500)

test_selftest = cocotb_tests(
    "sim.benches.selftest", lambda **c: make_design(c),
    configs=[ULX3S, dict(ULX3S, watchdog=200, expect="fail")])


def test_memory_holds_weights_then_image():
    mem = memory(config_by_name("nano"), ULX3S_SELFTEST)
    assert mem.rom[:4] == b"EMWI"
    assert mem.image_addr % ULX3S_SELFTEST.beat_bytes == 0 and mem.image_addr - mem.weights_addr < len(mem.rom)
    assert mem.output_checksum == checksum(mem.output_bytes)
    with pytest.raises(ValueError, match="task must be below 2"):
        memory(config_by_name("nano"), ULX3S_SELFTEST, task=2)


def test_checksum_and_message():
    assert checksum(bytes(8)) == 0
    assert checksum((1).to_bytes(4, "little") * 2) == 0b11
    assert checksum(b"\x00\x00\x00\x80" + bytes(4)) == 1
    assert message(True, 0x1234) == b"edge-moe self-test PASS, cycles 0x00001234\r\n"
    assert message(False, 0).startswith(b"edge-moe self-test FAIL")


def test_frames():
    assert frames(b"\x01") == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_bad_construction():
    with pytest.raises(ValueError, match="divisor must be a positive integer"):
        UartTx(0)
    with pytest.raises(ValueError, match="not a multiple of 16 bytes"):
        AxiRom(bytes(16), base=8, ports=["a"])


test_axi_rom = cocotb_tests("sim.benches.axi_rom", lambda **c: axi_rom_design(c),
                            configs=[dict(bytes=4000, data_width=128),
                                     dict(bytes=1024, data_width=32)])
