"""A stream forked to several sinks: one transfer reaches all of them."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFork"]


class StreamFork(wiring.Component):
    """Offers each payload of ``i`` to every ``o[n]``; ``i`` is taken once all have taken it.

    A sink that takes the payload early is not offered it again, so the sinks need not be ready
    together, and no ``o[n].valid`` depends on any ``ready``. Latency 0: a payload that every
    sink takes at once passes in the cycle it is offered. Throughput: one payload per cycle
    when all sinks are ready.

    Parameters
    ----------
    shape : shape-castable
        The payload.
    count : int
        Number of sinks.
    """

    def __init__(self, shape, count):
        if not (isinstance(count, int) and count > 0):
            raise ValueError(f"StreamFork count must be a positive integer, not {count!r}")
        self._count = count
        super().__init__({"i": In(stream.Signature(shape)),
                          "o": Out(stream.Signature(shape)).array(count)})

    def elaborate(self, platform):
        m = Module()
        taken = Signal(self._count)            # sinks that have the current payload
        took = Signal(self._count)             # ... or take it in this cycle
        for n, o in enumerate(self.o):
            m.d.comb += [o.valid.eq(self.i.valid & ~taken[n]), o.payload.eq(self.i.payload),
                         took[n].eq(taken[n] | (o.valid & o.ready))]
        m.d.comb += self.i.ready.eq(took.all())
        with m.If(self.i.ready):
            m.d.sync += taken.eq(0)
        with m.Else():
            m.d.sync += taken.eq(took)
        return m
