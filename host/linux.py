"""A Zynq UltraScale+ board running plain Linux: the bitstream through the kernel's FPGA manager,
the registers and the interrupt through UIO, the buffers through u-dma-buf.

Nothing here needs root once the device files belong to the user (a udev rule, docs/host.md):

* :func:`load_bitstream` copies a ``.bin`` into ``/lib/firmware`` and asks
  ``/sys/class/fpga_manager/fpga0`` to load it (that step needs root);
* :class:`Uio` maps the register block's UIO device (``generic-uio``, found by its name) and
  waits for its interrupt;
* :class:`UDmaBuf` maps a u-dma-buf buffer: physically contiguous DRAM the PL's ports reach, at
  a physical address the driver plans the buffers in; opened ``O_SYNC``, so uncached (the HP
  ports do not snoop the caches);
* :class:`LinuxBoard` is the two as the driver's :class:`host.memory.Memory`;
* :func:`device_tree_overlay` writes the overlay that declares all three
  (``python -m host.linux --overlay``).

Every path starts at ``root`` (``/`` on a board), so the tests run the same code over a
temporary directory laid out like the kernel's (regular files stand in for the device files;
the interrupt is tested over a pipe). Nothing of it has run on a board yet.
"""

import argparse
import asyncio
import glob
import mmap
import os
import shutil
import struct
import sys

from model.machine import ZCU102
from model.system.registers import MAP_BYTES, WORD_BYTES

from host.memory import check_word, read_words, write_words

__all__ = ["BoardError", "load_bitstream", "Uio", "UDmaBuf", "LinuxBoard", "open_board",
           "device_tree_overlay", "main"]

#: The ZCU102's PL-to-PS interrupt ``pl_ps_irq0[0]`` is GIC SPI 89 (UG1085, table 13-1).
ZCU102_IRQ = 89


class BoardError(OSError):
    """A device, driver or permission the board lacks: the message says which and how to fix
    it."""


def _path(root, *parts):
    return os.path.join(root, *(p.lstrip("/") for p in parts))


def _read_text(path):
    with open(path) as f:
        return f.read().strip()


def _open(path, what, fix):
    try:
        return os.open(path, os.O_RDWR | getattr(os, "O_SYNC", 0))
    except FileNotFoundError:
        raise BoardError(f"{path} does not exist: {fix}") from None
    except PermissionError:
        raise BoardError(f"no permission to open {path} ({what}) read-write: run as root, or "
                         f"give the device to your group with a udev rule (docs/host.md)") from None


def load_bitstream(bitstream, *, root="/", manager="fpga0"):
    """Load ``bitstream`` (a ``.bin`` for the FPGA manager, e.g. ``bootgen -process_bitstream
    bin``) into the PL through ``/sys/class/fpga_manager/<manager>``; raise :class:`BoardError`
    unless the manager then reports ``operating``."""
    sysfs = _path(root, "sys/class/fpga_manager", manager)
    if not os.path.isdir(sysfs):
        raise BoardError(f"no FPGA manager at {sysfs}: the kernel needs "
                         f"CONFIG_FPGA_MGR_ZYNQMP_FPGA (or load the bitstream from U-Boot)")
    if not os.path.isfile(bitstream):
        raise BoardError(f"bitstream {bitstream} does not exist")
    firmware = _path(root, "lib/firmware")
    name = os.path.basename(bitstream)
    try:
        os.makedirs(firmware, exist_ok=True)
        if os.path.abspath(bitstream) != os.path.join(os.path.abspath(firmware), name):
            shutil.copyfile(bitstream, os.path.join(firmware, name))
        with open(os.path.join(sysfs, "flags"), "w") as f:
            f.write("0")                          # a full bitstream, not a partial one
        with open(os.path.join(sysfs, "firmware"), "w") as f:
            f.write(name)
    except PermissionError as e:
        raise BoardError(f"loading a bitstream needs root ({e.filename}: permission "
                         f"denied)") from None
    state = _read_text(os.path.join(sysfs, "state"))
    if state != "operating":
        raise BoardError(f"the FPGA manager reports {state!r} after loading {name}, not "
                         f"'operating': was the bitstream built for this part (an XCZU9EG on "
                         f"the ZCU102) and converted to .bin?")


class Uio:
    """The register block's UIO device, found by ``name`` under ``/sys/class/uio``: map 0 is
    the register map, the device's interrupt is the machine's ``irq``.

    ``fd`` (for tests) replaces the device file for the interrupt: anything that reads 4 bytes
    when an interrupt came, as ``/dev/uioN`` does.
    """

    def __init__(self, name="edgemoe", *, root="/"):
        found = {}
        for entry in sorted(glob.glob(_path(root, "sys/class/uio/uio*"))):
            try:
                found[_read_text(os.path.join(entry, "name"))] = entry
            except OSError:
                continue
        if name not in found:
            listed = ", ".join(sorted(found)) or "none"
            raise BoardError(f"no UIO device named {name!r} (found: {listed}): load the "
                             f"device-tree overlay (python -m host.linux --overlay), whose "
                             f"register node is compatible \"generic-uio\", and boot with "
                             f"uio_pdrv_genirq.of_id=generic-uio")
        entry = found[name]
        size = int(_read_text(os.path.join(entry, "maps/map0/size")), 0)
        self.base = int(_read_text(os.path.join(entry, "maps/map0/addr")), 0)
        if size < MAP_BYTES:
            raise BoardError(f"the UIO device {name!r} maps {size:#x} bytes; the register map "
                             f"is {MAP_BYTES:#x}: fix the reg size of its device-tree node")
        self.device = _path(root, "dev", os.path.basename(entry))
        self.fd = _open(self.device, "the register block", "is the uio_pdrv_genirq driver "
                        "loaded?")
        try:
            # Map N of a UIO device is at offset N pages of its file.
            self._map = mmap.mmap(self.fd, MAP_BYTES, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        except OSError as e:
            os.close(self.fd)
            raise BoardError(f"cannot map {self.device}: {e.strerror}") from None
        self._words = memoryview(self._map).cast("I")

    def read32(self, offset):
        check_word(offset)
        return int(self._words[offset // WORD_BYTES])

    def write32(self, offset, value):
        check_word(offset, value)
        self._words[offset // WORD_BYTES] = value

    async def wait_interrupt(self, seconds, fd=None):
        """Unmask the interrupt, then wait up to ``seconds`` (None: no limit) for it: True if
        it came (its count is read), False on the deadline."""
        fd = self.fd if fd is None else fd
        os.write(fd, struct.pack("=I", 1))         # unmask: UIO masks it at each interrupt
        loop = asyncio.get_running_loop()
        came = loop.create_future()
        loop.add_reader(fd, lambda: came.done() or came.set_result(True))
        try:
            await asyncio.wait_for(came, None if seconds is None else max(0.0, seconds))
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
        os.read(fd, 4)
        return True

    def close(self):
        self._words.release()
        self._map.close()
        os.close(self.fd)


class UDmaBuf:
    """A u-dma-buf buffer (``/dev/<name>``, its physical address and size in sysfs): DRAM for
    the weights, image and output buffers."""

    def __init__(self, name="udmabuf0", *, root="/"):
        # u-dma-buf 3.x and later use class u-dma-buf; older versions udmabuf.
        candidates = [_path(root, "sys/class", cls, name) for cls in ("u-dma-buf", "udmabuf")]
        sysfs = next((c for c in candidates if os.path.isdir(c)), None)
        if sysfs is None:
            looked = " and ".join(candidates)
            raise BoardError(f"no u-dma-buf device {name!r} (looked in {looked}): "
                             f"modprobe u-dma-buf udmabuf0=0x4000000, or load the overlay "
                             f"(python -m host.linux --overlay)")
        self.base = int(_read_text(os.path.join(sysfs, "phys_addr")), 0)
        self.size = int(_read_text(os.path.join(sysfs, "size")), 0)
        self.device = _path(root, "dev", name)
        self.fd = _open(self.device, "the DMA buffer", "is the u-dma-buf module loaded?")
        try:
            self._map = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as e:
            os.close(self.fd)
            raise BoardError(f"cannot map {self.size:#x} bytes of {self.device}: "
                             f"{getattr(e, 'strerror', None) or e}") from None

    def _offset(self, addr, n):
        if not (self.base <= addr and addr + n <= self.base + self.size):
            raise ValueError(f"{n} bytes at {addr:#x} are outside the u-dma-buf buffer "
                             f"{self.base:#x}..{self.base + self.size:#x}")
        return addr - self.base

    def read(self, addr, n):
        return read_words(self._map, self._offset(addr, n), n)

    def write(self, addr, data):
        write_words(self._map, self._offset(addr, len(data)), data)

    def close(self):
        self._map.close()
        os.close(self.fd)


class LinuxBoard:
    """:class:`host.memory.Memory` over a :class:`Uio` (registers) and a :class:`UDmaBuf`
    (DRAM); :meth:`interrupt` is the driver's ``wait(interrupt=...)``."""

    def __init__(self, uio, dma):
        self.uio, self.dma = uio, dma

    async def read(self, addr, n):
        return self.dma.read(addr, n)

    async def write(self, addr, data):
        self.dma.write(addr, data)

    async def read32(self, offset):
        return self.uio.read32(offset)

    async def write32(self, offset, value):
        self.uio.write32(offset, value)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    async def interrupt(self, seconds):
        return await self.uio.wait_interrupt(seconds)

    def close(self):
        self.uio.close()
        self.dma.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_board(config, machine=ZCU102, *, root="/", uio_name="edgemoe", udmabuf="udmabuf0"):
    """The board as ``(LinuxBoard, Buffers)``: the buffers planned at the start of the
    u-dma-buf buffer, which must hold them."""
    from host.driver import Buffers
    uio = Uio(uio_name, root=root)
    try:
        dma = UDmaBuf(udmabuf, root=root)
    except BaseException:
        uio.close()
        raise
    buffers = Buffers.plan(dma.base, config, machine)
    if buffers.end > dma.base + dma.size:
        need = buffers.end - dma.base
        uio.close()
        dma.close()
        raise BoardError(f"{config.name} needs {need:#x} bytes of buffers; {udmabuf} holds "
                         f"{dma.size:#x}: make it at least {need:#x} (u-dma-buf's size)")
    return LinuxBoard(uio, dma), buffers


def dma_bytes(config, machine=ZCU102):
    """Bytes of u-dma-buf that the three buffers need (planned from a page-aligned base)."""
    from host.driver import Buffers
    return Buffers.plan(0x1000, config, machine).end - 0x1000


def device_tree_overlay(*, dma_bytes, bitstream="edgemoe.bin", regs_base=0xA000_0000,
                        regs_size=0x1000, irq=ZCU102_IRQ, uio_name="edgemoe",
                        udmabuf="udmabuf0"):
    """The device-tree overlay source (``.dtso``) for a Zynq UltraScale+ running the machine:
    the bitstream for the FPGA region, the register block as a ``generic-uio`` device with its
    interrupt, and a u-dma-buf buffer of ``dma_bytes``."""
    if regs_size < MAP_BYTES:
        raise ValueError(f"regs_size {regs_size:#x} is smaller than the register map "
                         f"({MAP_BYTES:#x})")
    size = -(-dma_bytes // 0x10_0000) * 0x10_0000          # whole MiB
    return f"""/dts-v1/;
/plugin/;

/* The Edge-MoE accelerator: python -m host.linux --overlay. Compile with
 * dtc -@ -I dts -O dtb -o edgemoe.dtbo edgemoe.dtso, then apply it through configfs
 * (/sys/kernel/config/device-tree/overlays/) or from U-Boot. */

&fpga_full {{
    firmware-name = "{bitstream}";
}};

&amba {{
    {uio_name}@{regs_base:x} {{
        compatible = "generic-uio";
        reg = <0x0 0x{regs_base:08x} 0x0 0x{regs_size:x}>;
        interrupt-parent = <&gic>;
        interrupts = <0 {irq} 4>;       /* SPI {irq}, level high: pl_ps_irq0[0] */
        linux,uio-name = "{uio_name}";
    }};

    {udmabuf}@0 {{
        compatible = "ikwzm,u-dma-buf";
        device-name = "{udmabuf}";
        size = <0x{size:x}>;            /* {size // 0x10_0000} MiB for the buffers */
    }};
}};
"""


def main(argv=None):
    from model.config import CONFIGS, config_by_name
    from model.machine import MACHINES, machine_by_name
    parser = argparse.ArgumentParser(prog="python -m host.linux",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", action="store_true", required=True,
                        help="print (or --out) the device-tree overlay")
    parser.add_argument("--config", default="m3vit-tiny",
                        help=f"model configuration ({', '.join(CONFIGS)}; default m3vit-tiny)")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset ({', '.join(MACHINES)})")
    parser.add_argument("--bitstream", default="edgemoe.bin",
                        help="the firmware name the FPGA region loads (in /lib/firmware)")
    parser.add_argument("--regs-base", type=lambda t: int(t, 0), default=0xA000_0000)
    parser.add_argument("--irq", type=int, default=ZCU102_IRQ, help="GIC SPI number")
    parser.add_argument("--out", help="write the overlay here instead of printing it")
    args = parser.parse_args(argv)
    try:
        config, machine = config_by_name(args.config), machine_by_name(args.machine)
    except ValueError as e:
        parser.error(str(e))
    text = device_tree_overlay(dma_bytes=dma_bytes(config, machine), bitstream=args.bitstream,
                               regs_base=args.regs_base, irq=args.irq)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
