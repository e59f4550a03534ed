"""How the driver reaches the hardware: a small asynchronous memory-access interface and its
implementations.

The driver (:mod:`host.driver`) needs two address spaces: DRAM (physical addresses, where the
image, weights and output buffers live) and the accelerator's AXI4-Lite registers (byte offsets
from the register block's base). :class:`Memory` is that interface; every method is a coroutine,
so the same driver runs under asyncio on a board and under cocotb in simulation.

Implementations:

* :class:`DevMem` -- ``mmap`` of ``/dev/mem`` (a board running Linux) or of any file (tests);
* :class:`CocotbBus` -- cocotbext-axi: an ``AxiRam`` (or any object with ``read``/``write``) for
  DRAM and an ``AxiLiteMaster`` for the registers, in a cocotb simulation;
* :class:`TwinMemory` -- a bytearray for DRAM and :class:`model.system.registers.RegisterFile`, the
  register block's bit-exact twin, for host code without hardware.

The board runtimes (:mod:`host.linux`, :mod:`host.pynq`) build on the same pieces as
:class:`DevMem`: :class:`AddressRange` (where a physical address lands in a buffer),
:class:`MappedWindow` (a range mapped from a device file, copied in whole aligned 64-bit words)
and :class:`RegisterWords` (the register map as aligned 32-bit accesses).
"""

import array
import asyncio
import inspect
import mmap
import os
from typing import Protocol, runtime_checkable

from model.system.registers import MAP_BYTES, WORD_BYTES

__all__ = ["Memory", "DevMem", "CocotbBus", "TwinMemory", "AddressRange", "MappedWindow",
           "RegisterWords", "check_word", "read_words", "write_words"]


@runtime_checkable
class Memory(Protocol):
    """What the driver needs of the hardware.

    ``read``/``write`` reach DRAM at physical byte addresses; ``read32``/``write32`` reach the
    32-bit register at a byte ``offset`` of the register map (:mod:`model.system.registers`), as one
    aligned 32-bit access; ``sleep`` lets time pass between two polls of STATUS (wall-clock
    seconds on a board, simulated cycles in a simulation).
    """

    async def read(self, addr: int, n: int) -> bytes: ...

    async def write(self, addr: int, data: bytes) -> None: ...

    async def read32(self, offset: int) -> int: ...

    async def write32(self, offset: int, value: int) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


#: Bytes of each load and store of a DRAM copy through DevMem.
_COPY_BYTES = 8


def check_word(offset, value=0):
    if not (isinstance(offset, int) and 0 <= offset < MAP_BYTES and offset % WORD_BYTES == 0):
        raise ValueError(f"register offset must be a multiple of {WORD_BYTES} below "
                         f"{MAP_BYTES:#x}, not {offset!r}")
    if not (isinstance(value, int) and 0 <= value < 1 << 32):
        raise ValueError(f"register value must be a 32-bit unsigned integer, not {value!r}")


def _words_around(mapping, start, n):
    """The aligned 64-bit words of ``mapping`` that hold bytes ``[start, start + n)``, and
    where the range starts in the first."""
    lo, hi = start - start % _COPY_BYTES, -(-(start + n) // _COPY_BYTES) * _COPY_BYTES
    if hi > len(mapping):
        raise ValueError(f"{n} bytes at offset {start:#x} reach past the end of the "
                         f"{len(mapping):#x}-byte mapping in whole {_COPY_BYTES}-byte words")
    return memoryview(mapping)[lo:hi].cast("Q"), start - lo


def read_words(mapping, start, n):
    """``n`` bytes from offset ``start`` of an (uncached) mapping, read as whole aligned 64-bit
    words: on the Cortex-A53 an unaligned access to device memory faults."""
    words, skip = _words_around(mapping, start, n)
    with words:
        return array.array("Q", words).tobytes()[skip:skip + n]


def write_words(mapping, start, data):
    """Write ``data`` at offset ``start`` of a mapping as whole aligned 64-bit words (the
    words at the ends are read, merged and written back)."""
    data = bytes(data)
    words, skip = _words_around(mapping, start, len(data))
    with words:
        merged = bytearray(array.array("Q", words).tobytes()) if (
            skip or len(data) % _COPY_BYTES) else bytearray(len(words) * _COPY_BYTES)
        merged[skip:skip + len(data)] = data
        words[:] = array.array("Q", bytes(merged))


class AddressRange:
    """``[base, base + size)`` of a physical address space, named for messages: where an access
    of ``n`` bytes at ``addr`` lands in the buffer that holds the range."""

    def __init__(self, base, size, name):
        if base < 0 or size <= 0:
            raise ValueError(f"{name} {base:#x} + {size:#x} is empty or negative")
        self.base, self.size, self.name = base, size, name

    @property
    def end(self):
        return self.base + self.size

    def offset(self, addr, n):
        if not (self.base <= addr and addr + n <= self.end):
            raise ValueError(f"{n} bytes at {addr:#x} are outside the {self.name} "
                             f"{self.base:#x}..{self.end:#x}")
        return addr - self.base


_DEVMEM_HINT = ("On a board, /dev/mem maps only what the kernel lets it (CONFIG_STRICT_DEVMEM): "
                "reserve the DRAM window with a reserved-memory node, and check the register "
                "base in the block design's address map")


class MappedWindow(AddressRange):
    """``[base, base + size)`` of a physical address space, mapped shared from the file ``fd``
    (of ``path``): at file offset ``base`` itself, as ``/dev/mem`` lays memory out, or at
    ``file_offset`` for a device file that starts at ``base`` (UIO, u-dma-buf).

    ``read``/``write`` copy whole aligned 64-bit words (:func:`read_words`); ``hint`` ends the
    message when the kernel refuses the mapping.
    """

    def __init__(self, fd, base, size, name, path, *, file_offset=None, hint=_DEVMEM_HINT):
        super().__init__(base, size, f"{name} window")
        at = base if file_offset is None else file_offset
        page = mmap.ALLOCATIONGRANULARITY
        self._skip = at % page
        try:
            self._map = mmap.mmap(fd, self._skip + size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=at - self._skip)
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise OSError(f"cannot map the {name} window {base:#x}..{base + size:#x} of {path}: "
                          f"{reason}. {hint}") from None

    def offset(self, addr, n):
        """Where ``addr`` lies in the mapping."""
        return self._skip + super().offset(addr, n)

    def read(self, addr, n):
        return read_words(self._map, self.offset(addr, n), n)

    def write(self, addr, data):
        write_words(self._map, self.offset(addr, len(data)), data)

    def close(self):
        self._map.close()


class RegisterWords:
    """The register map at the start of a :class:`MappedWindow`, as 32-bit words: each access
    one aligned 32-bit load or store (a ``memoryview`` of unsigned words), as a device register
    needs. :meth:`release` before closing the window."""

    def __init__(self, window):
        if window.size < MAP_BYTES:
            raise ValueError(f"the {window.name} holds {window.size:#x} bytes; the register "
                             f"map is {MAP_BYTES:#x}")
        self._view = memoryview(window._map)[window._skip:window._skip + MAP_BYTES]
        self._words = self._view.cast("I")

    def read32(self, offset):
        check_word(offset)
        return int(self._words[offset // WORD_BYTES])

    def write32(self, offset, value):
        check_word(offset, value)
        self._words[offset // WORD_BYTES] = value

    def release(self):
        self._words.release()
        self._view.release()


class DevMem:
    """Physical memory through ``mmap`` of ``/dev/mem`` (or of a file standing in for it).

    Parameters
    ----------
    regs_base : int
        Physical address of the register block (the AXI4-Lite slave behind an HPM port, e.g.
        ``0xA000_0000`` on the ZCU102's HPM0_FPD).
    dram_base, dram_size : int
        The physical DRAM window that holds the buffers (reserve it from Linux, e.g. with a
        ``reserved-memory`` node, so nothing else uses it).
    path : str
        ``/dev/mem`` on a board (root, opened ``O_SYNC`` so the mapping is uncached: the PL
        reads DRAM through the non-coherent HP ports); any file of sufficient size in tests.

    Register accesses are single aligned 32-bit loads and stores (a ``memoryview`` of unsigned
    words over the mapping), as a device register needs. DRAM copies cover whole aligned 64-bit
    words (the ends of an unaligned range are read, merged and written back whole): an uncached
    mapping is device memory on the Cortex-A53, where an unaligned access faults.
    """

    def __init__(self, *, regs_base, dram_base, dram_size, path="/dev/mem"):
        flags = os.O_RDWR | getattr(os, "O_SYNC", 0)
        try:
            self._fd = os.open(path, flags)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist") from None
        except PermissionError:
            raise PermissionError(f"cannot open {path} read-write: run as root (or give a "
                                  f"file path for tests)") from None
        try:
            self._regs = MappedWindow(self._fd, regs_base, MAP_BYTES, "register", path)
            self._dram = MappedWindow(self._fd, dram_base, dram_size, "DRAM", path)
        except Exception:
            os.close(self._fd)
            raise
        self._words = RegisterWords(self._regs)

    async def read(self, addr, n):
        return self._dram.read(addr, n)

    async def write(self, addr, data):
        self._dram.write(addr, data)

    async def read32(self, offset):
        return self._words.read32(offset)

    async def write32(self, offset, value):
        self._words.write32(offset, value)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    def close(self):
        self._words.release()
        self._regs.close()
        self._dram.close()
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CocotbBus:
    """A cocotb simulation: DRAM in ``ram`` (cocotbext-axi ``AxiRam``, or any object whose
    ``read(address, length)`` and ``write(address, data)`` are plain or coroutine methods), the
    registers through ``axil`` (an ``AxiLiteMaster``).

    ``sleep`` waits ``poll_cycles`` rising edges of ``clock`` (simulated time: the seconds the
    driver asks for are ignored), or 1 us of simulated time without a clock.
    """

    def __init__(self, ram, axil, *, clock=None, dram_base=0, regs_base=0, poll_cycles=16):
        self.ram, self.axil, self.clock = ram, axil, clock
        self.dram_base, self.regs_base, self.poll_cycles = dram_base, regs_base, poll_cycles

    async def read(self, addr, n):
        data = self.ram.read(addr - self.dram_base, n)
        return bytes(await data if inspect.isawaitable(data) else data)

    async def write(self, addr, data):
        done = self.ram.write(addr - self.dram_base, bytes(data))
        if inspect.isawaitable(done):
            await done

    async def read32(self, offset):
        check_word(offset)
        return await self.axil.read_dword(self.regs_base + offset)

    async def write32(self, offset, value):
        check_word(offset, value)
        await self.axil.write_dword(self.regs_base + offset, value)

    async def sleep(self, seconds):
        from cocotb.triggers import ClockCycles, Timer
        if self.clock is not None:
            await ClockCycles(self.clock, self.poll_cycles)
        else:
            await Timer(1, "us")


class TwinMemory:
    """DRAM as a bytearray and the registers as :class:`model.system.registers.RegisterFile`.

    ``on_sleep`` (optional, ``callable(self)``) plays the machine: it is called whenever the
    driver waits between polls, and may set ``regs.busy``, write the output buffer and call
    ``regs.pulse_done()``.
    """

    def __init__(self, regs, *, dram_base=0x1000_0000, dram_size=1 << 20, on_sleep=None):
        self.regs = regs
        self.dram_base = dram_base
        self._range = AddressRange(dram_base, dram_size, "DRAM window")
        self.dram = bytearray(dram_size)
        self.on_sleep = on_sleep
        self.register_log = []       # (op, offset, value) of every register access

    async def read(self, addr, n):
        start = self._range.offset(addr, n)
        return bytes(self.dram[start:start + n])

    async def write(self, addr, data):
        start = self._range.offset(addr, len(data))
        self.dram[start:start + len(data)] = data

    async def read32(self, offset):
        check_word(offset)
        value = self.regs.read(offset)
        self.register_log.append(("read", offset, value))
        return value

    async def write32(self, offset, value):
        check_word(offset, value)
        self.register_log.append(("write", offset, value))
        self.regs.write(offset, value)

    async def sleep(self, seconds):
        if self.on_sleep is not None:
            self.on_sleep(self)
