"""Expert-aware patch reordering: per-expert queues of (token, score); twin of
:func:`model.units.expert_queues.expert_queues`.

A build starts with a command naming the token count. The gate's decisions then arrive on ``i``,
one beat per token in token order, each with the token's ``top_k`` experts and their scores; every
choice is appended to its expert's queue (``top_k`` cycles per token, one memory write each).
Once every token is in, the experts are ranked by their queue's length, and the queues leave on
``o`` as one stream of entries, the active experts longest and shortest queue in turn (ranked by
descending length, ties by ascending expert index, then taken from both ends of that ranking:
longest, shortest, second longest, second shortest, ...) and each queue's tokens in ascending
order, ``last`` marking an expert's final entry: the order in which the MoE layer fetches each
active expert's weights once and gathers its tokens. Experts with an empty queue produce nothing.

Why that order (:mod:`model.units.expert_queues` says it too): an expert's weights take the same
time to fetch whatever its queue, while its compute grows with the queue. A long expert's calls
let the weight fetch run ahead (:class:`hw.units.expert_engine.ExpertEngine` holds several
experts' queues) through the short experts after it, whose calls would leave the array waiting
for weights; taking long and short in turn keeps the fetch and the array busy together. On the
512-MAC machine this took 40 k cycles off the MoE layers of m3vit-tiny's task 1 with the longest
queues first, and a model of the fetch and the calls gives 12 k more for the interleave.

Latency and throughput: ``top_k`` cycles per token while collecting, each choice registered and
written a cycle later (so one more cycle after the last); then
``E + 2 + max(ceil(log2(E - 1)), ceil(log2(E)) + 1)`` cycles to rank and place the
``E = experts`` experts (a register of pairwise compares, a tree of adds counting the experts
that beat each one, one add per stage, beside it a tree counting the active experts, a register
of each expert's position, then one expert a cycle into its position); then one entry per cycle
on ``o`` (plus two cycles for the read pipeline), with no cycle between experts and none for the
empty ones, which sort last.

Timing: every decision is made from registers (at most 4 LUT levels and one carry chain of the
count's width on UltraScale+): the current expert's count is a register of its own, the first of
the sorted registers, which shift down an expert at a time, not a multiplexer over the experts;
the compares, the adds and the placing are a register stage each. Ranking in fewer cycles would
put the compares and two or more adds of the tree in one path. An expert index beyond
``experts`` sets ``error`` (sticky) and that choice is dropped.
"""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.numerics import PROB_FRAC

from hw import checks
from hw.streams.pipeline import countdown, tree, tree_stages

__all__ = ["ExpertQueues"]


class ExpertQueues(wiring.Component):
    """Queues of (token, score) per expert.

    Parameters
    ----------
    experts : int
    top_k : int
        Choices per token, at most ``experts``.
    max_tokens : int

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"tokens"})))``
    i : ``In(stream.Signature(StructLayout({"experts": ArrayLayout(unsigned, top_k),
        "scores": ArrayLayout(signed(PROB_FRAC + 1), top_k)})))``
    o : ``Out(stream.Signature(StructLayout({"expert", "token", "score", "last"})))``
    idle : ``Out(1)``
        No build in progress: every entry of the last build has been emitted.
    error : ``Out(1)``
    """

    def __init__(self, *, experts, top_k, max_tokens):
        for name, value in (("experts", experts), ("top_k", top_k), ("max_tokens", max_tokens)):
            checks.positive("ExpertQueues", name, value)
        if top_k > experts:
            raise ValueError(f"ExpertQueues top_k ({top_k}) must not exceed experts ({experts})")
        self._experts, self._top_k, self._max_tokens = experts, top_k, max_tokens
        expert = unsigned(ceil_log2(experts + 1))     # one more code, to detect bad indices
        token = unsigned(ceil_log2(max_tokens))
        score = signed(PROB_FRAC + 1)
        self.entry_layout = data.StructLayout({"token": token, "score": score})
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "tokens": unsigned(ceil_log2(max_tokens + 1))}))),
            "i": In(stream.Signature(data.StructLayout({
                "experts": data.ArrayLayout(expert, top_k),
                "scores": data.ArrayLayout(score, top_k)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "expert": unsigned(ceil_log2(experts)), "token": token, "score": score,
                "last": 1}))),
            "idle": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        E, K, T = self._experts, self._top_k, self._max_tokens
        pitch = ceil_log2(T)
        m.submodules.entries = mem = memory.Memory(shape=self.entry_layout, depth=E << pitch,
                                                   init=[])
        wr, rd = mem.write_port(), mem.read_port()
        # While collecting, counts[e] is the length of expert e's queue. While placing, the
        # counts shift down by one expert at a time, so that the expert being placed has its
        # count in counts[0] (a register, not a multiplexer over experts).
        counts = Array(Signal(range(T + 1), name=f"count_{e}") for e in range(E))
        token = Signal(range(T + 1))
        choice = Signal(range(K))
        # Tokens still to come, counted down with the end known a cycle ahead: no compare of
        # the token count sits between the handshake on `i` and the FSM.
        token_taken = Signal()
        collecting, _ = countdown(m, name="tokens", load=self.cmd.valid & self.cmd.ready,
                                  total=self.cmd.payload.tokens, step=token_taken)
        all_in = ~collecting

        # Collecting: a choice is registered, then written (and counted) in the next cycle.
        pend = Signal()
        pend_expert = Signal(range(E))
        pend_one_hot = Signal(E)                      # the same, decoded for the count
        pend_token = Signal.like(token)
        pend_score = Signal.like(self.i.payload.scores[0])

        # Ranking, from the counts alone and every cycle: expert f beats expert e if its queue
        # is longer, or as long with a smaller index (a strict order, so the ranks are a
        # permutation). One register stage of compares, then a tree of adds counts the experts
        # that beat each one: its rank, the position it is emitted at.
        rank_width = max(1, ceil_log2(E))
        ranks = []
        for e in range(E):
            beats = []
            for f in range(E):
                if f != e:
                    beat = Signal(name=f"beats_{f}_{e}")
                    m.d.sync += beat.eq(counts[f] >= counts[e] if f < e else
                                        counts[f] > counts[e])
                    beats.append(beat)
            ranks.append(tree(m, beats, lambda a, b: a + b, name=f"rank_{e}") if beats else 0)
        # The emitting order interleaves the longest and the shortest queues: rank r of the n
        # active experts goes to position 2r while r < ceil(n / 2), and to 2 (n - 1 - r) + 1
        # after; the empty experts keep their ranks, after every active one. n comes from a
        # tree of adds beside the ranks, and each position is a register of its own.
        nonzero = [Signal(name=f"nonzero_{e}") for e in range(E)]
        m.d.sync += [flag.eq(count != 0) for flag, count in zip(nonzero, counts)]
        active = tree(m, nonzero, lambda a, b: a + b, name="active")
        last_active = Signal(range(E + 1))              # n - 1
        half = Signal(range(E + 1))                     # ceil(n / 2)
        m.d.sync += [last_active.eq(active - 1), half.eq((active + 1) >> 1)]
        positions = []
        for e, rank in enumerate(ranks):
            position = Signal(rank_width, name=f"position_{e}")
            m.d.sync += position.eq(Mux(rank >= active, rank,
                                        Mux(rank < half, rank << 1,
                                            ((last_active - rank) << 1) | 1)))
            positions.append(position)
        rank_latency = 1 + max(tree_stages(E - 1), tree_stages(E) + 1) + 1 if E > 1 else 0
        wait = Signal(range(rank_latency + 1))

        # Placing: the ranks are taken into a shift register beside the counts; each cycle the
        # expert in front (``place``) goes to its position in the sorted registers.
        place_ranks = [Signal(rank_width, name=f"place_rank_{e}") for e in range(E)]
        place = Signal(range(E))
        sorted_experts = [Signal(rank_width, name=f"sorted_expert_{p}") for p in range(E)]
        sorted_counts = [Signal(range(T + 1), name=f"sorted_count_{p}") for p in range(E)]

        # Emitting: walk the sorted experts, read each queue through a small FIFO with credits.
        # The sorted registers shift down by one expert as an expert's last entry is issued, so
        # that the current one is always sorted_*[0], whose count counts down its entries.
        depth = 4
        m.submodules.queue = out_fifo = fifo.SyncFIFOBuffered(
            width=len(self.o.payload.as_value()), depth=depth)
        index = Signal(range(T + 1))
        empty = Signal()                              # sorted_counts[0] == 0: nothing left
        one = Signal()                                # sorted_counts[0] == 1
        queued = Signal(range(depth + 2))
        in_flight = Signal()
        flight_last = Signal()
        flight_expert = Signal.like(self.o.payload.expert)
        issue = Signal()

        m.d.sync += pend.eq(0)
        with m.If(pend):
            m.d.comb += [wr.addr.eq(Cat(counts[pend_expert][:pitch], pend_expert)),
                         wr.data.token.eq(pend_token), wr.data.score.eq(pend_score),
                         wr.en.eq(1)]
            # Each count increments itself: no multiplexer over experts before the adder.
            for e, count in enumerate(counts):
                with m.If(pend_one_hot[e]):
                    m.d.sync += count.eq(count + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), self.idle.eq(1)]
                with m.If(self.cmd.valid):
                    m.d.sync += [token.eq(0), choice.eq(0)]
                    m.d.sync += [c.eq(0) for c in counts]
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                e = self.i.payload.experts[choice]
                with m.If(all_in):
                    with m.If(~pend):                 # the last choice is counted
                        m.d.sync += wait.eq(max(rank_latency - 1, 0))
                        m.next = "RANK"
                with m.Elif(self.i.valid):
                    with m.If(e < E):
                        m.d.sync += [pend.eq(1), pend_expert.eq(e), pend_token.eq(token),
                                     pend_one_hot.eq(Cat(*(e == n for n in range(E)))),
                                     pend_score.eq(self.i.payload.scores[choice])]
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                    with m.If(choice == K - 1):
                        m.d.comb += [self.i.ready.eq(1), token_taken.eq(1)]
                        m.d.sync += [choice.eq(0), token.eq(token + 1)]
                    with m.Else():
                        m.d.sync += choice.eq(choice + 1)
            with m.State("RANK"):
                # The counts are final; their ranks come out of the pipeline ``wait`` later.
                with m.If(wait == 0):
                    m.d.sync += [r.eq(position) for r, position in zip(place_ranks, positions)]
                    m.d.sync += place.eq(0)
                    m.next = "PLACE"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("PLACE"):
                for p in range(E):
                    with m.If(place_ranks[0] == p):
                        m.d.sync += [sorted_experts[p].eq(place), sorted_counts[p].eq(counts[0])]
                with m.If(place_ranks[0] == 0):
                    m.d.sync += [empty.eq(counts[0] == 0), one.eq(counts[0] == 1)]
                m.d.sync += [counts[e].eq(counts[e + 1]) for e in range(E - 1)]
                m.d.sync += [place_ranks[e].eq(place_ranks[e + 1]) for e in range(E - 1)]
                m.d.sync += place.eq(place + 1)
                with m.If(place == E - 1):
                    m.d.sync += index.eq(0)
                    m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(empty):                     # so is every expert after it
                    with m.If(queued == 0):
                        m.next = "IDLE"
                with m.Elif(queued < depth):
                    m.d.comb += issue.eq(1)
                    with m.If(one):                   # the expert's last entry: on to the next
                        m.d.sync += [index.eq(0),
                                     empty.eq(sorted_counts[1] == 0 if E > 1 else 1),
                                     one.eq(sorted_counts[1] == 1 if E > 1 else 0)]
                        m.d.sync += [sorted_experts[p].eq(sorted_experts[p + 1])
                                     for p in range(E - 1)]
                        m.d.sync += [sorted_counts[p].eq(sorted_counts[p + 1])
                                     for p in range(E - 1)]
                        m.d.sync += sorted_counts[E - 1].eq(0)
                    with m.Else():
                        m.d.sync += [index.eq(index + 1),
                                     sorted_counts[0].eq(sorted_counts[0] - 1),
                                     one.eq(sorted_counts[0] == 2)]

        m.d.comb += rd.addr.eq(Cat(index[:pitch], sorted_experts[0][:ceil_log2(E)]))
        m.d.sync += [in_flight.eq(issue), flight_last.eq(one),
                     flight_expert.eq(sorted_experts[0])]
        entry = Signal(self.o.payload.shape())
        m.d.comb += [entry.expert.eq(flight_expert), entry.token.eq(rd.data.token),
                     entry.score.eq(rd.data.score), entry.last.eq(flight_last),
                     out_fifo.w_en.eq(in_flight), out_fifo.w_data.eq(entry)]
        wiring.connect(m, out_fifo.r_stream, wiring.flipped(self.o))
        m.d.sync += queued.eq(queued + issue - (self.o.valid & self.o.ready))
        return m
