"""A board running a PYNQ image: the bitstream through ``pynq.Overlay``, the registers through
``pynq.MMIO``, the buffers in one ``pynq.allocate`` buffer (physically contiguous, from PYNQ's
CMA), the interrupt through a ``pynq.Interrupt``.

PYNQ's buffers are not coherent with the CPU's caches (its ``cacheable`` flag), and the PL's HP
ports do not snoop them: :class:`PynqBoard` flushes the bytes it wrote after every write and
invalidates the bytes it reads before every read (a slice of a PYNQ buffer flushes and
invalidates only its own range).

``pynq`` is imported only when a board is opened. It does not install on x86, so this module
has been tested only against a stand-in module with PYNQ's interface
(``tests/test_host_backends.py``), never against PYNQ itself on a board.
"""

import asyncio

import numpy as np

from model.machine import ZCU102
from model.system.registers import MAP_BYTES

from host.memory import AddressRange, check_word

__all__ = ["PynqBoard"]

#: Allocated beyond the plan, so that the planned buffers fit wherever the allocation starts
#: (Buffers.plan aligns the weights to 4 KB).
_SLACK = 0x1000


class PynqBoard:
    """:class:`host.memory.Memory` on a PYNQ board, with the buffers of ``config`` on
    ``machine`` planned in a buffer it allocates (:attr:`buffers`).

    Parameters
    ----------
    bitstream : str or None
        The ``.bit`` (with its ``.hwh`` beside it) to load with ``pynq.Overlay``.
    overlay : pynq.Overlay or None
        An overlay already loaded, instead of ``bitstream``; with neither, the bitstream in the
        PL is used as it is.
    regs_base : int
        Physical address of the register block (the ZCU102's HPM0_FPD: ``0xA000_0000``).
    interrupt : str, object or None
        The interrupt: the block design's name of the pin (``"edgemoe/irq"``, for
        ``pynq.Interrupt``), or an interrupt object with a coroutine ``wait()`` (e.g. the
        overlay's ``overlay.edgemoe.irq``); None: the driver polls. PYNQ takes interrupts only
        from ``pl_ps_irq0[0]``, where the ZCU102 shell wires the machine's.

    Raises
    ------
    ImportError
        ``pynq`` is not installed (not a PYNQ image).
    """

    def __init__(self, config, machine=ZCU102, *, bitstream=None, overlay=None,
                 regs_base=0xA000_0000, interrupt=None):
        if bitstream is not None and overlay is not None:
            raise ValueError("give a bitstream to load or an overlay already loaded, not both")
        try:
            import pynq
        except ImportError:
            raise ImportError("pynq is not installed: this backend runs on a PYNQ image; use "
                              "--backend linux or devmem elsewhere") from None
        from host.driver import Buffers
        self.overlay = pynq.Overlay(bitstream) if bitstream is not None else overlay
        self.mmio = pynq.MMIO(regs_base, MAP_BYTES)
        need = Buffers.plan(_SLACK, config, machine).size
        self.buffer = pynq.allocate(shape=(need + _SLACK,), dtype=np.uint8)
        self.base = int(self.buffer.physical_address)
        self._range = AddressRange(self.base, len(self.buffer), "PYNQ buffer")
        self.buffers = Buffers.plan(self.base, config, machine)
        self._interrupt = self._interrupt_of(pynq, interrupt)

    @staticmethod
    def _interrupt_of(pynq, interrupt):
        if interrupt is None or not isinstance(interrupt, str):
            return interrupt
        try:
            return pynq.Interrupt(interrupt)
        except (ValueError, KeyError) as e:
            raise ValueError(f"the loaded overlay has no interrupt pin {interrupt!r} ({e}): name "
                             f"the pin as the block design does (e.g. 'edgemoe/irq'), or leave "
                             f"it out to poll") from None

    def _slice(self, addr, n):
        start = self._range.offset(addr, n)
        return self.buffer[start:start + n]

    async def read(self, addr, n):
        view = self._slice(addr, n)
        view.invalidate()
        return bytes(view)

    async def write(self, addr, data):
        view = self._slice(addr, len(data))
        view[:] = np.frombuffer(bytes(data), dtype=np.uint8)
        view.flush()

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
        """The driver's ``wait(interrupt=...)``: a coroutine function of the seconds left (None:
        no limit) that returns True when the interrupt came, False at the deadline; None
        without an interrupt."""
        if self._interrupt is None:
            return None

        async def wait(seconds):
            try:
                await asyncio.wait_for(self._interrupt.wait(), seconds)
            except asyncio.TimeoutError:
                return False
            return True
        return wait

    def close(self):
        self.buffer.freebuffer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
