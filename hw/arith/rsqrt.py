"""The inverse square root unit in hardware: twin of :func:`model.arith.rsqrt.rsqrt`.

For an integer ``S > 0`` it gives ``(r, e)`` with ``1/sqrt(S) = r * 2**-(MANT_FRAC + e)``::

    e = (bitlen(S) - 1) // 2               the highest non-zero pair of bits of S
    m = shift_floor(S, 2e - M_FRAC)        S / 4**e in [1, 4), M_FRAC fraction bits, truncated
    r = min(RSQRT_TABLE at m - 1, 2**MANT_FRAC - 1)

The shift ``2e - M_FRAC`` is negative for small ``S`` (a left shift): the hardware shifts
``S << M_FRAC`` right by ``2e`` instead, which is the same for both signs. The table lookup is
:class:`hw.arith.interp.InterpDatapath`, whose multiply is the unit's one DSP.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import MANT_FRAC
from model.arith.rsqrt import M_FRAC, RSQRT_TABLE

from hw import checks
from hw.arith.interp import InterpDatapath
from hw.streams.pipeline import delay, valid_pipeline


__all__ = ["Rsqrt"]


#: Default width of ``S``: LayerNorm's sum of squares for rows of up to 1024 values, 1024 squares
#: of 18-bit values (below 2**44) plus its epsilon term.
DEFAULT_WIDTH = 46
#: ``S`` must stay below 2**53, where the twin computes ``bitlen`` exactly.
MAX_WIDTH = 53


class Rsqrt(wiring.Component):
    """``1/sqrt(S)`` as a mantissa ``r`` and an exponent ``e``, one ``S`` per cycle.

    A pipeline stalled as a whole while ``o`` holds a result nobody takes (so ``i.ready``
    follows ``o.ready`` combinationally): stage 1 finds ``e`` (the highest non-zero pair of bits
    of ``S``), stage 2 normalises ``S`` to ``m`` and subtracts the table's first node, then the
    four stages of :class:`hw.arith.interp.InterpDatapath` interpolate; the clamp to
    ``2**MANT_FRAC - 1`` is combinational on its output register.

    Latency of ``LATENCY = 2 + InterpDatapath.LATENCY`` = 6 cycles, from the clock edge that
    accepts ``S`` on ``i`` to the edge that delivers ``(r, e)`` on ``o`` (with ``o.ready``
    high); throughput of one result per cycle.

    Parameters
    ----------
    width : int
        Bits of the unsigned input ``S``, at most ``MAX_WIDTH``. The default holds
        LayerNorm's ``S`` for rows of up to 1024 values.

    Members
    -------
    i : ``In(stream.Signature(unsigned(width)))``
        ``S``, positive. ``S = 0`` (which the twin rejects) gives the result for ``S = 1``.
    o : ``Out(stream.Signature(Rsqrt.result_layout))``
        ``(r, e)``: ``r`` of ``MANT_FRAC`` bits, ``e`` up to ``(width - 1) // 2``.

    Attributes
    ----------
    result_layout : data.StructLayout
        ``{"r": unsigned(MANT_FRAC), "e": unsigned(e_width)}``.

    Raises
    ------
    ValueError
        If ``width`` is not an integer in [1, ``MAX_WIDTH``].
    """

    #: Cycles from accepting ``S`` to delivering its result.
    LATENCY = 2 + InterpDatapath.LATENCY

    def __init__(self, *, width=DEFAULT_WIDTH):
        checks.in_range("Rsqrt", "width", width, 1, MAX_WIDTH)
        self._width = width
        self.result_layout = data.StructLayout({
            "r": unsigned(MANT_FRAC),
            "e": unsigned(max(((width - 1) // 2).bit_length(), 1)),
        })
        super().__init__({
            "i": In(stream.Signature(unsigned(width))),
            "o": Out(stream.Signature(self.result_layout)),
        })

    width = property(lambda self: self._width)

    @property
    def e_width(self):
        """Bits of the exponent ``e``."""
        return self.result_layout["e"].width

    def elaborate(self, platform):
        m = Module()
        m.submodules.interp = interp = InterpDatapath(table=RSQRT_TABLE, t_frac=M_FRAC)

        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), interp.en.eq(advance)]

        # Stage 1: e, the index of the highest non-zero pair of bits (the last If wins).
        pairs = (self._width + 1) // 2
        e_1 = Signal(self.e_width)
        s_1 = Signal(unsigned(self._width))
        # Mux expressions, not m.If: see the note in hw/units/layernorm.py on Icarus at time zero.
        e_next = Signal(self.e_width)
        highest = 0
        for pair in range(pairs):
            highest = Mux(self.i.payload[2 * pair:2 * pair + 2] != 0, pair, highest)
        m.d.comb += e_next.eq(highest)
        with m.If(advance):
            m.d.sync += [e_1.eq(e_next), s_1.eq(self.i.payload)]

        # Stage 2: m = S / 4**e with M_FRAC fraction bits, minus the first node 1.0.
        normalised = Signal(unsigned(M_FRAC + 2))
        m.d.comb += normalised.eq((s_1 << M_FRAC) >> (e_1 << 1))
        t_2 = Signal(interp.t_width)
        e_2 = Signal(self.e_width)
        with m.If(advance):
            m.d.sync += e_2.eq(e_1)
            with m.If(s_1 == 0):
                m.d.sync += t_2.eq(0)
            with m.Else():
                m.d.sync += t_2.eq(normalised - (1 << M_FRAC))
        m.d.comb += interp.t.eq(t_2)

        # The interpolation's stages, with e alongside.
        e = delay(m, e_2, InterpDatapath.LATENCY, en=advance, name="e", first=3)
        # 1/sqrt(1) = 1 itself does not fit the mantissa.
        top = (1 << MANT_FRAC) - 1
        m.d.comb += [self.o.payload.r.eq(Mux(interp.y > top, top, interp.y)),
                     self.o.payload.e.eq(e)]

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
