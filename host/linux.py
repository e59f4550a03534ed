"""A Zynq UltraScale+ board running plain Linux: the bitstream through the kernel's FPGA manager,
the registers and the interrupt through UIO, the buffers through u-dma-buf.

Nothing here needs root once the device files belong to the user (a udev rule, docs/host.md):

* :func:`load_bitstream` copies a ``.bin`` into ``/lib/firmware`` and asks
  ``/sys/class/fpga_manager/fpga0`` to load it (that step needs root);
* :class:`Uio` maps the register block's UIO device (``generic-uio``, found by its name) and
  waits for its interrupt (:func:`wait_for_interrupt`);
* :class:`UDmaBuf` maps a u-dma-buf buffer: physically contiguous DRAM the PL's ports reach, at
  a physical address the driver plans the buffers in; opened ``O_SYNC``, so uncached (the HP
  ports do not snoop the caches);
* :class:`LinuxBoard` is the two as the driver's :class:`host.memory.Memory`;
* :func:`device_tree_overlay` writes the overlay that declares all three
  (``python -m host.linux --overlay``).

Every path starts at ``root`` (``/`` on a board), so the tests run the same code over a
temporary directory laid out like the kernel's (regular files stand in for the device files, a
socket for the interrupt's file descriptor). Nothing of it has run on a board yet.
"""

import argparse
import asyncio
import glob
import os
import shutil
import struct
import sys

from model.machine import ZCU102
from model.system.registers import MAP_BYTES

from host.memory import MappedWindow, RegisterWords

__all__ = ["BoardError", "load_bitstream", "Uio", "wait_for_interrupt", "UDmaBuf", "LinuxBoard",
           "open_board", "dma_bytes", "device_tree_overlay", "main"]

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


def _read_number(path, what):
    """A number from a sysfs attribute (``0x...`` or decimal), or a message naming it."""
    try:
        text = _read_text(path)
        return int(text, 0)
    except FileNotFoundError:
        raise BoardError(f"{path} does not exist: {what}") from None
    except ValueError:
        raise BoardError(f"{path} holds {text!r}, not a number") from None


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
    except OSError as e:
        # The manager answers the write to ``firmware`` with an error when the load fails.
        refused = f"the FPGA manager refused {name} ({e.strerror or e})"
    else:
        refused = f"after loading {name}"
    state = _read_text(os.path.join(sysfs, "state"))
    if state != "operating":
        raise BoardError(f"{refused}: it reports {state!r}, not 'operating': was the bitstream "
                         f"built for this part (an XCZU9EG on the ZCU102) and converted to .bin "
                         f"(bootgen -arch zynqmp -process_bitstream bin)?")


class Uio:
    """The register block's UIO device, found by ``name`` under ``/sys/class/uio``: its map 0
    is the register map (aligned 32-bit accesses, :class:`host.memory.RegisterWords`), its
    interrupt the machine's ``irq`` (:meth:`wait_interrupt`)."""

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
        no_map = "its device-tree node needs a reg covering the register block"
        size = _read_number(os.path.join(entry, "maps/map0/size"), no_map)
        self.base = _read_number(os.path.join(entry, "maps/map0/addr"), no_map)
        if size < MAP_BYTES:
            raise BoardError(f"the UIO device {name!r} maps {size:#x} bytes; the register map "
                             f"is {MAP_BYTES:#x}: fix the reg size of its device-tree node")
        self.device = _path(root, "dev", os.path.basename(entry))
        self.fd = _open(self.device, "the register block", "is the uio_pdrv_genirq driver "
                        "loaded?")
        try:
            # Map N of a UIO device lies at offset N pages of its file.
            self._window = MappedWindow(self.fd, self.base, MAP_BYTES, "register", self.device,
                                        file_offset=0, hint="Is the UIO map as large as its "
                                        "sysfs size says?")
        except OSError as e:
            os.close(self.fd)
            raise BoardError(str(e)) from None
        self._words = RegisterWords(self._window)

    def read32(self, offset):
        return self._words.read32(offset)

    def write32(self, offset, value):
        self._words.write32(offset, value)

    async def wait_interrupt(self, seconds):
        """The driver's ``wait(interrupt=...)``: :func:`wait_for_interrupt` on this device."""
        return await wait_for_interrupt(self.fd, seconds)

    def close(self):
        self._words.release()
        self._window.close()
        os.close(self.fd)


async def wait_for_interrupt(fd, seconds):
    """Unmask the interrupt of the UIO device open as ``fd``, then wait up to ``seconds``
    (None: no limit) for it: True if it came (its 4-byte count is read), False at the deadline.

    UIO masks the line at each interrupt (``uio_pdrv_genirq`` disables it in its handler), so it
    is unmasked by writing a native 32-bit 1 before every wait; the fd becomes readable when the
    next interrupt arrives. The wait leaves the event loop free (``add_reader``), so a deadline
    costs nothing while the machine runs.
    """
    os.write(fd, struct.pack("=I", 1))
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


class UDmaBuf:
    """A u-dma-buf buffer (``/dev/<name>``, its physical address and size in sysfs): DRAM for
    the weights, image and output buffers, copied in whole aligned 64-bit words
    (:class:`host.memory.MappedWindow`)."""

    def __init__(self, name="udmabuf0", *, root="/"):
        # The driver's class is u-dma-buf; versions from before its renaming call it udmabuf.
        candidates = [_path(root, "sys/class", cls, name) for cls in ("u-dma-buf", "udmabuf")]
        sysfs = next((c for c in candidates if os.path.isdir(c)), None)
        if sysfs is None:
            looked = " and ".join(candidates)
            raise BoardError(f"no u-dma-buf device {name!r} (looked in {looked}): modprobe "
                             f"u-dma-buf {name}=0x4000000 (64 MiB, enough for m3vit-tiny), or "
                             f"load the overlay (python -m host.linux --overlay)")
        stale = "is the u-dma-buf module the one that made this buffer?"
        self.base = _read_number(os.path.join(sysfs, "phys_addr"), stale)
        self.size = _read_number(os.path.join(sysfs, "size"), stale)
        self.device = _path(root, "dev", name)
        self.fd = _open(self.device, "the DMA buffer", "is the u-dma-buf module loaded?")
        try:
            self._window = MappedWindow(self.fd, self.base, self.size, "u-dma-buf", self.device,
                                        file_offset=0, hint="Is the buffer as large as its "
                                        "sysfs size says?")
        except OSError as e:
            os.close(self.fd)
            raise BoardError(str(e)) from None

    @property
    def window(self):
        """``(phys_addr, size)``: where :meth:`host.driver.Buffers.plan` may place the
        buffers."""
        return self.base, self.size

    def read(self, addr, n):
        return self._window.read(addr, n)

    def write(self, addr, data):
        self._window.write(addr, data)

    def close(self):
        self._window.close()
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
    base, size = dma.window
    buffers = Buffers.plan(base, config, machine)
    if buffers.end > base + size:
        need = buffers.end - base
        uio.close()
        dma.close()
        raise BoardError(f"{config.name} needs {need:#x} bytes of buffers; {udmabuf} holds "
                         f"{size:#x}: make it at least that large (modprobe u-dma-buf "
                         f"{udmabuf}={need:#x}, or the overlay of python -m host.linux --overlay "
                         f"--config {config.name})")
    return LinuxBoard(uio, dma), buffers


def dma_bytes(config, machine=ZCU102):
    """Bytes of u-dma-buf that the three buffers need (planned from a page-aligned base)."""
    from host.driver import Buffers
    return Buffers.plan(0x1000, config, machine).end - 0x1000


def device_tree_overlay(*, dma_bytes, bitstream_name="edgemoe.bin", regs_base=0xA000_0000,
                        regs_size=0x1000, irq=ZCU102_IRQ, uio_name="edgemoe",
                        udmabuf="udmabuf0"):
    """The device-tree overlay source (``.dtso``) for a Zynq UltraScale+ running the machine.

    Three fragments, in the form every ``dtc`` and the kernel's configfs accept: the FPGA
    region's ``firmware-name`` (applying the overlay loads the bitstream from
    ``/lib/firmware``), the register block as a ``generic-uio`` device named ``uio_name`` with
    its interrupt (``irq`` is the GIC SPI number: ``pl_ps_irq0[0]`` is SPI 89 on the ZynqMP,
    level high), and a u-dma-buf buffer of ``dma_bytes`` rounded up to whole MiB (at the root:
    it has no address of its own for the bus to decode). The labels ``fpga_full``, ``amba``
    and ``gic`` are those of the kernel's ``zynqmp.dtsi``.
    """
    if regs_size < MAP_BYTES:
        raise ValueError(f"regs_size {regs_size:#x} is smaller than the register map "
                         f"({MAP_BYTES:#x})")
    if dma_bytes <= 0:
        raise ValueError(f"dma_bytes must be positive, not {dma_bytes!r}")
    size = -(-dma_bytes // 0x10_0000) * 0x10_0000
    return f"""/dts-v1/;
/plugin/;

/* The Edge-MoE accelerator: python -m host.linux --overlay. Compile with
 * dtc -@ -I dts -O dtb -o edgemoe.dtbo edgemoe.dtso, then apply it through configfs
 * (/sys/kernel/config/device-tree/overlays/) or from U-Boot; boot with
 * uio_pdrv_genirq.of_id=generic-uio. */

/ {{
    fragment@0 {{
        target = <&fpga_full>;
        __overlay__ {{
            firmware-name = "{bitstream_name}";
        }};
    }};

    fragment@1 {{
        target = <&amba>;
        __overlay__ {{
            #address-cells = <2>;
            #size-cells = <2>;

            {uio_name}@{regs_base:x} {{
                compatible = "generic-uio";
                reg = <0x{regs_base >> 32:x} 0x{regs_base & 0xFFFF_FFFF:08x} 0x0 0x{regs_size:x}>;
                interrupt-parent = <&gic>;
                interrupts = <0 {irq} 4>;       /* SPI {irq}, level high */
                linux,uio-name = "{uio_name}";
            }};
        }};
    }};

    fragment@2 {{
        target-path = "/";
        __overlay__ {{
            {udmabuf} {{
                compatible = "ikwzm,u-dma-buf";
                device-name = "{udmabuf}";
                size = <0x{size:x}>;            /* {size // 0x10_0000} MiB for the buffers */
            }};
        }};
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
    text = device_tree_overlay(dma_bytes=dma_bytes(config, machine),
                               bitstream_name=args.bitstream, regs_base=args.regs_base,
                               irq=args.irq)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
