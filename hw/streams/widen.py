"""Beats of ``lanes`` values in, beats of ``ratio x lanes`` values out: ``ratio`` consecutive
beats side by side, the first in the low lanes.

The machine's dense weights arrive over one memory port, the experts' over ``expert_ports`` at
once, and the compute unit takes the wider beat: the dense fetch's beats are widened on the way.

Latency: a wide beat leaves the cycle after its last narrow beat. Throughput: one narrow beat per
cycle (so one wide beat every ``ratio`` cycles).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw import checks

__all__ = ["Widen"]


class Widen(wiring.Component):
    """Put ``ratio`` consecutive beats of ``lanes`` values of ``shape`` side by side.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(shape, lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(shape, ratio * lanes)))``
    """

    def __init__(self, shape, lanes, ratio):
        checks.positive("Widen", "ratio", ratio)
        self._ratio = ratio
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(shape, lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(shape, ratio * lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._ratio
        if n == 1:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        held = [Signal.like(self.i.payload, name=f"held_{k}") for k in range(n - 1)]
        count = Signal(range(n))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(count == n - 1):
                m.d.sync += [self.o.payload.eq(Cat(*held, self.i.payload)),
                             self.o.valid.eq(1), count.eq(0)]
            with m.Else():
                for k in range(n - 1):
                    with m.If(count == k):
                        m.d.sync += held[k].eq(self.i.payload)
                m.d.sync += count.eq(count + 1)
        return m
