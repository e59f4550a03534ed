"""A register slice whose ``ready`` is a flip-flop: cuts a stream's combinational ready chain."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes ``i`` to ``o`` through a register, with ``i.ready`` from a register too.

    The units of ``hw/`` stall as a whole (``i.ready`` follows ``o.ready`` through one gate), so
    a chain of units is one ready path from the last sink to the first source. Where such a path
    grows past the logic depth bound (docs/timing.md), a skid buffer ends it: ``o.valid`` and
    ``o.payload`` come from the output register and ``i.ready`` from whether the spare register
    is empty, so nothing on either side depends combinationally on the other.

    When ``o`` stalls with the output register full, the one payload already offered on ``i``
    (taken because ``i.ready`` said so a cycle ago) goes to the spare register; ``i.ready`` then
    falls until the spare has moved on. Nothing is dropped or duplicated, and ``o.valid`` with
    its payload holds until taken.

    Latency: 1 cycle. Throughput: one payload per cycle, also through stalls of ``o``.

    Parameters
    ----------
    shape : shape-castable
        The payload.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.i.payload, name="spare")
        # Kept as "empty" rather than "full", so that i.ready is the flip-flop itself.
        spare_empty = Signal(init=1)
        m.d.comb += self.i.ready.eq(spare_empty)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(~spare_empty):
                m.d.sync += [self.o.payload.eq(spare), self.o.valid.eq(1), spare_empty.eq(1)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & spare_empty):
            m.d.sync += [spare.eq(self.i.payload), spare_empty.eq(0)]
        return m
