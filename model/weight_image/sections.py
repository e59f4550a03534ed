"""Where everything of a weights image lies, from the dimensions alone: :func:`layout`.

Sections, in memory order, each starting on a 4 KB page (:data:`SECTION_ALIGN`: a record then
begins a fresh 4 KB page, so its 256-beat bursts of 16 bytes are whole pages and no record
shares a page with another)::

    header       magic, format version, dimensions and their hash, CRC-32 of the rest
    shifts       one byte per linear layer (output shift), in :attr:`ImageLayout.shift_names` order
    patch        linear record of the patch embedding (in C*p*p -> dim, 8 pixel fraction bits)
    pos_embed    tokens x dim activations, LE int32 words, each row padded to whole beats
    per block b:
      l{b}.ln1                 LayerNorm 1 parameter set
      l{b}.k, .q, .v, .proj    linear records (Q's output in numerics.query)
      l{b}.ln2                 LayerNorm 2 parameter set
      dense: l{b}.fc1 (GELU), l{b}.fc2
      MoE:   l{b}.gate0 .. l{b}.gate{T-1}, then l{b}.experts

A linear record is :func:`model.packer.linear_record`: weight tiles (16-bit) then bias words
(64-bit, with the rounding half folded in), each region whole beats. ``l{b}.experts`` holds
expert ``e``'s fc1 record at ``offset + (e << stride_log2)`` with fc2 right after it, as
:func:`model.packer.moe_layer_records` lays it out for the expert engine.

A LayerNorm parameter set is ``ceil(dim / lanes)`` groups, one per beat of the LayerNorm's ``p``
stream (``lanes`` = ``rows``, the machine's activation beat): ``lanes`` gamma values then
``lanes`` beta values, each a sign-extended LE int32 word (channels past ``dim`` are zero), the
group padded to whole beats. With 16 lanes and 16-byte beats a group is 4 gamma beats then 4
beta beats; lane ``k`` of the ``p`` beat takes word ``k`` of the first four beats (gamma, cut to
``small_format.width`` bits) and word ``k`` of the next four (beta, cut to the activation width):
a gearbox, no reordering.
"""

import functools
from dataclasses import asdict, dataclass, field, fields

from ..config import ModelConfig
from ..numerics import DEFAULT
from ..packer import expert_record_layout, linear_record_beats, tiles
from model.units.patch_embed import PIXEL_FRAC
from model.weight_image.buffers import input_layout, output_layout
from model.weight_image.format import _HEADER, FORMAT_VERSION, SECTION_ALIGN, WORD_BYTES, _align, _check_params
from model.weight_image.hashes import config_hash


@dataclass(frozen=True)
class Section:
    """One section of the weights image.

    Attributes
    ----------
    name : str
        ``header``, ``shifts``, ``patch``, ``pos_embed`` or ``l{b}.<part>``.
    kind : str
        ``header``, ``shifts``, ``linear``, ``pos_embed``, ``layernorm`` or ``experts``.
    offset, length : int
        Bytes from the image's start; the length is whole beats (the padding after it, up to the
        next section, is zero and never read).
    beats : int
        ``length / beat_bytes``.
    weight_beats, bias_beats : int
        Linear records: the beats of each region (``LinearFetch`` command fields). The MoE
        records (gates, experts) count beats of ``expert_ports x beat_bytes``.
    shift : int or None
        Linear records: the index of the layer's output shift in the shift table.
    in_features, out_features : int
        Linear records: the matrix's dimensions.
    x_frac, out_frac : int or None
        Linear records: fraction bits of the inputs and of the outputs.
    block : int or None
    engine : dict
        ``experts`` sections: the expert engine's fields relative to the image (``base`` is
        this section's offset; ``fc1_shift_index``/``fc2_shift_index`` index the shift table).
    """

    name: str
    kind: str
    offset: int
    length: int
    beats: int
    weight_beats: int = 0
    bias_beats: int = 0
    shift: int = None
    in_features: int = 0
    out_features: int = 0
    x_frac: int = None
    out_frac: int = None
    block: int = None
    engine: dict = field(default=None, compare=False, hash=False)

    @property
    def end(self):
        return self.offset + self.length


@dataclass(frozen=True)
class ImageLayout:
    """Where everything of a weights image lies (:func:`layout`)."""

    config: ModelConfig
    rows: int
    cols: int
    beat_bytes: int
    expert_ports: int
    sections: tuple
    shift_names: tuple
    total_bytes: int

    @property
    def lanes(self):
        """Values per LayerNorm parameter beat: the machine's activation beat, the array's
        rows."""
        return self.rows

    @property
    def shape(self):
        """The machine's parameters this layout is for, as keywords of :func:`layout`."""
        return dict(rows=self.rows, cols=self.cols, beat_bytes=self.beat_bytes,
                    expert_ports=self.expert_ports)

    @property
    def hash(self):
        return config_hash(self.config, **self.shape)

    def __getitem__(self, name):
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(f"the weights image has no section {name!r}")

    def shift_index(self, name):
        """Index in the shift table of linear layer ``name`` (``patch``, ``l{b}.q``, ...)."""
        try:
            return self.shift_names.index(name)
        except ValueError:
            raise KeyError(f"no linear layer {name!r} in the shift table") from None

    def block_sections(self, b):
        return [s for s in self.sections if s.block == b]

    def expert_engine_fields(self, block, task, *, weights_addr=0, shifts=None):
        """The expert engine's layer command fields (without ``tokens``) for MoE ``block`` and
        ``task``, with addresses for an image at ``weights_addr``. Shifts come from ``shifts``
        (the image's shift table) if given, else they are left out."""
        cfg = self.config
        if not cfg.is_moe(block):
            raise ValueError(f"block {block} is not a MoE block (MoE blocks: {cfg.moe_blocks})")
        if not (isinstance(task, int) and 0 <= task < cfg.tasks):
            raise ValueError(f"task must be an integer in 0..{cfg.tasks - 1}, not {task!r}")
        experts, gate = self[f"l{block}.experts"], self[f"l{block}.gate{task}"]
        e = experts.engine
        out = dict(base=weights_addr + e["base"], stride_log2=e["stride_log2"],
                   fc2_offset=e["fc2_offset"],
                   fc1_weight_beats=e["fc1_weight_beats"], fc1_bias_beats=e["fc1_bias_beats"],
                   fc2_weight_beats=e["fc2_weight_beats"], fc2_bias_beats=e["fc2_bias_beats"],
                   gate_addr=weights_addr + gate.offset, gate_weight_beats=gate.weight_beats,
                   gate_bias_beats=gate.bias_beats)
        if shifts is not None:
            out.update(fc1_shift=shifts[e["fc1_shift_index"]],
                       fc2_shift=shifts[e["fc2_shift_index"]], gate_shift=shifts[gate.shift])
        return out

    def to_json(self):
        return dict(config=self.config.name, **self.shape, section_align=SECTION_ALIGN,
                    format_version=f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}",
                    config_hash=f"{self.hash:#018x}",
                    total_bytes=self.total_bytes, shift_names=list(self.shift_names),
                    sections=[{k: v for k, v in asdict(s).items() if v is not None}
                              for s in self.sections],
                    input=asdict(input_layout(self.config, self.beat_bytes)),
                    output=asdict(output_layout(self.config, self.beat_bytes)))


@functools.lru_cache(maxsize=32)
def layout(config, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """The :class:`ImageLayout` of ``config``'s weights image, from dimensions alone.

    The MoE records (the gates and the experts) are fetched over ``expert_ports`` memory ports
    at once: each is packed in beats of ``expert_ports x beat_bytes`` and stored as that many
    planes, one after the other, plane ``p`` holding part ``p`` of every beat
    (:func:`model.packer.planes`), so each port reads one plane in plain bursts.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, not {config!r}")
    _check_params(rows, cols, beat_bytes, expert_ports)
    cfg, act, bb = config, DEFAULT.act, beat_bytes
    moe_bb = expert_ports * bb
    D = cfg.dim
    sections, shift_names = [], []
    cursor = 0

    def add(name, kind, length, **extra):
        nonlocal cursor
        offset = _align(cursor, SECTION_ALIGN)
        length = _align(length, bb)
        sections.append(Section(name, kind, offset, length, length // bb, **extra))
        cursor = offset + length
        return sections[-1]

    def linear(name, out, inp, x_frac, out_frac, block=None, beat=bb):
        wb, bias_b = linear_record_beats(out, inp, rows, cols, beat)
        shift_names.append(name)
        add(name, "linear", (wb + bias_b) * beat, weight_beats=wb, bias_beats=bias_b,
            shift=len(shift_names) - 1, in_features=inp, out_features=out, x_frac=x_frac,
            out_frac=out_frac, block=block)

    ln_length = tiles(D, rows) * _align(2 * rows * WORD_BYTES, bb)
    pos_row = _align(D * WORD_BYTES, bb)

    # The shift table's length depends on every linear layer: lay the body out first, then
    # insert the header and shift table in front.
    linear("patch", D, cfg.patch_in, PIXEL_FRAC, act.frac)
    add("pos_embed", "pos_embed", cfg.tokens * pos_row)
    for b in range(cfg.depth):
        p = f"l{b}."
        add(p + "ln1", "layernorm", ln_length, block=b)
        for part in ("k", "q", "v", "proj"):
            linear(p + part, D, D, act.frac, (DEFAULT.query if part == "q" else act).frac, b)
        add(p + "ln2", "layernorm", ln_length, block=b)
        if cfg.is_moe(b):
            for t in range(cfg.tasks):
                linear(p + f"gate{t}", cfg.experts, D, act.frac, act.frac, b, beat=moe_bb)
            shape = expert_record_layout(D, cfg.expert_hidden, rows, cols, moe_bb)
            shift_names.extend((p + "expert_fc1", p + "expert_fc2"))
            length = ((cfg.experts - 1) << shape["stride_log2"]) + (
                shape["fc1_weight_beats"] + shape["fc1_bias_beats"]
                + shape["fc2_weight_beats"] + shape["fc2_bias_beats"]) * moe_bb
            offset = _align(cursor, SECTION_ALIGN)
            add(p + "experts", "experts", length, block=b, in_features=D,
                out_features=cfg.expert_hidden,
                engine=dict(base=offset, **shape, fc1_shift_index=len(shift_names) - 2,
                            fc2_shift_index=len(shift_names) - 1, experts=cfg.experts))
        else:
            linear(p + "fc1", cfg.mlp_hidden, D, act.frac, act.frac, b)
            linear(p + "fc2", D, cfg.mlp_hidden, act.frac, act.frac, b)
    body, sections = sections, []
    cursor = 0
    add("header", "header", _HEADER.size)
    add("shifts", "shifts", len(shift_names))
    start = _align(cursor, SECTION_ALIGN)
    for s in body:
        moved = s.offset + start
        engine = None if s.engine is None else {**s.engine, "base": s.engine["base"] + start}
        sections.append(Section(**{**{f.name: getattr(s, f.name) for f in fields(s)},
                                   "offset": moved, "engine": engine}))
    total = _align(sections[-1].end, SECTION_ALIGN)
    return ImageLayout(cfg, rows, cols, bb, expert_ports, tuple(sections), tuple(shift_names),
                       total)
