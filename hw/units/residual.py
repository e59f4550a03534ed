"""The residual add in hardware: ``x + y`` per lane, saturating; twin of
:mod:`model.units.residual`."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import DEFAULT

from hw import checks
from hw.streams.pipeline import valid_pipeline


__all__ = ["ResidualAdd"]


class ResidualAdd(wiring.Component):
    """Join two streams of activations into one of their saturating sums, lane by lane.

    ``o`` carries ``model.units.residual.residual_add(x, y, fmt, DEFAULT)``: each sum clamped to the
    range of ``fmt``. A beat is taken from ``x`` and ``y`` together, only when both are valid,
    so either input may run ahead or stall; the output register stalls while ``o`` is
    back-pressured.

    Latency of ``LATENCY`` = 1 cycle, from the clock edge that takes a pair of beats to the edge
    that delivers their sum on ``o`` (with ``o.ready`` high); throughput of one beat of
    ``lanes`` sums per cycle.

    Parameters
    ----------
    lanes : int
        Values per beat.
    fmt : model.numerics.Fixed
        Format of the operands and of the sums (only its width matters here).

    Members
    -------
    x, y : ``In(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes)))``
        Operands: the residual stream and the branch added to it.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes)))``
        Saturated sums, in the order the operands arrived.

    Raises
    ------
    ValueError
        If ``lanes`` is not a positive integer.
    TypeError
        If ``fmt`` is not a :class:`model.numerics.Fixed`.
    """

    #: Cycles from taking a pair of beats to delivering their sum.
    LATENCY = 1

    def __init__(self, *, lanes, fmt=DEFAULT.act):
        checks.positive("Residual add", "lanes", lanes)
        checks.fixed("Residual add", "format", fmt)
        self._lanes = lanes
        self._fmt = fmt
        layout = data.ArrayLayout(signed(fmt.width), lanes)
        super().__init__({
            "x": In(stream.Signature(layout)),
            "y": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    lanes = property(lambda self: self._lanes)
    fmt = property(lambda self: self._fmt)

    def elaborate(self, platform):
        m = Module()
        low, high = self._fmt.min_int, self._fmt.max_int

        advance = ~self.o.valid | self.o.ready
        take = advance & self.x.valid & self.y.valid
        # Each input's ready waits for the other's valid (stream rules allow ready to depend on
        # valid), so a beat never leaves one input without its partner.
        m.d.comb += [
            self.x.ready.eq(advance & self.y.valid),
            self.y.ready.eq(advance & self.x.valid),
        ]
        valid_pipeline(m, take, self.o.valid, self.LATENCY, en=advance)
        with m.If(take):
            for lane in range(self._lanes):
                total = Signal(signed(self._fmt.width + 1), name=f"sum_{lane}")
                m.d.comb += total.eq(self.x.payload[lane] + self.y.payload[lane])
                # The sum of two values of the format is out of range exactly when its top two
                # bits differ, the top one giving the side: a LUT after the carry, where
                # comparing with the bounds took a second carry chain and more LUTs.
                with m.If(total[-1] == total[-2]):
                    m.d.sync += self.o.payload[lane].eq(total)
                with m.Elif(total[-1]):
                    m.d.sync += self.o.payload[lane].eq(low)
                with m.Else():
                    m.d.sync += self.o.payload[lane].eq(high)
        return m
