"""The inverse square root unit in hardware: twin of :func:`model.arith.rsqrt.rsqrt`.

For an integer ``S > 0`` it gives ``(r, e)`` with ``1/sqrt(S) = r * 2**-(MANT_FRAC + e)``::

    e = (bitlen(S) - 1) // 2               the highest non-zero pair of bits of S
    m = shift_floor(S, 2e - M_FRAC)        S / 4**e in [1, 4), M_FRAC fraction bits, truncated
    r = min(RSQRT_TABLE at m - 1, 2**MANT_FRAC - 1)

The shift ``2e - M_FRAC`` is negative for small ``S`` (a left shift): the hardware shifts
``S << M_FRAC`` right by ``2e`` instead, which is the same for both signs. The table lookup is
:class:`hw.arith.interp.InterpDatapath`, whose multiply is the unit's one DSP.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
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
#: Bits of a group of pairs, the step of stage 1's shift, and of the pair index inside it.
_GROUP_BITS = 8
_PAIR_BITS = 2
#: Bits stage 1 keeps: the top group and the M_FRAC bits below it.
_COARSE_BITS = _GROUP_BITS + M_FRAC


class Rsqrt(wiring.Component):
    """``1/sqrt(S)`` as a mantissa ``r`` and an exponent ``e``, one ``S`` per cycle.

    A pipeline stalled as a whole while ``o`` holds a result nobody takes (so ``i.ready``
    follows ``o.ready`` combinationally): stage 1 finds the highest non-zero group of four pairs
    of bits of ``S`` and shifts ``S`` to it, stage 2 finds the highest non-zero pair inside it
    (so ``e``), finishes normalising ``S`` to ``m`` and subtracts the table's first node, then
    the four stages of :class:`hw.arith.interp.InterpDatapath` interpolate; the clamp to
    ``2**MANT_FRAC - 1`` is combinational on its output register. At most 4 LUT levels (stage
    1, from ``i``) and one 28-bit carry chain between registers on UltraScale+.

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

        # e = 4 * g + f splits the normalising shift by 2e into two shifts, one per stage, each
        # a priority select of 4 to 6 ways: g is the highest non-zero group of 4 pairs (8 bits),
        # f the highest non-zero pair inside it. A single shift of 23 ways after a priority
        # encoder of 23 pairs took 5 LUT levels in each stage.
        s = self.i.payload
        groups = -(-self._width // _GROUP_BITS)

        # Stage 1: the group g, and S << M_FRAC shifted right by 8g, keeping the top group and
        # the M_FRAC bits below it. S = 0 becomes 1 << M_FRAC, as for S = 1. Mux expressions,
        # not m.If: see the note in hw/units/layernorm.py on Icarus at time zero.
        wide = s << M_FRAC
        coarse = Mux(s[:_GROUP_BITS].any(), wide[:_COARSE_BITS], 1 << M_FRAC)
        group = 0
        for g in range(1, groups):
            nonzero = s[g * _GROUP_BITS:(g + 1) * _GROUP_BITS].any()
            coarse = Mux(nonzero, wide[g * _GROUP_BITS:g * _GROUP_BITS + _COARSE_BITS], coarse)
            group = Mux(nonzero, g, group)
        g_1 = Signal(range(groups))
        c_1 = Signal(unsigned(_COARSE_BITS))
        with m.If(advance):
            m.d.sync += [g_1.eq(group), c_1.eq(coarse)]

        # Stage 2: the pair f, m = S / 4**e with M_FRAC fraction bits, minus the first node 1.0.
        normalised = c_1[:M_FRAC + 2]
        pair = Const(0, _PAIR_BITS)
        for f in range(1, _GROUP_BITS // 2):
            nonzero = c_1[M_FRAC + 2 * f:M_FRAC + 2 * f + 2].any()
            normalised = Mux(nonzero, c_1[2 * f:2 * f + M_FRAC + 2], normalised)
            pair = Mux(nonzero, f, pair)
        t_2 = Signal(interp.t_width)
        e_2 = Signal(self.e_width)
        with m.If(advance):
            m.d.sync += [t_2.eq(normalised - (1 << M_FRAC)), e_2.eq(Cat(pair, g_1))]
        m.d.comb += interp.t.eq(t_2)

        # The interpolation's stages, with e alongside.
        e = delay(m, e_2, InterpDatapath.LATENCY, en=advance, name="e", first=3)
        # 1/sqrt(1) = 1 itself does not fit the mantissa.
        top = (1 << MANT_FRAC) - 1
        m.d.comb += [self.o.payload.r.eq(Mux(interp.y > top, top, interp.y)),
                     self.o.payload.e.eq(e)]

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
