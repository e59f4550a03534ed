"""The expert engine: expert-aware patch reordering for one MoE layer; twin of
:func:`model.system.moe_half.experts_combine`.

A layer starts with a command. Its first job is the gate's logits: the gate record is fetched,
every token's row of ``h`` goes through the compute unit, and the logits leave on ``logits`` (one
beat per token) for :class:`hw.units.gate.Gate`. Queue entries then arrive from
:class:`hw.units.expert_queues.ExpertQueues`, expert by expert. For each active expert the engine

1. fetches its fc1 and fc2 records from memory **once**
   (:class:`hw.movers.linear_fetch.LinearFetch`, at ``base + (expert << stride_log2)``, fc2 at
   ``fc2_offset`` bytes further), straight into the compute unit's weight banks;
2. gathers its queue's rows of ``h`` into the compute unit for fc1 + GELU, and scatters the
   results into a hidden buffer (one row per queue position);
3. gathers those rows back for fc2 and scatters ``x[token] += score * y`` into ``x``.

Experts overlap: the queues of the next experts are taken into the free queue banks (of
``queue_banks``), and their weights load into the compute unit's free weight banks while the
current expert computes, so the array waits for weights only when the computes so far are
shorter than the fetches. Inactive experts cost nothing. The work is spread over five small
sequencers that each walk the same expert descriptors (fetch, compute-unit commands, row
indices, input routing, output routing).

``experts_done`` counts the experts whose every result has been written to ``x``.

**Latency and throughput.** With ``D = dim``, ``Dh = expert_hidden``, ``L = lanes``, the
records read at one beat of ``ports x data_width`` bits per cycle and the compute unit at one
``L x L`` tile per cycle (:class:`hw.units.compute_unit.ComputeUnit`):

* the gate job reads the gate record (``gate_weight_beats + gate_bias_beats`` beats) and takes
  ``tokens * ceil(experts / L) * D / L`` cycles of the array, a row as soon as ``h_rows`` says
  it is there;
* an active expert with ``n`` queued tokens makes two calls of ``A = n * (D / L) * (Dh / L)``
  cycles each (fc1 + GELU, then fc2); its records are ``F1 = (16 D Dh + 64 Dh) / (ports *
  data_width)`` and ``F2 = (16 D Dh + 64 D) / (ports * data_width)`` beats (16-bit weights,
  64-bit bias words);
* a call's record loads into the compute unit's free bank from the moment the call before it
  starts, so each call starts ``max(A_k, F_(k+1))`` cycles after the one before. That is the
  bound with two weight banks; the engine holds the queues of up to ``queue_banks`` experts, so
  the fetch and the compute-unit commands may run up to ``queue_banks - 1`` experts ahead of
  the expert whose results are being written, as far as the compute unit's weight banks let
  them, and a long call then hides the fetches of several short ones after it. Over the calls
  ``k = 1, 2, ...`` (fc1, fc2 of each active expert in order; ``F`` after the last is 0), from
  the first queue entry to the last row of the last expert in ``x``::

      cycles = n_1 + F_1 + sum_k max(A_k, F_(k+1)) + overhead

  where ``n_1`` is the first expert's queue, taken one entry per cycle before its fetch starts
  (the expert is known only after routing, so ``F_1`` is never hidden), and ``overhead`` the
  array's wait for each call's first row (``in / L`` beats, hidden when the fetch is the
  longer) and the pipelines at both ends: a few cycles per call.

So the array is busy ``2 n D Dh / L**2`` cycles per expert, and waits for weights wherever
``F > A``: an expert with fewer than ``16 L**2 / (ports * data_width)`` tokens is bandwidth-bound.
docs/moe.md compares the formula with simulation.

**Timing.** The engine's own decisions are made from registers (at most 4 LUT levels and one
carry chain on UltraScale+): a record's address is built in registers over two cycles before
its fetch command (fc2's while fc1's is taken), beats are counted by rows rather than against a
product, a finished job leaves its descriptor queue a cycle later, and the row indices for the
gathers and scatters wait in a register each, so those units see only flip-flops on their
``idx`` ports. Each costs a cycle or two per expert, never a beat of throughput.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw import checks
from model.numerics import DEFAULT, PROB_FRAC

from hw.movers.axi import axi4_read
from hw.units.compute_unit import ComputeClient
from hw.streams.gather import Gather
from hw.arith.gelu import Gelu
from hw.movers.linear_fetch import LinearFetch, bus_name, buses
from hw.streams.scatter import Scatter

__all__ = ["ExpertEngine"]


class ExpertEngine(wiring.Component):
    """Run every queued expert of one MoE layer over an activation buffer.

    Parameters
    ----------
    dim, expert_hidden : int
        Multiples of ``lanes``.
    experts, max_tokens : int
    lanes : int
        The compute unit is ``lanes x lanes``; activation beats carry ``lanes`` values.
    data_width, addr_width : int
        The AXI read ports.
    ports : int
        Memory ports the records are read over at once
        (:class:`hw.movers.linear_fetch.LinearFetch`): ``ports x data_width / 16`` weights per beat.
    compute : ComputeUnit or None
        A shared compute unit, reached through the port ``cu``
        (:class:`hw.units.compute_unit.ComputeClient`); None builds the engine's own.
    banks : int
        Weight banks of the engine's own compute unit (when ``compute`` is None).
    queue_banks : int
        Experts whose queues the engine holds at once, a power of two of at least 2: how far
        the weight fetch and the compute-unit commands may run ahead of the expert whose
        results are being written (``queue_banks - 1`` experts). Each costs ``max_tokens``
        entries of the queue memory.

    Members
    -------
    cmd : the layer's parameters (``ExpertEngine.command_layout``), taken once per layer
    q : queue entries (``ExpertQueues.o``)
    h_rd_addr, h_rd_data : read port of the ``h`` buffer (LN2 output, row ``t`` at ``t *
    dim/lanes``)
    h_rows : rows of ``h`` written so far; the gate job reads a row only once it is there, so it
        can run while LayerNorm is still producing ``h``
    x_rd_addr, x_rd_data, x_wr_addr, x_wr_data, x_wr_en : ports of the ``x`` buffer
    bus, bus_1, ... : AXI4 read masters, one per port (:attr:`buses`)
    experts_done : ``Out(16)``
    calls : ``Out(16)``
        Compute-unit calls accepted since reset (a gate call per layer, two per active expert).
    array_busy : ``Out(1)``
        The compute unit's ``busy``: the array takes a step this cycle.
    error : ``Out(1)``
        Sticky: a unit rejected a command, or the fetch failed (``resp_error``).
    resp_error : ``Out(1)``
        Sticky: the fetch got an error response (SLVERR/DECERR).
    """

    def __init__(self, *, dim, expert_hidden, experts, max_tokens, lanes=16, data_width=128,
                 addr_width=40, ports=1, compute=None, banks=2, queue_banks=4):
        for name, value in (("dim", dim), ("expert_hidden", expert_hidden)):
            checks.multiple_of("ExpertEngine", name, value, lanes, "lanes")
        if not (checks.is_int(queue_banks) and queue_banks >= 2
                and queue_banks & (queue_banks - 1) == 0):
            raise ValueError(f"ExpertEngine queue_banks must be a power of two of at least 2, "
                             f"not {queue_banks!r}")
        self._queue_banks = queue_banks
        self._dim, self._hidden, self._experts = dim, expert_hidden, experts
        self._max_tokens, self._lanes = max_tokens, lanes
        act = DEFAULT.act
        weight_lanes = ports * data_width // 16
        self._client = ComputeClient(
            "ExpertEngine", compute,
            own=dict(rows=lanes, cols=lanes, max_in=max(dim, expert_hidden),
                     max_out=max(dim, expert_hidden), max_weights=dim * expert_hidden,
                     max_tokens=max_tokens, weight_lanes=weight_lanes, act=act, gelu=Gelu,
                     banks=banks),
            calls=[(dim, experts, False), (dim, expert_hidden, True),
                   (expert_hidden, dim, False)], tokens=max_tokens)
        self.compute = self._client.unit
        if self.compute.weight_lanes != weight_lanes:
            raise ValueError(f"ExpertEngine needs a compute unit taking {weight_lanes} weights "
                             f"per beat ({ports} x {data_width}-bit AXI beats of 16-bit "
                             f"weights), not {self.compute.weight_lanes}")
        self.fetch = LinearFetch(cols=self.compute.cols, acc_width=self.compute.acc_width,
                                 data_width=data_width, addr_width=addr_width, ports=ports)
        beats = self.fetch.cmd.payload.shape()["weight_beats"].shape
        shift = self.compute.command_layout["shift"].shape
        self.command_layout = data.StructLayout({
            "base": unsigned(addr_width), "stride_log2": unsigned(6),
            "fc2_offset": unsigned(addr_width),
            "fc1_weight_beats": beats, "fc1_bias_beats": beats,
            "fc2_weight_beats": beats, "fc2_bias_beats": beats,
            "fc1_shift": shift, "fc2_shift": shift,
            "tokens": unsigned(ceil_log2(max_tokens + 1)), "gate_addr": unsigned(addr_width),
            "gate_weight_beats": beats, "gate_bias_beats": beats, "gate_shift": shift})
        self.entry_layout = data.StructLayout({
            "expert": unsigned(max(1, ceil_log2(experts))),
            "token": unsigned(max(1, ceil_log2(max_tokens))),
            "score": signed(PROB_FRAC + 1),
            "last": 1})
        beat = data.ArrayLayout(act.width, lanes)
        rows = max_tokens * (dim // lanes)
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout)),
            "q": In(stream.Signature(self.entry_layout)),
            "h_rd_addr": Out(range(rows)), "h_rd_data": In(beat),
            "h_rows": In(range(max_tokens + 1)),
            "x_rd_addr": Out(range(rows)), "x_rd_data": In(beat),
            "x_wr_addr": Out(range(rows)), "x_wr_data": Out(beat), "x_wr_en": Out(1),
            **{bus_name(p): Out(axi4_read(addr_width=addr_width, data_width=data_width))
               for p in range(ports)},
            "logits": Out(stream.Signature(beat)),
            "experts_done": Out(16),
            "calls": Out(16),
            "array_busy": Out(1),
            "error": Out(1),
            "resp_error": Out(1),
            **self._client.members(),
        })

    buses = property(buses, doc="The AXI read ports, port 0 first.")

    @property
    def compute_members(self):
        """The engine's members that reach a shared compute unit, as a signature's members:
        ``{"cu": In(compute.signature)}`` when the engine was given one, ``{}`` when it holds
        its own. A component that holds the engine adds these to its own signature and connects
        each to the engine's member of the same name."""
        return self._client.members()

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_tokens
        Bd, Bh = self._dim // L, self._hidden // L
        act = DEFAULT.act
        cu, fetch = self._client.ports(m, self), self.fetch
        m.submodules.fetch = fetch
        wiring.connect(m, fetch.w, cu.w)
        wiring.connect(m, fetch.b, cu.b)
        for fetched, bus in zip(fetch.buses, self.buses):
            wiring.connect(m, fetched, wiring.flipped(bus))

        m.submodules.gather_h = g_h = Gather(lanes=L, width=act.width, rows=T, row_beats=Bd)
        m.submodules.gather_hidden = g_hid = Gather(lanes=L, width=act.width, rows=T,
                                                    row_beats=Bh)
        m.submodules.scatter_hidden = s_hid = Scatter(lanes=L, rows=T, row_beats=Bh, fmt=act)
        m.submodules.scatter_x = s_x = Scatter(lanes=L, rows=T, row_beats=Bd, fmt=act)
        m.submodules.hidden = hmem = memory.Memory(shape=data.ArrayLayout(act.width, L),
                                                   depth=T * Bh, init=[])
        hid_rd, hid_acc_rd, hid_wr = hmem.read_port(), hmem.read_port(), hmem.write_port()
        m.d.comb += [
            self.h_rd_addr.eq(g_h.rd_addr), g_h.rd_data.eq(self.h_rd_data),
            hid_rd.addr.eq(g_hid.rd_addr), g_hid.rd_data.eq(hid_rd.data),
            hid_acc_rd.addr.eq(s_hid.rd_addr), s_hid.rd_data.eq(hid_acc_rd.data),
            hid_wr.addr.eq(s_hid.wr_addr), hid_wr.data.eq(s_hid.wr_data),
            hid_wr.en.eq(s_hid.wr_en),
            self.x_rd_addr.eq(s_x.rd_addr), s_x.rd_data.eq(self.x_rd_data),
            self.x_wr_addr.eq(s_x.wr_addr), self.x_wr_data.eq(s_x.wr_data),
            self.x_wr_en.eq(s_x.wr_en),
            self.array_busy.eq(cu.busy),
            self.error.eq(cu.error | fetch.error | g_h.error | g_hid.error | s_hid.error |
                          s_x.error),
            self.resp_error.eq(fetch.resp_error),
        ]

        layer = Signal(self.command_layout)

        # --- Intake: queue entries into QB banks; a descriptor per expert ------------------
        QB = self._queue_banks
        m.submodules.queues = qmem = memory.Memory(
            shape=data.StructLayout({"token": self.entry_layout["token"].shape,
                                     "score": self.entry_layout["score"].shape}),
            depth=QB * T, init=[])
        q_wr, q_rd_idx, q_rd_out = qmem.write_port(), qmem.read_port(), qmem.read_port()
        bank_bases = Array(Const(b * T, range(QB * T)) for b in range(QB))

        def queue_addr(bank, i):
            # The base is a table of QB constants: with the add, one LUT and a carry chain.
            return i + bank_bases[bank]

        # ``last``: n - 1, the last row of the job, so that counting needs no subtraction.
        # ``seq`` numbers the experts so that the index sequencer can tell whether the output
        # sequencer (whose hidden rows it waits for, a few cycles late) is on the same expert:
        # they are at most QB - 1 experts apart, QB with the delay, so one bit more than the
        # bank index never aliases.
        seq_width = ceil_log2(QB) + 1
        desc_layout = data.StructLayout({"expert": self.entry_layout["expert"].shape,
                                         "n": unsigned(ceil_log2(T + 1)),
                                         "last": unsigned(ceil_log2(T)),
                                         "bank": unsigned(ceil_log2(QB)),
                                         "seq": unsigned(seq_width), "gate": 1})
        names = ("fetch", "command", "index", "input", "output")
        fifos = {}
        # A descriptor per bank: every expert's descriptor in a queue holds a bank until the
        # output sequencer takes it (the last to), so the queues are never fuller than the
        # banks. The gate job's descriptor holds no bank, but it goes in only when the queues
        # have room and leaves them before the layer's first queue entry can come (the queues
        # need every token's logits first), so it needs no place of its own (and if it did
        # share one, the intake would only wait: the gate job never waits for the intake).
        for name in names:
            fifos[name] = f = fifo.SyncFIFOBuffered(width=desc_layout.size, depth=QB)
            m.submodules[f"desc_{name}"] = f
        descs = {name: data.View(desc_layout, fifos[name].r_data) for name in names}

        bank_busy = Signal(QB)
        in_bank = Signal(ceil_log2(QB))
        in_count = Signal(range(T + 1))
        seq = Signal(seq_width)
        room = bank_busy.bit_select(in_bank, 1) == 0
        for f in fifos.values():
            room = room & f.w_rdy
        m.d.comb += [self.q.ready.eq(room),
                     q_wr.addr.eq(queue_addr(in_bank, in_count)),
                     q_wr.data.token.eq(self.q.payload.token),
                     q_wr.data.score.eq(self.q.payload.score),
                     q_wr.en.eq(self.q.valid & self.q.ready)]
        new_desc = Signal(desc_layout)
        m.d.comb += [new_desc.expert.eq(self.q.payload.expert), new_desc.n.eq(in_count + 1),
                     new_desc.last.eq(in_count), new_desc.bank.eq(in_bank),
                     new_desc.seq.eq(seq)]
        push = self.q.valid & self.q.ready & self.q.payload.last
        # A layer command goes first as the gate job: its logits, over every token.
        all_room = 1
        for f in fifos.values():
            all_room = all_room & f.w_rdy
        m.d.comb += self.cmd.ready.eq(all_room & (in_count == 0) & ~self.q.valid)
        start = self.cmd.valid & self.cmd.ready
        with m.If(start):
            m.d.sync += layer.eq(self.cmd.payload)
        gate_desc = Signal(desc_layout)
        m.d.comb += [gate_desc.gate.eq(1), gate_desc.n.eq(self.cmd.payload.tokens),
                     gate_desc.last.eq(self.cmd.payload.tokens - 1)]
        for f in fifos.values():
            m.d.comb += [f.w_data.eq(Mux(start, gate_desc, new_desc)), f.w_en.eq(push | start)]
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += in_count.eq(in_count + 1)
            with m.If(self.q.payload.last):
                m.d.sync += [in_count.eq(0), in_bank.eq(in_bank + 1), seq.eq(seq + 1)]
        release = Signal(QB)
        m.d.sync += bank_busy.eq((bank_busy | Mux(push, 1 << in_bank, 0)) & ~release)

        # --- Fetch: fc1 then fc2 record of each expert --------------------------------------
        # The command is built in registers, a step at a time (the expert's offset, the
        # record's address, then fc2's as fc1's is taken), so that no shift and no 40-bit
        # adds sit between the descriptor and the fetch's command port.
        d = descs["fetch"]
        f_cmd = Signal.like(fetch.cmd.payload)
        f_offset = Signal(self.command_layout["base"].shape)
        f_last = Signal()                           # the descriptor's last record
        m.d.comb += fetch.cmd.payload.eq(f_cmd)
        with m.FSM(name="fetcher"):
            with m.State("TAKE"):
                with m.If(fifos["fetch"].r_rdy & d.gate):
                    m.d.sync += [f_cmd.addr.eq(layer.gate_addr),
                                 f_cmd.weight_beats.eq(layer.gate_weight_beats),
                                 f_cmd.bias_beats.eq(layer.gate_bias_beats), f_last.eq(1)]
                    m.next = "SEND"
                with m.Elif(fifos["fetch"].r_rdy):
                    m.d.sync += f_offset.eq(d.expert << layer.stride_log2)
                    m.next = "RECORD"
            with m.State("RECORD"):
                m.d.sync += [f_cmd.addr.eq(layer.base + f_offset),
                             f_cmd.weight_beats.eq(layer.fc1_weight_beats),
                             f_cmd.bias_beats.eq(layer.fc1_bias_beats), f_last.eq(0)]
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += fetch.cmd.valid.eq(1)
                with m.If(fetch.cmd.ready):
                    with m.If(f_last):
                        m.d.comb += fifos["fetch"].r_en.eq(1)
                        m.next = "TAKE"
                    with m.Else():
                        m.d.sync += [f_cmd.addr.eq(f_cmd.addr + layer.fc2_offset),
                                     f_cmd.weight_beats.eq(layer.fc2_weight_beats),
                                     f_cmd.bias_beats.eq(layer.fc2_bias_beats), f_last.eq(1)]

        # --- Compute-unit commands ----------------------------------------------------------
        d = descs["command"]
        second_cmd = Signal()
        c = cu.cmd.payload
        m.d.comb += cu.cmd.valid.eq(fifos["command"].r_rdy)
        with m.If(d.gate):
            m.d.comb += [c.in_dim.eq(self._dim), c.out_dim.eq(self._experts), c.tokens.eq(d.n),
                         c.shift.eq(layer.gate_shift), c.out_width.eq(act.width), c.gelu.eq(0)]
            m.d.comb += fifos["command"].r_en.eq(cu.cmd.ready)
        with m.Elif(second_cmd):
            m.d.comb += [c.in_dim.eq(self._hidden), c.out_dim.eq(self._dim), c.tokens.eq(d.n),
                         c.shift.eq(layer.fc2_shift), c.out_width.eq(act.width), c.gelu.eq(0)]
        with m.Else():
            m.d.comb += [c.in_dim.eq(self._dim), c.out_dim.eq(self._hidden), c.tokens.eq(d.n),
                         c.shift.eq(layer.fc1_shift), c.out_width.eq(act.width), c.gelu.eq(1)]
        with m.If(cu.cmd.valid & cu.cmd.ready):
            m.d.sync += self.calls.eq(self.calls + 1)
        with m.If(cu.cmd.valid & cu.cmd.ready & ~d.gate):
            m.d.sync += second_cmd.eq(~second_cmd)
            m.d.comb += fifos["command"].r_en.eq(second_cmd)

        # --- Row indices: the queue's tokens for fc1, hidden rows 0..n-1 for fc2 ------------
        d = descs["index"]
        idx_phase = Signal()
        idx_i = Signal(range(T + 1))
        idx_loaded = Signal()                       # q_rd_idx.data holds entry idx_i
        hid_written = Signal(range(T + 1))
        hid_written_seq = Signal(seq_width)
        active = fifos["index"].r_rdy
        m.d.comb += q_rd_idx.addr.eq(queue_addr(d.bank, idx_i))
        h_free, h_load, h_req = _slot(m, g_h.idx, "h_idx")
        hid_free, hid_load, hid_req = _slot(m, g_hid.idx, "hid_idx")
        # Hidden row idx_i is written, as of the cycle before: a cycle late at worst, never
        # early, since a row once written stays so for the expert, and idx_i moves only on a
        # load into the slot, which then stays full for a cycle.
        row_ready = Signal()
        m.d.sync += row_ready.eq((hid_written_seq == d.seq) & (hid_written > idx_i))
        # The same for the gate's h rows: h_rows falls only to 0, when a layer command comes
        # (``start``), so the flag is cleared then and is never early.
        h_row_ready = Signal()
        m.d.sync += h_row_ready.eq((idx_i < self.h_rows) & ~start)
        with m.If(active & d.gate):
            # The gate reads every token's h row in order.
            with m.If(idx_i == d.n):
                m.d.sync += idx_i.eq(0)
                m.d.comb += fifos["index"].r_en.eq(1)
            with m.Elif(h_row_ready & h_free):
                m.d.comb += [h_load.eq(1), h_req.row.eq(idx_i), h_req.beats.eq(Bd)]
                m.d.sync += idx_i.eq(idx_i + 1)
        with m.If(active & ~d.gate & ~idx_phase):
            with m.If(idx_i == d.n):
                m.d.sync += [idx_phase.eq(1), idx_i.eq(0), idx_loaded.eq(0)]
            with m.Elif(~idx_loaded):
                m.d.sync += idx_loaded.eq(1)
            with m.Elif(h_free):
                m.d.comb += [h_load.eq(1), h_req.row.eq(q_rd_idx.data.token),
                             h_req.beats.eq(Bd)]
                m.d.sync += [idx_i.eq(idx_i + 1), idx_loaded.eq(0)]
        with m.If(active & ~d.gate & idx_phase):
            with m.If(idx_i == d.n):
                m.d.sync += [idx_phase.eq(0), idx_i.eq(0)]
                m.d.comb += fifos["index"].r_en.eq(1)
            with m.Else():
                with m.If(row_ready & hid_free):
                    m.d.comb += [hid_load.eq(1), hid_req.row.eq(idx_i), hid_req.beats.eq(Bh)]
                    m.d.sync += idx_i.eq(idx_i + 1)

        # --- Compute-unit input: gathered h rows for fc1, hidden rows for fc2 ---------------
        # Beats are counted by rows (no multiplier), and a finished job leaves its queue of
        # descriptors a cycle later, from a register (``in_pop``), not from the count.
        d = descs["input"]
        in_phase = Signal()
        in_pop = Signal()
        m.d.sync += in_pop.eq(0)
        m.d.comb += fifos["input"].r_en.eq(in_pop)
        in_active = fifos["input"].r_rdy & ~in_pop
        in_end = _count_rows(m, "in", cu.x.valid & cu.x.ready, d.last,
                             Mux(in_phase, Bh - 1, Bd - 1), T, max(Bd, Bh))
        with m.If(in_active & ~in_phase):
            m.d.comb += [cu.x.valid.eq(g_h.o.valid), cu.x.payload.eq(g_h.o.payload),
                         g_h.o.ready.eq(cu.x.ready)]
        with m.If(in_active & in_phase):
            m.d.comb += [cu.x.valid.eq(g_hid.o.valid), cu.x.payload.eq(g_hid.o.payload),
                         g_hid.o.ready.eq(cu.x.ready)]
        with m.If(in_end):
            with m.If(d.gate | in_phase):
                m.d.sync += [in_phase.eq(0), in_pop.eq(1)]
            with m.Else():
                m.d.sync += in_phase.eq(1)

        # --- Compute-unit output: fc1 rows to the hidden buffer, fc2 rows into x ------------
        d = descs["output"]
        out_phase = Signal()
        out_pop = Signal()
        m.d.sync += out_pop.eq(0)
        m.d.comb += [fifos["output"].r_en.eq(out_pop),
                     release.eq(Mux(out_pop & ~d.gate, 1 << d.bank, 0))]
        out_active = fifos["output"].r_rdy & ~out_pop
        row_beat = Signal(range(Bh))
        hid_rows = Signal(range(T + 1))
        hid_idx = Signal(range(T + 1))
        x_idx = Signal(range(T + 1))
        x_loaded = Signal()
        busy_out = out_active & ~d.gate
        gate_tiles = -(-self._experts // L)
        out_end = _count_rows(m, "out", cu.o.valid & cu.o.ready, d.last,
                              Mux(d.gate, gate_tiles - 1, Mux(out_phase, Bd - 1, Bh - 1)), T,
                              max(Bd, Bh, gate_tiles))
        with m.If(out_active & d.gate):
            m.d.comb += [self.logits.valid.eq(cu.o.valid), self.logits.payload.eq(cu.o.payload),
                         cu.o.ready.eq(self.logits.ready)]
            with m.If(out_end):
                m.d.sync += out_pop.eq(1)
        # Indices of the hidden scatter: rows 0..n-1.
        s_hid_free, s_hid_load, s_hid_req = _slot(m, s_hid.idx, "s_hid_idx")
        with m.If(busy_out & ~out_phase & (hid_idx < d.n) & s_hid_free):
            m.d.comb += [s_hid_load.eq(1), s_hid_req.row.eq(hid_idx), s_hid_req.beats.eq(Bh),
                         s_hid_req.score.eq(0), s_hid_req.accumulate.eq(0)]
            m.d.sync += hid_idx.eq(hid_idx + 1)
        # Indices of the x scatter: the queue's tokens and scores, accumulating.
        m.d.comb += q_rd_out.addr.eq(queue_addr(d.bank, x_idx))
        s_x_free, s_x_load, s_x_req = _slot(m, s_x.idx, "s_x_idx")
        with m.If(busy_out & out_phase & (x_idx < d.n)):
            with m.If(~x_loaded):
                m.d.sync += x_loaded.eq(1)
            with m.Elif(s_x_free):
                m.d.comb += [s_x_load.eq(1), s_x_req.row.eq(q_rd_out.data.token),
                             s_x_req.beats.eq(Bd), s_x_req.score.eq(q_rd_out.data.score),
                             s_x_req.accumulate.eq(1)]
                m.d.sync += [x_idx.eq(x_idx + 1), x_loaded.eq(0)]
        # Beats.
        with m.If(busy_out & ~out_phase):
            m.d.comb += [s_hid.i.valid.eq(cu.o.valid), s_hid.i.payload.eq(cu.o.payload),
                         cu.o.ready.eq(s_hid.i.ready)]
            with m.If(cu.o.valid & cu.o.ready):
                m.d.sync += row_beat.eq(row_beat + 1)
                with m.If(row_beat == Bh - 1):
                    m.d.sync += [row_beat.eq(0), hid_rows.eq(hid_rows + 1)]
            with m.If(out_end):
                m.d.sync += out_phase.eq(1)
        with m.If(busy_out & out_phase):
            m.d.comb += [s_x.i.valid.eq(cu.o.valid), s_x.i.payload.eq(cu.o.payload),
                         cu.o.ready.eq(s_x.i.ready)]
            with m.If(out_end):
                m.d.sync += [out_phase.eq(0), hid_rows.eq(0), hid_idx.eq(0), x_idx.eq(0),
                             x_loaded.eq(0), out_pop.eq(1)]

        # Hidden rows are readable once the scatter has written them (Scatter.LATENCY later).
        rows_now, seq_now = hid_rows, d.seq
        for i in range(Scatter.LATENCY + 1):
            r, s = Signal.like(hid_rows, name=f"hid_rows_{i}"), Signal.like(seq_now,
                                                                           name=f"hid_seq_{i}")
            m.d.sync += [r.eq(rows_now), s.eq(seq_now)]
            rows_now, seq_now = r, s
        m.d.comb += [hid_written.eq(rows_now), hid_written_seq.eq(seq_now)]

        # An expert is done once its last x row has been written.
        finished = Signal(Scatter.LATENCY + 1)
        m.d.sync += finished.eq(Cat(out_pop & ~d.gate, finished[:-1]))
        with m.If(finished[-1]):
            m.d.sync += self.experts_done.eq(self.experts_done + 1)
        return m


def _count_rows(m, name, step, last_row, last_beat, rows, beats):
    """Count ``step`` transfers by rows of ``last_beat + 1`` beats; returns whether this step
    is the last beat of row ``last_row`` (the job's end), when the counts start again."""
    beat = Signal(range(beats), name=f"{name}_beat")
    row = Signal(range(rows), name=f"{name}_row")
    row_end = beat == last_beat
    end = step & row_end & (row == last_row)
    with m.If(step):
        m.d.sync += beat.eq(Mux(row_end, 0, beat + 1))
        with m.If(row_end):
            m.d.sync += row.eq(Mux(row == last_row, 0, row + 1))
    return end


def _slot(m, port, name):
    """A register in front of the stream ``port``, so that its ``valid`` and payload come
    straight from flip-flops (the gathers and scatters decide from them at once). Returns
    ``(free, load, request)``: while ``free``, driving ``load`` high puts ``request`` (a
    payload the caller drives) in the register, which offers it until ``port`` takes it. One
    request per two cycles at most: a row of beats takes longer."""
    valid = Signal(name=f"{name}_valid")
    held = Signal.like(port.payload, name=f"{name}_held")
    load = Signal(name=f"{name}_load")
    request = Signal.like(port.payload, name=f"{name}_request")
    m.d.comb += [port.valid.eq(valid), port.payload.eq(held)]
    with m.If(port.ready):
        m.d.sync += valid.eq(0)
    with m.If(load):
        m.d.sync += [valid.eq(1), held.eq(request)]
    return ~valid, load, request
