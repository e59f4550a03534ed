"""The board backends' own logic, on what runs here: the Linux backend over a temporary directory
laid out like the kernel's sysfs and /dev (regular files stand in for the device files, a socket
for the interrupt's file descriptor), the PYNQ backend against a stand-in ``pynq`` module with
PYNQ's interface, and the driver over both. What needs a board: docs/host.md."""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

import host.linux
from host.driver import Buffers, Driver
from host.linux import (BoardError, LinuxBoard, UDmaBuf, Uio, device_tree_overlay, dma_bytes,
                        load_bitstream, main as linux_main, open_board, wait_for_interrupt)
from model.config import MICRO
from model.machine import ZCU102
from model.system.registers import BY_NAME, MAP_BYTES, Identity, RegisterFile

DMA_BASE = 0x7000_0000
PYNQ_BASE = 0x6800_0000


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _register_image():
    """The register block's contents for micro on the zcu102 machine, as the twin has them
    after reset: what a freshly loaded bitstream shows."""
    regs = RegisterFile(Identity.of(MICRO, ZCU102))
    offsets = {r.offset for r in BY_NAME.values()}
    words = [regs.read(offset) if offset in offsets else 0 for offset in range(0, MAP_BYTES, 4)]
    return np.array(words, dtype="<u4").tobytes()


def _poke(path, offset, value):
    """The hardware's side of a register: a 32-bit word written into the device file."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(4, "little"))


@pytest.fixture
def board_root(tmp_path):
    """A kernel's view of a ZCU102 with the accelerator's overlay applied."""
    root = tmp_path / "board"
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


@pytest.fixture
def deny(monkeypatch):
    """Make opening a path fail with EACCES: by its mode where that binds (not root), else by
    refusing it in ``os.open``."""
    def deny(path):
        path = str(path)
        if os.geteuid() != 0:
            os.chmod(path, 0)
            return
        real_open = os.open

        def refuse(p, flags, *args, **kwargs):
            if str(p) == path:
                raise PermissionError(13, "Permission denied", p)
            return real_open(p, flags, *args, **kwargs)
        monkeypatch.setattr(os, "open", refuse)
    return deny


# --- UIO: registers and interrupt -----------------------------------------------------


def test_the_uio_device_is_found_by_name_and_its_registers_mapped(board_root):
    uio = Uio("edgemoe", root=str(board_root))
    assert uio.base == 0xA000_0000 and uio.device == str(board_root / "dev/uio3")
    assert uio.read32(BY_NAME["ID"].offset) == RegisterFile(Identity.of(MICRO, ZCU102)).read(0)
    uio.write32(BY_NAME["TASK"].offset, 1)
    with pytest.raises(ValueError, match="register offset"):
        uio.read32(2)
    uio.close()
    data = (board_root / "dev/uio3").read_bytes()
    assert int.from_bytes(data[BY_NAME["TASK"].offset:][:4], "little") == 1


def test_a_missing_uio_device_lists_what_is_there(board_root):
    with pytest.raises(BoardError, match=r"no UIO device named 'accel' \(found: axi-pmon, "
                                         r"edgemoe\).*generic-uio.*"
                                         r"uio_pdrv_genirq.of_id=generic-uio"):
        Uio("accel", root=str(board_root))
    shutil.rmtree(board_root / "sys/class/uio")
    with pytest.raises(BoardError, match=r"\(found: none\)"):
        Uio("edgemoe", root=str(board_root))


def test_a_uio_map_smaller_than_the_register_map_is_refused(board_root):
    _write(board_root / "sys/class/uio/uio3/maps/map0/size", "0x80\n")
    with pytest.raises(BoardError, match="maps 0x80 bytes; the register map is"):
        Uio("edgemoe", root=str(board_root))


def test_a_uio_device_without_a_map_says_what_its_node_needs(board_root):
    shutil.rmtree(board_root / "sys/class/uio/uio3/maps")
    with pytest.raises(BoardError, match="map0/size does not exist: .* needs a reg"):
        Uio("edgemoe", root=str(board_root))


def test_a_missing_device_file_says_which_driver(board_root):
    os.remove(board_root / "dev/uio3")
    with pytest.raises(BoardError, match="uio3 does not exist: is the uio_pdrv_genirq"):
        Uio("edgemoe", root=str(board_root))


def test_permission_denied_on_the_uio_device_suggests_a_udev_rule(board_root, deny):
    deny(board_root / "dev/uio3")
    with pytest.raises(BoardError, match=r"no permission to open .*uio3 \(the register block\)"
                                         r".*run as root.*udev rule"):
        Uio("edgemoe", root=str(board_root))


def test_the_interrupt_is_unmasked_then_awaited():
    # A UIO fd is written (unmask) and read (the count); a socket pair plays both directions.
    device, kernel = socket.socketpair()
    try:
        async def interrupt_after(delay):
            waiting = asyncio.ensure_future(wait_for_interrupt(device.fileno(), 1.0))
            await asyncio.sleep(delay)
            kernel.send((7).to_bytes(4, sys.byteorder))        # the interrupt count
            return await waiting
        assert asyncio.run(interrupt_after(0.01)) is True
        assert kernel.recv(4) == (1).to_bytes(4, sys.byteorder), "unmasked with a native 1"
        assert asyncio.run(wait_for_interrupt(device.fileno(), 0.01)) is False, "deadline"
        assert kernel.recv(4) == (1).to_bytes(4, sys.byteorder), "unmasked again"
        device.setblocking(False)
        with pytest.raises(BlockingIOError):
            device.recv(4)                                     # the count was consumed
    finally:
        device.close()
        kernel.close()


# --- u-dma-buf ------------------------------------------------------------------------


def test_the_dma_buffer_is_read_and_written_at_physical_addresses(board_root):
    dma = UDmaBuf(root=str(board_root))
    base, size = dma.window
    assert base == DMA_BASE and size == (board_root / "dev/udmabuf0").stat().st_size
    dma.write(DMA_BASE + 3, b"hello")                 # unaligned ends: whole words around
    assert dma.read(DMA_BASE + 3, 5) == b"hello"
    with pytest.raises(ValueError, match="outside the u-dma-buf window"):
        dma.read(DMA_BASE - 8, 8)
    with pytest.raises(ValueError, match="outside the u-dma-buf window"):
        dma.write(DMA_BASE + size - 2, b"abcd")
    dma.close()
    assert (board_root / "dev/udmabuf0").read_bytes()[3:8] == b"hello"


def test_the_older_udmabuf_class_is_found_too(board_root):
    os.rename(board_root / "sys/class/u-dma-buf", board_root / "sys/class/udmabuf")
    UDmaBuf(root=str(board_root)).close()
    os.rename(board_root / "sys/class/udmabuf", board_root / "sys/class/gone")
    with pytest.raises(BoardError, match="no u-dma-buf device 'udmabuf0'.*modprobe u-dma-buf "
                                         "udmabuf0=.*--overlay"):
        UDmaBuf(root=str(board_root))


def test_a_dma_buffer_with_garbage_in_sysfs_or_without_its_device_file(board_root):
    _write(board_root / "sys/class/u-dma-buf/udmabuf0/phys_addr", "garbage\n")
    with pytest.raises(BoardError, match="phys_addr holds 'garbage', not a number"):
        UDmaBuf(root=str(board_root))
    _write(board_root / "sys/class/u-dma-buf/udmabuf0/phys_addr", f"{DMA_BASE:#x}\n")
    os.remove(board_root / "dev/udmabuf0")
    with pytest.raises(BoardError, match="udmabuf0 does not exist: is the u-dma-buf module"):
        UDmaBuf(root=str(board_root))


def test_a_dma_buffer_smaller_than_sysfs_says_is_not_mapped(board_root):
    _write(board_root / "sys/class/u-dma-buf/udmabuf0/size", "0x10000000\n")
    with pytest.raises(BoardError, match="cannot map the u-dma-buf window 0x70000000..0x80000000 "
                                         ".*udmabuf0.*as large as its sysfs size says"):
        UDmaBuf(root=str(board_root))


def test_permission_denied_on_the_dma_buffer_suggests_a_udev_rule(board_root, deny):
    deny(board_root / "dev/udmabuf0")
    with pytest.raises(BoardError, match=r"\(the DMA buffer\).*udev rule"):
        UDmaBuf(root=str(board_root))


def test_a_buffer_too_small_for_the_plan_is_refused(board_root):
    _write(board_root / "sys/class/u-dma-buf/udmabuf0/size", "4096\n")
    (board_root / "dev/udmabuf0").write_bytes(bytes(4096))
    need = Buffers.plan(DMA_BASE, MICRO).size
    with pytest.raises(BoardError, match=f"micro needs {need:#x} bytes of buffers; udmabuf0 "
                                         f"holds 0x1000.*udmabuf0={need:#x}"):
        open_board(MICRO, root=str(board_root))


# --- the driver over the Linux board --------------------------------------------------


def test_the_driver_checks_the_bitstream_and_loads_data_over_the_linux_board(board_root):
    board, buffers = open_board(MICRO, root=str(board_root))
    assert isinstance(board, LinuxBoard) and buffers == Buffers.plan(DMA_BASE, MICRO)
    driver = Driver(board, MICRO, buffers)

    async def session():
        identity = await driver.check_bitstream()
        await board.write(buffers.image, b"\x01\x02\x03")
        return identity, await board.read(buffers.image, 3)
    with board:
        identity, data = asyncio.run(session())
    assert identity and data == b"\x01\x02\x03"
    image = (board_root / "dev/udmabuf0").read_bytes()
    assert image[buffers.image - DMA_BASE:][:3] == b"\x01\x02\x03"


def test_the_driver_waits_on_the_uio_interrupt(board_root):
    """wait(interrupt=board.interrupt): the machine (this test) sets DONE in the device file and
    raises the interrupt on the device's fd (a socket put in its place)."""
    board, buffers = open_board(MICRO, root=str(board_root))
    driver = Driver(board, MICRO, buffers)
    device, kernel = socket.socketpair()
    os.dup2(device.fileno(), board.uio.fd)           # the mapping stays; the fd becomes pollable
    uio_file = board_root / "dev/uio3"
    status, irq_enable = BY_NAME["STATUS"], BY_NAME["IRQ_ENABLE"]

    async def machine():
        await asyncio.sleep(0.01)
        assert kernel.recv(4) == (1).to_bytes(4, sys.byteorder), "unmasked before the wait"
        _poke(uio_file, BY_NAME["CYCLES_TOTAL_LO"].offset, 1234)
        _poke(uio_file, status.offset, status.field("DONE").mask)
        kernel.send((1).to_bytes(4, sys.byteorder))

    async def session():
        running = asyncio.ensure_future(machine())
        counters = await driver.wait(1.0, interrupt=board.interrupt)
        await running
        return counters, await board.read32(irq_enable.offset)
    try:
        counters, enabled = asyncio.run(session())
    finally:
        board.close()
        device.close()
        kernel.close()
    assert counters.total == 1234
    assert enabled == irq_enable.field("DONE").mask | irq_enable.field("ERROR").mask


# --- FPGA manager ---------------------------------------------------------------------


@pytest.fixture
def bitstream(tmp_path):
    path = tmp_path / "edgemoe.bin"
    path.write_bytes(b"\xff" * 64)
    return path


def test_the_fpga_manager_loads_a_bitstream(board_root, bitstream):
    load_bitstream(str(bitstream), root=str(board_root))
    assert (board_root / "lib/firmware/edgemoe.bin").read_bytes() == b"\xff" * 64
    manager = board_root / "sys/class/fpga_manager/fpga0"
    assert (manager / "flags").read_text() == "0"
    assert (manager / "firmware").read_text() == "edgemoe.bin"


def test_a_bitstream_the_manager_did_not_take_names_its_state(board_root, bitstream):
    manager = board_root / "sys/class/fpga_manager/fpga0"
    _write(manager / "state", "write error\n")
    with pytest.raises(BoardError, match="after loading edgemoe.bin: it reports 'write error', "
                                         "not 'operating'.*built for this part"):
        load_bitstream(str(bitstream), root=str(board_root))
    os.remove(manager / "firmware")
    os.mkdir(manager / "firmware")               # the write to `firmware` fails, as a refusal
    with pytest.raises(BoardError, match="the FPGA manager refused edgemoe.bin .*reports "
                                         "'write error'"):
        load_bitstream(str(bitstream), root=str(board_root))


def test_the_fpga_manager_absent_or_forbidden(board_root, bitstream, tmp_path, monkeypatch):
    with pytest.raises(BoardError, match="no FPGA manager.*CONFIG_FPGA_MGR_ZYNQMP_FPGA"):
        load_bitstream(str(bitstream), root=str(tmp_path / "elsewhere"))
    with pytest.raises(BoardError, match="bitstream .*missing.bin does not exist"):
        load_bitstream(str(tmp_path / "missing.bin"), root=str(board_root))

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", dst)
    monkeypatch.setattr(host.linux.shutil, "copyfile", refuse)
    with pytest.raises(BoardError, match="loading a bitstream needs root .*edgemoe.bin: "
                                         "permission denied"):
        load_bitstream(str(bitstream), root=str(board_root))


# --- the device-tree overlay ----------------------------------------------------------


def test_the_overlay_declares_the_registers_the_interrupt_and_the_buffer():
    text = device_tree_overlay(dma_bytes=5 << 20, bitstream_name="m.bin")
    assert 'firmware-name = "m.bin"' in text and "target = <&fpga_full>" in text
    assert "edgemoe@a0000000" in text and "reg = <0x0 0xa0000000 0x0 0x1000>" in text
    assert 'compatible = "generic-uio"' in text and 'linux,uio-name = "edgemoe"' in text
    assert "interrupt-parent = <&gic>" in text and "interrupts = <0 89 4>" in text
    assert 'compatible = "ikwzm,u-dma-buf"' in text and 'device-name = "udmabuf0"' in text
    assert "size = <0x500000>" in text
    assert text.count("{") == text.count("}")
    high = device_tree_overlay(dma_bytes=1, regs_base=0x4_8000_0000, irq=90, uio_name="acc")
    assert "acc@480000000" in high and "reg = <0x4 0x80000000 0x0 0x1000>" in high
    assert "interrupts = <0 90 4>" in high and "size = <0x100000>" in high
    with pytest.raises(ValueError, match="smaller than the register map"):
        device_tree_overlay(dma_bytes=1, regs_size=MAP_BYTES // 2)


def test_the_overlay_command_sizes_the_buffer_for_the_configuration(tmp_path, capsys):
    out = tmp_path / "edgemoe.dtso"
    assert linux_main(["--overlay", "--config", "micro", "--out", str(out)]) == 0
    mib = -(-dma_bytes(MICRO) // (1 << 20))
    assert f"size = <0x{mib << 20:x}>" in out.read_text()
    assert linux_main(["--overlay", "--config", "micro", "--bitstream", "x.bin"]) == 0
    printed = capsys.readouterr().out
    assert 'firmware-name = "x.bin"' in printed and printed.startswith("/dts-v1/;")
    with pytest.raises(SystemExit):
        linux_main(["--overlay", "--config", "nonesuch"])


@pytest.mark.skipif(shutil.which("dtc") is None, reason="dtc (device-tree-compiler) not here")
def test_the_overlay_compiles_with_dtc(tmp_path):
    source = tmp_path / "edgemoe.dtso"
    source.write_text(device_tree_overlay(dma_bytes=dma_bytes(MICRO)))
    done = subprocess.run(["dtc", "-@", "-I", "dts", "-O", "dtb", "-o", str(tmp_path / "o.dtbo"),
                           str(source)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


# --- PYNQ, against a stand-in with PYNQ's interface -------------------------------------


class _Buffer(np.ndarray):
    """PYNQ's buffer as far as the backend uses it: a slice knows its offset, and its flush
    and invalidate cover its own bytes (recorded here as (what, offset, bytes))."""

    log = []

    def __array_finalize__(self, parent):
        base = getattr(parent, "_origin", None)
        self._origin = base if base is not None else self.ctypes.data

    @property
    def physical_address(self):
        return PYNQ_BASE + self.ctypes.data - self._origin

    def flush(self):
        self.log.append(("flush", self.ctypes.data - self._origin, self.nbytes))

    def invalidate(self):
        self.log.append(("invalidate", self.ctypes.data - self._origin, self.nbytes))

    def freebuffer(self):
        self.log.append(("free",))


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
        pins = {}

        def __init__(self, pin):
            if pin != "edgemoe/irq":
                raise ValueError(f"No interrupt pin {pin}")
            self.event = asyncio.Event()
            Interrupt.pins[pin] = self

        async def wait(self):
            await self.event.wait()

    def allocate(shape, dtype):
        return np.zeros(shape, dtype).view(_Buffer)

    pynq.MMIO, pynq.Interrupt, pynq.allocate = MMIO, Interrupt, allocate
    pynq.Overlay = lambda path: ("overlay", path)
    return pynq


@pytest.fixture
def pynq(monkeypatch):
    module = _stand_in(list(np.frombuffer(_register_image(), dtype="<u4")))
    monkeypatch.setitem(sys.modules, "pynq", module)
    _Buffer.log.clear()
    return module


def test_the_pynq_board_drives_registers_and_flushes_what_it_writes(pynq):
    from host.pynq import PynqBoard
    with PynqBoard(MICRO, bitstream="edgemoe.bit") as board:
        assert board.overlay == ("overlay", "edgemoe.bit") and board.interrupt is None
        assert board.buffers == Buffers.plan(PYNQ_BASE, MICRO)
        driver = Driver(board, MICRO, board.buffers)

        async def session():
            await driver.check_bitstream()
            await board.write(board.buffers.image + 1, b"abc")
            return await board.read(board.buffers.image, 4)
        assert asyncio.run(session()) == b"\0abc"
        offset = board.buffers.image - PYNQ_BASE
        assert _Buffer.log == [("flush", offset + 1, 3), ("invalidate", offset, 4)]
        with pytest.raises(ValueError, match="outside the PYNQ buffer"):
            asyncio.run(board.read(PYNQ_BASE - 1, 2))
    assert _Buffer.log[-1] == ("free",)


def test_the_pynq_interrupt_by_pin_name_or_object(pynq):
    from host.pynq import PynqBoard
    board = PynqBoard(MICRO, overlay="loaded", interrupt="edgemoe/irq")
    assert board.overlay == "loaded"

    async def fired():
        waiting = asyncio.ensure_future(board.interrupt(1.0))
        await asyncio.sleep(0)
        pynq.Interrupt.pins["edgemoe/irq"].event.set()
        return await waiting
    assert asyncio.run(fired()) is True

    class Quiet:
        async def wait(self):
            await asyncio.sleep(10)
    assert asyncio.run(PynqBoard(MICRO, interrupt=Quiet()).interrupt(0.01)) is False
    with pytest.raises(ValueError, match="no interrupt pin 'edgemoe/intr'.*'edgemoe/irq'"):
        PynqBoard(MICRO, interrupt="edgemoe/intr")
    with pytest.raises(ValueError, match="not both"):
        PynqBoard(MICRO, bitstream="a.bit", overlay="loaded")


def test_without_pynq_the_backend_says_where_it_runs(monkeypatch):
    from host.pynq import PynqBoard
    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(ImportError, match="pynq is not installed: this backend runs on a PYNQ "
                                          "image; use --backend linux or devmem elsewhere"):
        PynqBoard(MICRO)
