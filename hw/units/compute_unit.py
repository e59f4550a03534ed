"""The shared compute unit: ``Y = X W^T + b`` for every linear layer, twin of
:mod:`model.units.compute_unit`.

A ``rows x cols`` multiply-accumulate array: each cycle one chunk of ``rows`` inputs of one
token meets a tile of ``cols x rows`` weights, and ``cols`` dot products advance by ``rows``
terms. For each token the unit walks every output tile, and within one every input chunk::

    for token:  for out_tile:  for in_chunk:  acc[c] += sum_r x[r] * W[c][r]

so a call takes ``tokens * ceil(out/cols) * ceil(in/rows)`` cycles plus the pipeline latency.

* **Weights** stream in on ``w`` into a ring of tiles: each call's record takes the tiles it
  needs, right after the record before, and gives them back when the call ends. While the array
  computes call ``n``, the loader fills the ring with ``n+1``, ``n+2``, ... as far as the ring
  and its record slots reach, so that a memory that is faster than a short call can keep loading
  through a long one, and small records (an attention or expert matrix) go further ahead than
  large ones. The ring holds ``banks`` of the largest matrix; up to ``2 * banks`` records
  wait in it beside the one computing. It takes a command as soon as a
  record slot is free, and starts loading it once the ring has room for all its tiles. The
  layout (tiles in compute order, zero padding) is :mod:`model.packer`'s.
* **Biases** stream in on ``b``, one beat of ``cols`` accumulator words per output tile, rounding
  half of the output shift folded in (:func:`model.packer.bias_words`), so a dot product starts
  from its bias word and the output is a plain arithmetic shift: one rounding, half up.
* **Token rows** stream in on ``x``, ``ceil(in/rows)`` beats per token, into a double row
  buffer: the next token loads while the current one computes.
* **Results** leave on ``o``, shifted, saturated to the call's output width and, if asked,
  passed through GELU: per token and output tile, ``cols / out_lanes`` beats of ``out_lanes``
  values (one beat of ``cols`` by default), the beats that would hold only padding left out, so
  that a call gives ``tokens * ceil(out/out_lanes)`` beats. A machine whose activations travel in
  beats of ``rows`` values takes them ``out_lanes = rows`` wide from an array wider than tall.

Commands (``cmd``) are checked: a dimension of zero or beyond the buffers, a token count of zero or
beyond ``max_tokens``, a shift of zero or an output width the unit cannot give are dropped, with
``error`` set (sticky), and nothing else happens. Use :meth:`ComputeUnit.command` to build and
check one in Python.

The internal pipeline never stalls: the issue stage holds a last-chunk step back while the output
FIFO has no room for it (a credit counter), so back-pressure on ``o`` costs no enable fan-out.

**Pipeline.** Every register-to-register path is at most 4 LUT levels and one carry chain of at
most 48 bits on UltraScale+, or goes through a DSP48E2 with its A/B, M and P registers in use:
issue and memory read (1 cycle), multiply (:data:`hw.arith.multiplier.MULTIPLY_LATENCY` = 3:
operand, product and output registers, absorbed by the DSP48E2; on the ECP5 two MULT18X18D
partial products, then their sum), a registered adder tree over the ``rows`` products of a
column (``log2(rows)`` stages, one add, so one carry chain, per stage), accumulate (1, the
accumulator split in two halves with the carry between them registered), the last carry (1),
shift (1), saturation compares (1), saturation select (1), then GELU.

Why a tree in fabric and not a DSP48E2 cascade: a column's sum of products is the textbook case
for a systolic chain of DSP48E2 slices, each adding its product to its neighbour's sum over
PCIN/PCOUT (no LUTs, no carry chains in fabric, ``rows`` cycles of skew). But Yosys does not
infer PCIN/PCOUT cascades for UltraScale+ from behavioural code, and instantiating DSP48E2
primitives would tie the unit to Vivado and need a simulation model for the Verilator and
Icarus benches (and the skew would need delay lines on x and on the results). The registered
tree keeps the unit plain Amaranth, bit-exact by construction (exact integer adds), costs
``log2(rows) - 1`` more cycles of latency than the one-cycle sum, and about ``rows`` adder
registers per column; one add per stage because two chained adds would be two carry chains.

Latency from the issue of a token's last input chunk to its result in the output FIFO:
:attr:`ComputeUnit.latency` cycles. Throughput: one ``rows x cols`` tile per cycle, i.e.
``tokens * ceil(out/cols) * ceil(in/rows)`` cycles per call when ``x`` and ``w`` keep pace (the
weight stream needs ``ceil(out/cols) * ceil(in/rows) * rows * cols / weight_lanes`` beats, hidden
behind the previous call when that call is at least as long).
"""

from amaranth import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from model.numerics import DEFAULT
from model.packer import tiles

from hw import checks
from hw.arith.multiplier import MULTIPLY_LATENCY, Multiplier
from hw.streams.pipeline import countdown, delay, tree, tree_stages

__all__ = ["ComputeUnit", "ComputeClient"]


class ComputeUnit(wiring.Component):
    """The shared multiply-accumulate array.

    Parameters
    ----------
    rows, cols : int
        Array shape: inputs per cycle and outputs per cycle (powers of two).
    max_in, max_out : int
        Largest input and output dimension.
    max_weights : int
        Weights per bank of the weight buffer (rounded up to whole tiles); default
        ``max_in * max_out``. A call fits when its padded matrix, ``ceil(in/rows) x
        ceil(out/cols)`` tiles, does. m3vit-tiny's largest matrix is 768 x 192.
    banks : int
        Largest matrices the weight ring holds, at least two (a double buffer): the ring is
        ``banks * max_tiles`` tiles, and ``2 * banks`` records may wait in it beside the one
        computing (:attr:`ring_tiles`, :attr:`records`).
    max_tokens : int
        Largest token count of one call.
    weight_lanes : int
        Weights per beat of ``w``; must divide ``rows * cols``.
    out_lanes : int or None
        Values per beat of ``o``, a power of two dividing ``cols``; default ``cols``.
    act : Fixed
        Activation format (``x``, ``o``); default ``model.numerics.DEFAULT.act``.
    weight_width : int
        Bits of a weight.
    gelu : component class or None
        GELU unit for the output stage (``hw.arith.gelu.Gelu``-like: ``lanes`` and ``fmt``
        arguments, streams ``i``/``o``, fixed ``latency``); None builds a unit without GELU.

    Members
    -------
    cmd : ``In(stream.Signature(ComputeUnit.command_layout))``
    w : ``In(stream.Signature(ArrayLayout(signed(weight_width), weight_lanes)))``
    b : ``In(stream.Signature(ArrayLayout(signed(acc_width), cols)))``
    x : ``In(stream.Signature(ArrayLayout(signed(act.width), rows)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(act.width), out_lanes)))``
    error : ``Out(1)``
        Sticky: a command was dropped because the unit cannot run it.
    busy : ``Out(1)``
        High in each cycle in which the array takes a step (for utilisation counts).
    """

    def __init__(self, *, rows=16, cols=16, max_in=768, max_out=768, max_weights=768 * 192,
                 max_tokens=256, banks=2,
                 weight_lanes=8, out_lanes=None, act=DEFAULT.act, weight_width=16, gelu=None):
        max_weights = max_in * max_out if max_weights is None else max_weights
        out_lanes = cols if out_lanes is None else out_lanes
        for name, value in (("rows", rows), ("cols", cols), ("max_in", max_in),
                            ("max_out", max_out), ("max_weights", max_weights),
                            ("max_tokens", max_tokens),
                            ("weight_lanes", weight_lanes), ("out_lanes", out_lanes),
                            ("weight_width", weight_width)):
            checks.positive("ComputeUnit", name, value)
        for name, value in (("rows", rows), ("cols", cols), ("out_lanes", out_lanes)):
            if value & (value - 1):
                raise ValueError(f"ComputeUnit {name} must be a power of two, not {value}")
        if not (isinstance(banks, int) and banks >= 2):
            raise ValueError(f"ComputeUnit banks must be an integer of at least 2, not {banks!r}")
        if out_lanes > cols:
            raise ValueError(f"ComputeUnit out_lanes ({out_lanes}) must divide cols ({cols})")
        if (rows * cols) % weight_lanes:
            raise ValueError(f"ComputeUnit weight_lanes ({weight_lanes}) must divide "
                             f"rows * cols ({rows * cols})")
        self._rows, self._cols, self._out_lanes = rows, cols, out_lanes
        self._max_in, self._max_out, self._max_tokens = max_in, max_out, max_tokens
        self._max_weights, self._banks = max_weights, banks
        self._weight_lanes, self._act, self._weight_width = weight_lanes, act, weight_width
        self._gelu = gelu
        # Exact sum of max_in products, plus the bias word (at most as wide as one product).
        self._acc_width = act.width + weight_width + ceil_log2(tiles(max_in, rows) * rows) + 1
        self.command_layout = data.StructLayout({
            "in_dim": unsigned(ceil_log2(max_in + 1)),
            "out_dim": unsigned(ceil_log2(max_out + 1)),
            "tokens": unsigned(ceil_log2(max_tokens + 1)),
            "shift": unsigned(ceil_log2(self._acc_width)),
            "out_width": unsigned(ceil_log2(act.width + 1)),
            "gelu": unsigned(1),
        })
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout)),
            "w": In(stream.Signature(data.ArrayLayout(signed(weight_width), weight_lanes))),
            "b": In(stream.Signature(data.ArrayLayout(signed(self._acc_width), cols))),
            "x": In(stream.Signature(data.ArrayLayout(signed(act.width), rows))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(act.width), out_lanes))),
            "error": Out(1),
            "busy": Out(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    out_lanes = property(lambda self: self._out_lanes)
    banks = property(lambda self: self._banks)
    max_in = property(lambda self: self._max_in)
    max_out = property(lambda self: self._max_out)
    acc_width = property(lambda self: self._acc_width)
    weight_lanes = property(lambda self: self._weight_lanes)
    weight_width = property(lambda self: self._weight_width)

    @property
    def max_tiles(self):
        """Tiles of ``cols x rows`` weights of the largest matrix a call may have."""
        return tiles(self._max_weights, self._rows * self._cols)

    @property
    def ring_tiles(self):
        """Tiles of the weight ring: ``banks`` largest matrices."""
        return self._banks * self.max_tiles

    @property
    def records(self):
        """Records the ring holds at most: ``2 * banks`` loaded or loading, and the one
        computing."""
        return 2 * self._banks + 1

    # Pipeline: issue/read (1), multiply (3), adder tree (one add per stage), accumulate (1),
    # last carry (1), shift (1), compare (1), saturate (1), GELU.
    _MULTIPLY_LATENCY = MULTIPLY_LATENCY

    @property
    def _tree_latency(self):
        return tree_stages(self._rows)

    @property
    def latency(self):
        """Cycles from issuing a token's last input chunk to its result entering the FIFO."""
        gelu = self._gelu_latency if self._gelu is not None else 0
        return 1 + self._MULTIPLY_LATENCY + self._tree_latency + 1 + 1 + 1 + 1 + 1 + gelu

    def beats(self, command):
        """Beats of each stream that one call takes or gives: ``{"w", "b", "x", "o": count}``.

        ``command`` is a command payload, either a view of :attr:`command_layout` (the counts
        are then Amaranth expressions, as :class:`hw.units.compute_mux.ComputeMux` uses them) or a
        dict of ints (:meth:`command`'s result).
        """
        field = (command.__getitem__ if isinstance(command, dict)
                 else lambda name: getattr(command, name))
        log_r, log_c = exact_log2(self._rows), exact_log2(self._cols)
        in_chunks = (field("in_dim") + self._rows - 1) >> log_r
        out_tiles = (field("out_dim") + self._cols - 1) >> log_c
        out_beats = (field("out_dim") + self._out_lanes - 1) >> exact_log2(self._out_lanes)
        groups = self._rows * self._cols // self._weight_lanes
        return {"w": in_chunks * out_tiles * groups, "b": out_tiles,
                "x": field("tokens") * in_chunks, "o": field("tokens") * out_beats}

    def command(self, *, in_dim, out_dim, tokens, shift, out_width=None, gelu=False):
        """A checked command payload (dict) for one call; ValueError names what is wrong."""
        out_width = self._act.width if out_width is None else out_width
        checks = (("in_dim", in_dim, 1, self._max_in), ("out_dim", out_dim, 1, self._max_out),
                  ("tokens", tokens, 1, self._max_tokens),
                  ("shift", shift, 1, self._acc_width - 1),
                  ("out_width", out_width, 2, self._act.width))
        for name, value, lo, hi in checks:
            if not (isinstance(value, int) and lo <= value <= hi):
                raise ValueError(f"{name} must be an integer in {lo}..{hi} for this compute "
                                 f"unit, not {value!r}")
        if tiles(in_dim, self._rows) * tiles(out_dim, self._cols) > self.max_tiles:
            raise ValueError(f"a {out_dim} x {in_dim} matrix does not fit the weight buffer "
                             f"({self.max_tiles} tiles of {self._cols} x {self._rows})")
        if gelu and self._gelu is None:
            raise ValueError("this compute unit was built without GELU")
        return dict(in_dim=in_dim, out_dim=out_dim, tokens=tokens, shift=shift,
                    out_width=out_width, gelu=int(bool(gelu)))

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        act, lanes = self._act, self._weight_lanes
        groups = R * C // lanes
        max_it, max_ot = tiles(self._max_in, R), tiles(self._max_out, C)
        max_tiles = self.max_tiles

        S = self.records - 1                        # record slots beside the one computing
        ring_tiles = self.ring_tiles
        # Every live record has at most max_ot bias words, so this ring never runs out.
        ring_biases = self.records * max_ot

        # --- Storage: the rings of weights and biases, two token rows -------------------------
        m.submodules.weights = wmem = memory.Memory(
            shape=data.ArrayLayout(signed(self._weight_width), R * C), depth=ring_tiles,
            init=[])
        m.submodules.biases = bmem = memory.Memory(
            shape=data.ArrayLayout(signed(self._acc_width), C), depth=ring_biases, init=[])
        m.submodules.token_rows = xmem = memory.Memory(
            shape=data.ArrayLayout(signed(act.width), R), depth=2 * max_it, init=[])
        w_wr = wmem.write_port(granularity=lanes)
        w_rd = wmem.read_port()
        b_wr = bmem.write_port()
        b_rd = bmem.read_port()
        x_wr = xmem.write_port()
        x_rd = xmem.read_port()

        # --- Loader: checks a command, loads it into the ring, hands it to the runner ---------
        # A record slot per loaded record: its command, size and where it starts in the rings.
        slot_full = Signal(S)
        slot_cmd = [Signal(self.command_layout, name=f"slot{k}_cmd") for k in range(S)]
        slot_it = [Signal(range(max_it + 1), name=f"slot{k}_it") for k in range(S)]
        slot_ot = [Signal(range(max_ot + 1), name=f"slot{k}_ot") for k in range(S)]
        slot_tiles = [Signal(range(max_tiles + 1), name=f"slot{k}_tiles") for k in range(S)]
        slot_w_base = [Signal(range(ring_tiles), name=f"slot{k}_w_base") for k in range(S)]
        slot_b_base = [Signal(range(ring_biases), name=f"slot{k}_b_base") for k in range(S)]
        filling = _SlotRing(m, "load", S)
        # The next free tile and bias word of the rings, and the tiles free: only the loader
        # takes tiles, only the runner gives them back.
        w_addr = Signal(range(ring_tiles))
        b_addr = Signal(range(ring_biases))
        w_free = Signal(range(ring_tiles + 1), init=ring_tiles)
        load = Signal(self.command_layout)
        load_it = Signal(range(max_it + 1))
        load_ot = Signal(range(max_ot + 1))
        load_bad = Signal()
        w_group = Signal(range(groups))

        # A command is checked over a few cycles from its register, a step per stage: its
        # size in tiles comes out of a multiplier with its registers (a DSP48E2, not a chain of
        # LUTs and carries behind the command port). The loader is ahead of the array by a
        # whole call, so the cycles are hidden unless the array waits for this very call.
        m.submodules.tiles = tiles_mul = Multiplier(a_width=len(load_it), b_width=len(load_ot),
                                                    signed=False)
        m.d.comb += [tiles_mul.a.eq(load_it), tiles_mul.b.eq(load_ot), tiles_mul.en.eq(1)]
        load_tiles = tiles_mul.p
        wait = Signal(range(tiles_mul.latency + 1))
        c = load
        log_r, log_c = exact_log2(R), exact_log2(C)
        range_bad = ((c.in_dim == 0) | (c.in_dim > self._max_in) | (c.out_dim == 0) |
                     (c.out_dim > self._max_out) | (c.tokens == 0) |
                     (c.tokens > self._max_tokens) | (c.shift == 0) |
                     (c.shift >= self._acc_width) | (c.out_width < 2) |
                     (c.out_width > act.width) | (c.gelu & (self._gelu is None)))

        # Tiles of w and beats of b still to load, counted down: `ready` is a register, not a
        # comparison of the counts behind the loader's state.
        start_load = Signal()
        w_loading, _ = countdown(m, name="w_tiles_left", load=start_load, total=load_tiles,
                                 step=self.w.valid & (w_group == groups - 1))
        b_loading, _ = countdown(m, name="b_tiles_left", load=start_load, total=load_ot,
                                 step=self.b.valid)
        w_done, b_done = ~w_loading, ~b_loading

        # A record starts loading once the ring has room for it. ``fits`` is judged a cycle
        # ahead from ``w_free``, which meanwhile can only grow (the loader, the one that takes
        # tiles, is waiting); a start waits a cycle while tiles come back, so that ``w_free``
        # takes one add or one subtraction a cycle.
        fits = Signal()
        released = Signal()                           # tiles come back this cycle
        run_tiles = Signal(range(max_tiles + 1))      # the computing record's tiles
        m.d.sync += fits.eq(w_free >= load_tiles)
        with m.If(released):
            m.d.sync += w_free.eq(w_free + run_tiles)
        with m.Elif(start_load):
            m.d.sync += w_free.eq(w_free - load_tiles)

        # cmd.ready is a register, judged a cycle ahead: idle, no command taken, and the slot
        # to load free (only the loader fills a slot, so a free slot stays free). It comes a
        # cycle after the loader returns to idle or the slot frees.
        with m.FSM(name="loader"):
            with m.State("IDLE"):
                m.d.sync += self.cmd.ready.eq(~slot_full.bit_select(filling.slot, 1) &
                                              ~(self.cmd.valid & self.cmd.ready))
                with m.If(self.cmd.valid & self.cmd.ready):
                    m.d.sync += load.eq(self.cmd.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [load_it.eq((c.in_dim + R - 1) >> log_r),
                             load_ot.eq((c.out_dim + C - 1) >> log_c),
                             load_bad.eq(range_bad), wait.eq(0)]
                m.next = "TILES"
            with m.State("TILES"):
                # load_it * load_ot reaches load_tiles tiles_mul.latency cycles after CHECK.
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == tiles_mul.latency):
                    m.d.sync += [load_bad.eq(load_bad | (load_tiles > max_tiles)),
                                 w_group.eq(0)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(load_bad):
                    m.d.sync += self.error.eq(1)
                    m.next = "IDLE"
                with m.Elif(fits & ~released):
                    m.d.comb += start_load.eq(1)
                    for k in range(S):
                        with m.If(filling.slot == k):
                            m.d.sync += [slot_w_base[k].eq(w_addr), slot_b_base[k].eq(b_addr)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [
                    self.w.ready.eq(w_loading),
                    self.b.ready.eq(b_loading),
                    w_wr.addr.eq(w_addr),
                    w_wr.data.as_value().eq(Cat(*[self.w.payload.as_value()] * groups)),
                    w_wr.en.eq(Mux(self.w.valid & ~w_done, 1 << w_group, 0)),
                    b_wr.addr.eq(b_addr),
                    b_wr.data.eq(self.b.payload),
                    b_wr.en.eq(self.b.valid & ~b_done),
                ]
                with m.If(self.w.valid & ~w_done):
                    with m.If(w_group == groups - 1):
                        m.d.sync += [w_group.eq(0), w_addr.eq(_next(w_addr, ring_tiles))]
                    with m.Else():
                        m.d.sync += w_group.eq(w_group + 1)
                with m.If(self.b.valid & ~b_done):
                    m.d.sync += b_addr.eq(_next(b_addr, ring_biases))
                with m.If(w_done & b_done):
                    for k in range(S):
                        with m.If(filling.slot == k):
                            m.d.sync += [slot_cmd[k].eq(load), slot_it[k].eq(load_it),
                                         slot_ot[k].eq(load_ot), slot_tiles[k].eq(load_tiles),
                                         slot_full[k].eq(1)]
                    m.d.comb += filling.advance.eq(1)
                    m.next = "IDLE"

        # --- Runner: walks tokens x output tiles x input chunks of the oldest record ---------
        computing = _SlotRing(m, "run", S)
        run = Signal(self.command_layout)
        # The last input chunk, output tile and token of the call, and the outputs left from
        # the current tile on (column ``c`` of the tile is real when ``out_left > c``).
        last_ic = Signal(range(max_it))
        last_ot = Signal(range(max_ot))
        last_tok = Signal(range(self._max_tokens))
        out_left = Signal(range(self._max_out + 1))
        running = Signal()
        tok = Signal(range(self._max_tokens + 1))      # token being computed
        ot = Signal(range(max_ot))
        ic = Signal(range(max_it))
        # The record's first tile and bias word, and the ones read now: a token starts again
        # from the bases, so an address is a register, never an add.
        run_w_base = Signal(range(ring_tiles))
        run_b_base = Signal(range(ring_biases))
        w_read = Signal(range(ring_tiles))
        b_read = Signal(range(ring_biases))
        rows_in = Signal(range(self._max_tokens + 2))  # token rows completely received
        x_beat = Signal(range(max_it))
        # Flags kept in registers rather than compared when needed, to keep ``issue`` short.
        ahead = Signal(range(3))                       # rows_in - tok
        x_more = Signal()                              # rows_in < run.tokens
        last_chunk = Signal()                          # ic == last_ic
        next_last = Signal.like(last_ic)               # last_ic - 1: ic + 1 == last_ic
        one_chunk = Signal()                           # last_ic == 0

        depth = self.latency + 2
        outstanding = Signal(range(depth + 1))         # results issued or queued, not yet sent
        can_issue = running & (ahead != 0) & (~last_chunk | (outstanding < depth))
        issue = Signal()
        m.d.comb += [issue.eq(can_issue), self.busy.eq(issue)]

        # A record leaves its slot when its call starts; its tiles come back when it ends.
        with m.If(~running & slot_full.bit_select(computing.slot, 1)):
            for k in range(S):
                with m.If(computing.slot == k):
                    m.d.sync += [run.eq(slot_cmd[k]), last_ic.eq(slot_it[k] - 1),
                                 last_ot.eq(slot_ot[k] - 1),
                                 last_tok.eq(slot_cmd[k].tokens - 1),
                                 out_left.eq(slot_cmd[k].out_dim),
                                 last_chunk.eq(slot_it[k] == 1),
                                 one_chunk.eq(slot_it[k] == 1), next_last.eq(slot_it[k] - 2),
                                 run_tiles.eq(slot_tiles[k]),
                                 run_w_base.eq(slot_w_base[k]), w_read.eq(slot_w_base[k]),
                                 run_b_base.eq(slot_b_base[k]), b_read.eq(slot_b_base[k]),
                                 slot_full[k].eq(0)]
            m.d.comb += computing.advance.eq(1)
            m.d.sync += [running.eq(1), tok.eq(0), ot.eq(0), ic.eq(0),
                         rows_in.eq(0), x_beat.eq(0), ahead.eq(0), x_more.eq(1)]

        # Token rows: row n goes to half n % 2, which is free once token n - 2 is issued
        # (rows_in <= tok + 1).
        x_ok = running & x_more & (ahead != 2)
        row_done = self.x.valid & x_ok & (x_beat == last_ic)
        token_done = issue & last_chunk & (ot == last_ot)
        m.d.sync += ahead.eq(ahead + row_done - token_done)
        m.d.comb += [
            self.x.ready.eq(x_ok),
            x_wr.addr.eq(x_beat + Mux(rows_in[0], max_it, 0)),
            x_wr.data.eq(self.x.payload),
            x_wr.en.eq(self.x.valid & x_ok),
        ]
        with m.If(self.x.valid & x_ok):
            with m.If(x_beat == last_ic):
                m.d.sync += [x_beat.eq(0), rows_in.eq(rows_in + 1),
                             x_more.eq(rows_in != last_tok)]
            with m.Else():
                m.d.sync += x_beat.eq(x_beat + 1)

        m.d.comb += [
            w_rd.addr.eq(w_read),
            b_rd.addr.eq(b_read),
            x_rd.addr.eq(ic + Mux(tok[0], max_it, 0)),
        ]
        m.d.sync += released.eq(0)
        with m.If(issue):
            with m.If(last_chunk):
                m.d.sync += [ic.eq(0), last_chunk.eq(one_chunk), out_left.eq(out_left - C)]
                with m.If(ot == last_ot):
                    m.d.sync += [ot.eq(0), w_read.eq(run_w_base), b_read.eq(run_b_base),
                                 tok.eq(tok + 1), out_left.eq(run.out_dim)]
                    with m.If(tok == last_tok):
                        # The last read is on the memory's address now: the tiles are free
                        # from the next cycle.
                        m.d.sync += [running.eq(0), released.eq(1)]
                with m.Else():
                    m.d.sync += [ot.eq(ot + 1), w_read.eq(_next(w_read, ring_tiles)),
                                 b_read.eq(_next(b_read, ring_biases))]
            with m.Else():
                m.d.sync += [ic.eq(ic + 1), last_chunk.eq(ic == next_last),
                             w_read.eq(_next(w_read, ring_tiles))]

        # --- Pipeline ------------------------------------------------------------------------
        # ``hi``: the largest output of the call's width, the saturation bound.
        # ``more[k]``: the tile's output beat ``k + 1`` holds a real column.
        O = self._out_lanes
        parts = C // O
        meta_layout = data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "gelu": 1,
            "shift": self.command_layout["shift"].shape,
            "hi": signed(act.width + 1),
            "more": parts - 1,
        })

        meta0 = Signal(meta_layout)
        m.d.comb += [meta0.valid.eq(issue), meta0.first.eq(ic == 0), meta0.last.eq(last_chunk),
                     meta0.gelu.eq(run.gelu), meta0.shift.eq(run.shift),
                     meta0.hi.eq(Cat(*[run.out_width > bit + 1 for bit in range(act.width)])),
                     meta0.more.eq(Cat(*[out_left > (k + 1) * O for k in range(parts - 1)]))]
        meta1 = delay(m, meta0, 1, name="meta_read")  # memories answer one cycle later
        # Column c of the tile is real (a padded column has zero weights).
        used1 = delay(m, Cat(*[out_left > col for col in range(C)]), 1, name="used_read")

        # Each multiplier has its own register of the x it takes. A padded column (weights
        # zero) holds its x, which leaves its products zero: that enable, different in every
        # column, keeps synthesis from merging the 16 equal copies of an x register into one
        # that would feed 16 DSP48E2 slices; each copy stays the slice's own A register.
        products = [[None] * R for _ in range(C)]
        for col in range(C):
            for r in range(R):
                mul = Multiplier(a_width=act.width, b_width=self._weight_width,
                                 latency=self._MULTIPLY_LATENCY, a_enable=True)
                m.submodules[f"mul_{col}_{r}"] = mul
                m.d.comb += [mul.a.eq(x_rd.data[r]), mul.b.eq(w_rd.data[col * R + r]),
                             mul.en.eq(1), mul.a_en.eq(used1[col])]
                products[col][r] = mul.p
        meta2 = delay(m, meta1, self._MULTIPLY_LATENCY, name="meta_mul")

        # The sum of a column's products: a registered tree, one add (one carry chain) per
        # stage.
        sums = [tree(m, products[col], lambda a, b: a + b, name=f"sum_{col}")
                for col in range(C)]
        meta3 = delay(m, meta2, self._tree_latency, name="meta_sum")
        bias3 = delay(m, b_rd.data, self._MULTIPLY_LATENCY + self._tree_latency, name="bias")

        # The accumulator in two halves, the carry between them registered, so that no carry
        # chain spans it (53 bits at m3vit-tiny, beyond the 48 of one chain): a step adds the
        # low halves, and the high halves with the carry of the step before. The last carry
        # goes in the next stage (``result``).
        W = self._acc_width
        L = W // 2
        acc_lo = [Signal(L, name=f"acc_lo_{col}") for col in range(C)]
        acc_hi = [Signal(W - L, name=f"acc_hi_{col}") for col in range(C)]
        carry = [Signal(name=f"carry_{col}") for col in range(C)]
        with m.If(meta3.valid):
            for col in range(C):
                base = Mux(meta3.first, bias3[col].as_unsigned(), Cat(acc_lo[col], acc_hi[col]))
                term = Cat(sums[col], sums[col][-1].replicate(W - len(sums[col])))
                low = base[:L] + term[:L]
                c_in = carry[col] & ~meta3.first
                # base + term + c_in in one chain: the carry in as a bit below both operands.
                high = Cat(c_in, base[L:W]) + Cat(c_in, term[L:W])
                m.d.sync += [acc_lo[col].eq(low[:L]), carry[col].eq(low[L]),
                             acc_hi[col].eq(high[1:])]
        meta4 = Signal(meta_layout)
        m.d.sync += [meta4.eq(meta3), meta4.valid.eq(meta3.valid & meta3.last)]

        result = [Signal(signed(W), name=f"result_{col}") for col in range(C)]
        for col in range(C):
            m.d.sync += result[col].eq(Cat(acc_lo[col], acc_hi[col] + carry[col]))
        meta5 = delay(m, meta4, 1, name="meta_result")

        # Shift (rounding is in the bias word), then saturate to the call's output width, with
        # a stage for the shifter's multiplexers, one for the compares (each split at bit A,
        # which keeps their carry chains short), one for the selection.
        shifted = [Signal(signed(W), name=f"shifted_{col}") for col in range(C)]
        for col in range(C):
            m.d.sync += shifted[col].eq(result[col] >> meta5.shift)
        meta6 = delay(m, meta5, 1, name="meta_shift")

        A = act.width + 1                               # bits of hi and lo
        hi, lo = meta6.hi, ~meta6.hi                    # ~hi == -hi - 1, without an adder
        over = [Signal(name=f"over_{col}") for col in range(C)]
        under = [Signal(name=f"under_{col}") for col in range(C)]
        value = [Signal(signed(act.width), name=f"value_{col}") for col in range(C)]
        for col in range(C):
            top, bottom = shifted[col][A:].as_signed(), shifted[col][:A]  # shifted[col] ==
            m.d.sync += [                                                 # top * 2**A + bottom
                over[col].eq((top > 0) | ((top == 0) & (bottom > hi.as_unsigned()))),
                under[col].eq((top < -1) | ((top == -1) & (bottom < lo.as_unsigned()))),
                value[col].eq(bottom[:act.width]),
            ]
        meta7 = delay(m, meta6, 1, name="meta_compare")

        y = Signal(data.ArrayLayout(signed(act.width), C))
        for col in range(C):
            m.d.sync += y[col].eq(Mux(over[col], meta7.hi,
                                      Mux(under[col], ~meta7.hi, value[col])))
        meta8 = delay(m, meta7, 1, name="meta_out")

        out_valid, out_data = meta8.valid, y
        if self._gelu is not None:
            m.submodules.gelu = gelu = self._gelu(lanes=C, fmt=act)
            m.d.comb += [gelu.i.valid.eq(meta8.valid & meta8.gelu),
                         gelu.i.payload.eq(y), gelu.o.ready.eq(1)]
            plain = delay(m, y, self._gelu_latency, name="plain")
            meta9 = delay(m, meta8, self._gelu_latency, name="meta_gelu")
            out_valid = meta9.valid
            out_data = Mux(meta9.gelu, gelu.o.payload, plain)

        # A tile's results leave in `parts` beats of O values, the last real one ending it.
        out_more = meta9.more if self._gelu is not None else meta8.more
        words = len(Value.cast(out_data))
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(width=words + parts - 1,
                                                                 depth=depth)
        m.d.comb += [out_fifo.w_en.eq(out_valid), out_fifo.w_data.eq(Cat(out_data, out_more))]
        m.d.comb += self.o.valid.eq(out_fifo.r_rdy)
        if parts == 1:
            tile_sent = self.o.ready
            m.d.comb += self.o.payload.eq(out_fifo.r_data)
        else:
            part = Signal(range(parts), name="out_part")
            more = out_fifo.r_data[words:]
            tile_sent = self.o.ready & ((part == parts - 1) | ~more.bit_select(part, 1))
            beat_data = Array(out_fifo.r_data[k * O * act.width:(k + 1) * O * act.width]
                              for k in range(parts))
            m.d.comb += self.o.payload.eq(beat_data[part])
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += part.eq(Mux(tile_sent, 0, part + 1))
        m.d.comb += out_fifo.r_en.eq(tile_sent)

        issued_result = issue & last_chunk
        sent = self.o.valid & tile_sent
        m.d.sync += outstanding.eq(outstanding + issued_result - sent)
        return m

    @property
    def _gelu_latency(self):
        return self._gelu.LATENCY if self._gelu is not None else 0


def _next(address, size):
    """The address after ``address`` in a ring of ``size`` entries."""
    return Mux(address == size - 1, 0, address + 1)


class _SlotRing:
    """Which of ``slots`` record slots a side of the weight ring (the loader or the runner) is
    on: ``advance`` (comb) moves to the next slot, around the ring."""

    def __init__(self, m, name, slots):
        self.slot = Signal(range(slots), name=f"{name}_slot")
        self.advance = Signal(name=f"{name}_advance")
        with m.If(self.advance):
            m.d.sync += self.slot.eq(_next(self.slot, slots))


class ComputeClient:
    """How a unit that runs linear layers holds its compute unit: its own, or a shared one.

    Standalone (``shared=None``) the unit builds ``ComputeUnit(**own)`` and adds it as a
    submodule. In the machine it is handed the shared unit; it then checks that every call it
    makes fits that unit (ValueError otherwise) and reaches it through a port ``cu``
    (``members()``: the unit's own interface flipped), which the machine connects to a
    :class:`hw.units.compute_mux.ComputeMux`.

    Parameters
    ----------
    owner : str
        The client's name, for messages.
    shared : ComputeUnit or None
    own : dict
        ``ComputeUnit`` arguments of the standalone unit.
    calls : iterable of ``(in_dim, out_dim, gelu)``
        Every call the client makes.
    tokens : int
        Largest token count of those calls.
    """

    def __init__(self, owner, shared, *, own, calls, tokens):
        self.shared = shared is not None
        self.unit = shared if self.shared else ComputeUnit(**own)
        for in_dim, out_dim, gelu in calls:
            try:
                self.unit.command(in_dim=in_dim, out_dim=out_dim, tokens=tokens, shift=1,
                                  gelu=gelu)
            except ValueError as error:
                raise ValueError(f"{owner} cannot run a {in_dim} -> {out_dim} call on this "
                                 f"compute unit: {error}") from None

    def members(self):
        """The client's extra members: ``{"cu": In(unit.signature)}`` when shared."""
        return {"cu": In(self.unit.signature)} if self.shared else {}

    def ports(self, m, component):
        """The unit's interface as the client drives it (the unit itself when standalone)."""
        if self.shared:
            return wiring.flipped(component.cu)
        m.submodules.compute = self.unit
        return self.unit
