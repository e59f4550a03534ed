"""The dense MLP half of a transformer block in hardware, ``x + fc2(GELU(fc1(LN2(x))))``: twin
of :func:`model.system.mlp_half.mlp_half`.

::

    x buffer --gather--> LayerNorm --> compute unit (fc1 + GELU) --scatter--> hidden buffer
    hidden buffer --gather--> compute unit (fc2) --> residual add <--gather-- x buffer --> o

One compute unit serves both matrices: fc1 runs over all tokens, then fc2. The LayerNorm streams
each token's normalised row straight into the compute unit, which takes a row per
``ceil(hidden/lanes) * ceil(dim/lanes)`` cycles, so LayerNorm costs only the first row's latency.
fc2's weights load into the compute unit's second bank while fc1 computes; fc1's own weights are
expected to be loaded before the run starts (in the whole machine they load while the attention
projection computes). The residual add takes fc2's results as they come.

A run: a command (``tokens`` and the two calls' output shifts), then ``tokens * dim / lanes``
beats of token rows on ``x`` (into the x buffer), LayerNorm parameters on ``p`` (one set),
matrices and biases on ``w`` and ``b`` (fc1, then fc2; :mod:`model.packer` layout). The compute
unit's two commands go out as soon as the run's command arrives, so fc1's weights can load
before the rows do. The updated rows leave on ``o``. ``cycles`` counts the cycles from the end of
loading ``x`` to the last beat on ``o``: the half-block's cost when its input is on chip and fc1's
weights were loaded beforehand, as in the whole machine.
"""

from amaranth import Module, Signal
from amaranth.lib import data, memory, wiring

from hw import checks
from model.numerics import DEFAULT

from hw.units.compute_unit import ComputeClient
from hw.streams.gather import Gather, times_constant
from hw.arith.gelu import Gelu
from hw.system.half_block import (index_rows, issue_calls, load_then_run, members, row_buffer,
                         rows_written, shift_command)
from hw.units.layernorm import LayerNorm, run_parameters
from hw.units.residual import ResidualAdd
from hw.streams.pipeline import countdown
from hw.streams.scatter import Scatter

__all__ = ["MlpHalf", "GAMMA_FORMAT"]

#: The LayerNorm gain format of the default numerics (fixed, so one unit serves every block).
GAMMA_FORMAT = DEFAULT.small_format


class MlpHalf(wiring.Component):
    """LN2, fc1 + GELU, fc2 and the residual add over up to ``max_tokens`` tokens.

    Parameters
    ----------
    dim, hidden : int
        Embedding and hidden widths, multiples of ``lanes``.
    max_tokens : int
    lanes : int
        Values per beat everywhere; the compute unit is ``lanes x lanes``.
    weight_lanes : int
        Weights per beat of ``w``.
    eps : float
        LayerNorm epsilon.
    compute : ComputeUnit or None
        A shared compute unit, reached through the port ``cu``
        (:class:`hw.units.compute_unit.ComputeClient`); None builds the half's own.
    preload : bool
        Take rows on ``x`` before the run's command too (a machine that takes a batch:
        :func:`hw.system.half_block.load_then_run`).

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"tokens", "fc1_shift", "fc2_shift"})))``
    x, o : token rows in and out, ``lanes`` activations per beat
    p : LayerNorm parameters (:attr:`hw.units.layernorm.LayerNorm.p`)
    w, b : weights and biases (:attr:`hw.units.compute_unit.ComputeUnit.w`, ``.b``)
    cycles : ``Out(32)``
        Cycles of the last run, from the end of loading ``x`` to the last beat of ``o``.
    error : ``Out(1)``
        Sticky: a unit rejected a command or an index.
    """

    def __init__(self, *, dim, hidden, max_tokens, lanes=16, weight_lanes=8, eps=1e-6,
                 compute=None, preload=False):
        for name, value in (("dim", dim), ("hidden", hidden)):
            checks.multiple_of("MlpHalf", name, value, lanes, "lanes")
        self._dim, self._hidden, self._max_tokens, self._lanes = dim, hidden, max_tokens, lanes
        self._preload = preload
        act = DEFAULT.act
        self._client = ComputeClient(
            "MlpHalf", compute,
            own=dict(rows=lanes, cols=lanes, max_in=max(dim, hidden), max_out=max(dim, hidden),
                     max_weights=dim * hidden, max_tokens=max_tokens,
                     weight_lanes=weight_lanes, act=act, gelu=Gelu),
            calls=[(dim, hidden, True), (hidden, dim, False)], tokens=max_tokens)
        self.compute = self._client.unit
        self.layernorm = LayerNorm(dim=dim, lanes=lanes, gamma_fmt=GAMMA_FORMAT, eps=eps,
                                   fmt=act)
        self.command_layout = shift_command(self.compute, ("fc1", "fc2"))
        super().__init__(members(command=self.command_layout, lanes=lanes,
                                 layernorm=self.layernorm, compute=self.compute,
                                 **self._client.members()))

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_tokens
        Bd, Bh = self._dim // L, self._hidden // L
        act = DEFAULT.act
        cu, ln = self._client.ports(m, self), self.layernorm
        m.submodules.layernorm = ln
        m.submodules.residual = res = ResidualAdd(lanes=L, fmt=act)
        m.submodules.gather_ln = g_ln = Gather(lanes=L, width=act.width, rows=T, row_beats=Bd)
        m.submodules.gather_res = g_res = Gather(lanes=L, width=act.width, rows=T, row_beats=Bd)
        m.submodules.gather_hidden = g_h = Gather(lanes=L, width=act.width, rows=T,
                                                  row_beats=Bh)
        m.submodules.scatter_hidden = s_h = Scatter(lanes=L, rows=T, row_beats=Bh, fmt=act)
        x_wr = row_buffer(m, "x_buffer", fmt=act, lanes=L, depth=T * Bd, gathers=(g_ln, g_res))
        m.submodules.hidden_buffer = hbuf = memory.Memory(shape=data.ArrayLayout(act.width, L),
                                                          depth=T * Bh, init=[])
        h_rd, h_acc_rd, h_wr = hbuf.read_port(), hbuf.read_port(), hbuf.write_port()
        m.d.comb += [h_rd.addr.eq(g_h.rd_addr), g_h.rd_data.eq(h_rd.data),
                     h_acc_rd.addr.eq(s_h.rd_addr), s_h.rd_data.eq(h_acc_rd.data),
                     h_wr.addr.eq(s_h.wr_addr), h_wr.data.eq(s_h.wr_data),
                     h_wr.en.eq(s_h.wr_en)]

        wiring.connect(m, wiring.flipped(self.w), cu.w)
        wiring.connect(m, wiring.flipped(self.b), cu.b)
        wiring.connect(m, g_ln.o, ln.i)
        wiring.connect(m, g_res.o, res.x)
        wiring.connect(m, res.o, wiring.flipped(self.o))
        m.d.comb += self.error.eq(cu.error | g_ln.error | g_res.error | g_h.error | s_h.error)

        command = Signal(self.command_layout)
        tokens = command.tokens
        hidden_beats = Signal(range(T * Bh + 1))    # fc1's results: tokens * Bh
        rows = {name: Signal(range(T + 1), name=f"{name}_rows")
                for name in ("ln", "res", "hidden", "scatter")}
        new_command = self.cmd.valid & self.cmd.ready
        running, begin, row_beats = load_then_run(
            m, self, x_wr, times_constant(tokens, Bd), depth=T * Bd, preload=self._preload,
            on_command=[command.eq(self.cmd.payload)],
            on_prepare=[hidden_beats.eq(times_constant(tokens, Bh))],
            on_loaded=[r.eq(0) for r in rows.values()])
        # fc1's phase on the compute unit's input and output, counted down from the run's
        # start.
        fc1_in, _ = countdown(m, name="fc1_in", load=begin, total=row_beats,
                              step=cu.x.valid & cu.x.ready)
        fc1_out, _ = countdown(m, name="fc1_out", load=begin, total=hidden_beats,
                               step=cu.o.valid & cu.o.ready)

        # The two calls go out from the start of the run, so fc1's weights may load while x
        # does.
        issue_calls(m, cu, [
            dict(in_dim=self._dim, out_dim=self._hidden, shift=command.fc1_shift,
                 out_width=act.width, gelu=1),
            dict(in_dim=self._hidden, out_dim=self._dim, shift=command.fc2_shift,
                 out_width=act.width, gelu=0)],
            start=new_command, tokens=tokens)

        params = run_parameters(m, self.p, ln.p, Bd, self.cmd.ready)
        index_rows(m, g_ln.idx, rows["ln"], tokens, Bd, running & params)
        index_rows(m, g_res.idx, rows["res"], tokens, Bd, running)
        index_rows(m, s_h.idx, rows["scatter"], tokens, Bh, running)
        # A hidden row may be read back once the scatter has written it.
        taken = Signal(range(T + 1), name="hidden_taken")
        written = rows_written(m, s_h, Bh, taken, restart=new_command, name="hidden")
        index_rows(m, g_h.idx, rows["hidden"], tokens, Bh,
                   running & (rows["hidden"] < written))

        # Compute unit input: LayerNorm rows during fc1, hidden rows during fc2.
        with m.If(fc1_in):
            wiring.connect(m, ln.o, cu.x)
        with m.Else():
            wiring.connect(m, g_h.o, cu.x)

        # Compute unit output: fc1 results to the hidden buffer, fc2 results to the residual.
        with m.If(fc1_out):
            wiring.connect(m, cu.o, s_h.i)
        with m.Else():
            wiring.connect(m, cu.o, res.y)
        return m
