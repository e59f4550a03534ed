"""A board running a PYNQ image: the bitstream through ``pynq.Overlay``, the registers through
``pynq.MMIO``, the buffers in one ``pynq.allocate`` buffer (physically contiguous, from PYNQ's
CMA), the interrupt through ``pynq.Interrupt``.

PYNQ maps its buffers cacheable: the PL's HP ports do not snoop the caches, so :class:`PynqBoard`
flushes the buffer after every write and invalidates it before every read. ``pynq`` is imported
only when a board is opened; it is not installable on x86 machines, so the tests run this code
against a stand-in module with PYNQ's interface, never PYNQ itself.
"""

import asyncio

import numpy as np

from model.machine import ZCU102
from model.system.registers import MAP_BYTES

from host.memory import check_word

__all__ = ["PynqBoard"]


class PynqBoard:
    """:class:`host.memory.Memory` on a PYNQ board, with the buffers of ``config`` planned in a
    buffer it allocates (:attr:`buffers`).

    Parameters
    ----------
    bitstream : str or None
        The ``.bit`` (with its ``.hwh`` beside it) to load; None keeps the loaded one.
    regs_base : int
        Physical address of the register block (the ZCU102's HPM0_FPD: ``0xA000_0000``).
    interrupt : str or None
        The overlay's name of the interrupt pin (e.g. ``"edgemoe/irq"``); None: the driver polls.
    """

    def __init__(self, config, machine=ZCU102, *, bitstream=None, regs_base=0xA000_0000,
                 interrupt=None):
        try:
            import pynq
        except ImportError:
            raise ImportError("pynq is not installed: this backend runs on a PYNQ image; use "
                              "--backend linux or devmem elsewhere") from None
        from host.driver import Buffers
        self.overlay = pynq.Overlay(bitstream) if bitstream else None
        self.mmio = pynq.MMIO(regs_base, MAP_BYTES)
        # The plan from a page-aligned base, plus a page of slack for where the buffer lands.
        size = Buffers.plan(0x1000, config, machine).end
        self.buffer = pynq.allocate(shape=(size,), dtype=np.uint8)
        self.base = int(self.buffer.physical_address)
        self.buffers = Buffers.plan(self.base, config, machine)
        if self.buffers.end > self.base + size:                 # cannot happen; say so if it does
            raise RuntimeError(f"the buffers overrun the {size:#x}-byte PYNQ buffer")
        self._interrupt = pynq.Interrupt(interrupt) if interrupt else None

    def _offset(self, addr, n):
        if not (self.base <= addr and addr + n <= self.base + len(self.buffer)):
            raise ValueError(f"{n} bytes at {addr:#x} are outside the PYNQ buffer "
                             f"{self.base:#x}..{self.base + len(self.buffer):#x}")
        return addr - self.base

    async def read(self, addr, n):
        start = self._offset(addr, n)
        self.buffer.invalidate()
        return bytes(self.buffer[start:start + n])

    async def write(self, addr, data):
        start = self._offset(addr, len(data))
        self.buffer[start:start + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        self.buffer.flush()

    async def read32(self, offset):
        check_word(offset)
        return int(self.mmio.read(offset))

    async def write32(self, offset, value):
        check_word(offset, value)
        self.mmio.write(offset, value)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    @property
    def interrupt(self):
        """The driver's ``wait(interrupt=...)``, or None without an interrupt pin."""
        if self._interrupt is None:
            return None

        async def wait(seconds):
            try:
                await asyncio.wait_for(self._interrupt.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return wait

    def close(self):
        self.buffer.freebuffer()
