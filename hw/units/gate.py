"""The MoE gate after its logits: softmax over the experts and top-k; twin of
:func:`model.units.gate.route`.

Each token's logits arrive as one beat (the compute unit's output tile, ``experts <= lanes``).
Tokens are taken in groups of ``SoftmaxStats.MIN_ROWS`` (three), whose rows the single-pass
softmax statistics unit takes interleaved (one logit per cycle in all), while the top-k unit
takes the same logits token by token, each through a register. Then, token by token, the
probabilities of the ``k`` chosen experts are formed one after the other in a one-lane
:class:`hw.units.softmax.SoftmaxProb` (``k`` lanes would share ``r``, one register feeding ``k``
DSP48E2) and leave on ``o`` with the expert indices, as
:class:`hw.units.expert_queues.ExpertQueues` takes them. A last, partial group is padded with rows
of zeros whose results are dropped. Two group buffers let one group be streamed while the
previous one finishes.

A layer starts with a command naming its token count. Throughput: about ``experts`` cycles per
token while feeding a group (``3 * experts`` per group), and ``SoftmaxProb.LATENCY + k + 2``
cycles per token to finish it (13 for m3vit-tiny), the two overlapping across groups. Latency:
a group's statistics come ``SoftmaxStats.LATENCY + 1`` cycles after its last logit went in (the
feed register). Between registers, at most 4 LUT levels and one carry chain (36 bits) on
UltraScale+.
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
        m.submodules.prob = prob = SoftmaxProb(lanes=1, fmt=fmt)

        logits = Array(Array(Array(Signal(signed(fmt.width), name=f"logit_{b}_{s}_{e}")
                                   for e in range(E)) for s in range(G)) for b in range(2))
        count = Array(Signal(range(G + 1), name=f"count_{b}") for b in range(2))
        full = Signal(2)                      # bank holds a complete group
        # Tokens of this layer still to take, and whether that is one: flags kept beside the
        # count, so that no compare of it lies on the way to the handshake.
        left = Signal.like(self.cmd.payload.tokens)
        any_left = Signal()
        one_left = Signal()
        running = Signal()

        # --- Fill: beats into the bank being filled ------------------------------------------
        fill_bank = Signal()
        fill_slot = Signal(range(G))
        m.d.comb += self.cmd.ready.eq(~running)
        with m.If(self.cmd.valid & ~running):
            n = self.cmd.payload.tokens
            m.d.sync += [left.eq(n), any_left.eq(n != 0), one_left.eq(n == 1), running.eq(1)]
        # i.ready is a register: whether a beat could be taken, as of the cycle before and not
        # if one was taken then. Only taking a beat ends the run, fills a bank or uses up the
        # count, so the state it was judged on still holds. It costs a cycle after each beat;
        # the compute unit gives a token's logits once per ceil(dim / lanes) cycles at most.
        can_fill = running & ~full.bit_select(fill_bank, 1) & any_left
        m.d.sync += self.i.ready.eq(can_fill & ~(self.i.valid & self.i.ready))
        complete = Signal()
        release = Signal(2)
        with m.If(self.i.valid & self.i.ready):
            for e in range(E):
                m.d.sync += logits[fill_bank][fill_slot][e].eq(self.i.payload[e])
            m.d.sync += [left.eq(left - 1), any_left.eq(~one_left), one_left.eq(left == 2),
                         fill_slot.eq(fill_slot + 1)]
            with m.If((fill_slot == G - 1) | one_left):
                m.d.comb += complete.eq(1)
                m.d.sync += [count[fill_bank].eq(fill_slot + 1), fill_slot.eq(0),
                             fill_bank.eq(~fill_bank)]
                with m.If(one_left):
                    m.d.sync += running.eq(0)
        m.d.sync += full.eq((full | Mux(complete, 1 << fill_bank, 0)) & ~release)

        # --- Feed: the statistics unit interleaved, the top-k unit token by token -----------
        # Each feed goes through a register (_registered_feed): reading a logit out of the
        # banks is a wide multiplexer, and the units start on a compare or a subtraction.
        feed_bank = Signal()                  # bank being fed (stats and top-k alike)
        s_e, s_s = Signal(range(E)), Signal(range(G))
        t_e, t_s = Signal(range(E)), Signal(range(G + 1))
        stats_done, topk_done = Signal(), Signal()
        fed = Signal(2)                       # bank whose feeding is finished
        fed_set = Signal(2)
        m.d.sync += fed.eq((fed | fed_set) & ~release)
        feeding = full.bit_select(feed_bank, 1) & ~fed.bit_select(feed_bank, 1)
        stats_feed = _registered_feed(m, stats.i, "stats_feed")
        m.d.comb += [stats_feed.valid.eq(feeding & ~stats_done),
                     stats_feed.payload.score.eq(Mux(s_s < count[feed_bank],
                                                     logits[feed_bank][s_s][s_e], 0)),
                     stats_feed.payload.last.eq(s_e == E - 1)]
        with m.If(stats_feed.valid & stats_feed.ready):
            with m.If(s_s == G - 1):
                m.d.sync += s_s.eq(0)
                with m.If(s_e == E - 1):
                    m.d.sync += [s_e.eq(0), stats_done.eq(1)]
                with m.Else():
                    m.d.sync += s_e.eq(s_e + 1)
            with m.Else():
                m.d.sync += s_s.eq(s_s + 1)
        topk_feed = _registered_feed(m, top.i, "topk_feed")
        m.d.comb += [topk_feed.valid.eq(feeding & ~topk_done & (t_s < count[feed_bank])),
                     topk_feed.payload.logit.eq(logits[feed_bank][t_s][t_e]),
                     topk_feed.payload.last.eq(t_e == E - 1)]
        with m.If(topk_feed.valid & topk_feed.ready):
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
        # The chosen experts' logits, read out of the bank with the choice, so that the
        # probabilities start from registers.
        chosen_logits = [Signal(signed(fmt.width), name=f"chosen_logit_{j}") for j in range(K)]
        issued = Signal(range(K))             # probabilities asked for, of this token's k
        collected = Signal(range(K + 1))      # and received, into a shift register
        scores = [Signal(unsigned(PROB_FRAC), name=f"score_{j}") for j in range(K)]
        # The lane reads registers whatever the state (chosen_logits shifts down as they go).
        lane = prob.i.payload[0]
        m.d.comb += [lane.a.eq(chosen_logits[0]), lane.m.eq(stat.m), lane.r.eq(stat.r),
                     lane.k.eq(stat.k)]
        with m.FSM(name="finish"):
            with m.State("WAIT"):
                # A token's results come while its group is still being fed (the top-k unit
                # holds one result at a time), so this runs alongside the feeder.
                with m.If(full.bit_select(join_bank, 1)):
                    with m.If(j_s < count[join_bank]):
                        with m.If(stats.o.valid & top.o.valid):
                            m.d.comb += [stats.o.ready.eq(1), top.o.ready.eq(1)]
                            m.d.sync += [stat.eq(stats.o.payload), chosen.eq(top.o.payload)]
                            m.d.sync += [logit.eq(logits[join_bank][j_s][top.o.payload[j]])
                                         for j, logit in enumerate(chosen_logits)]
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
                # The k probabilities one after the other through a single lane: k lanes would
                # share r, one register feeding k DSP48E2, which none of them can absorb.
                m.d.comb += prob.i.valid.eq(1)
                with m.If(prob.i.ready):
                    m.d.sync += issued.eq(issued + 1)
                    m.d.sync += [chosen_logits[j].eq(chosen_logits[j + 1]) for j in range(K - 1)]
                    with m.If(issued == K - 1):
                        m.d.sync += issued.eq(0)
                        m.next = "COLLECT"
            with m.State("COLLECT"):
                with m.If((collected == K) | (prob.o.valid & (collected == K - 1))):
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                for j in range(K):
                    m.d.comb += [self.o.payload.experts[j].eq(chosen[j]),
                                 self.o.payload.scores[j].eq(scores[j])]
                with m.If(self.o.ready):
                    m.d.sync += [j_s.eq(j_s + 1), collected.eq(0)]
                    m.next = "WAIT"
        # The probabilities are taken as they come, from the first one on (with k past
        # SoftmaxProb.LATENCY, before the last one is asked for).
        m.d.comb += prob.o.ready.eq(1)
        with m.If(prob.o.valid):
            m.d.sync += [scores[-1].eq(prob.o.payload[0]), collected.eq(collected + 1)]
            m.d.sync += [scores[j].eq(scores[j + 1]) for j in range(K - 1)]
        return m


def _registered_feed(m, sink, name):
    """A stream register in front of ``sink``: returns the stream to drive instead, whose
    ``ready`` is high when the register is empty or ``sink`` takes its content (so it follows
    ``sink.ready`` combinationally, as the units' own ``ready`` do). One cycle of latency, no
    loss of throughput."""
    source = stream.Signature(sink.payload.shape()).create(path=(name,))
    m.d.comb += [source.ready.eq(~sink.valid | sink.ready)]
    with m.If(source.ready):
        m.d.sync += [sink.valid.eq(source.valid), sink.payload.eq(source.payload)]
    return source
