"""GELU in hardware, ``lanes`` values per cycle: the twin of :func:`model.arith.gelu.gelu`.

``GELU(x) = ReLU(x) - d(|x|)`` with the bump ``d`` interpolated in :data:`model.arith.gelu.D_TABLE`
(one :class:`hw.arith.interp.InterpDatapath` per lane) inside ``|x| < LIMIT`` and 0 outside; the
subtraction happens at the finer of the table's and the input's precisions, then one rounding
(half up) brings the result back to the input format.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.arith.gelu import D_TABLE, LIMIT
from model.numerics import DEFAULT

from hw import checks
from hw.arith.interp import InterpDatapath, InterpWidths
from hw.streams.pipeline import delay, valid_pipeline


__all__ = ["Gelu"]


class Gelu(wiring.Component):
    """GELU of ``lanes`` signed fixed-point values per transfer, bit for bit as the golden model.

    Pipeline: stage 1 registers, per lane, ``|x|`` (or 0 outside the table), whether ``|x|`` is
    inside the table, and ``ReLU(x)``; the lane's :class:`hw.arith.interp.InterpDatapath`
    interpolates ``d(|x|)`` while the other two wait in step; the last stage computes
    ``round_half_up(((ReLU(x) << extra) - d) >> extra)`` with ``extra = D_TABLE.frac - fmt.frac``
    (or ``ReLU(x) - (d << -extra)`` when ``extra < 0``). The whole pipeline stalls while ``o``
    holds a result nobody takes, so ``i.ready`` follows ``o.ready`` combinationally.

    Latency of ``LATENCY = InterpDatapath.LATENCY + 2`` = 6 cycles, from the clock edge
    that accepts ``x`` on ``i`` to the edge that delivers ``GELU(x)`` on ``o`` (with ``o.ready``
    high), whatever ``lanes``; throughput of ``lanes`` values (one transfer) per cycle. Each lane
    has its own ROM of ``D_TABLE.segments + 1`` words and one multiplier (one DSP48E2).

    Parameters
    ----------
    lanes : int
        Values per transfer (the MAC array's columns), at least 1.
    fmt : model.numerics.Fixed
        Format of ``x`` and of the result; at least ``D_TABLE.step_log2`` (5) fraction bits.

    Members
    -------
    i : ``In(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes)))``
        Inputs ``x``, lane ``k`` in bits ``[k * fmt.width, (k + 1) * fmt.width)``.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes)))``
        ``GELU(x)`` in the same format and lanes, in the order the inputs arrived.

    Raises
    ------
    TypeError
        If ``fmt`` is not a ``Fixed``.
    ValueError
        If ``lanes`` is not a positive integer, ``fmt`` has too few fraction bits for the table
        step, or so many that the interpolation does not fit one DSP48E2.
    """

    #: Cycles from accepting inputs to delivering their results: stage 1, interpolation, last
    #: stage.
    LATENCY = InterpDatapath.LATENCY + 2

    def __init__(self, *, lanes=16, fmt=DEFAULT.act):
        checks.positive("GELU", "lanes", lanes)
        checks.fixed("GELU", "format", fmt)
        if fmt.frac < D_TABLE.step_log2:
            raise ValueError(
                f"GELU needs at least {D_TABLE.step_log2} fraction bits (the table step is "
                f"2**-{D_TABLE.step_log2}), not {fmt.frac} (format {fmt})")
        self._lanes = lanes
        self._fmt = fmt
        # Fails here, not at elaboration, for a format the multiplier cannot take.
        InterpWidths.of(D_TABLE, fmt.frac)
        layout = data.ArrayLayout(signed(fmt.width), lanes)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    lanes = property(lambda self: self._lanes)
    fmt = property(lambda self: self._fmt)

    def elaborate(self, platform):
        m = Module()
        width = self._fmt.width
        # round() as in the twin; 5.5 * 2**frac is an integer for frac >= 1 anyway.
        limit = round(LIMIT * 2 ** self._fmt.frac)
        extra = D_TABLE.frac - self._fmt.frac

        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)

        for lane in range(self._lanes):
            m.submodules[f"interp_{lane}"] = interp = InterpDatapath(table=D_TABLE,
                                                                     t_frac=self._fmt.frac)
            x = self.i.payload[lane]

            # Stage 1. |x| of the most negative x is 2**(width-1): it needs all `width` bits
            # unsigned, which abs() of a signed value gives. The range check compares x itself,
            # in parallel with the negation rather than after it.
            inside = Signal(name=f"inside_{lane}")
            relu = Signal(unsigned(width - 1), name=f"relu_{lane}")
            t = Signal(unsigned(interp.t_width), name=f"t_{lane}")
            is_inside = (x > -limit) & (x < limit)
            with m.If(advance):
                m.d.sync += [
                    inside.eq(is_inside),
                    relu.eq(Mux(x[-1], 0, x)),
                    # Zero outside keeps the ROM address in range; its result is discarded.
                    t.eq(Mux(is_inside, abs(x), 0)),
                ]
            m.d.comb += [interp.t.eq(t), interp.en.eq(advance)]

            # Interpolation stages: ReLU(x) and the range check wait in step with d.
            inside = delay(m, inside, interp.LATENCY, en=advance, name=f"inside_{lane}", first=2)
            relu = delay(m, relu, interp.LATENCY, en=advance, name=f"relu_{lane}", first=2)
            d = Mux(inside, interp.y, 0)

            # Last stage: one rounding, half up. The result never leaves x's range.
            if extra >= 0:
                half = 1 << (extra - 1) if extra > 0 else 0
                y = ((relu << extra) - d + half) >> extra
            else:
                y = relu - (d << -extra)
            with m.If(advance):
                m.d.sync += self.o.payload[lane].eq(y)

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
