"""Top-k selection: the ``k`` largest of a token's expert logits, largest first, ties to the lower
index; twin of :func:`model.units.gate.top_k`.

The logits of one token arrive one per cycle in expert order (``last`` on the final one). A
sorted list of ``k`` (value, index) slots takes each new logit by insertion: it moves below every
slot it does not strictly exceed, so an equal value stays behind the earlier (lower) index. At
the token's end the indices leave on ``o``.

Latency: 1 cycle from a token's last logit to its choices on ``o``. Throughput: one logit per
cycle (``experts`` cycles per token), with one idle cycle per token only when ``o`` is
back-pressured.
"""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.numerics import DEFAULT

from hw import checks

__all__ = ["TopK"]


class TopK(wiring.Component):
    """Indices of the ``k`` largest of ``experts`` logits per token.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"logit": signed(fmt.width), "last": 1})))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(ceil_log2(experts)), k)))``
    """

    def __init__(self, *, experts, k, fmt=DEFAULT.act):
        for name, value in (("experts", experts), ("k", k)):
            checks.positive("TopK", name, value)
        if k > experts:
            raise ValueError(f"TopK k ({k}) must not exceed experts ({experts})")
        self._experts, self._k, self._fmt = experts, k, fmt
        index = unsigned(max(1, ceil_log2(experts)))
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"logit": signed(fmt.width),
                                                         "last": 1}))),
            "o": Out(stream.Signature(data.ArrayLayout(index, k))),
        })

    def elaborate(self, platform):
        m = Module()
        K = self._k
        index_shape = self.o.payload.shape().elem_shape
        value = [Signal(signed(self._fmt.width), name=f"value_{j}") for j in range(K)]
        index = [Signal(index_shape, name=f"index_{j}") for j in range(K)]
        filled = [Signal(name=f"filled_{j}") for j in range(K)]
        count = Signal(range(self._experts + 1))     # logits seen of this token

        # A full output register stalls the input until it is taken.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        take = self.i.valid & self.i.ready
        logit = self.i.payload.logit
        first = count == 0
        # Slot j takes the new logit if it beats slot j (or slot j is empty) but not slot j-1;
        # slots below shift down by one.
        beats = [~filled[j] | (logit > value[j]) for j in range(K)]
        new_value = [Signal.like(v, name=f"new_value_{j}") for j, v in enumerate(value)]
        new_index = [Signal.like(x, name=f"new_index_{j}") for j, x in enumerate(index)]
        new_filled = [Signal(name=f"new_filled_{j}") for j in range(K)]
        for j in range(K):
            # On a token's first logit the slots count as empty.
            here = beats[j] | first
            above = (beats[j - 1] | first) if j else Const(0)
            with m.If(here & ~above):
                m.d.comb += [new_value[j].eq(logit), new_index[j].eq(count),
                             new_filled[j].eq(1)]
            with m.Elif(here & above):
                m.d.comb += [new_value[j].eq(value[j - 1]), new_index[j].eq(index[j - 1]),
                             new_filled[j].eq(Mux(first, 0, filled[j - 1]))]
            with m.Else():
                m.d.comb += [new_value[j].eq(value[j]), new_index[j].eq(index[j]),
                             new_filled[j].eq(filled[j] & ~first)]
        with m.If(take):
            m.d.sync += [v.eq(n) for v, n in zip(value, new_value)]
            m.d.sync += [x.eq(n) for x, n in zip(index, new_index)]
            m.d.sync += [f.eq(n) for f, n in zip(filled, new_filled)]
            with m.If(self.i.payload.last):
                m.d.sync += [count.eq(0), self.o.valid.eq(1)]
                m.d.sync += [self.o.payload[j].eq(new_index[j]) for j in range(K)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m
