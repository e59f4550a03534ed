"""A tiny streaming unit that shows how hardware, twin and cocotb bench fit together.

:class:`AddConstant` is the hardware, :func:`add_constant` its numpy twin, and
``sim/benches/example.py`` the cocotb bench that compares the two bit for bit;
``tests/test_sim_runner.py`` runs that bench under Verilator and Icarus.
"""

import numpy as np

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["AddConstant", "add_constant"]


def _signed_range(width):
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


class AddConstant(wiring.Component):
    """Add a constant to a stream of signed integers, saturating at both ends of the range.

    The unit is a two-stage pipeline: the first stage adds with one extra bit so the sum cannot
    wrap, the second clamps it to the payload range. The whole pipeline stalls while ``o`` is
    back-pressured, so ``i.ready`` follows ``o.ready`` combinationally.

    Latency of 2 cycles, from the clock edge that accepts a payload on ``i`` to the edge that
    delivers its result on ``o`` (with ``o.ready`` high); throughput of one payload per cycle.

    Parameters
    ----------
    width : int
        Payload width in bits, at least 2.
    constant : int
        Value added to every payload; must be representable in ``signed(width)``.

    Members
    -------
    i : ``In(stream.Signature(signed(width)))``
        Operands.
    o : ``Out(stream.Signature(signed(width)))``
        Saturated sums, in the order the operands arrived.

    Raises
    ------
    ValueError
        If ``width`` or ``constant`` is out of range.
    """

    #: Cycles from accepting an operand to delivering its sum, as stated above.
    latency = 2

    def __init__(self, *, width, constant):
        if not isinstance(width, int) or isinstance(width, bool) or width < 2:
            raise ValueError(f"Width must be an integer of at least 2, not {width!r}")
        low, high = _signed_range(width)
        if not isinstance(constant, int) or isinstance(constant, bool) or not low <= constant <= high:
            raise ValueError(
                f"Constant must be an integer in [{low}, {high}] for width {width}, "
                f"not {constant!r}")
        self._width = width
        self._constant = constant
        super().__init__({
            "i": In(stream.Signature(signed(width))),
            "o": Out(stream.Signature(signed(width))),
        })

    @property
    def width(self):
        return self._width

    @property
    def constant(self):
        return self._constant

    def elaborate(self, platform):
        m = Module()
        low, high = _signed_range(self._width)

        sum_valid = Signal()
        sum_ = Signal(signed(self._width + 1))

        # Stall everything while the output holds a payload nobody takes: simplest correct
        # back-pressure, and it still runs at full rate when o.ready stays high.
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)

        with m.If(advance):
            m.d.sync += [
                sum_valid.eq(self.i.valid),
                sum_.eq(self.i.payload + self._constant),
                self.o.valid.eq(sum_valid),
            ]
            with m.If(sum_ > high):
                m.d.sync += self.o.payload.eq(high)
            with m.Elif(sum_ < low):
                m.d.sync += self.o.payload.eq(low)
            with m.Else():
                m.d.sync += self.o.payload.eq(sum_)

        return m


def add_constant(x, *, width, constant):
    """Golden twin of :class:`AddConstant`.

    Parameters
    ----------
    x : array_like of int
        Operands, each representable in ``signed(width)``.
    width, constant : int
        As for :class:`AddConstant`.

    Returns
    -------
    numpy.ndarray of int64
        ``x + constant`` clamped to the ``signed(width)`` range.
    """
    low, high = _signed_range(width)
    return np.clip(np.asarray(x, dtype=np.int64) + constant, low, high)
