"""The reordered attention engine: twin of :func:`model.units.attention.attention`.

Multi-head attention ``softmax(Q K^T) V`` (base 2, the scale folded into Q) over ``heads``
heads of ``head_dim`` values, on ``slots x head_dim`` multipliers of its own.

**Schedule** (:func:`model.units.attention.schedule`). The engine sweeps the keys ``passes =
ceil((N + P - 1) / P)`` times. Each step reads one key block (one head of one key row, ``head_dim``
words) and offers it to all ``P`` query slots at once; slot ``s`` takes its next query while key
``s`` streams by, so query ``q`` sees the keys from ``q mod P`` round to ``q mod P - 1`` and its
row ends one pass later. At most one query block is read per step: reads stay at ``1 + P/N``
blocks per step whatever ``P``, while the steps fall as ``passes * N``. Within a key, the heads
take turns (``ways = max(heads, 3)`` cycles per key, a spare way being a bubble): each slot's
single-pass softmax (:class:`hw.units.softmax.SoftmaxStats`) then sees its rows interleaved, which
its sum recurrence needs.

**Two sweeps on one multiplier array.**

1. ``Q K^T``: per slot a dot product of ``head_dim`` terms per cycle (adder tree), rounded and
   saturated to the score format; the score goes to the slot's score store and to its
   :class:`hw.units.softmax.SoftmaxStats`, which keeps each row's running maximum and sum and leaves
   ``(m, 1/s)`` in the slot's statistics table when the row ends.
2. ``A V``: the same schedule again. Each score comes back from the store, becomes a probability
   ``2**(a - m) * (1/s)`` (:class:`hw.units.softmax.SoftmaxProb`, one lane per slot) and scales the
   value block ``V[key]`` into the slot's accumulators (one per way and lane, a ring that turns
   once per key). At a row's last key each way's sum is rounded into the output buffer; rows end in
   token order.

**Interface.** A command ``{tokens}`` opens a run; then the rows of K, Q and V arrive on ``k``,
``q`` and ``v`` (token rows of ``dim`` values, ``lanes`` per beat, in any interleaving; Q values
in the 26-bit container of the compute unit's output, already saturated to ``q_fmt``). The
``Q K^T`` sweep starts when K and Q are in, the ``A V`` sweep when it is over and V is in (so V
may still be computing during the first sweep), and output rows leave on ``o`` in token order
as soon as each is complete, while the second sweep goes on. The next command is taken when the
last beat has left. The sweeps never stall: back-pressure on ``o`` only delays the read-out.

**Latency and throughput.** Each sweep takes ``passes * N * ways`` cycles plus its pipeline
(:attr:`AttentionEngine.qk_latency` = 12 plus :attr:`hw.units.softmax.SoftmaxStats.LATENCY` = 16
to the last statistics; :attr:`AttentionEngine.av_latency` = 14 plus 3 to the last output row,
for m3vit-tiny); for m3vit-tiny (129 tokens, 3 x 64, P = 4) that is 33 x 129 x 3 = 12,771 cycles
each. No pipeline stage lies in a per-key loop: the sweep issues one step per cycle whatever the
latencies. ``P * head_dim`` DSP48E2 serve both sweeps, plus ``3 P`` in the softmax statistics
and ``2 P`` in the probabilities.

**Timing.** The adder trees' and the accumulators' sums are split in two carry chains (see
``_LOW_BITS``), their rounding takes a stage to join the halves and one to round and saturate;
the slots' validity and addresses come from flags and bases kept beside the sweep counters; the
probabilities start from registers; and each multiplier has its own A register. No compare
takes a sum, difference or product of ``tokens``: the run's last buffer block
(``tokens * heads - 1``) and output beats are loaded with the command, by shifted adds; the keys
of a pass are counted down (:func:`hw.streams.pipeline.countdown`), so ``j == tokens - 1`` is a
register; the next pass's flags test one register, ``tokens - (p + 1) * P``, against constants;
and an output row's first block (``row * heads``) is formed a stage before it is written. Every
path is within 4 LUT levels and a 36-bit carry, with all DSP48E2 absorbable
(``python -m hw.timing attention --no-ecp5``, m3vit-tiny).

A command with zero tokens or more than ``max_tokens`` sets ``error`` (sticky) and is dropped;
:meth:`AttentionEngine.command` raises in Python.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.units.attention import passes
from model.numerics import DEFAULT, MANT_FRAC, PROB_FRAC
from model.units.softmax import MAX_ROW

from hw import checks
from hw.arith.multiplier import MULTIPLY_LATENCY, Multiplier
from hw.streams.gather import times_constant
from hw.streams.pipeline import countdown, delay
from hw.arith.reciprocal import K_WIDTH
from hw.units.softmax import SoftmaxProb, SoftmaxStats

__all__ = ["AttentionEngine"]


#: Bits of the low part of a split sum: the sums of the adder trees and the accumulators are
#: kept as ``hi * 2**_LOW_BITS + lo`` with ``lo >= 0``, two carry chains of at most 32 bits
#: side by side where a single one would take 50 (UltraScale+ timing closes on 48).
_LOW_BITS = 24


def _split(value):
    """``value`` as ``(lo, hi)``, ``value = hi * 2**_LOW_BITS + lo``."""
    return value[:_LOW_BITS], value[_LOW_BITS:].as_signed()


def _halves(lo, hi, shift):
    """``floor((hi * 2**_LOW_BITS + lo) / 2**(shift - 1))``: one add, as ``hi * 2**_LOW_BITS``
    is a multiple of ``2**(shift - 1)``. The first step of :func:`_round_saturate`."""
    assert 1 <= shift <= _LOW_BITS + 1
    return (hi << (_LOW_BITS - shift + 1)) + lo[shift - 1:]


def _round_saturate(halves, width):
    """The value whose :func:`_halves` is ``halves``, times ``2**-shift``, rounded half up and
    saturated to ``width`` signed bits: ``(halves + 1) >> 1``, with the two saturation tests
    made on ``halves`` beside the add, not after it."""
    top, bottom = (1 << (width - 1)) - 1, -(1 << (width - 1))
    return Mux(halves >= (1 << width) - 1, top,
               Mux(halves < -(1 << width) - 1, bottom, (halves + 1) >> 1))


class AttentionEngine(wiring.Component):
    """``softmax(Q K^T) V`` per head with ``slots`` staggered query slots.

    Parameters
    ----------
    dim : int
        Embedding width: ``heads * head_dim``.
    heads : int
        Heads; ``dim / heads`` must be a multiple of ``lanes``.
    max_tokens : int
        Largest token count of a run, at most ``model.units.softmax.MAX_ROW``.
    slots : int
        Query slots ``P``.
    lanes : int
        Values per beat of ``q``, ``k``, ``v`` and ``o``.
    fmt, q_fmt : model.numerics.Fixed
        Formats of K, V, the scores and the output, and of Q.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"tokens"})))``
    q, k, v : ``In(stream.Signature(ArrayLayout(signed(fmt.width), lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(fmt.width), lanes)))``
    error : ``Out(1)``
        Sticky: a command was dropped.
    qk_cycles, av_cycles : ``Out(32)``
        Cycles of the last run's sweeps, from the first step to the last statistics written
        (``Q K^T``) and to the later of the last step and the last output row written
        (``A V``).
    q_blocks, k_blocks, v_blocks : ``Out(32)``
        Blocks of ``head_dim`` words read from the Q, K and V buffers in the last run.
    """

    #: Pipeline stages of a buffer read, of the register between the score and statistics
    #: reads and the probabilities (the score store's banks are muxed), and of a multiplier.
    _READ, _PROB_IN, _MULTIPLY = 1, 1, MULTIPLY_LATENCY

    def __init__(self, *, dim, heads, max_tokens, slots=4, lanes=16, fmt=DEFAULT.act,
                 q_fmt=DEFAULT.query):
        for name, value in (("dim", dim), ("heads", heads), ("max_tokens", max_tokens),
                            ("slots", slots), ("lanes", lanes)):
            checks.positive("AttentionEngine", name, value)
        if dim % heads:
            raise ValueError(f"AttentionEngine dim {dim} is not divisible by {heads} heads")
        head_dim = dim // heads
        if head_dim % lanes:
            raise ValueError(f"AttentionEngine head_dim {head_dim} (dim {dim} / {heads} heads) "
                             f"must be a multiple of lanes ({lanes})")
        if max_tokens > MAX_ROW:
            raise ValueError(f"AttentionEngine max_tokens must be at most {MAX_ROW} (the "
                             f"softmax running sum's range), not {max_tokens}")
        if fmt.width > 27 or q_fmt.width > 18:
            raise ValueError(f"AttentionEngine formats must fit a DSP48E2 (K, V at most 27 "
                             f"bits, Q at most 18), not {fmt.width} and {q_fmt.width}")
        self._dim, self._heads, self._head_dim = dim, heads, head_dim
        self._max_tokens, self._slots, self._lanes = max_tokens, slots, lanes
        self._fmt, self._q_fmt = fmt, q_fmt
        self._ways = max(heads, SoftmaxStats.MIN_ROWS)
        beat = data.ArrayLayout(signed(fmt.width), lanes)
        self.command_layout = data.StructLayout({"tokens": unsigned(ceil_log2(max_tokens + 1))})
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout)),
            "q": In(stream.Signature(beat)),
            "k": In(stream.Signature(beat)),
            "v": In(stream.Signature(beat)),
            "o": Out(stream.Signature(beat)),
            "error": Out(1),
            "qk_cycles": Out(32),
            "av_cycles": Out(32),
            "q_blocks": Out(32),
            "k_blocks": Out(32),
            "v_blocks": Out(32),
        })

    dim = property(lambda self: self._dim)
    heads = property(lambda self: self._heads)
    head_dim = property(lambda self: self._head_dim)
    slots = property(lambda self: self._slots)
    lanes = property(lambda self: self._lanes)
    ways = property(lambda self: self._ways)
    max_tokens = property(lambda self: self._max_tokens)

    @property
    def qk_latency(self):
        """Cycles from a ``Q K^T`` step's issue to its score entering the softmax: buffer read,
        multiplier, adder tree (one level per cycle), joining its split sum, rounding."""
        return self._READ + self._MULTIPLY + ceil_log2(self._head_dim) + 2

    @property
    def av_latency(self):
        """Cycles from an ``A V`` step's issue to its products: score read (1), a register,
        probability (the value block is read meanwhile), multiplier (3). The accumulator takes
        them then, and a row's sums are written to the output buffer three cycles later (the
        last sum, its halves, the rounding)."""
        return self._READ + self._PROB_IN + SoftmaxProb.LATENCY + self._MULTIPLY

    def sweep_cycles(self, tokens):
        """Steps of one sweep over ``tokens`` tokens (its cycles without the pipeline)."""
        return passes(tokens, self._slots) * tokens * self._ways

    def command(self, *, tokens):
        """A checked command payload (dict); ValueError names what is wrong."""
        if not (checks.is_int(tokens) and 1 <= tokens <= self._max_tokens):
            raise ValueError(f"tokens must be an integer in 1..{self._max_tokens} for this "
                             f"attention engine, not {tokens!r}")
        return dict(tokens=tokens)

    def elaborate(self, platform):
        m = Module()
        # heads: attention heads; ways: cycles per key, one per head plus spare bubbles
        # (max(heads, 3)); `way` (below) counts them, and a way below `heads` is that head.
        P, heads, ways = self._slots, self._heads, self._ways
        hd, L = self._head_dim, self._lanes
        T, fmt, q_fmt = self._max_tokens, self._fmt, self._q_fmt
        G = hd // L                                   # beats per head block
        rows_per_slot = -(-T // P)
        acc_width = fmt.width + PROB_FRAC + ceil_log2(T) + 1

        # --- Buffers: Q, K, V and the output, one head block (hd values) per word ----------
        def block_memory(name, width):
            mem = memory.Memory(shape=unsigned(hd * width), depth=T * heads, init=[])
            m.submodules[name] = mem
            return mem

        q_mem = block_memory("q_buffer", q_fmt.width)
        k_mem = block_memory("k_buffer", fmt.width)
        v_mem = block_memory("v_buffer", fmt.width)
        o_mem = block_memory("o_buffer", fmt.width)

        # --- Run control (the states are at the end, once their conditions exist) -----------
        tokens = Signal.like(self.cmd.payload.tokens)
        # Loaded with the command, so that no product or subtraction of `tokens` lies before a
        # compare: the last block of a buffer (tokens * heads - 1) and the beats of a run.
        last_block = Signal(range(T * heads + 1))
        beats = Signal(range(T * heads * G + 1))
        running = Signal()                            # from a command to its last output beat
        start_sweep = Signal()

        # --- Loading: token rows of dim values, lanes per beat ------------------------------
        loaded = {}
        for name, mem, width in (("q", q_mem, q_fmt.width), ("k", k_mem, fmt.width),
                                 ("v", v_mem, fmt.width)):
            port = getattr(self, name)
            wr = mem.write_port(granularity=L * width)
            addr = Signal(range(T * heads + 1), name=f"{name}_addr")  # token * heads + head
            group = Signal(range(G), name=f"{name}_group")
            done = Signal(name=f"{name}_loaded")
            loaded[name] = done
            lanes = [port.payload[lane][:width] for lane in range(L)]
            m.d.comb += [port.ready.eq(running & ~done), wr.addr.eq(addr),
                         wr.data.eq(Cat(*lanes).replicate(G)),
                         wr.en.eq(Mux(port.valid & port.ready, 1 << group, 0))]
            with m.If(port.valid & port.ready):
                m.d.sync += group.eq(Mux(group == G - 1, 0, group + 1))
                with m.If(group == G - 1):
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(addr == last_block):
                        m.d.sync += done.eq(1)
            with m.If(self.cmd.valid & self.cmd.ready):
                m.d.sync += [addr.eq(0), group.eq(0), done.eq(0)]

        # --- The sweep: pass p, key j, way; one step per cycle --------------------------------
        sweeping = Signal()
        av = Signal()                                 # which sweep (0: Q K^T, 1: A V)
        j = Signal(range(T))
        way = Signal(range(ways))
        pass_q = Signal(range(T + P))                 # p * P: the query slot 0 loads
        key_block = Signal(range(T * heads + 1))      # j * heads: key j's block of head 0
        pass_block = Signal(range((T + P) * heads))   # p * P * heads: slot 0's query, head 0
        pass_ways = Signal(range((rows_per_slot + 1) * ways))         # p * ways
        pass_store = Signal(range((rows_per_slot + 1) * T * ways))    # p * T * ways
        step = Signal(range(T * ways))                # j * ways + way: the step in the pass
        # Flags and the previous pass's bases, kept in registers beside the counters so that
        # the slots' validity and addresses below take no compare or subtraction of them:
        # last_key is j == tokens - 1 (the keys counted down); last_pass is p * P + 1 >= tokens;
        # per slot s, in_pass[s] is j >= s (it has loaded its query of this pass), fits[s] and
        # fits_prev[s] say whether its queries of this pass and of the previous one exist
        # (p * P + s < tokens, and the same one pass earlier; false in the first pass). The next
        # pass's flags are tests of `after`, tokens - (p + 1) * P, against constants.
        prev_q = Signal.like(pass_q)
        prev_ways = Signal.like(pass_ways)
        prev_store = Signal.like(pass_store)
        last_pass = Signal()
        after = Signal(range(-3 * P - T, T + 1))
        in_pass = [Signal(name=f"slot{s}_in_pass") for s in range(P)]
        fits = [Signal(name=f"slot{s}_fits") for s in range(P)]
        fits_prev = [Signal(name=f"slot{s}_fits_prev") for s in range(P)]
        key_end = sweeping & (way == ways - 1)        # a key's last step
        pass_end = Signal()
        _, last_key = countdown(m, name="keys", load=start_sweep | pass_end, total=tokens,
                                step=key_end)
        m.d.comb += pass_end.eq(key_end & last_key)
        last_step = (way == ways - 1) & last_key & last_pass
        with m.If(sweeping):
            m.d.sync += [way.eq(way + 1), step.eq(step + 1)]
            with m.If(way == ways - 1):
                m.d.sync += [way.eq(0), j.eq(j + 1), key_block.eq(key_block + heads)]
                m.d.sync += [in_pass[s].eq(in_pass[s] | (j == s - 1)) for s in range(1, P)]
                with m.If(last_key):
                    m.d.sync += [j.eq(0), key_block.eq(0), step.eq(0), pass_q.eq(pass_q + P),
                                 pass_block.eq(pass_block + P * heads),
                                 pass_ways.eq(pass_ways + ways),
                                 pass_store.eq(pass_store + T * ways),
                                 prev_q.eq(pass_q), prev_ways.eq(pass_ways),
                                 prev_store.eq(pass_store),
                                 last_pass.eq(after <= 1), after.eq(after - P)]
                    m.d.sync += [in_pass[s].eq(0) for s in range(1, P)]
                    m.d.sync += [fits[s].eq(after > s) for s in range(P)]
                    m.d.sync += [fits_prev[s].eq(fits[s]) for s in range(P)]
            with m.If(last_step):
                m.d.sync += sweeping.eq(0)
        with m.If(start_sweep):
            m.d.sync += [sweeping.eq(1), j.eq(0), way.eq(0), pass_q.eq(0), key_block.eq(0),
                         pass_block.eq(0), pass_ways.eq(0), pass_store.eq(0), step.eq(0),
                         last_pass.eq(tokens <= 1), after.eq(tokens - P)]
            m.d.sync += [in_pass[s].eq(s == 0) for s in range(P)]
            m.d.sync += [fits[s].eq(s < tokens) for s in range(P)]
            m.d.sync += [fits_prev[s].eq(0) for s in range(P)]

        # Per slot at this step: its query, whether it holds one, and where its row is.
        head = Signal(range(heads))
        m.d.comb += head.eq(Mux(way < heads, way, 0))
        real_way = way < heads
        slot_valid, slot_first, slot_last, slot_load = [], [], [], []
        slot_row, store_addr, stats_addr = [], [], []
        for s in range(P):
            q = Signal(range(T + 2 * P), name=f"slot{s}_query")
            m.d.comb += q.eq(Mux(in_pass[s], pass_q, prev_q) + s)
            valid = Signal(name=f"slot{s}_valid")
            m.d.comb += valid.eq(sweeping & Mux(in_pass[s], fits[s], fits_prev[s]))
            slot_valid.append(valid)
            slot_first.append(j == s)
            slot_last.append(last_key if s == 0 else j == s - 1)
            slot_load.append(valid & (j == s) & real_way)
            slot_row.append(q)
            sa = Signal(range(rows_per_slot * T * ways), name=f"slot{s}_store_addr")
            m.d.comb += sa.eq(Mux(in_pass[s], pass_store, prev_store) + step)
            store_addr.append(sa)
            ta = Signal(range(rows_per_slot * ways), name=f"slot{s}_stats_addr")
            m.d.comb += ta.eq(Mux(in_pass[s], pass_ways, prev_ways) + way)
            stats_addr.append(ta)

        # --- The multiplier array, shared by the two sweeps ---------------------------------
        multipliers = [[None] * hd for _ in range(P)]
        for s in range(P):
            for lane in range(hd):
                mul = Multiplier(a_width=fmt.width, b_width=18, signed=True,
                                 latency=self._MULTIPLY)
                m.submodules[f"mul_{s}_{lane}"] = mul
                m.d.comb += mul.en.eq(1)
                multipliers[s][lane] = mul

        # --- Sweep 1: Q K^T ------------------------------------------------------------------
        qk = sweeping & ~av
        k_rd = k_mem.read_port()
        q_rd = q_mem.read_port()
        m.d.comb += [k_rd.addr.eq(key_block + head),
                     q_rd.addr.eq(pass_block + key_block + head)]
        with m.If(qk & real_way):
            m.d.sync += self.k_blocks.eq(self.k_blocks + 1)

        # Stage 1: the blocks are read; each slot's query block is the one just read if it
        # loads now, else the one it holds for this head.
        head_1 = delay(m, head, 1, name="head")
        k_block = [k_rd.data[lane * fmt.width:(lane + 1) * fmt.width].as_signed()
                   for lane in range(hd)]
        qk_operands = [[None] * hd for _ in range(P)]
        loads_1 = []
        for s in range(P):
            load_1 = delay(m, qk & slot_load[s], 1, name=f"slot{s}_load")
            loads_1.append(load_1)
            # held[i]: the slot's query block of head i.
            held = [Signal(q_rd.data.shape(), name=f"slot{s}_query_{i}") for i in range(heads)]
            current = held[0]
            for i in range(1, heads):
                current = Mux(head_1 == i, held[i], current)
            for i in range(heads):
                with m.If(load_1 & (head_1 == i)):
                    m.d.sync += held[i].eq(q_rd.data)
            query = Mux(load_1, q_rd.data, current)
            for lane in range(hd):
                qk_operands[s][lane] = (k_block[lane], query[lane * q_fmt.width:
                                                             (lane + 1) * q_fmt.width].as_signed())

        # A query block read (counted a cycle late, from the registers).
        with m.If(Cat(*loads_1).any()):
            m.d.sync += self.q_blocks.eq(self.q_blocks + 1)

        # Stages 3.. : the adder tree of each slot, one level per cycle, its sums split (see
        # _LOW_BITS); then the two halves joined and shifted, and the rounding.
        score_shift = q_fmt.frac + fmt.frac - fmt.frac
        scores = []
        for s in range(P):
            level = [_split(multipliers[s][lane].p) for lane in range(hd)]
            depth = 0
            while len(level) > 1:
                nxt = []
                for i in range(0, len(level) - 1, 2):
                    (lo_a, hi_a), (lo_b, hi_b) = level[i], level[i + 1]
                    lo = Signal(unsigned(len(lo_a) + 1), name=f"slot{s}_sum{depth}_{i}_lo")
                    hi = Signal(signed(len(hi_a) + 1), name=f"slot{s}_sum{depth}_{i}_hi")
                    m.d.sync += [lo.eq(lo_a + lo_b), hi.eq(hi_a + hi_b)]
                    nxt.append((lo, hi))
                if len(level) % 2:
                    carry = [Signal.like(part, name=f"slot{s}_sum{depth}_carry_{which}")
                             for part, which in zip(level[-1], ("lo", "hi"))]
                    m.d.sync += [register.eq(part) for register, part in zip(carry, level[-1])]
                    nxt.append(tuple(carry))
                level, depth = nxt, depth + 1
            halves = Signal.like(_halves(*level[0], score_shift), name=f"slot{s}_halves")
            m.d.sync += halves.eq(_halves(*level[0], score_shift))
            score = Signal(signed(fmt.width), name=f"slot{s}_score")
            m.d.sync += score.eq(_round_saturate(halves, fmt.width))
            scores.append(score)

        # The score enters the slot's softmax statistics and its store.
        stats_units, store_mems = [], []
        lat = self.qk_latency
        way_q = delay(m, way, lat, name="qk_way")
        for s in range(P):
            unit = SoftmaxStats(rows=ways, fmt=fmt)
            m.submodules[f"stats_{s}"] = unit
            stats_units.append(unit)
            valid_q = delay(m, qk & slot_valid[s], lat, name=f"slot{s}_qk_valid")
            last_q = delay(m, slot_last[s], lat, name=f"slot{s}_qk_last")
            real_q = way_q < heads
            # The statistics are taken while the run lasts, which is whenever they come. Not a
            # constant 1: with every unit's enable constant, synthesis merges their constant
            # registers (the sign of the reciprocal's step) into one flip-flop shared by P
            # DSP48E2 slices, which none of them can then absorb.
            m.d.comb += [unit.i.valid.eq(valid_q),
                         unit.i.payload.score.eq(Mux(real_q, scores[s], 0)),
                         unit.i.payload.last.eq(last_q | ~real_q), unit.o.ready.eq(running)]
            store = memory.Memory(shape=signed(fmt.width), depth=rows_per_slot * T * ways,
                                  init=[])
            m.submodules[f"score_store_{s}"] = store
            store_mems.append(store)
            wr = store.write_port()
            m.d.comb += [wr.addr.eq(delay(m, store_addr[s], lat, name=f"slot{s}_store_addr")),
                         wr.data.eq(scores[s]), wr.en.eq(valid_q & real_q)]

        # Each row's (m, 1/s) goes to the slot's statistics table; SoftmaxStats never stalls
        # (its output is always taken), so a row's table address is its last score's,
        # SoftmaxStats.LATENCY cycles later.
        stats_layout = data.StructLayout({"m": signed(fmt.width), "r": unsigned(MANT_FRAC),
                                          "k": unsigned(K_WIDTH)})
        stats_mems = []
        for s, unit in enumerate(stats_units):
            table = memory.Memory(shape=stats_layout, depth=rows_per_slot * ways, init=[])
            m.submodules[f"stats_table_{s}"] = table
            stats_mems.append(table)
            wr = table.write_port()
            addr = delay(m, stats_addr[s], lat + SoftmaxStats.LATENCY,
                         name=f"slot{s}_stats_addr")
            result = unit.o.payload
            m.d.comb += [wr.addr.eq(addr), wr.en.eq(unit.o.valid & (result.row < heads)),
                         wr.data.m.eq(result.m), wr.data.r.eq(result.r), wr.data.k.eq(result.k)]

        # --- Sweep 2: A V --------------------------------------------------------------------
        avs = sweeping & av
        m.submodules.probabilities = prob = SoftmaxProb(lanes=P, fmt=fmt)
        m.d.comb += [prob.i.valid.eq(1), prob.o.ready.eq(1)]
        for s in range(P):
            score_rd = store_mems[s].read_port()
            stats_rd = stats_mems[s].read_port()
            m.d.comb += [score_rd.addr.eq(store_addr[s]), stats_rd.addr.eq(stats_addr[s])]
            lane = prob.i.payload[s]
            m.d.sync += [lane.a.eq(score_rd.data), lane.m.eq(stats_rd.data.m),
                         lane.r.eq(stats_rd.data.r), lane.k.eq(stats_rd.data.k)]

        # The value block is read when the probabilities are out.
        v_rd = v_mem.read_port()
        m.d.comb += v_rd.addr.eq(delay(m, key_block + head,
                                       self._READ + self._PROB_IN + SoftmaxProb.LATENCY - 1,
                                       name="v_addr"))
        with m.If(avs & real_way):
            m.d.sync += self.v_blocks.eq(self.v_blocks + 1)
        for s in range(P):
            # The slots' multipliers of a lane share their K or V operand. Zeroed while the slot
            # holds no query, which changes no result, it loads P registers that differ (the
            # multipliers' A registers), so that synthesis keeps one in each DSP48E2 instead of
            # merging them into one that none can absorb.
            qk_on = delay(m, qk & slot_valid[s], self._READ, name=f"slot{s}_qk_on")
            av_on = delay(m, avs & slot_valid[s],
                          self._READ + self._PROB_IN + SoftmaxProb.LATENCY,
                          name=f"slot{s}_av_on")
            on = Mux(av, av_on, qk_on)
            for lane in range(hd):
                mul = multipliers[s][lane]
                k_value, q_value = qk_operands[s][lane]
                v_value = v_rd.data[lane * fmt.width:(lane + 1) * fmt.width].as_signed()
                m.d.comb += [mul.a.eq(Mux(on, Mux(av, v_value, k_value), 0)),
                             mul.b.eq(Mux(av, prob.o.payload[s], q_value))]

        # Accumulators: per slot and lane a ring of `ways` sums that turns once per cycle, so
        # its far end is this way's sum of the previous key. Each sum is split (see _LOW_BITS):
        # T terms below 2**_LOW_BITS take ceil_log2(T) more bits.
        lat = self.av_latency                           # the products are ready now
        way_v = delay(m, way, lat, name="av_way")
        step_v = delay(m, avs, lat, name="av_step")
        out_width = fmt.width
        out_shift = PROB_FRAC + fmt.frac - fmt.frac
        lo_width, hi_width = _LOW_BITS + ceil_log2(T), acc_width - _LOW_BITS
        finished, finished_base, ends = [], [], []
        for s in range(P):
            first = delay(m, slot_first[s], lat, name=f"slot{s}_av_first")
            last = delay(m, avs & slot_valid[s] & slot_last[s], lat, name=f"slot{s}_av_last")
            row = delay(m, slot_row[s], lat, name=f"slot{s}_av_row")
            rings = [[(Signal(unsigned(lo_width), name=f"slot{s}_acc{lane}_{pos}_lo"),
                       Signal(signed(hi_width), name=f"slot{s}_acc{lane}_{pos}_hi"))
                      for pos in range(ways)] for lane in range(hd)]
            with m.If(step_v):
                for lane in range(hd):
                    ring = rings[lane]
                    for part, product in enumerate(_split(multipliers[s][lane].p)):
                        m.d.sync += ring[0][part].eq(Mux(first, 0, ring[ways - 1][part])
                                                     + product)
                        m.d.sync += [ring[pos][part].eq(ring[pos - 1][part])
                                     for pos in range(1, ways)]
            # One cycle later ring[0] holds the way's new sum.
            finished.append(delay(m, last & step_v & (way_v < heads), 1, name=f"slot{s}_done"))
            # The row's first block in the output buffer, row * heads.
            finished_base.append(delay(m, times_constant(row, heads), 1,
                                      name=f"slot{s}_done_base"))
            ends.append([ring[0] for ring in rings])

        # The finished sums (of one slot at a time) are joined and shifted, then rounded, a
        # stage each, and written to the output buffer.
        way_done = delay(m, way_v, 1, name="done_way")
        ended, base_out = ends[0], finished_base[0]
        for s in range(1, P):
            ended = [tuple(Mux(finished[s], new, old) for new, old in zip(sum_s, sum_ended))
                     for sum_s, sum_ended in zip(ends[s], ended)]
            base_out = Mux(finished[s], finished_base[s], base_out)
        any_done = Cat(*finished).any()
        out_halves = []
        for lane in range(hd):
            halves = _halves(*ended[lane], out_shift)
            out_halves.append(delay(m, halves, 1, name=f"out_halves{lane}"))
        data_out = Signal(unsigned(hd * out_width))
        m.d.sync += data_out.eq(Cat(*(_round_saturate(halves, out_width)[:out_width]
                                      for halves in out_halves)))
        out_addr_w = delay(m, base_out + way_done, 2, name="out_write_addr")
        out_en = delay(m, any_done, 2, name="out_write_en")
        way_out = delay(m, way_done, 2, name="out_write_way")
        o_wr = o_mem.write_port()
        rows_done = Signal(range(T + 1))
        m.d.comb += [o_wr.addr.eq(out_addr_w), o_wr.data.eq(data_out), o_wr.en.eq(out_en)]
        row_done = out_en & (way_out == heads - 1)
        with m.If(row_done):
            m.d.sync += rows_done.eq(rows_done + 1)

        # --- Read-out: rows in token order as soon as they are complete ----------------------
        o_rd = o_mem.read_port()
        out_addr = Signal(range(T * heads + 1))       # token * heads + head
        out_group = Signal(range(G))
        out_head = Signal(range(heads))
        out_token = Signal(range(T + 1))
        sent = Signal(range(T * heads * G + 1))
        group_1 = Signal(range(G))
        advance = ~self.o.valid | self.o.ready
        # Whether a complete row is waiting (out_token < rows_done), from comparisons made a
        # cycle ahead: each count moves by at most one a cycle, so the two registered
        # comparisons and last cycle's two steps decide it exactly, and no comparator sits
        # between o.ready and the read-out's registers. (out_token never passes rows_done.)
        token_read = Signal()
        behind, behind_by_two = Signal(), Signal()     # out_token < rows_done, + 1 < rows_done
        token_read_1, row_done_1 = Signal(), Signal()
        m.d.sync += [behind.eq(out_token < rows_done),
                     behind_by_two.eq(out_token + 1 < rows_done),
                     token_read_1.eq(token_read), row_done_1.eq(row_done)]
        waiting = Mux(token_read_1 == row_done_1, behind,
                      Mux(row_done_1, 1, behind_by_two))
        can_read = running & waiting
        m.d.comb += [o_rd.addr.eq(out_addr), o_rd.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(can_read), group_1.eq(out_group)]
            with m.If(can_read):
                m.d.sync += out_group.eq(Mux(out_group == G - 1, 0, out_group + 1))
                with m.If(out_group == G - 1):
                    m.d.sync += [out_addr.eq(out_addr + 1), out_head.eq(out_head + 1)]
                    with m.If(out_head == heads - 1):
                        m.d.comb += token_read.eq(1)
                        m.d.sync += [out_head.eq(0), out_token.eq(out_token + 1)]
        groups = [o_rd.data[g * L * fmt.width:(g + 1) * L * fmt.width] for g in range(G)]
        selected = groups[0]
        for g in range(1, G):
            selected = Mux(group_1 == g, groups[g], selected)
        m.d.comb += self.o.payload.eq(selected)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += sent.eq(sent + 1)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [out_addr.eq(0), out_group.eq(0), out_head.eq(0), out_token.eq(0),
                         sent.eq(0),
                         rows_done.eq(0), self.q_blocks.eq(0), self.k_blocks.eq(0),
                         self.v_blocks.eq(0), behind.eq(0), behind_by_two.eq(0),
                         token_read_1.eq(0), row_done_1.eq(0)]

        # --- The run ----------------------------------------------------------------------------
        # After the last Q K^T step, its statistics are written qk_latency + SoftmaxStats.LATENCY
        # cycles later; the A V sweep starts after that.
        drain = Signal(range(self.qk_latency + SoftmaxStats.LATENCY + 1))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    n = self.cmd.payload.tokens
                    with m.If((n == 0) | (n > T)):
                        m.d.sync += self.error.eq(1)
                    with m.Else():
                        m.d.sync += [tokens.eq(n), running.eq(1), self.qk_cycles.eq(0),
                                     self.av_cycles.eq(0),
                                     last_block.eq(times_constant(n, heads) - 1),
                                     beats.eq(times_constant(n, heads * G))]
                        m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(loaded["q"] & loaded["k"]):
                    m.d.comb += start_sweep.eq(1)
                    m.d.sync += av.eq(0)
                    m.next = "QK"
            with m.State("QK"):
                m.d.sync += self.qk_cycles.eq(self.qk_cycles + 1)
                with m.If(last_step):
                    m.d.sync += drain.eq(self.qk_latency + SoftmaxStats.LATENCY)
                    m.next = "QK_DRAIN"
            with m.State("QK_DRAIN"):
                m.d.sync += [self.qk_cycles.eq(self.qk_cycles + 1), drain.eq(drain - 1)]
                with m.If(drain == 0):
                    m.next = "WAIT_V"
            with m.State("WAIT_V"):
                with m.If(loaded["v"]):
                    m.d.comb += start_sweep.eq(1)
                    m.d.sync += av.eq(1)
                    m.next = "AV"
            with m.State("AV"):
                # Rows may all be written before the sweep's last steps (slots without a
                # query); the next run may only start once the sweep is over.
                m.d.sync += self.av_cycles.eq(self.av_cycles + 1)
                with m.If((rows_done == tokens) & ~sweeping):
                    m.next = "OUT"
            with m.State("OUT"):
                with m.If(sent == beats):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
        return m
