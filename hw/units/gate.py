"""The MoE gate after its logits: softmax over the experts and top-k; twin of
:func:`model.units.gate.route`.

Each token's logits arrive as one beat (the compute unit's output tile, ``experts <= lanes``).
Tokens are taken in groups of ``SoftmaxStats.MIN_ROWS`` (three), whose rows the single-pass
softmax statistics unit takes interleaved (one logit per cycle in all), while the top-k unit
takes the same logits token by token. Then, token by token, the probabilities of the ``k``
chosen experts are formed (:class:`hw.units.softmax.SoftmaxProb`) and leave on ``o`` with the expert
indices, as :class:`hw.units.expert_queues.ExpertQueues` takes them. A last, partial group is padded
with rows of zeros whose results are dropped. Two group buffers let one group be streamed while
the previous one finishes.

A layer starts with a command naming its token count. Throughput: about ``experts`` cycles per
token while feeding a group (``3 * experts`` per group), and ``SoftmaxProb.LATENCY + 3`` cycles
per token to finish it, the two overlapping across groups.
"""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.numerics import DEFAULT, PROB_FRAC

from hw import checks
from hw.units.softmax import SoftmaxProb, SoftmaxStats
from hw.units.top_k import TopK

__all__ = ["Gate"]


class Gate(wiring.Component):
    """Top-k experts and their softmax probabilities per token.

    Parameters
    ----------
    experts, k : int
    lanes : int
        Logits per input beat, at least ``experts`` (lanes beyond are ignored).
    max_tokens : int
    fmt : Fixed
        Format of the logits.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"tokens"})))``
    i : ``In(stream.Signature(ArrayLayout(signed(fmt.width), lanes)))``
    o : ``Out(stream.Signature(StructLayout({"experts", "scores"})))``, ``ExpertQueues.i``
    """

    def __init__(self, *, experts, k, lanes, max_tokens, fmt=DEFAULT.act):
        for name, value in (("experts", experts), ("k", k), ("lanes", lanes),
                            ("max_tokens", max_tokens)):
            checks.positive("Gate", name, value)
        if k > experts:
            raise ValueError(f"Gate k ({k}) must not exceed experts ({experts})")
        if experts > lanes:
            raise ValueError(f"Gate experts ({experts}) must fit one beat of {lanes} lanes")
        self._experts, self._k, self._fmt = experts, k, fmt
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "tokens": unsigned(ceil_log2(max_tokens + 1))}))),
            "i": In(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes))),
            "o": Out(stream.Signature(data.StructLayout({
                "experts": data.ArrayLayout(unsigned(ceil_log2(experts + 1)), k),
                "scores": data.ArrayLayout(signed(PROB_FRAC + 1), k)}))),
        })

    def elaborate(self, platform):
        m = Module()
        E, K, fmt = self._experts, self._k, self._fmt
        G = SoftmaxStats.MIN_ROWS
        m.submodules.stats = stats = SoftmaxStats(rows=G, fmt=fmt)
        m.submodules.top_k = top = TopK(experts=E, k=K, fmt=fmt)
        m.submodules.prob = prob = SoftmaxProb(lanes=K, fmt=fmt)

        logits = Array(Array(Array(Signal(signed(fmt.width), name=f"logit_{b}_{s}_{e}")
                                   for e in range(E)) for s in range(G)) for b in range(2))
        count = Array(Signal(range(G + 1), name=f"count_{b}") for b in range(2))
        full = Signal(2)                      # bank holds a complete group
        tokens = Signal.like(self.cmd.payload.tokens)
        taken = Signal.like(tokens)           # tokens taken this layer
        running = Signal()

        # --- Fill: beats into the bank being filled ------------------------------------------
        fill_bank = Signal()
        fill_slot = Signal(range(G))
        m.d.comb += self.cmd.ready.eq(~running)
        with m.If(self.cmd.valid & ~running):
            m.d.sync += [tokens.eq(self.cmd.payload.tokens), taken.eq(0), running.eq(1)]
        can_fill = running & ~full.bit_select(fill_bank, 1) & (taken < tokens)
        m.d.comb += self.i.ready.eq(can_fill)
        complete = Signal()
        release = Signal(2)
        with m.If(self.i.valid & self.i.ready):
            for e in range(E):
                m.d.sync += logits[fill_bank][fill_slot][e].eq(self.i.payload[e])
            m.d.sync += [taken.eq(taken + 1), fill_slot.eq(fill_slot + 1)]
            with m.If((fill_slot == G - 1) | (taken + 1 == tokens)):
                m.d.comb += complete.eq(1)
                m.d.sync += [count[fill_bank].eq(fill_slot + 1), fill_slot.eq(0),
                             fill_bank.eq(~fill_bank)]
                with m.If(taken + 1 == tokens):
                    m.d.sync += running.eq(0)
        m.d.sync += full.eq((full | Mux(complete, 1 << fill_bank, 0)) & ~release)

        # --- Feed: the statistics unit interleaved, the top-k unit token by token -----------
        feed_bank = Signal()                  # bank being fed (stats and top-k alike)
        s_e, s_s = Signal(range(E)), Signal(range(G))
        t_e, t_s = Signal(range(E)), Signal(range(G + 1))
        stats_done, topk_done = Signal(), Signal()
        fed = Signal(2)                       # bank whose feeding is finished
        fed_set = Signal(2)
        m.d.sync += fed.eq((fed | fed_set) & ~release)
        feeding = full.bit_select(feed_bank, 1) & ~fed.bit_select(feed_bank, 1)
        m.d.comb += [stats.i.valid.eq(feeding & ~stats_done),
                     stats.i.payload.score.eq(Mux(s_s < count[feed_bank],
                                                  logits[feed_bank][s_s][s_e], 0)),
                     stats.i.payload.last.eq(s_e == E - 1)]
        with m.If(stats.i.valid & stats.i.ready):
            with m.If(s_s == G - 1):
                m.d.sync += s_s.eq(0)
                with m.If(s_e == E - 1):
                    m.d.sync += [s_e.eq(0), stats_done.eq(1)]
                with m.Else():
                    m.d.sync += s_e.eq(s_e + 1)
            with m.Else():
                m.d.sync += s_s.eq(s_s + 1)
        m.d.comb += [top.i.valid.eq(feeding & ~topk_done & (t_s < count[feed_bank])),
                     top.i.payload.logit.eq(logits[feed_bank][t_s][t_e]),
                     top.i.payload.last.eq(t_e == E - 1)]
        with m.If(top.i.valid & top.i.ready):
            with m.If(t_e == E - 1):
                m.d.sync += [t_e.eq(0), t_s.eq(t_s + 1)]
            with m.Else():
                m.d.sync += t_e.eq(t_e + 1)
        with m.If(feeding & ~topk_done & (t_s == count[feed_bank])):
            m.d.sync += topk_done.eq(1)
        with m.If(feeding & stats_done & topk_done):
            m.d.sync += [stats_done.eq(0), topk_done.eq(0), t_s.eq(0), feed_bank.eq(~feed_bank)]
            m.d.comb += fed_set.eq(1 << feed_bank)

        # --- Finish: per token, the chosen experts' probabilities ---------------------------
        join_bank = Signal()
        j_s = Signal(range(G + 1))
        chosen = Signal.like(top.o.payload)
        stat = Signal.like(stats.o.payload)
        with m.FSM(name="finish"):
            with m.State("WAIT"):
                # A token's results come while its group is still being fed (the top-k unit
                # holds one result at a time), so this runs alongside the feeder.
                with m.If(full.bit_select(join_bank, 1)):
                    with m.If(j_s < count[join_bank]):
                        with m.If(stats.o.valid & top.o.valid):
                            m.d.comb += [stats.o.ready.eq(1), top.o.ready.eq(1)]
                            m.d.sync += [stat.eq(stats.o.payload), chosen.eq(top.o.payload)]
                            m.next = "PROB"
                    with m.Elif(j_s < G):
                        # The padding rows' results are dropped.
                        m.d.comb += stats.o.ready.eq(1)
                        with m.If(stats.o.valid):
                            m.d.sync += j_s.eq(j_s + 1)
                    with m.Elif(fed.bit_select(join_bank, 1)):
                        m.d.comb += release.eq(1 << join_bank)
                        m.d.sync += [j_s.eq(0), join_bank.eq(~join_bank)]
            with m.State("PROB"):
                m.d.comb += prob.i.valid.eq(1)
                for j in range(K):
                    lane = prob.i.payload[j]
                    m.d.comb += [lane.a.eq(logits[join_bank][j_s][chosen[j]]), lane.m.eq(stat.m),
                                 lane.r.eq(stat.r), lane.k.eq(stat.k)]
                with m.If(prob.i.ready):
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [self.o.valid.eq(prob.o.valid), prob.o.ready.eq(self.o.ready)]
                for j in range(K):
                    m.d.comb += [self.o.payload.experts[j].eq(chosen[j]),
                                 self.o.payload.scores[j].eq(prob.o.payload[j])]
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += j_s.eq(j_s + 1)
                    m.next = "WAIT"
        return m
