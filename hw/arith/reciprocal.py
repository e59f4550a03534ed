"""The reciprocal unit in hardware: twin of :func:`model.arith.reciprocal.reciprocal`.

For the softmax sum ``s >= 1.0`` (SUM_FRAC fraction bits, SUM_WIDTH bits signed) it gives
``(r, k)`` with ``1/s = r * 2**-(MANT_FRAC + k)``::

    k = bitlen(s) - 1 - SUM_FRAC           the leading one of s, above the units bit
    m = s >> k                             s / 2**k in [1, 2), truncated
    r = min(RECIP_TABLE at m - 1, 2**MANT_FRAC - 1)

The twin rejects ``s < 1.0``; the hardware gives the result of ``s = 1.0`` for every such
input, negative ones included (``r = 2**MANT_FRAC - 1``, ``k = 0``).

:class:`ReciprocalDatapath` is the stallable arithmetic, for units with a reciprocal inside a
larger pipeline (:class:`hw.units.softmax.SoftmaxStats`); :class:`Reciprocal` wraps it in streams.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import MANT_FRAC, SUM_FRAC, SUM_WIDTH
from model.arith.reciprocal import RECIP_TABLE

from hw.arith.interp import InterpDatapath
from hw.streams.pipeline import delay, valid_pipeline


__all__ = ["ReciprocalDatapath", "Reciprocal", "K_WIDTH", "RESULT_LAYOUT"]


#: Largest shift ``k``: that of the largest sum, ``2**(SUM_WIDTH - 1) - 1``.
_K_MAX = SUM_WIDTH - 2 - SUM_FRAC
#: Bits of ``k``.
K_WIDTH = _K_MAX.bit_length()
#: ``(r, k)``: the mantissa, ``MANT_FRAC`` fraction bits in (0.5, 1), and the shift.
RESULT_LAYOUT = data.StructLayout({"r": unsigned(MANT_FRAC), "k": unsigned(K_WIDTH)})


class ReciprocalDatapath(wiring.Component):
    """``1/s`` as ``(r, k)``, bit for bit as :func:`model.arith.reciprocal.reciprocal`.

    A plain pipelined datapath, without valid bits, stalled by ``en``: stage 1 finds ``k`` (the
    leading one of ``s``), stage 2 normalises ``s`` to ``m`` and subtracts the table's first node,
    then the four stages of :class:`hw.arith.interp.InterpDatapath` interpolate; the clamp to
    ``2**MANT_FRAC - 1`` is combinational on its output register.

    Latency of ``LATENCY = 2 + InterpDatapath.LATENCY`` = 6 cycles with ``en`` high; throughput
    of one result per cycle with ``en`` high. One ROM of ``RECIP_TABLE.segments + 1`` words and
    one multiplier (one DSP48E2).

    Members
    -------
    s : ``In(signed(SUM_WIDTH))``
        The sum, SUM_FRAC fraction bits, at least 1.0; below that the result is that of 1.0.
    en : ``In(1)``
        Clock enable of every register of the unit.
    o : ``Out(RESULT_LAYOUT)``
        ``(r, k)``.
    """

    #: Cycles with ``en`` high from ``s`` to ``(r, k)``.
    LATENCY = 2 + InterpDatapath.LATENCY

    def __init__(self):
        super().__init__({
            "s": In(signed(SUM_WIDTH)),
            "en": In(1),
            "o": Out(RESULT_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.interp = interp = InterpDatapath(table=RECIP_TABLE, t_frac=SUM_FRAC)

        # Stage 1: k from the leading one (the last Mux wins); s < 1.0, negative s too, gets 0.
        below_one = self.s < (1 << SUM_FRAC)
        k_next = Signal(unsigned(K_WIDTH))
        highest = 0
        for k in range(1, _K_MAX + 1):
            highest = Mux(self.s[SUM_FRAC + k], k, highest)
        m.d.comb += k_next.eq(Mux(below_one, 0, highest))
        k_1 = Signal(unsigned(K_WIDTH))
        s_1 = Signal(unsigned(SUM_WIDTH - 1))
        below_one_1 = Signal()
        with m.If(self.en):
            m.d.sync += [k_1.eq(k_next), s_1.eq(self.s[:SUM_WIDTH - 1]),
                         below_one_1.eq(below_one)]

        # Stage 2: m = s >> k is in [1, 2): its fraction bits are the offset from the first node.
        t_2 = Signal(unsigned(interp.t_width))
        k_2 = Signal(unsigned(K_WIDTH))
        with m.If(self.en):
            m.d.sync += [t_2.eq(Mux(below_one_1, 0, (s_1 >> k_1)[:SUM_FRAC])), k_2.eq(k_1)]
        m.d.comb += [interp.t.eq(t_2), interp.en.eq(self.en)]

        k = delay(m, k_2, InterpDatapath.LATENCY, en=self.en, name="k", first=3)
        # 1/1 = 1 itself does not fit the mantissa.
        top = (1 << MANT_FRAC) - 1
        m.d.comb += [self.o.r.eq(Mux(interp.y > top, top, interp.y)), self.o.k.eq(k)]
        return m


class Reciprocal(wiring.Component):
    """``1/s`` of the softmax sum as ``(r, k)``, one ``s`` per cycle.

    A :class:`ReciprocalDatapath` with valid bits; the whole pipeline stalls while ``o`` holds a
    result nobody takes, so ``i.ready`` follows ``o.ready`` combinationally.

    Latency of ``LATENCY = ReciprocalDatapath.LATENCY`` = 6 cycles, from the clock edge that
    accepts ``s`` on ``i`` to the edge that delivers ``(r, k)`` on ``o`` (with ``o.ready``
    high); throughput of one result per cycle.

    Members
    -------
    i : ``In(stream.Signature(signed(SUM_WIDTH)))``
        ``s`` with SUM_FRAC fraction bits, at least 1.0. Smaller ``s`` (the twin raises), and
        negative ones, give the result of 1.0: ``(2**MANT_FRAC - 1, 0)``.
    o : ``Out(stream.Signature(RESULT_LAYOUT))``
        ``(r, k)`` with ``1/s = r * 2**-(MANT_FRAC + k)``: ``r`` of ``MANT_FRAC`` bits,
        ``k`` of ``K_WIDTH`` bits, at most ``SUM_WIDTH - 2 - SUM_FRAC`` (7).
    """

    #: Cycles from accepting ``s`` to delivering its result.
    LATENCY = ReciprocalDatapath.LATENCY

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(signed(SUM_WIDTH))),
            "o": Out(stream.Signature(RESULT_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.datapath = datapath = ReciprocalDatapath()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), datapath.en.eq(advance),
                     datapath.s.eq(self.i.payload), self.o.payload.eq(datapath.o)]

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
