"""The board backends' own logic, on what runs here: the Linux backend over a temporary directory
laid out like the kernel's sysfs and /dev (regular files stand in for the device files, a pipe
for the interrupt), the PYNQ backend against a stand-in ``pynq`` module with PYNQ's interface,
and the driver over both. What needs a board: docs/host.md."""

import asyncio
import os
import sys
import types

import numpy as np
import pytest

from host.driver import Buffers, Driver
from host.linux import (BoardError, LinuxBoard, UDmaBuf, Uio, device_tree_overlay, dma_bytes,
                        load_bitstream, main as linux_main, open_board)
from model.config import MICRO
from model.machine import ZCU102
from model.system.registers import BY_NAME, MAP_BYTES, Identity, RegisterFile

DMA_BASE = 0x7000_0000


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _register_image():
    """The register block's reset contents for micro on the zcu102 machine, as the twin has
    them: what a freshly loaded bitstream shows."""
    regs = RegisterFile(Identity.of(MICRO, ZCU102))
    words = [regs.read(offset) if offset in {r.offset for r in BY_NAME.values()} else 0
             for offset in range(0, MAP_BYTES, 4)]
    return np.array(words, dtype="<u4").tobytes()


@pytest.fixture
def board_root(tmp_path):
    """A kernel's view of a ZCU102 with the accelerator's overlay applied."""
    root = tmp_path
    _write(root / "sys/class/uio/uio0/name", "axi-pmon\n")
    _write(root / "sys/class/uio/uio3/name", "edgemoe\n")
    _write(root / "sys/class/uio/uio3/maps/map0/addr", "0x00000000a0000000\n")
    _write(root / "sys/class/uio/uio3/maps/map0/size", "0x0000000000001000\n")
    (root / "dev").mkdir()
    (root / "dev/uio3").write_bytes(_register_image() + bytes(0x1000 - MAP_BYTES))
    size = -(-dma_bytes(MICRO) // 4096) * 4096
    _write(root / "sys/class/u-dma-buf/udmabuf0/phys_addr", f"{DMA_BASE:#x}\n")
    _write(root / "sys/class/u-dma-buf/udmabuf0/size", f"{size}\n")
    (root / "dev/udmabuf0").write_bytes(bytes(size))
    _write(root / "sys/class/fpga_manager/fpga0/state", "operating\n")
    _write(root / "sys/class/fpga_manager/fpga0/flags", "")
    _write(root / "sys/class/fpga_manager/fpga0/firmware", "")
    return root


def test_the_uio_device_is_found_by_name_and_its_registers_mapped(board_root):
    uio = Uio("edgemoe", root=str(board_root))
    assert uio.base == 0xA000_0000
    assert uio.read32(BY_NAME["ID"].offset) == RegisterFile(Identity.of(MICRO, ZCU102)).read(0)
    uio.write32(BY_NAME["TASK"].offset, 1)
    uio.close()
    data = (board_root / "dev/uio3").read_bytes()
    assert int.from_bytes(data[BY_NAME["TASK"].offset:][:4], "little") == 1


def test_a_missing_uio_device_lists_what_is_there(board_root):
    with pytest.raises(BoardError, match=r"no UIO device named 'accel' \(found: axi-pmon, "
                                         r"edgemoe\).*generic-uio"):
        Uio("accel", root=str(board_root))


def test_a_uio_map_smaller_than_the_register_map_is_refused(board_root):
    _write(board_root / "sys/class/uio/uio3/maps/map0/size", "0x80\n")
    with pytest.raises(BoardError, match="maps 0x80 bytes"):
        Uio("edgemoe", root=str(board_root))


def test_a_missing_device_file_says_which_driver(board_root):
    os.remove(board_root / "dev/uio3")
    with pytest.raises(BoardError, match="uio3 does not exist: is the uio_pdrv_genirq"):
        Uio("edgemoe", root=str(board_root))


def test_permission_denied_suggests_a_udev_rule(board_root, monkeypatch):
    def refuse(path, flags):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(BoardError, match="udev rule"):
        Uio("edgemoe", root=str(board_root))


def test_the_interrupt_is_unmasked_then_awaited():
    uio = Uio.__new__(Uio)
    read_end, write_end = os.pipe()
    unmask_read, unmask_write = os.pipe()

    async def scenario():
        waiting = asyncio.ensure_future(uio.wait_interrupt(1.0, fd=read_end))
        await asyncio.sleep(0.01)
        os.write(write_end, (1).to_bytes(4, "little"))     # the kernel's interrupt count
        return await waiting

    # The unmask write goes to the same fd as the read on a UIO device; here to a pipe of its
    # own, so that the test can see it.
    original = os.write

    def write(fd, data):
        return original(unmask_write if fd == read_end else fd, data)
    os.write = write
    try:
        assert asyncio.run(scenario()) is True
        assert os.read(unmask_read, 4) == (1).to_bytes(4, sys.byteorder)
        assert asyncio.run(uio.wait_interrupt(0.01, fd=read_end)) is False   # none: deadline
    finally:
        os.write = original
        for fd in (read_end, write_end, unmask_read, unmask_write):
            os.close(fd)


def test_the_dma_buffer_is_read_and_written_at_physical_addresses(board_root):
    dma = UDmaBuf(root=str(board_root))
    assert dma.base == DMA_BASE
    dma.write(DMA_BASE + 3, b"hello")                 # unaligned ends: whole words around
    assert dma.read(DMA_BASE + 3, 5) == b"hello"
    with pytest.raises(ValueError, match="outside the u-dma-buf buffer"):
        dma.read(DMA_BASE - 8, 8)
    dma.close()


def test_the_older_udmabuf_class_is_found_too(board_root):
    os.rename(board_root / "sys/class/u-dma-buf", board_root / "sys/class/udmabuf")
    UDmaBuf(root=str(board_root)).close()
    os.rename(board_root / "sys/class/udmabuf", board_root / "sys/class/gone")
    with pytest.raises(BoardError, match="modprobe u-dma-buf"):
        UDmaBuf(root=str(board_root))


def test_a_buffer_too_small_for_the_plan_is_refused(board_root):
    _write(board_root / "sys/class/u-dma-buf/udmabuf0/size", "4096\n")
    (board_root / "dev/udmabuf0").write_bytes(bytes(4096))
    with pytest.raises(BoardError, match="needs 0x.* bytes of buffers; udmabuf0 holds 0x1000"):
        open_board(MICRO, root=str(board_root))


def test_the_driver_checks_the_bitstream_and_loads_weights_over_the_linux_board(board_root):
    board, buffers = open_board(MICRO, root=str(board_root))
    assert isinstance(board, LinuxBoard) and buffers == Buffers.plan(DMA_BASE, MICRO)
    driver = Driver(board, MICRO, buffers)

    async def session():
        await driver.check_bitstream()
        await board.write(buffers.image, b"\x01\x02\x03")
        return await board.read(buffers.image, 3)
    assert asyncio.run(session()) == b"\x01\x02\x03"
    board.close()


def test_the_fpga_manager_loads_a_bitstream(board_root, tmp_path):
    bitstream = tmp_path / "edgemoe.bin"
    bitstream.write_bytes(b"\xff" * 64)
    load_bitstream(str(bitstream), root=str(board_root))
    assert (board_root / "lib/firmware/edgemoe.bin").read_bytes() == b"\xff" * 64
    assert (board_root / "sys/class/fpga_manager/fpga0/firmware").read_text() == "edgemoe.bin"
    assert (board_root / "sys/class/fpga_manager/fpga0/flags").read_text() == "0"
    _write(board_root / "sys/class/fpga_manager/fpga0/state", "write error\n")
    with pytest.raises(BoardError, match="reports 'write error'.*built for this part"):
        load_bitstream(str(bitstream), root=str(board_root))
    with pytest.raises(BoardError, match="no FPGA manager.*CONFIG_FPGA_MGR_ZYNQMP_FPGA"):
        load_bitstream(str(bitstream), root=str(tmp_path / "elsewhere"))


def test_the_overlay_declares_the_registers_the_interrupt_and_the_buffer(tmp_path, capsys):
    text = device_tree_overlay(dma_bytes=5 << 20, bitstream="m.bin")
    assert 'firmware-name = "m.bin"' in text
    assert "reg = <0x0 0xa0000000 0x0 0x1000>" in text
    assert "interrupts = <0 89 4>" in text and 'compatible = "generic-uio"' in text
    assert "size = <0x500000>" in text and 'device-name = "udmabuf0"' in text
    assert text.count("{") == text.count("}")
    out = tmp_path / "edgemoe.dtso"
    assert linux_main(["--overlay", "--config", "micro", "--out", str(out)]) == 0
    assert f"size = <0x{-(-dma_bytes(MICRO) // (1 << 20)) << 20:x}>" in out.read_text()


# --- PYNQ, against a stand-in with PYNQ's interface -------------------------------------


class _Buffer(np.ndarray):
    physical_address = 0x6800_0000
    log = []

    def flush(self):
        self.log.append("flush")

    def invalidate(self):
        self.log.append("invalidate")

    def freebuffer(self):
        self.log.append("free")


def _stand_in(registers):
    pynq = types.ModuleType("pynq")

    class MMIO:
        def __init__(self, base, length):
            assert base == 0xA000_0000 and length == MAP_BYTES
            self.words = registers

        def read(self, offset):
            return self.words[offset // 4]

        def write(self, offset, value):
            self.words[offset // 4] = value

    class Interrupt:
        def __init__(self, pin):
            self.pin, self.event = pin, asyncio.Event()

        async def wait(self):
            await self.event.wait()

    pynq.MMIO, pynq.Interrupt = MMIO, Interrupt
    pynq.Overlay = lambda path: ("overlay", path)
    pynq.allocate = lambda shape, dtype: np.zeros(shape, dtype).view(_Buffer)
    return pynq


def test_the_pynq_board_drives_registers_and_a_flushed_buffer(monkeypatch):
    from host.pynq import PynqBoard
    words = list(np.frombuffer(_register_image(), dtype="<u4"))
    monkeypatch.setitem(sys.modules, "pynq", _stand_in(words))
    board = PynqBoard(MICRO, bitstream="edgemoe.bit", interrupt="edgemoe/irq")
    assert board.overlay == ("overlay", "edgemoe.bit")
    assert board.buffers == Buffers.plan(0x6800_0000, MICRO)
    driver = Driver(board, MICRO, board.buffers)
    _Buffer.log.clear()

    async def session():
        await driver.check_bitstream()
        await board.write(board.buffers.image, b"abc")
        got = await board.read(board.buffers.image, 3)
        await board.interrupt(0.01)                    # no interrupt: returns at the deadline
        return got
    assert asyncio.run(session()) == b"abc"
    assert _Buffer.log == ["flush", "invalidate"]
    board.close()
    assert _Buffer.log[-1] == "free"


def test_without_pynq_the_backend_says_where_it_runs(monkeypatch):
    from host.pynq import PynqBoard
    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(ImportError, match="runs on a PYNQ image; use --backend linux"):
        PynqBoard(MICRO)
