"""The weights image's bytes: :func:`pack` fills the :func:`~model.weight_image.layout` of a
:class:`model.quantize.QuantizedModel` with its records, LayerNorm parameter sets, position
embeddings and shift table, then writes the header with the CRC-32 of the rest."""

import zlib

import numpy as np

from ..numerics import DEFAULT
from ..packer import linear_record, moe_layer_records, tiles
from model.weight_image.format import (_DIMS, _HEADER, FORMAT_MAGIC, FORMAT_VERSION, HEADER_FIELDS,
                                       MAX_SHIFT, WORD_BYTES, _words)
from model.weight_image.sections import layout


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
        if value is None or not 1 <= value <= MAX_SHIFT:
            raise ValueError(f"output shift of {name} is {value!r}, not in 1..{MAX_SHIFT} (the "
                             f"compute unit's shift field): its weights or numerics are out "
                             f"of the machine's range")
    table = lay["shifts"]
    image[table.offset:table.offset + len(shifts)] = bytes(shifts)
    body_start = lay.sections[1].offset
    crc = zlib.crc32(memoryview(image)[body_start:])
    image[:_HEADER.size] = _header(lay, crc)
    return bytes(image)
