"""The attention half of a transformer block in hardware, ``x + proj(attention(LN1(x)))``: twin of
:func:`model.system.attention_half.attention_half`.

::

    x buffer --gather--> LayerNorm --> compute unit (K, Q, V) --> attention engine
    attention engine --> compute unit (proj) --> residual add <--gather-- x buffer --> o

One compute unit makes K, Q and V in turn (the LayerNorm runs over the rows once per call; it
takes a row in ``2 * dim / lanes + 12`` cycles, far less than the compute unit's ``(dim /
lanes)**2``), then the projection. The attention engine has its own multipliers
(:mod:`hw.units.attention`), so its two sweeps overlap the compute unit: ``Q K^T`` starts when K and
Q are in and runs while V is computed; ``A V`` starts when V is in, and the projection takes each
attention row as soon as the engine has finished it. So the half-block costs the four linear
layers plus the start of ``A V`` (about one pass over the keys) and the pipelines.
Each call's weights load into the compute unit's free bank while the previous call computes;
the first call's (K) are expected before the run, as the machine loads them during the
previous block.

A run: a command (``tokens`` and the four calls' output shifts), then ``tokens * dim / lanes``
beats of token rows on ``x``, LayerNorm parameters on ``p`` (one set), matrices and biases on
``w`` and ``b`` (K, Q, V, proj; :mod:`model.packer` layout). The updated rows leave on ``o``.
``cycles`` counts from the end of loading ``x`` to the last beat on ``o``.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from hw import checks
from model.system.attention_half import CALLS
from model.numerics import DEFAULT

from hw.units.attention import AttentionEngine
from hw.units.compute_unit import ComputeClient
from hw.streams.gather import Gather, times_constant
from hw.system.half_block import (index_rows, issue_calls, load_then_run, members, row_buffer,
                         shift_command)
from hw.units.layernorm import LayerNorm, run_parameters
from hw.units.residual import ResidualAdd
from hw.streams.pipeline import countdown

__all__ = ["AttentionHalf", "CALLS"]


class AttentionHalf(wiring.Component):
    """LN1, Q, K, V, attention, the projection and the residual add over up to ``max_tokens``
    tokens.

    Parameters
    ----------
    dim, heads : int
        Embedding width (a multiple of ``lanes``) and heads (``dim / heads`` a multiple of
        ``lanes``).
    max_tokens : int
    slots : int
        Query slots of the attention engine.
    lanes : int
        Values per beat everywhere; the compute unit is ``lanes x lanes``.
    weight_lanes : int
        Weights per beat of ``w``.
    eps : float
        LayerNorm epsilon.
    compute : ComputeUnit or None
        A shared compute unit, reached through the port ``cu``
        (:class:`hw.units.compute_unit.ComputeClient`); None builds the half's own.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"tokens", "k_shift", "q_shift", "v_shift",
    "proj_shift"})))``
    x, o : token rows in and out, ``lanes`` activations per beat
    p : LayerNorm parameters (:attr:`hw.units.layernorm.LayerNorm.p`)
    w, b : weights and biases (:attr:`hw.units.compute_unit.ComputeUnit.w`, ``.b``)
    cycles : ``Out(32)``
        Cycles of the last run, from the end of loading ``x`` to the last beat of ``o``.
    error : ``Out(1)``
        Sticky: a unit rejected a command or an index.
    """

    def __init__(self, *, dim, heads, max_tokens, slots=4, lanes=16, weight_lanes=8,
                 eps=1e-6, compute=None):
        checks.multiple_of("AttentionHalf", "dim", dim, lanes, "lanes")
        self._dim, self._max_tokens, self._lanes = dim, max_tokens, lanes
        act = DEFAULT.act
        self.engine = AttentionEngine(dim=dim, heads=heads, max_tokens=max_tokens, slots=slots,
                                      lanes=lanes, fmt=act, q_fmt=DEFAULT.query)
        self._client = ComputeClient(
            "AttentionHalf", compute,
            own=dict(rows=lanes, cols=lanes, max_in=dim, max_out=dim, max_weights=dim * dim,
                     max_tokens=max_tokens, weight_lanes=weight_lanes, act=act),
            calls=[(dim, dim, False)], tokens=max_tokens)
        self.compute = self._client.unit
        self.layernorm = LayerNorm(dim=dim, lanes=lanes, gamma_fmt=DEFAULT.small_format,
                                   eps=eps, fmt=act)
        self.command_layout = shift_command(self.compute, CALLS)
        super().__init__(members(command=self.command_layout, lanes=lanes,
                                 layernorm=self.layernorm, compute=self.compute,
                                 **self._client.members()))

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_tokens
        B = self._dim // L                              # beats per token row
        act = DEFAULT.act
        cu, ln, engine = self._client.ports(m, self), self.layernorm, self.engine
        m.submodules.layernorm = ln
        m.submodules.engine = engine
        m.submodules.residual = res = ResidualAdd(lanes=L, fmt=act)
        m.submodules.gather_ln = g_ln = Gather(lanes=L, width=act.width, rows=T, row_beats=B)
        m.submodules.gather_res = g_res = Gather(lanes=L, width=act.width, rows=T, row_beats=B)
        x_wr = row_buffer(m, "x_buffer", fmt=act, lanes=L, depth=T * B, gathers=(g_ln, g_res))
        wiring.connect(m, wiring.flipped(self.w), cu.w)
        wiring.connect(m, wiring.flipped(self.b), cu.b)
        wiring.connect(m, g_ln.o, ln.i)
        wiring.connect(m, g_res.o, res.x)
        wiring.connect(m, res.o, wiring.flipped(self.o))
        m.d.comb += self.error.eq(cu.error | engine.error | g_ln.error | g_res.error)

        command = Signal(self.command_layout)
        tokens = command.tokens
        engine_started = Signal()
        ln_rows = Signal(range(3 * T + 1))              # LayerNorm rows requested (K, Q, V)
        ln_row = Signal(range(T))
        res_rows = Signal(range(T + 1))
        last_token = Signal(range(T))                   # tokens - 1
        ln_total = Signal(range(3 * T + 1))             # LayerNorm rows of a run: 3 tokens
        three_matrices = Signal(range(3 * T * B + 1))   # K, Q and V beats: 3 tokens B
        new_command = self.cmd.valid & self.cmd.ready
        running, begin, row_beats = load_then_run(
            m, self, x_wr, times_constant(tokens, B),
            on_command=[command.eq(self.cmd.payload), engine_started.eq(0)],
            on_prepare=[last_token.eq(tokens - 1), ln_total.eq(times_constant(tokens, 3)),
                        three_matrices.eq(times_constant(tokens, 3 * B))],
            on_loaded=[ln_rows.eq(0), ln_row.eq(0), res_rows.eq(0)])
        # The engine's run and the compute unit's four calls go out as soon as the command is
        # in, so K's weights may load while x does.
        m.d.comb += [engine.cmd.valid.eq(~self.cmd.ready & ~engine_started),
                     engine.cmd.payload.tokens.eq(tokens)]
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += engine_started.eq(1)
        issue_calls(m, cu, [
            dict(in_dim=self._dim, out_dim=self._dim, shift=command[f"{call}_shift"],
                 out_width=DEFAULT.query.width if call == "q" else act.width, gelu=0)
            for call in CALLS], start=new_command, tokens=tokens)

        # LayerNorm rows: 0..tokens-1 three times, one pass per call.
        params = run_parameters(m, self.p, ln.p, B, self.cmd.ready)
        ln_rows_left, _ = countdown(m, name="ln_rows", load=begin, total=ln_total,
                                    step=g_ln.idx.valid & g_ln.idx.ready)
        m.d.comb += [g_ln.idx.valid.eq(running & params & ln_rows_left),
                     g_ln.idx.payload.row.eq(ln_row), g_ln.idx.payload.beats.eq(B)]
        with m.If(g_ln.idx.valid & g_ln.idx.ready):
            m.d.sync += ln_row.eq(Mux(ln_row == last_token, 0, ln_row + 1))
        index_rows(m, g_res.idx, res_rows, tokens, B, running)

        # Compute unit input: LayerNorm rows for K, Q and V, then the attention rows.
        from_ln, _ = countdown(m, name="x_in", load=begin, total=three_matrices,
                               step=cu.x.valid & cu.x.ready)
        with m.If(from_ln):
            wiring.connect(m, ln.o, cu.x)
        with m.Else():
            wiring.connect(m, engine.o, cu.x)

        # Compute unit output: K, Q and V to the engine, then the projection to the residual.
        # Which one is counted down a matrix at a time: `matrix` is 0, 1, 2 for K, Q, V, 3
        # after.
        matrix = Signal(range(4))
        taken = cu.o.valid & cu.o.ready
        matrix_last = Signal()
        matrix_end = matrix_last & (matrix != 3)
        _, last_beat = countdown(m, name="y_out", load=begin | (taken & matrix_end),
                                           total=row_beats, step=taken)
        m.d.comb += matrix_last.eq(last_beat)
        with m.If(begin):
            m.d.sync += matrix.eq(0)
        with m.Elif(taken & matrix_end):
            m.d.sync += matrix.eq(matrix + 1)
        outputs = (engine.k, engine.q, engine.v)
        with m.Switch(matrix):
            for n, port in enumerate(outputs):
                with m.Case(n):
                    m.d.comb += [port.valid.eq(cu.o.valid), port.payload.eq(cu.o.payload),
                                 cu.o.ready.eq(port.ready)]
            with m.Default():
                m.d.comb += [res.y.valid.eq(cu.o.valid), res.y.payload.eq(cu.o.payload),
                             cu.o.ready.eq(res.y.ready)]
        return m
