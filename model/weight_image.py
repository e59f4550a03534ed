"""The weights image: every parameter of a model in one block of memory, laid out exactly as the
machine reads it, plus the layouts of the image (input) and output buffers.

:func:`layout` computes every section's offset and beat counts from the dimensions alone (no
weight values), so the RTL sequencer can take them as constants at elaboration time; only
data-dependent values live in the image: weights, biases, LayerNorm parameters, position
embeddings and a table of the linear layers' output shifts. :func:`pack` fills the layout from a
:class:`model.quantize.QuantizedModel`; :func:`check` validates an image against the
configuration a bitstream was built for.

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
stream (``lanes`` = ``cols``): ``lanes`` gamma values then ``lanes`` beta values, each a
sign-extended LE int32 word (channels past ``dim`` are zero), the group padded to whole beats.
With 16 lanes and 16-byte beats a group is 4 gamma beats then 4 beta beats; lane ``k`` of the
``p`` beat takes word ``k`` of the first four beats (gamma, cut to ``small_format.width`` bits)
and word ``k`` of the next four (beta, cut to the activation width): a gearbox, no reordering.

Print the layout with ``python -m model.weight_image --config m3vit-tiny``; write an image with
``--weights DIR`` or ``--synthetic SEED`` and ``--out FILE``.
"""

import argparse
import functools
import hashlib
import json
import os
import struct
import sys
import zlib
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .config import CONFIGS, ModelConfig, config_by_name
from .numerics import DEFAULT
from .packer import (expert_record_layout, linear_record, linear_record_beats,
                     moe_layer_records, tiles)
from .patch_embed import PIXEL_FRAC

__all__ = [
    "FORMAT_MAGIC", "FORMAT_VERSION", "SECTION_ALIGN", "WORD_BYTES", "HEADER_FIELDS",
    "Section", "ImageLayout", "layout", "config_hash", "config_variant", "pack", "check",
    "read_header", "read_shifts", "summary", "ImageError",
    "BufferLayout", "output_layout", "unpack_output", "pack_output", "input_layout",
    "input_bytes", "markdown", "main",
]

#: First bytes of every weights image.
FORMAT_MAGIC = b"EMWI"
#: (major, minor): the major changes when a section moves or changes meaning.
FORMAT_VERSION = (1, 1)
#: Every section starts at a multiple of this many bytes (an AXI burst never crosses it).
SECTION_ALIGN = 4096
#: Bytes of an activation, LayerNorm parameter or position-embedding value in memory.
WORD_BYTES = 4

#: The config's integer dimensions, in header order.
_DIMS = tuple(f.name for f in fields(ModelConfig) if f.type in (int, "int"))

#: The header: ``(name, struct code, meaning)``, little-endian, packed, at offset 0.
HEADER_FIELDS = (
    ("magic", "4s", "ASCII 'EMWI'"),
    ("version", "I", "format version: major in bits 31:16, minor in bits 15:0"),
    ("header_bytes", "I", "bytes of this header (the rest of its section is zero)"),
    ("total_bytes", "Q", "bytes of the whole image"),
    ("config_hash", "Q", "hash of the dimensions, layout parameters and numerics "
                         "(config_hash()); its low 16 bits are CONFIG.VARIANT"),
    ("body_crc32", "I", "CRC-32 (zlib) of every byte after the header section"),
    ("rows", "H", "compute unit rows (inputs per tile)"),
    ("cols", "H", "compute unit columns (outputs per tile; LayerNorm lanes)"),
    ("beat_bytes", "H", "bytes per memory beat"),
    ("expert_ports", "H", "memory ports of the MoE records (planes per record)"),
    ("config_name", "16s", "configuration name, ASCII, zero-padded"),
    ("numerics", "16s", "numerics preset, ASCII, zero-padded"),
    *((name, "I", f"ModelConfig.{name}") for name in _DIMS),
    ("ln_eps", "d", "LayerNorm epsilon, float64"),
)
_HEADER = struct.Struct("<" + "".join(code for _, code, _ in HEADER_FIELDS))


class ImageError(ValueError):
    """A weights image that does not fit the configuration, or is damaged."""


def _align(n, to):
    return -(-n // to) * to


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
        """Values per LayerNorm parameter beat."""
        return self.cols

    @property
    def shape(self):
        """The machine's parameters this layout is for, as keywords of :func:`layout`."""
        return dict(rows=self.rows, cols=self.cols, beat_bytes=self.beat_bytes,
                    expert_ports=self.expert_ports)

    @property
    def hash(self):
        return config_hash(self.config, **self.shape)

    @property
    def variant(self):
        return config_variant(self.config, **self.shape)

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
                    config_hash=f"{self.hash:#018x}", variant=f"{self.variant:#06x}",
                    total_bytes=self.total_bytes, shift_names=list(self.shift_names),
                    sections=[{k: v for k, v in asdict(s).items() if v is not None}
                              for s in self.sections],
                    input=asdict(input_layout(self.config, self.beat_bytes)),
                    output=asdict(output_layout(self.config, self.beat_bytes)))


def _check_params(rows, cols, beat_bytes, expert_ports=2):
    if not (isinstance(expert_ports, int) and not isinstance(expert_ports, bool)
            and 0 < expert_ports <= 8):
        raise ValueError(f"expert_ports must be an integer in 1..8, not {expert_ports!r}")
    for name, value in (("rows", rows), ("cols", cols)):
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 16):
            raise ValueError(f"{name} must be a positive integer below 65536, not {value!r}")
    if not (isinstance(beat_bytes, int) and 8 <= beat_bytes <= SECTION_ALIGN
            and beat_bytes & (beat_bytes - 1) == 0):
        raise ValueError(f"beat_bytes must be a power of two in 8..{SECTION_ALIGN}, "
                         f"not {beat_bytes!r}")


def config_hash(config, rows=16, cols=16, beat_bytes=16, expert_ports=2, numerics=DEFAULT):
    """64-bit hash of what makes an image fit a bitstream: the dimensions (not the name), the
    layout parameters, the numerics preset and the format's major version."""
    key = {name: getattr(config, name) for name in _DIMS}
    key.update(ln_eps=repr(config.ln_eps), rows=rows, cols=cols, beat_bytes=beat_bytes,
               numerics=numerics.name, format=FORMAT_VERSION[0])
    if expert_ports != 1:           # (images for one port keep the hash they had before)
        key.update(expert_ports=expert_ports)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def config_variant(config, rows=16, cols=16, beat_bytes=16, expert_ports=2, numerics=DEFAULT):
    """The 16-bit CONFIG.VARIANT a bitstream for this configuration carries: the low bits of
    :func:`config_hash`, so the host can tell a bitstream built for other dimensions."""
    return config_hash(config, rows, cols, beat_bytes, expert_ports, numerics) & 0xFFFF


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

    ln_length = tiles(D, cols) * _align(2 * cols * WORD_BYTES, bb)
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


# --- Packing ---------------------------------------------------------------------------------

def _words(ints, n=None):
    """Integers as LE int32 words (two's complement, sign-extended), zero-padded to ``n``."""
    ints = np.asarray(ints, dtype=np.int64).reshape(-1)
    if ints.size and (ints.min() < -(1 << 31) or ints.max() >= 1 << 31):
        raise ValueError("a value does not fit a 32-bit word")
    out = np.zeros(max(n or 0, ints.size), dtype="<i4")
    out[:ints.size] = ints
    return out.tobytes()


def _ln_set(gamma, beta, dim, lanes, beat_bytes):
    groups = tiles(dim, lanes)
    g = np.zeros(groups * lanes, dtype=np.int64)
    b = np.zeros(groups * lanes, dtype=np.int64)
    g[:dim], b[:dim] = gamma.ints, beta.ints
    pad = bytes(-2 * lanes * WORD_BYTES % beat_bytes)
    return b"".join(_words(g[k * lanes:(k + 1) * lanes]) + _words(b[k * lanes:(k + 1) * lanes])
                    + pad for k in range(groups))


def _header(lay, crc):
    cfg = lay.config
    values = dict(magic=FORMAT_MAGIC, version=FORMAT_VERSION[0] << 16 | FORMAT_VERSION[1],
                  header_bytes=_HEADER.size, total_bytes=lay.total_bytes,
                  config_hash=lay.hash, body_crc32=crc, rows=lay.rows, cols=lay.cols,
                  beat_bytes=lay.beat_bytes, expert_ports=lay.expert_ports,
                  config_name=cfg.name.encode()[:16], numerics=DEFAULT.name.encode()[:16],
                  **{name: getattr(cfg, name) for name in _DIMS}, ln_eps=cfg.ln_eps)
    return _HEADER.pack(*(values[name] for name, _, _ in HEADER_FIELDS))


def pack(qm, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """The weights image of a :class:`model.quantize.QuantizedModel` (``DEFAULT`` numerics), as
    ``bytes`` of ``layout(qm.config, rows, cols, beat_bytes, expert_ports).total_bytes``."""
    if qm.numerics != DEFAULT:
        raise ValueError(f"the machine computes in the default numerics; this model is "
                         f"quantized for {qm.numerics.name!r}")
    cfg, act = qm.config, DEFAULT.act
    lay = layout(cfg, rows, cols, beat_bytes, expert_ports)
    image = bytearray(lay.total_bytes)
    shifts = [None] * len(lay.shift_names)

    def put(section, data):
        if len(data) != section.length:
            raise AssertionError(f"{section.name}: {len(data)} bytes packed, layout says "
                                 f"{section.length}")
        image[section.offset:section.end] = data

    def put_linear(section, w, b):
        data, wb, bias_b, shift = linear_record(w, b, section.x_frac, section.out_frac, rows,
                                                cols, beat_bytes)
        if (wb, bias_b) != (section.weight_beats, section.bias_beats):
            raise AssertionError(f"{section.name}: record of {wb}+{bias_b} beats, layout says "
                                 f"{section.weight_beats}+{section.bias_beats}")
        put(section, data)
        shifts[section.shift] = shift

    for s in lay.sections:
        b = s.block
        part = s.name.split(".")[-1]
        if s.kind == "linear" and s.name == "patch":
            put_linear(s, qm["patch_weight"], qm["patch_bias"])
        elif s.kind == "linear" and part.startswith("gate"):
            continue      # with the experts, below
        elif s.kind == "linear":
            put_linear(s, qm.block(b, f"{part}_weight"), qm.block(b, f"{part}_bias"))
        elif s.kind == "pos_embed":
            row = s.length // cfg.tokens // WORD_BYTES
            put(s, b"".join(_words(r, row) for r in qm["pos_embed"].ints))
        elif s.kind == "layernorm":
            n = part[-1]
            gamma, beta = qm.block(b, f"norm{n}_weight"), qm.block(b, f"norm{n}_bias")
            if gamma.fmt != DEFAULT.small_format or beta.fmt != act:
                raise ValueError(f"{s.name}: gamma {gamma.fmt} / beta {beta.fmt}, the machine "
                                 f"takes {DEFAULT.small_format} / {act}")
            put(s, _ln_set(gamma, beta, cfg.dim, lay.lanes, beat_bytes))
        elif s.kind == "experts":
            gates = {t: lay[f"l{b}.gate{t}"] for t in range(cfg.tasks)}
            records, engine, gate_fields = moe_layer_records(
                qm, b, rows, cols, beat_bytes=beat_bytes, ports=expert_ports,
                gate_addrs={t: g.offset for t, g in gates.items()}, experts_at=s.offset)
            mine = {k: v for k, v in s.engine.items()
                    if k not in ("fc1_shift_index", "fc2_shift_index", "experts")}
            theirs = {k: v for k, v in engine.items() if not k.endswith("_shift")}
            if mine != theirs:
                raise AssertionError(f"{s.name}: engine fields {theirs}, layout says {mine}")
            for t, g in gates.items():
                f = gate_fields[t]
                if (f["gate_weight_beats"], f["gate_bias_beats"]) != (g.weight_beats,
                                                                      g.bias_beats):
                    raise AssertionError(f"{g.name}: record does not match the layout")
                shifts[g.shift] = f["gate_shift"]
            for addr, data in records.items():
                image[addr:addr + len(data)] = data
            shifts[s.engine["fc1_shift_index"]] = engine["fc1_shift"]
            shifts[s.engine["fc2_shift_index"]] = engine["fc2_shift"]
    for name, value in zip(lay.shift_names, shifts):
        if value is None or not 1 <= value <= 255:
            raise ValueError(f"output shift of {name} is {value!r}, not in 1..255")
    table = lay["shifts"]
    image[table.offset:table.offset + len(shifts)] = bytes(shifts)
    body_start = lay.sections[1].offset
    crc = zlib.crc32(memoryview(image)[body_start:])
    image[:_HEADER.size] = _header(lay, crc)
    return bytes(image)


def read_header(data):
    """The header of an image as a dict (no checks beyond its length)."""
    if len(data) < _HEADER.size:
        raise ImageError(f"{len(data)} bytes are too short for a weights image (its header "
                         f"alone is {_HEADER.size} bytes)")
    values = dict(zip((name for name, _, _ in HEADER_FIELDS),
                      _HEADER.unpack_from(bytes(data[:_HEADER.size]))))
    for name in ("config_name", "numerics"):
        values[name] = values[name].rstrip(b"\0").decode("ascii", "replace")
    return values


def _ports(n):
    return f"{n} expert port{'s' * (n != 1)}"


def _repack_hint(config, rows, cols, beat_bytes, expert_ports):
    from .machine import MACHINES
    shape = dict(rows=rows, cols=cols, beat_bytes=beat_bytes, expert_ports=expert_ports)
    names = [m.name for m in MACHINES.values() if m.image_shape == shape]
    machine = (f" --machine {names[0]}" if names else
               f" --machine <a preset of a {rows} x {cols} array, {beat_bytes}-byte beats and "
               f"{_ports(expert_ports)} (model.machine)>")
    return (f"run python -m model.weight_image --config {config.name}{machine} "
            f"--weights DIR --out FILE")


def check(data, config, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """Validate a weights image for a machine built for ``config`` (and these layout
    parameters); return its header.

    Raises
    ------
    ImageError
        (a ``ValueError``) saying what is wrong and how to make a fitting image.
    """
    lay = layout(config, rows, cols, beat_bytes, expert_ports)
    hint = _repack_hint(config, rows, cols, beat_bytes, expert_ports)
    h = read_header(data)
    if h["magic"] != FORMAT_MAGIC:
        raise ImageError(f"not a weights image: it starts with {h['magic']!r}, not "
                         f"{FORMAT_MAGIC!r}; {hint}")
    major, minor = h["version"] >> 16, h["version"] & 0xFFFF
    if major != FORMAT_VERSION[0]:
        raise ImageError(f"weights image format {major}.{minor}, this software reads "
                         f"{FORMAT_VERSION[0]}.x: {hint}")
    if h["config_hash"] != lay.hash:
        theirs = {name: h[name] for name in _DIMS}
        ours = {name: getattr(config, name) for name in _DIMS}
        if h["config_name"] != config.name:
            what = f"was packed for {h['config_name']}, this bitstream is {config.name}"
        elif theirs != ours:
            diff = ", ".join(f"{k} {theirs[k]} (want {ours[k]})" for k in ours
                             if theirs[k] != ours[k])
            what = f"has other dimensions than {config.name}: {diff}"
        elif (h["rows"], h["cols"], h["beat_bytes"], h["expert_ports"] or 1) != (
                rows, cols, beat_bytes, expert_ports):
            what = (f"was packed for a {h['rows']} x {h['cols']} array, {h['beat_bytes']}-byte "
                    f"beats and {_ports(h['expert_ports'] or 1)}, this machine has {rows} x "
                    f"{cols}, {beat_bytes} and {expert_ports}")
        elif h["numerics"] != DEFAULT.name:
            what = f"was packed for numerics {h['numerics']!r}, the machine uses {DEFAULT.name!r}"
        else:
            what = f"does not fit {config.name} (hash {h['config_hash']:#x}, want {lay.hash:#x})"
        raise ImageError(f"weights image {what}: {hint}")
    if h["total_bytes"] != lay.total_bytes:
        raise ImageError(f"weights image header says {h['total_bytes']} bytes, the layout of "
                         f"{config.name} has {lay.total_bytes}: {hint}")
    if len(data) != lay.total_bytes:
        state = "truncated" if len(data) < lay.total_bytes else "followed by extra bytes"
        raise ImageError(f"weights image is {len(data)} bytes, not {lay.total_bytes}: it is "
                         f"{state} (copy it again, or {hint})")
    crc = zlib.crc32(memoryview(data)[lay.sections[1].offset:])
    if crc != h["body_crc32"]:
        raise ImageError(f"weights image is damaged: CRC-32 {crc:#010x}, the header says "
                         f"{h['body_crc32']:#010x} (copy it again, or {hint})")
    return h


def read_shifts(data, config, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """``{layer name: output shift}`` from an image's shift table."""
    lay = layout(config, rows, cols, beat_bytes, expert_ports)
    table = lay["shifts"]
    return dict(zip(lay.shift_names, data[table.offset:table.offset + len(lay.shift_names)]))


# --- The image and output buffers ------------------------------------------------------------

@dataclass(frozen=True)
class BufferLayout:
    """An activation or pixel buffer: ``rows`` rows of ``row_bytes`` (whole beats), holding
    ``values`` values of ``value_bytes`` each per row."""

    rows: int
    values: int
    value_bytes: int
    row_bytes: int
    length: int


def output_layout(config, beat_bytes=16):
    """The output buffer: the last block's ``tokens x dim`` activations, each a sign-extended
    LE int32 word, every row padded to whole beats."""
    _check_params(1, 1, beat_bytes)
    row = _align(config.dim * WORD_BYTES, beat_bytes)
    return BufferLayout(config.tokens, config.dim, WORD_BYTES, row, config.tokens * row)


def unpack_output(data, config, beat_bytes=16):
    """Output buffer bytes -> integers ``[tokens][dim]`` in ``DEFAULT.act``."""
    out = output_layout(config, beat_bytes)
    if len(data) < out.length:
        raise ValueError(f"the output of {config.name} is {out.length} bytes, not {len(data)}")
    words = np.frombuffer(bytes(data[:out.length]), dtype="<i4").reshape(out.rows, -1)
    return words[:, :out.values].astype(np.int64)


def pack_output(ints, config, beat_bytes=16):
    """Integers ``[tokens][dim]`` as the machine writes them to the output buffer."""
    out = output_layout(config, beat_bytes)
    ints = np.asarray(ints, dtype=np.int64)
    if ints.shape != (out.rows, out.values):
        raise ValueError(f"output must be [{out.rows}][{out.values}], not {ints.shape}")
    return b"".join(_words(r, out.row_bytes // WORD_BYTES) for r in ints)


def input_layout(config, beat_bytes=16):
    """The image buffer: :func:`model.patch_embed.image_bytes` (patch-major, one byte per pixel,
    a patch's ``C * p * p`` pixels per row), padded to whole beats at the end."""
    _check_params(1, 1, beat_bytes)
    pixels = config.image_channels * config.image_height * config.image_width
    return BufferLayout(config.patches, config.patch_in, 1, config.patch_in,
                        _align(pixels, beat_bytes))


def input_bytes(image, config, beat_bytes=16):
    """The image buffer's contents for pixel codes ``image [C][H][W]``."""
    from .patch_embed import image_bytes
    shape = (config.image_channels, config.image_height, config.image_width)
    if np.shape(image) != shape:
        raise ValueError(f"the image of {config.name} is {shape}, not {np.shape(image)}")
    data = image_bytes(image, config.patch)
    return data + bytes(input_layout(config, beat_bytes).length - len(data))


# --- Reports and the command line ------------------------------------------------------------

def _describe(s):
    if s.kind == "linear":
        return (f"{s.out_features} x {s.in_features}, {s.weight_beats} weight + "
                f"{s.bias_beats} bias beats, shift[{s.shift}]")
    if s.kind == "experts":
        e = s.engine
        return (f"{e['experts']} x (fc1 {e['fc1_weight_beats']}+{e['fc1_bias_beats']}, fc2 "
                f"{e['fc2_weight_beats']}+{e['fc2_bias_beats']} beats at +{e['fc2_offset']:#x}),"
                f" stride 2**{e['stride_log2']}, shift[{e['fc1_shift_index']}], "
                f"shift[{e['fc2_shift_index']}]")
    if s.kind == "layernorm":
        return "gamma | beta groups"
    if s.kind == "shifts":
        return "one byte per linear layer"
    if s.kind == "pos_embed":
        return "tokens x dim int32"
    return f"{_HEADER.size} bytes used"


def summary(lay):
    """The layout as a text table."""
    lines = [f"weights image of {lay.config.name}: {lay.total_bytes} bytes "
             f"({lay.total_bytes / 2**20:.2f} MiB), {len(lay.sections)} sections, array "
             f"{lay.rows} x {lay.cols}, {lay.beat_bytes}-byte beats, "
             f"{_ports(lay.expert_ports)}, hash {lay.hash:#018x}, "
             f"CONFIG.VARIANT {lay.variant:#06x}",
             f"{'offset':>10} {'bytes':>9} {'beats':>7}  {'section':<14} contents"]
    for s in lay.sections:
        lines.append(f"{s.offset:#10x} {s.length:9d} {s.beats:7d}  {s.name:<14} {_describe(s)}")
    inp, out = input_layout(lay.config, lay.beat_bytes), output_layout(lay.config,
                                                                         lay.beat_bytes)
    lines.append(f"image buffer: {inp.length} bytes ({inp.rows} patches x {inp.values} "
                 f"pixel bytes); output buffer: {out.length} bytes ({out.rows} tokens x "
                 f"{out.row_bytes} bytes)")
    return "\n".join(lines)


def markdown(lay):
    """The layout as Markdown tables (for docs/host.md): header fields, sections, shift table."""
    inp, out = input_layout(lay.config, lay.beat_bytes), output_layout(lay.config,
                                                                         lay.beat_bytes)
    lines = [f"Weights image of **{lay.config.name}** ({lay.rows} x {lay.cols} array, "
             f"{lay.beat_bytes}-byte beats, {_ports(lay.expert_ports)}, format "
             f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}): "
             f"**{lay.total_bytes} bytes**, hash `{lay.hash:#018x}`, CONFIG.VARIANT "
             f"`{lay.variant:#06x}`. Image buffer {inp.length} bytes, output buffer "
             f"{out.length} bytes ({out.rows} rows of {out.row_bytes}).", "",
             "Header (little-endian, packed, at offset 0):", "",
             "| offset | field | type | meaning |", "|---:|---|---|---|"]
    offset = 0
    for name, code, meaning in HEADER_FIELDS:
        size = struct.calcsize("<" + code)
        kind = {"I": "u32", "H": "u16", "Q": "u64", "d": "f64"}.get(code, f"{size} bytes")
        lines.append(f"| {offset} | {name} | {kind} | {meaning} |")
        offset += size
    lines += ["", "Sections:", "",
              "| offset | bytes | beats | section | contents |", "|---:|---:|---:|---|---|"]
    for s in lay.sections:
        lines.append(f"| 0x{s.offset:X} | {s.length} | {s.beats} | {s.name} | {_describe(s)} |")
    lines += ["", "Shift table (byte index: linear layer): " + ", ".join(
        f"{i}: {n}" for i, n in enumerate(lay.shift_names)) + "."]
    return "\n".join(lines) + "\n"


def _load(args, config):
    from .quantize import quantize
    from .weights import WeightsError, load_edge_moe, synthetic
    if args.synthetic is not None:
        return quantize(synthetic(config, seed=args.synthetic), DEFAULT)
    directory = os.path.abspath(args.weights)
    if not os.path.isdir(directory):
        raise SystemExit(f"error: weights directory {directory} does not exist (looked for "
                         f"<tensor>.float32.bin files there); the published Edge-MoE tensors "
                         f"live in ../shared/edge-moe/weights or $EDGEMOE_WEIGHTS, or use "
                         f"--synthetic SEED")
    try:
        return quantize(load_edge_moe(directory, config), DEFAULT)
    except WeightsError as e:
        raise SystemExit(f"error: {e}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m model.weight_image", description=__doc__.split("\n\n")[0],
        epilog="Without --out, prints the layout only.")
    parser.add_argument("--config", default="m3vit-tiny",
                        help=f"model configuration: {', '.join(CONFIGS)} (default m3vit-tiny)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="DIR", help="Edge-MoE weight directory")
    source.add_argument("--synthetic", metavar="SEED", type=int,
                        help="seeded synthetic weights instead")
    parser.add_argument("--out", metavar="FILE", help="write the image here")
    parser.add_argument("--machine", default="zcu102",
                        help="the machine preset the image is for (model.machine; default "
                             "zcu102): its array, memory beat and expert ports fix the layout")
    parser.add_argument("--json", action="store_true", help="print the layout as JSON")
    parser.add_argument("--markdown", action="store_true",
                        help="print the layout as Markdown tables")
    args = parser.parse_args(argv)
    try:
        from .machine import machine_by_name
        config, machine = config_by_name(args.config), machine_by_name(args.machine)
        lay = machine.layout(config)
    except ValueError as e:
        parser.error(str(e))
    if args.out and args.weights is None and args.synthetic is None:
        parser.error("--out needs the weights: give --weights DIR or --synthetic SEED")
    if args.json:
        print(json.dumps(lay.to_json(), indent=1))
    elif args.markdown:
        sys.stdout.write(markdown(lay))
    else:
        print(summary(lay))
    if args.out:
        data = pack(_load(args, config), **machine.image_shape)
        with open(args.out, "wb") as f:
            f.write(data)
        print(f"wrote {len(data)} bytes to {args.out}", file=sys.stderr if args.json else
              sys.stdout)


if __name__ == "__main__":
    main()
