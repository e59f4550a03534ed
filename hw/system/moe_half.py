"""The MoE half of a transformer block in hardware: twin of :func:`model.system.moe_half.moe_half`.

::

    x buffer --gather--> LayerNorm --scatter--> h buffer   (row by row, while:)
    h buffer --> expert engine: gate logits (compute unit) --> gate (softmax, top-k)
             --> expert queues --> expert engine: per active expert, weights fetched once,
                 fc1 + GELU, fc2, x[token] += score * y  --> x buffer

A run: a command (the expert engine's layer command: token count, gate and expert record
addresses and shapes, output shifts), ``tokens * dim / lanes`` beats of rows on ``x``, one
LayerNorm parameter set on ``p``; the records are read over ``bus``. When every active expert has
been added, the updated rows leave on ``o``. LayerNorm takes each row as soon as it is in, so the
gate ends shortly after the last row arrives. ``cycles`` counts from the end of loading ``x`` to
the last expert written (before ``o``): the half-block's cost with its input on chip.

**Latency and throughput.** With ``T`` tokens, ``B = dim / lanes`` beats per row, ``x`` at one
beat per cycle and the memory keeping pace::

    cycles = T * (B + LayerNorm.ROW_OVERHEAD) + route + experts

* LayerNorm is the slowest stage while the rows come in: it takes a row every ``2 B +
  ROW_OVERHEAD`` cycles (:class:`hw.units.layernorm.LayerNorm`, ``ROW_OVERHEAD`` = 12) where
  loading it takes ``B``, so it ends about ``T * (B + ROW_OVERHEAD)`` cycles after the last beat of
  ``x``. The gate logits (``ceil(experts / lanes) * B`` cycles of the array per token), the gate
  (about ``experts`` cycles per token, :class:`hw.units.gate.Gate`) and the queues (``top_k`` per
  token, :class:`hw.units.expert_queues.ExpertQueues`) keep pace with it, each a row behind.
* ``route``: the last row through LayerNorm's latency (``2 B + 35``), the scatter into ``h``,
  its gate logits, the gate's last group of three tokens (``3 * experts`` cycles in, then
  ``SoftmaxProb.LATENCY + top_k + 2`` per token), the queues' last choices and the walk to the
  first active expert: a few hundred cycles (measured before the pipelining of issue 18: 122
  for micro, 195 for m3vit-tiny).
* ``experts``: :class:`hw.units.expert_engine.ExpertEngine`'s formula, from the first queue entry
  (its ``n_1 + F_1 + sum_k max(A_k, F_(k+1))`` and a few cycles per call); the first expert's
  fetch ``F_1`` is never hidden, as the experts are known only once every token is routed.

Then the rows leave on ``o``: ``T * B`` beats at one per cycle. docs/moe.md compares the formula
with simulation.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import DEFAULT

from hw.units.expert_engine import ExpertEngine
from hw.units.expert_queues import ExpertQueues
from hw.units.gate import Gate
from hw.streams.gather import Gather, times_constant
from hw.system.half_block import count_rows, index_rows, rows_written
from hw.units.layernorm import LayerNorm, run_parameters
from hw.movers.linear_fetch import bus_name, buses
from hw.streams.pipeline import countdown
from hw.streams.scatter import Scatter

__all__ = ["MoeHalf"]


class MoeHalf(wiring.Component):
    """LN2, gate, expert queues and the expert engine over up to ``max_tokens`` tokens.

    Parameters
    ----------
    dim, expert_hidden, experts, top_k, max_tokens : int
    lanes : int
    data_width, addr_width : int
        The AXI read ports of the weight fetch.
    ports : int
        Memory ports the MoE records are read over at once (``ExpertEngine``).
    eps : float
    compute : ComputeUnit or None
        A shared compute unit for the expert engine, reached through the port ``cu``
        (:class:`hw.units.compute_unit.ComputeClient`); None builds the engine's own.
    preload : bool
        Take rows on ``x`` before the run's command too (a machine that takes a batch:
        :func:`hw.system.half_block.load_then_run`).

    Members
    -------
    cmd : ``In(stream.Signature(ExpertEngine.command_layout))``
    x, o : token rows in and out
    p : LayerNorm parameters
    bus, bus_1, ... : AXI4 read masters, one per port (:attr:`buses`)
    cycles : ``Out(32)``
    all_routed : ``Out(1)``
        A register: every token of the current (or last) command is routed (the expert queues
        offer their first entry), so the experts run (or the rows leave); cleared by the next
        command. Before it, the half is gating (LayerNorm, gate logits, softmax, top-k): the
        accelerator's stage counters charge GATE or MOE by it.
    calls_taken : ``Out(1)``
        Every compute-unit call of this run has been accepted (the gate's and two per active
        expert): a sequencer sharing the compute unit may queue the next stage's calls.
    error : ``Out(1)``
        Sticky: a unit rejected a command, or the expert fetch failed (``resp_error``).
    resp_error : ``Out(1)``
        Sticky: the expert fetch got an error response (SLVERR/DECERR).
    """

    def __init__(self, *, dim, expert_hidden, experts, top_k, max_tokens, lanes=16,
                 data_width=128, addr_width=40, ports=1, eps=1e-6, compute=None, preload=False):
        self._dim, self._experts, self._max_tokens, self._lanes = dim, experts, max_tokens, lanes
        self._preload = preload
        act = DEFAULT.act
        self.engine = ExpertEngine(dim=dim, expert_hidden=expert_hidden, experts=experts,
                                   max_tokens=max_tokens, lanes=lanes, data_width=data_width,
                                   addr_width=addr_width, ports=ports, compute=compute)
        self.layernorm = LayerNorm(dim=dim, lanes=lanes, gamma_fmt=DEFAULT.small_format,
                                   eps=eps, fmt=act)
        self.gate = Gate(experts=experts, k=top_k, lanes=lanes, max_tokens=max_tokens, fmt=act)
        self.queues = ExpertQueues(experts=experts, top_k=top_k, max_tokens=max_tokens)
        beat = data.ArrayLayout(act.width, lanes)
        super().__init__({
            "cmd": In(stream.Signature(self.engine.command_layout)),
            "x": In(stream.Signature(beat)),
            "p": In(self.layernorm.p.signature.flip()),
            "o": Out(stream.Signature(beat)),
            **{bus_name(p): Out(bus.signature) for p, bus in enumerate(self.engine.buses)},
            "cycles": Out(32),
            "all_routed": Out(1),
            "calls_taken": Out(1),
            "error": Out(1),
            "resp_error": Out(1),
            **self.engine.compute_members,
        })

    buses = property(buses, doc="The AXI read ports of the expert fetch, port 0 first.")

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_tokens
        Bd = self._dim // L
        act = DEFAULT.act
        beat = data.ArrayLayout(act.width, L)
        eng, ln, gate, queues = self.engine, self.layernorm, self.gate, self.queues
        m.submodules.engine, m.submodules.layernorm = eng, ln
        m.submodules.gate, m.submodules.queues = gate, queues
        m.submodules.x_buffer = xbuf = memory.Memory(shape=beat, depth=T * Bd, init=[])
        m.submodules.h_buffer = hbuf = memory.Memory(shape=beat, depth=T * Bd, init=[])
        m.submodules.gather_ln = g_ln = Gather(lanes=L, width=act.width, rows=T, row_beats=Bd)
        m.submodules.gather_out = g_out = Gather(lanes=L, width=act.width, rows=T,
                                                 row_beats=Bd)
        m.submodules.scatter_h = s_h = Scatter(lanes=L, rows=T, row_beats=Bd, fmt=act)

        # x buffer: loaded from x, read by LayerNorm and the output, updated by the engine. The
        # load and the engine's writes never overlap (the engine writes after every token is
        # routed), nor do LayerNorm's and the output's reads (one is in RUN, the other in OUT
        # and the run ends when the output gather is done): one write port and two read ports,
        # which a block RAM (twice) can hold.
        x_wr, x_rows_rd, x_eng_rd = xbuf.write_port(), xbuf.read_port(), xbuf.read_port()
        x_load = Signal.like(x_wr.en, name="x_load_en")
        h_eng_rd, h_acc_rd, h_wr = hbuf.read_port(), hbuf.read_port(), hbuf.write_port()
        m.d.comb += [
            x_rows_rd.addr.eq(Mux(g_out.rd_en, g_out.rd_addr, g_ln.rd_addr)),
            g_ln.rd_data.eq(x_rows_rd.data), g_out.rd_data.eq(x_rows_rd.data),
            x_eng_rd.addr.eq(eng.x_rd_addr), eng.x_rd_data.eq(x_eng_rd.data),
            x_wr.en.eq(x_load | eng.x_wr_en),
            h_eng_rd.addr.eq(eng.h_rd_addr), eng.h_rd_data.eq(h_eng_rd.data),
            h_acc_rd.addr.eq(s_h.rd_addr), s_h.rd_data.eq(h_acc_rd.data),
            h_wr.addr.eq(s_h.wr_addr), h_wr.data.eq(s_h.wr_data), h_wr.en.eq(s_h.wr_en),
            self.error.eq(eng.error | queues.error | g_ln.error | g_out.error | s_h.error),
            self.resp_error.eq(eng.resp_error),
        ]
        wiring.connect(m, g_ln.o, ln.i)
        wiring.connect(m, ln.o, s_h.i)
        wiring.connect(m, eng.logits, gate.i)
        wiring.connect(m, gate.o, queues.i)
        wiring.connect(m, queues.o, eng.q)
        wiring.connect(m, g_out.o, wiring.flipped(self.o))
        for engine_bus, bus in zip(eng.buses, self.buses):
            wiring.connect(m, engine_bus, wiring.flipped(bus))
        for name in eng.compute_members:
            wiring.connect(m, getattr(eng, name), wiring.flipped(getattr(self, name)))

        layer = Signal(self.cmd.payload.shape())
        tokens = layer.tokens
        loaded = Signal(range(T * Bd + 1))             # beats of x in
        m.d.comb += [x_wr.addr.eq(Mux(x_load, loaded, eng.x_wr_addr)),
                     x_wr.data.eq(Mux(x_load, self.x.payload, eng.x_wr_data))]
        rows = {n: Signal(range(T + 1), name=f"{n}_rows") for n in ("ln", "h", "out")}
        # Rows of h written: counted at each row's last beat into the scatter, visible
        # Scatter.LATENCY cycles later when the write has happened.
        h_taken = Signal(range(T + 1))
        # The copies restart with the count at the command: the engine gets its command at
        # once, and must not see the last run's count.
        h_written = rows_written(m, s_h, Bd, h_taken, restart=self.cmd.valid & self.cmd.ready,
                                 name="h")
        m.d.comb += eng.h_rows.eq(h_written)
        experts = Signal(16)                          # experts queued for the engine
        # The engine counts finished experts and accepted calls since reset; this run's are
        # the differences.
        done_before = Signal(16)
        calls_before = Signal(16)
        started = Signal(3)                           # engine, gate, queues commands given

        params = run_parameters(m, self.p, ln.p, Bd, self.cmd.ready)

        with m.If(queues.o.valid & queues.o.ready & queues.o.payload.last):
            m.d.sync += experts.eq(experts + 1)

        # The load counted down from the run's total, and whole rows loaded counted up, so
        # that no product of the token count sits in front of a handshake.
        # With preload, rows are taken in IDLE too, before the command (a machine that takes a
        # batch, as hw.system.half_block.load_then_run), and what is left is counted down.
        total = Signal(range(T * Bd + 1))
        arm, finish = Signal(), Signal()
        room = Signal(init=1)                         # loaded < T * Bd, in IDLE
        loading, _ = countdown(m, name="load", load=arm, total=total,
                               step=self.x.valid & self.x.ready)
        rows_in = Signal(range(T + 1))
        count_rows(m, self.x.valid & self.x.ready, Bd, rows_in,
                   restart=finish if self._preload else arm, name="in")

        # Whether every routed expert is done and every call taken, judged on a snapshot of
        # the counts taken two cycles before (differences first, then comparisons): late,
        # but consistent, and only the end of the run waits for it.
        calls_now, done_now = Signal(16), Signal(16)
        calls_expected, experts_then = Signal(16), Signal(16)
        routed_then = Signal()
        m.d.sync += [calls_now.eq(eng.calls - calls_before),
                     done_now.eq(eng.experts_done - done_before),
                     calls_expected.eq(2 * experts + 1), experts_then.eq(experts),
                     routed_then.eq((started == 0b111) & queues.idle & (experts != 0))]
        routed = Signal()
        all_calls, all_done = Signal(), Signal()
        m.d.sync += [routed.eq(routed_then),
                     all_calls.eq(calls_now == calls_expected),
                     all_done.eq(experts_then == done_now)]

        # cmd.ready is a register, as in half_block.load_then_run.
        idle = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(idle)
        with m.FSM():
            with m.State("IDLE"):
                if self._preload:
                    m.d.comb += [self.x.ready.eq(room), x_load.eq(self.x.valid & room)]
                    with m.If(self.x.valid & room):
                        m.d.sync += [loaded.eq(loaded + 1), room.eq(loaded != T * Bd - 1)]
                with m.If(self.cmd.valid):
                    if not self._preload:
                        m.d.sync += loaded.eq(0)
                    m.d.sync += [layer.eq(self.cmd.payload), idle.eq(0),
                                 self.all_routed.eq(0),
                                 self.cycles.eq(0), experts.eq(0), started.eq(0),
                                 done_before.eq(eng.experts_done), calls_before.eq(eng.calls)]
                    m.d.sync += [r.eq(0) for r in rows.values()]
                    m.next = "PREPARE"
            with m.State("PREPARE"):
                m.d.sync += total.eq(times_constant(tokens, Bd))
                m.next = "REMAIN" if self._preload else "ARM"
            if self._preload:
                with m.State("REMAIN"):
                    m.d.sync += total.eq(total - loaded)
                    m.next = "ARM"
            with m.State("ARM"):
                m.d.comb += arm.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                # The rows load while LayerNorm takes each one once it is in, and writes h row
                # by row while the engine's gate job follows it (h_rows): so the gate ends soon
                # after the last row arrives.
                with m.If(~loading):
                    m.d.sync += self.cycles.eq(self.cycles + 1)
                m.d.comb += [self.x.ready.eq(loading),
                             x_load.eq(self.x.valid & self.x.ready)]
                with m.If(self.x.valid & self.x.ready):
                    m.d.sync += loaded.eq(loaded + 1)
                index_rows(m, g_ln.idx, rows["ln"], tokens, Bd,
                           params & (rows["ln"] < rows_in))
                index_rows(m, s_h.idx, rows["h"], tokens, Bd, score=0, accumulate=0)
                m.d.comb += [eng.cmd.valid.eq(~started[0]), eng.cmd.payload.eq(layer),
                             gate.cmd.valid.eq(~started[1]), gate.cmd.payload.tokens.eq(tokens),
                             queues.cmd.valid.eq(~started[2]),
                             queues.cmd.payload.tokens.eq(tokens)]
                m.d.sync += started.eq(started | Cat(eng.cmd.valid & eng.cmd.ready,
                                                     gate.cmd.valid & gate.cmd.ready,
                                                     queues.cmd.valid & queues.cmd.ready))
                # Once the queues are empty the count of active experts is final.
                m.d.comb += self.calls_taken.eq(routed & all_calls)
                # The queues offer their first entry once every token's choices are in.
                with m.If(queues.o.valid):
                    m.d.sync += self.all_routed.eq(1)
                with m.If(routed & all_done):
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.calls_taken.eq(1)
                index_rows(m, g_out.idx, rows["out"], tokens, Bd)
                # The gather goes on delivering the rows after the last index.
                with m.If((rows["out"] == tokens) & ~g_out.busy):
                    m.d.comb += finish.eq(1)
                    m.d.sync += idle.eq(1)
                    if self._preload:
                        m.d.sync += [loaded.eq(0), room.eq(1)]
                    m.next = "IDLE"
        return m
