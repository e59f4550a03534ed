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

A run: a command (``tokens``, ``images``, ``image_tokens`` and the four calls' output shifts),
then ``tokens * dim / lanes`` beats of token rows on ``x``, LayerNorm parameters on ``p`` (one
set), matrices and biases on ``w`` and ``b`` (K, Q, V, proj; :mod:`model.packer` layout), once
per image. The updated rows leave on ``o``. ``cycles`` counts from the end of
loading ``x`` to the last beat on ``o``.

**A batch** (:attr:`model.machine.MachineConfig.batch`): a run's ``tokens`` rows are
``images`` images of ``image_tokens`` rows each, one after the other; the half loads them all,
then runs the four calls and the engine once per image over that image's rows (attention never
mixes images), and the rows leave in the order they came: the rows of a whole batch pass
through in one run, beside MLP and MoE halves that run over all its tokens at once
(:mod:`model.schedule`). Each side of the run (the calls, the engine's commands, the
LayerNorm's rows, the compute unit's input and its output) steps to the next image on its own,
so an image's K call may start while the previous image's projection finishes. One image
(``images = 1``, ``image_tokens = tokens``) is the plain run. The weights of every image's
calls arrive on ``w`` and ``b`` in call order: a batch refetches the attention weights once per
image.
"""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.utils import ceil_log2

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
        Most tokens of one image.
    images : int
        Most images of one run (a batch): the row buffer holds ``images x max_tokens`` rows,
        and with more than one it takes rows before the run's command too
        (:func:`hw.system.half_block.load_then_run`).
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
    cmd : ``In(stream.Signature(StructLayout({"tokens", "images", "image_tokens", "k_shift",
    "q_shift", "v_shift", "proj_shift"})))``
    x, o : token rows in and out, ``lanes`` activations per beat
    p : LayerNorm parameters (:attr:`hw.units.layernorm.LayerNorm.p`)
    w, b : weights and biases (:attr:`hw.units.compute_unit.ComputeUnit.w`, ``.b``)
    cycles : ``Out(32)``
        Cycles of the last run, from the end of loading ``x`` to the last beat of ``o``.
    error : ``Out(1)``
        Sticky: a unit rejected a command or an index.
    """

    def __init__(self, *, dim, heads, max_tokens, images=1, slots=4, lanes=16, weight_lanes=8,
                 eps=1e-6, compute=None):
        checks.multiple_of("AttentionHalf", "dim", dim, lanes, "lanes")
        checks.positive("AttentionHalf", "images", images)
        self._dim, self._max_tokens, self._lanes = dim, max_tokens, lanes
        self._images = images
        act = DEFAULT.act
        self.engine = AttentionEngine(dim=dim, heads=heads, max_tokens=max_tokens, slots=slots,
                                      lanes=lanes, fmt=act, q_fmt=DEFAULT.query)
        self._client = ComputeClient(
            "AttentionHalf", compute,
            own=dict(rows=lanes, cols=lanes, max_in=dim, max_out=dim, max_weights=dim * dim,
                     max_tokens=max_tokens, weight_lanes=weight_lanes, act=act),
            calls=[(dim, dim, False)], tokens=max_tokens)
        rows = images * max_tokens
        self.compute = self._client.unit
        self.layernorm = LayerNorm(dim=dim, lanes=lanes, gamma_fmt=DEFAULT.small_format,
                                   eps=eps, fmt=act)
        self.command_layout = shift_command(
            self.compute, CALLS, tokens=rows,
            images=unsigned(ceil_log2(images + 1)),
            image_tokens=unsigned(ceil_log2(max_tokens + 1)))
        super().__init__(members(command=self.command_layout, lanes=lanes,
                                 layernorm=self.layernorm, compute=self.compute,
                                 **self._client.members()))

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_tokens
        R = self._images * T                            # rows of a run
        B = self._dim // L                              # beats per token row
        act = DEFAULT.act
        cu, ln, engine = self._client.ports(m, self), self.layernorm, self.engine
        m.submodules.layernorm = ln
        m.submodules.engine = engine
        m.submodules.residual = res = ResidualAdd(lanes=L, fmt=act)
        m.submodules.gather_ln = g_ln = Gather(lanes=L, width=act.width, rows=R, row_beats=B)
        m.submodules.gather_res = g_res = Gather(lanes=L, width=act.width, rows=R, row_beats=B)
        x_wr = row_buffer(m, "x_buffer", fmt=act, lanes=L, depth=R * B, gathers=(g_ln, g_res))
        wiring.connect(m, wiring.flipped(self.w), cu.w)
        wiring.connect(m, wiring.flipped(self.b), cu.b)
        wiring.connect(m, g_ln.o, ln.i)
        wiring.connect(m, g_res.o, res.x)
        wiring.connect(m, res.o, wiring.flipped(self.o))
        m.d.comb += self.error.eq(cu.error | engine.error | g_ln.error | g_res.error)

        command = Signal(self.command_layout)
        tokens, image_tokens = command.tokens, command.image_tokens
        ln_row = Signal(range(R))
        ln_base = Signal(range(R + 1))                  # the image's first row
        ln_last = Signal(range(R + T))                  # and its last: ln_base + image_tokens - 1
        res_rows = Signal(range(R + 1))
        ln_total = Signal(range(3 * T + 1))             # LayerNorm rows of an image: 3 tokens
        three_matrices = Signal(range(3 * T * B + 1))   # K, Q and V beats of an image
        one_matrix = Signal(range(T * B + 1))           # beats of one matrix of an image
        new_command = self.cmd.valid & self.cmd.ready
        running, begin, _ = load_then_run(
            m, self, x_wr, times_constant(tokens, B), depth=R * B, preload=self._images > 1,
            on_command=[command.eq(self.cmd.payload)],
            on_prepare=[ln_last.eq(image_tokens - 1), ln_total.eq(times_constant(image_tokens, 3)),
                        three_matrices.eq(times_constant(image_tokens, 3 * B)),
                        one_matrix.eq(times_constant(image_tokens, B))],
            on_loaded=[ln_row.eq(0), ln_base.eq(0), res_rows.eq(0)])

        # Each side walks the images on its own: `more_<side>` is the images it has still to
        # start after the current one, a register tested against zero.
        def images_after(name, step):
            more = Signal(range(self._images), name=f"more_{name}")
            with m.If(new_command):
                m.d.sync += more.eq(self.cmd.payload.images - 1)
            with m.Elif(step & (more != 0)):
                m.d.sync += more.eq(more - 1)
            return more != 0

        # The engine's runs and the compute unit's four calls per image go out as soon as the
        # command is in, so K's weights may load while x does.
        engine_pending = Signal()
        engine_taken = engine.cmd.valid & engine.cmd.ready
        engine_again = images_after("engine", engine_taken)
        m.d.comb += [engine.cmd.valid.eq(engine_pending),
                     engine.cmd.payload.tokens.eq(image_tokens)]
        with m.If(new_command):
            m.d.sync += engine_pending.eq(1)
        with m.Elif(engine_taken):
            m.d.sync += engine_pending.eq(engine_again)
        calls_again = Signal()
        last_call = issue_calls(
            m, cu, [dict(in_dim=self._dim, out_dim=self._dim, shift=command[f"{call}_shift"],
                         out_width=DEFAULT.query.width if call == "q" else act.width, gelu=0)
                    for call in CALLS],
            start=new_command, tokens=image_tokens, again=calls_again)
        m.d.comb += calls_again.eq(images_after("calls", last_call))

        # LayerNorm rows: the image's rows three times, one pass per call; then the next image.
        params = run_parameters(m, self.p, ln.p, B, self.cmd.ready)
        ln_step = g_ln.idx.valid & g_ln.idx.ready
        ln_next = Signal()                              # the image's last row: the next image
        ln_rows_left, ln_rows_last = countdown(m, name="ln_rows", load=begin | ln_next,
                                               total=ln_total, step=ln_step)
        m.d.comb += [g_ln.idx.valid.eq(running & params & ln_rows_left),
                     g_ln.idx.payload.row.eq(ln_row), g_ln.idx.payload.beats.eq(B)]
        ln_image_end = ln_step & ln_rows_last
        m.d.comb += ln_next.eq(ln_image_end & images_after("ln", ln_image_end))
        with m.If(ln_step):
            m.d.sync += ln_row.eq(Mux(ln_row == ln_last, ln_base, ln_row + 1))
        with m.If(ln_next):
            m.d.sync += [ln_row.eq(ln_last + 1), ln_base.eq(ln_last + 1),
                         ln_last.eq(ln_last + image_tokens)]
        index_rows(m, g_res.idx, res_rows, tokens, B, running)
        # Compute unit input, per image: LayerNorm rows for K, Q and V, then the attention
        # rows for the projection.
        x_taken = cu.x.valid & cu.x.ready
        from_engine_load, from_ln_next = Signal(), Signal()
        from_ln, from_ln_last = countdown(m, name="x_in", load=begin | from_ln_next,
                                          total=three_matrices, step=x_taken)
        from_engine, from_engine_last = countdown(m, name="x_proj", load=from_engine_load,
                                                  total=one_matrix, step=x_taken & ~from_ln)
        m.d.comb += from_engine_load.eq(x_taken & from_ln & from_ln_last)
        x_image_end = x_taken & ~from_ln & from_engine_last
        m.d.comb += from_ln_next.eq(x_image_end & images_after("x", x_image_end))
        with m.If(from_ln):
            wiring.connect(m, ln.o, cu.x)
        with m.Elif(from_engine):
            wiring.connect(m, engine.o, cu.x)

        # Compute unit output, per image: K, Q and V to the engine, then the projection to the
        # residual. Which one is counted down a matrix at a time: `matrix` is 0, 1, 2 for K, Q,
        # V, 3 for the projection. The count starts a cycle after the load ends (`begun`, a
        # register): no result of the run can come sooner, and the load's last handshake then
        # stays off the path into the count.
        begun = Signal()
        m.d.sync += begun.eq(begin)
        matrix = Signal(range(4))
        taken = cu.o.valid & cu.o.ready
        matrix_last = Signal()
        matrix_end = taken & matrix_last
        image_end = matrix_end & (matrix == 3)
        next_image = image_end & images_after("y", image_end)
        _, last_beat = countdown(m, name="y_out", load=begun | (matrix_end & (matrix != 3)) |
                                 next_image, total=one_matrix, step=taken)
        m.d.comb += matrix_last.eq(last_beat)
        # `projection` (matrix == 3) is a register of its own: the residual's ready, which
        # follows the half's output ready, then meets one two-way choice on its way to the
        # compute unit, not the four-way one of the engine's inputs.
        projection = Signal()
        with m.If(begun | next_image):
            m.d.sync += [matrix.eq(0), projection.eq(0)]
        with m.Elif(matrix_end & (matrix != 3)):
            m.d.sync += [matrix.eq(matrix + 1), projection.eq(matrix == 2)]
        engine_ready = Signal()
        for n, port in enumerate((engine.k, engine.q, engine.v)):
            m.d.comb += [port.valid.eq(cu.o.valid & (matrix == n)),
                         port.payload.eq(cu.o.payload)]
            with m.If(matrix == n):
                m.d.comb += engine_ready.eq(port.ready)
        m.d.comb += [res.y.valid.eq(cu.o.valid & projection), res.y.payload.eq(cu.o.payload),
                     cu.o.ready.eq(Mux(projection, res.y.ready, engine_ready))]
        return m
