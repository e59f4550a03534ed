"""The patch embedding in hardware: tokens from an image of 8-bit pixel codes, twin of
:func:`model.units.patch_embed.patch_embed`.

::

    image --unpack--> compute unit (patch matrix + bias) --y--> residual add --> o
    pos   ----------------------------------------------x-->

The ``patch x patch`` stride-``patch`` convolution is one call of the compute unit: each patch is
a token row of ``C * patch * patch`` pixels, the matrix is ``dim x C * patch * patch``. The host
lays the image out patch-major (:func:`model.units.patch_embed.image_bytes`), so the image streams
straight into the compute unit without a buffer: a beat of ``data_width / 8`` pixel bytes (byte
``i`` in bits ``8i .. 8i+7``, as an AXI port delivers memory) becomes ``data_width / 8 / lanes``
beats of ``x``, pixel code ``k`` as the integer ``k`` with
:data:`model.units.patch_embed.PIXEL_FRAC` fraction bits (the call's output shift, ``PIXEL_FRAC +
w.frac - act.frac``, accounts for them). Position embeddings arrive as token rows on ``pos``, row 0
first: row 0 is the class token and leaves unchanged (it passes the residual add with a zero
partner), rows ``1 ..`` are added to the compute unit's results, saturating, as
:func:`model.units.residual.residual_add` does.

A run: a command (``patches`` and ``shift``), the matrix and biases on ``w`` and ``b``
(:mod:`model.packer` layout, as for any compute unit call), ``patches * in_dim / (data_width / 8)``
beats of ``image`` and ``(patches + 1) * dim / lanes`` beats of ``pos``; the ``(patches + 1) *
dim / lanes`` token beats leave on ``o``. The compute unit's command goes out as soon as the run's
command arrives, so the weights may load before the image does. A command with zero patches,
more than ``max_patches`` or a shift the compute unit cannot take (0, or ``acc_width`` and
above) is dropped and sets the sticky ``error``.

Throughput: the compute unit's rate, one ``lanes x lanes`` tile per cycle, so
``patches * ceil(dim/lanes) * ceil(in_dim/lanes)`` cycles for the products (m3vit-tiny: 128 * 12 *
48 = 73,728); the image needs only ``in_dim / lanes`` x beats per ``ceil(dim/lanes) * in_dim /
lanes`` cycles, and the next patch loads while the current one computes. Latency, with the
weights loaded and the streams keeping pace: ``cycles = in_dim / lanes + patches * ceil(dim/lanes)
* in_dim / lanes + ComputeUnit.latency + 3``: the first patch's x beats, the products, the compute
unit's pipeline, its output FIFO, the residual add (``ResidualAdd.LATENCY``) and the counting of
both end cycles. m3vit-tiny: 48 + 73,728 + 12 + 3 = 73,791 cycles (measured by
``python -m pytest tests/test_hw_patch_embed.py -k m3vit -rA``). The class token leaves as soon
as ``pos`` row 0 arrives, before any product.
"""

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import DEFAULT

from hw import checks
from hw.units.compute_unit import ComputeClient
from hw.streams.gather import times_constant
from hw.units.residual import ResidualAdd

__all__ = ["PatchEmbed"]


class PatchEmbed(wiring.Component):
    """Patch embedding of up to ``max_patches`` patches plus the class token.

    Parameters
    ----------
    channels, patch : int
        Image channels and patch edge; a patch is ``in_dim = channels * patch * patch`` pixels.
    dim : int
        Embedding width, a multiple of ``lanes``.
    max_patches : int
        Largest patch count of one run (m3vit-tiny: 128).
    lanes : int
        Activations per beat of ``pos`` and ``o``; the compute unit is ``lanes x lanes``
        (a power of two).
    weight_lanes : int
        Weights per beat of ``w``.
    data_width : int
        Bits of an ``image`` beat: ``data_width / 8`` pixels, a multiple of ``lanes`` that
        divides ``in_dim`` (so every patch is whole beats, and a beat splits into whole x beats).
    compute : ComputeUnit or None
        A shared compute unit, reached through the port ``cu``
        (:class:`hw.units.compute_unit.ComputeClient`); None builds the unit's own.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"patches", "shift"})))``
        ``patches`` is the token count minus one; ``shift`` the call's output shift,
        ``PIXEL_FRAC + w.frac - act.frac``. Build one with :meth:`command`.
    image : ``In(stream.Signature(ArrayLayout(unsigned(8), data_width // 8)))``
        Pixel codes, patch-major (:func:`model.units.patch_embed.image_bytes`).
    w, b : weights and biases (:attr:`hw.units.compute_unit.ComputeUnit.w`, ``.b``)
    pos : ``In(stream.Signature(ArrayLayout(signed(act.width), lanes)))``
        Position embeddings, ``patches + 1`` token rows, row 0 (the class token) first.
    o : ``Out(stream.Signature(ArrayLayout(signed(act.width), lanes)))``
        Tokens, ``patches + 1`` rows of ``dim / lanes`` beats.
    cycles : ``Out(32)``
        Cycles of the last run, from the cycle the first image beat enters the compute unit to
        the cycle the last beat of ``o`` leaves, both counted.
    error : ``Out(1)``
        Sticky: a command was dropped.

    Raises
    ------
    ValueError
        If a dimension is not a positive integer, or the widths do not fit together.
    """

    def __init__(self, *, channels=3, patch=16, dim=192, max_patches=128, lanes=16,
                 weight_lanes=8, data_width=128, compute=None):
        for name, value in (("channels", channels), ("patch", patch), ("dim", dim),
                            ("max_patches", max_patches), ("lanes", lanes),
                            ("weight_lanes", weight_lanes), ("data_width", data_width)):
            checks.positive("PatchEmbed", name, value)
        if lanes & (lanes - 1):
            raise ValueError(f"PatchEmbed lanes must be a power of two, not {lanes}")
        if dim % lanes:
            raise ValueError(f"PatchEmbed dim must be a multiple of lanes ({lanes}), not {dim}")
        if data_width % (8 * lanes):
            raise ValueError(f"PatchEmbed data_width must be a multiple of 8 * lanes "
                             f"({8 * lanes}), not {data_width}")
        in_dim = channels * patch * patch
        if in_dim % (data_width // 8):
            raise ValueError(f"PatchEmbed patch of {in_dim} pixels must be whole image beats of "
                             f"{data_width // 8} pixels (data_width {data_width})")
        self._in_dim, self._dim, self._max_patches = in_dim, dim, max_patches
        self._lanes, self._data_width = lanes, data_width
        act = DEFAULT.act
        self._client = ComputeClient(
            "PatchEmbed", compute,
            own=dict(rows=lanes, cols=lanes, max_in=in_dim, max_out=dim,
                     max_weights=in_dim * dim, max_tokens=max_patches,
                     weight_lanes=weight_lanes, act=act, gelu=None),
            calls=[(in_dim, dim, False)], tokens=max_patches)
        self.compute = self._client.unit
        beat = data.ArrayLayout(act.width, lanes)
        self.command_layout = data.StructLayout({
            "patches": self.compute.command_layout["tokens"].shape,
            "shift": self.compute.command_layout["shift"].shape})
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout)),
            "image": In(stream.Signature(data.ArrayLayout(unsigned(8), data_width // 8))),
            "w": In(self.compute.w.signature.flip()),
            "b": In(self.compute.b.signature.flip()),
            "pos": In(stream.Signature(beat)),
            "o": Out(stream.Signature(beat)),
            "cycles": Out(32),
            "error": Out(1),
            **self._client.members(),
        })

    in_dim = property(lambda self: self._in_dim)
    dim = property(lambda self: self._dim)
    lanes = property(lambda self: self._lanes)
    max_patches = property(lambda self: self._max_patches)

    @property
    def image_beats_per_patch(self):
        """Beats of ``image`` per patch."""
        return self._in_dim // (self._data_width // 8)

    def command(self, *, patches, shift):
        """A checked command payload (dict); ValueError names what is wrong."""
        self.compute.command(in_dim=self._in_dim, out_dim=self._dim, tokens=patches, shift=shift)
        return dict(patches=patches, shift=shift)

    def elaborate(self, platform):
        m = Module()
        L, T = self._lanes, self._max_patches
        Bd = self._dim // L
        parts = self._data_width // 8 // L            # x beats per image beat
        act = DEFAULT.act
        cu = self._client.ports(m, self)
        m.submodules.residual = res = ResidualAdd(lanes=L, fmt=act)
        wiring.connect(m, wiring.flipped(self.w), cu.w)
        wiring.connect(m, wiring.flipped(self.b), cu.b)
        wiring.connect(m, res.o, wiring.flipped(self.o))

        patches = Signal.like(self.cmd.payload.patches)
        shift = Signal.like(self.cmd.payload.shift)
        issued = Signal()                              # compute unit command sent
        pairs = Signal(range((T + 1) * Bd + 1))       # pos beats taken by the residual add
        sent = Signal(range((T + 1) * Bd + 1))        # beats of o
        # The run's last beat, (patches + 1) * Bd - 1, and flags for the comparisons with the
        # counts, all set with the command: a product and a compare in front of the residual
        # add's handshake would be a path of 7 LUT levels through an unregistered DSP48E2.
        last = Signal.like(sent)
        more = Signal()                               # pos beats are still to come
        token = Signal(init=1)                        # pos row 0: the class token
        part = Signal(range(parts))                   # x beat within the image beat
        counting = Signal()
        running = Signal()
        dropped = Signal()
        m.d.comb += self.error.eq(dropped | cu.error)

        c = self.cmd.payload
        cmd_bad = ((c.patches == 0) | (c.patches > T) | (c.shift == 0) |
                   (c.shift >= self.compute.acc_width))
        # cmd.ready is a register (high in IDLE), not a decode of the state: the stage counters
        # time each stage from it.
        idle = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(idle)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    with m.If(cmd_bad):
                        m.d.sync += dropped.eq(1)
                    with m.Else():
                        m.d.sync += idle.eq(0)
                        m.d.sync += [patches.eq(c.patches), shift.eq(c.shift), issued.eq(0),
                                     pairs.eq(0), sent.eq(0), part.eq(0), counting.eq(0),
                                     self.cycles.eq(0),
                                     last.eq(times_constant(c.patches, Bd) + Bd - 1),
                                     more.eq(1), token.eq(1)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(self.o.valid & self.o.ready & (sent == last)):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"

        # One call of the compute unit per run. Every field is driven in one place, with the
        # run's registers among them: constants driven alone into part of a signal become an
        # input-less always @* in the Verilog, which simulators never run.
        p = cu.cmd.payload
        m.d.comb += [cu.cmd.valid.eq(running & ~issued),
                     p.in_dim.eq(self._in_dim), p.out_dim.eq(self._dim), p.tokens.eq(patches),
                     p.shift.eq(shift), p.out_width.eq(act.width), p.gelu.eq(0)]
        with m.If(cu.cmd.valid & cu.cmd.ready):
            m.d.sync += issued.eq(1)

        # Image beats into x: pixel codes as integers, zero-extended; a wide beat is offered
        # part by part and taken with its last part. The compute unit takes exactly the run's
        # rows, so nothing of a following image is swallowed.
        chunks = Array(self.image.payload.as_value()[j * 8 * L:(j + 1) * 8 * L]
                       for j in range(parts))
        chunk = chunks[part] if parts > 1 else chunks[0]
        m.d.comb += [cu.x.valid.eq(running & self.image.valid),
                     self.image.ready.eq(running & cu.x.ready & (part == parts - 1))]
        m.d.comb += [cu.x.payload[r].eq(chunk[8 * r:8 * (r + 1)]) for r in range(L)]
        x_taken = cu.x.valid & cu.x.ready
        if parts > 1:
            with m.If(x_taken):
                m.d.sync += part.eq(Mux(part == parts - 1, 0, part + 1))

        # Position rows meet zero (the class token) and then the compute unit's results.
        m.d.comb += [res.x.valid.eq(more & self.pos.valid), res.x.payload.eq(self.pos.payload),
                     self.pos.ready.eq(more & res.x.ready)]
        with m.If(token):
            m.d.comb += [res.y.valid.eq(running), res.y.payload.eq(0)]
        with m.Else():
            m.d.comb += [res.y.valid.eq(cu.o.valid), res.y.payload.eq(cu.o.payload),
                         cu.o.ready.eq(res.y.ready)]
        with m.If(res.x.valid & res.x.ready):
            m.d.sync += pairs.eq(pairs + 1)
            with m.If(pairs == Bd - 1):
                m.d.sync += token.eq(0)
            with m.If(pairs == last):
                m.d.sync += more.eq(0)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += sent.eq(sent + 1)

        with m.If(running & (counting | x_taken)):
            m.d.sync += [counting.eq(1), self.cycles.eq(self.cycles + 1)]
        return m
