"""The exp unit in hardware, ``2**x`` for ``x <= 0``: the twin of :func:`model.arith.exp.exp2`.

For an input ``x`` with ``frac`` fraction bits::

    x = max(x, FLOOR << frac)                        clamp: below FLOOR the result is 0 anyway
    n, f = x >> frac, x & (2**frac - 1)              integer part n in [FLOOR, 0], fraction f
    y = (EXP2_TABLE at f + 2**(-n-1)) >> -n          round half up; no half when n = 0

The table lookup is :class:`hw.arith.interp.InterpDatapath` (its multiply is the lane's one DSP);
the rounding shift is ``((mantissa >> (-n - 1)) + 1) >> 1``, a barrel shifter by ``~n`` (no
negation) and an add of the mantissa's width; no clamp either: ``n < FLOOR`` shifts by
``-FLOOR - 1``, which gives 0 as the clamp does. The twin rejects ``x > 0``; the hardware
treats a positive ``x`` as 0 and gives ``2**0 = 1.0`` (``1 << EXP_FRAC``), as half the table's
end.

:class:`Exp2Datapath` is the stallable arithmetic, for units that run exp inside a larger
pipeline (:mod:`hw.units.softmax`); :class:`Exp2` wraps ``lanes`` of them in streams.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.arith.exp import EXP2_TABLE, FLOOR
from model.numerics import DEFAULT, EXP_FRAC

from hw import checks
from hw.arith.interp import InterpDatapath, InterpWidths
from hw.streams.pipeline import delay, valid_pipeline


__all__ = ["Exp2Datapath", "Exp2", "EXP_WIDTH"]


#: Bits of an unsigned exp result: ``1.0`` itself needs ``EXP_FRAC + 1`` bits.
EXP_WIDTH = EXP_FRAC + 1
#: Bits of the last stage's right shift ``-n - 1``, at most ``-FLOOR - 1``: ``FLOOR`` is a power
#: of two, so that ``n >= FLOOR`` is a test of ``n``'s top bits.
_SHIFT_WIDTH = (-FLOOR - 1).bit_length()
assert FLOOR == -(1 << _SHIFT_WIDTH)
#: Bits of a mantissa in [1, 2] with EXP_FRAC fraction bits.
_MANTISSA_BITS = EXP_FRAC + 2


def _check_format(owner, width, frac):
    """Shared argument checks of the exp units: ``InterpWidths.of`` checks the multiplier."""
    checks.at_least(owner, "width", width, 2)
    if not checks.is_int(frac) or frac < EXP2_TABLE.step_log2:
        raise ValueError(
            f"{owner} needs an integer of at least {EXP2_TABLE.step_log2} fraction bits (the "
            f"table step is 2**-{EXP2_TABLE.step_log2}), not frac={frac!r}")
    InterpWidths.of(EXP2_TABLE, frac)


class Exp2Datapath(wiring.Component):
    """``2**x`` of one signed input ``x`` with ``frac`` fraction bits, bit for bit as
    :func:`model.arith.exp.exp2`.

    A plain pipelined datapath, without valid bits, stalled by ``en`` like
    :class:`hw.arith.interp.InterpDatapath`: stage 1 splits ``x`` into the shift ``-n - 1 = ~n``
    (``-FLOOR - 1`` below ``FLOOR``) and the table offset ``f`` (for ``x >= 0``, the table's end,
    2.0, with a shift of 0); the interpolation's four stages look up ``2**f``; the last stage
    shifts right by ``-n`` with rounding (half up). At most 3 LUT levels and one 28-bit carry
    chain between registers on UltraScale+.

    Latency of ``LATENCY = InterpDatapath.LATENCY + 2`` = 6 cycles with ``en`` high; throughput
    of one result per cycle with ``en`` high. One ROM of ``EXP2_TABLE.segments + 1`` words and one
    multiplier (one DSP48E2).

    Parameters
    ----------
    width : int
        Bits of the signed input.
    frac : int
        Fraction bits of the input, from ``EXP2_TABLE.step_log2`` (6) to the most the
        interpolation's multiplier takes (23).

    Members
    -------
    x : ``In(signed(width))``
        The exponent, non-positive; a positive ``x`` counts as 0 (result 1.0).
    en : ``In(1)``
        Clock enable of every register of the unit.
    y : ``Out(unsigned(EXP_WIDTH))``
        ``2**x`` with ``EXP_FRAC`` fraction bits, in ``[0, 1 << EXP_FRAC]``.

    Raises
    ------
    ValueError
        If ``width`` or ``frac`` is not an integer in range.
    """

    #: Cycles with ``en`` high from ``x`` to ``y``: clamp and split, interpolation, shift.
    LATENCY = InterpDatapath.LATENCY + 2

    def __init__(self, *, width=DEFAULT.act.width, frac=DEFAULT.act.frac):
        _check_format("Exp2", width, frac)
        self._width = width
        self._frac = frac
        super().__init__({
            "x": In(signed(width)),
            "en": In(1),
            "y": Out(unsigned(EXP_WIDTH)),
        })

    width = property(lambda self: self._width)
    frac = property(lambda self: self._frac)

    def elaborate(self, platform):
        m = Module()
        frac = self._frac
        m.submodules.interp = interp = InterpDatapath(table=EXP2_TABLE, t_frac=frac)

        # Stage 1: split x into n (x >> frac) and f, without a clamp or a negation, which
        # would be two carry chains. For n in [FLOOR, -1] the shift -n is ~n + 1, and the last
        # stage shifts by ~n, one less, so that ~n is just the bits of n inverted; n < FLOOR
        # shifts by -FLOOR - 1 = ~FLOOR, which leaves 0 of any mantissa, as the twin's clamp to
        # FLOOR does. x >= 0 reads the table's end, 2.0, and halves it: 1.0.
        n = self.x >> frac
        negative = self.x[-1]
        in_range = n[_SHIFT_WIDTH:].all()           # n >= FLOOR, given n < 0
        shift_1 = Signal(unsigned(_SHIFT_WIDTH))
        t_1 = Signal(unsigned(interp.t_width))
        with m.If(self.en):
            m.d.sync += [shift_1.eq(Mux(negative, Mux(in_range, ~n, ~FLOOR), 0)),
                         t_1.eq(Mux(negative, self.x[:frac], EXP2_TABLE.segments << (
                             frac - EXP2_TABLE.step_log2)))]
        m.d.comb += [interp.t.eq(t_1), interp.en.eq(self.en)]

        shift = delay(m, shift_1, InterpDatapath.LATENCY, en=self.en, name="shift", first=2)

        # Last stage: round half up at 2**-n, as ((mantissa >> (-n - 1)) + 1) >> 1: the add has
        # the mantissa's width, not the shift's range. The mantissa is in [1, 2] (never
        # negative, so _MANTISSA_BITS bits).
        halves = interp.y[:_MANTISSA_BITS] >> shift
        with m.If(self.en):
            m.d.sync += self.y.eq((halves + 1) >> 1)
        return m


class Exp2(wiring.Component):
    """``2**x`` of ``lanes`` signed inputs per transfer, bit for bit as
    :func:`model.arith.exp.exp2`.

    One :class:`Exp2Datapath` per lane; the whole pipeline stalls while ``o`` holds a result
    nobody takes, so ``i.ready`` follows ``o.ready`` combinationally.

    Latency of ``LATENCY = Exp2Datapath.LATENCY`` = 6 cycles, from the clock edge that accepts
    ``x`` on ``i`` to the edge that delivers ``2**x`` on ``o`` (with ``o.ready`` high), whatever
    ``lanes``; throughput of ``lanes`` results (one transfer) per cycle. One ROM and one DSP48E2
    per lane.

    Parameters
    ----------
    lanes : int
        Values per transfer, at least 1.
    width : int
        Bits of a signed input.
    frac : int
        Fraction bits of the inputs, 6 to 23.

    Members
    -------
    i : ``In(stream.Signature(data.ArrayLayout(signed(width), lanes)))``
        Exponents ``x <= 0``. A positive ``x``, which the twin rejects, gives 1.0 as ``x = 0``.
    o : ``Out(stream.Signature(data.ArrayLayout(unsigned(EXP_WIDTH), lanes)))``
        ``2**x`` with ``EXP_FRAC`` fraction bits, same lanes, in the order the inputs arrived.

    Raises
    ------
    ValueError
        If ``lanes``, ``width`` or ``frac`` is not an integer in range.
    """

    #: Cycles from accepting inputs to delivering their results.
    LATENCY = Exp2Datapath.LATENCY

    def __init__(self, *, lanes=1, width=DEFAULT.act.width, frac=DEFAULT.act.frac):
        checks.positive("Exp2", "lanes", lanes)
        _check_format("Exp2", width, frac)
        self._lanes = lanes
        self._width = width
        self._frac = frac
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(EXP_WIDTH), lanes))),
        })

    lanes = property(lambda self: self._lanes)
    width = property(lambda self: self._width)
    frac = property(lambda self: self._frac)

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        for lane in range(self._lanes):
            m.submodules[f"exp_{lane}"] = exp = Exp2Datapath(width=self._width,
                                                             frac=self._frac)
            m.d.comb += [exp.x.eq(self.i.payload[lane]), exp.en.eq(advance),
                         self.o.payload[lane].eq(exp.y)]

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
