"""The weights image's format: the constants every part of it follows, the header's fields, and
how a value is stored in a memory word.

The header is the first section, at offset 0: little-endian and packed, its fields are
:data:`HEADER_FIELDS` (``python -m model.weight_image --markdown`` prints them as a table); the
rest of its :data:`SECTION_ALIGN` bytes are zero.
"""

import struct
from dataclasses import fields

import numpy as np

from ..config import ModelConfig

#: First bytes of every weights image.
FORMAT_MAGIC = b"EMWI"
#: (major, minor): the major changes when a section moves or changes meaning.
FORMAT_VERSION = (1, 1)
#: Every section starts at a multiple of this many bytes (an AXI burst never crosses it).
SECTION_ALIGN = 4096
#: Bytes of an activation, LayerNorm parameter or position-embedding value in memory.
WORD_BYTES = 4
#: Largest entry of the shift table: the compute unit takes an output shift in a 6-bit field
#: (its accumulator is narrower than 64 bits), and rejects 0. The machine checks each entry
#: against its exact accumulator width when it reads the table (SHIFT_TABLE error).
MAX_SHIFT = 63

#: The config's integer dimensions, in header order.
_DIMS = tuple(f.name for f in fields(ModelConfig) if f.type in (int, "int"))

#: The header: ``(name, struct code, meaning)``, little-endian, packed, at offset 0.
HEADER_FIELDS = (
    ("magic", "4s", "ASCII 'EMWI'"),
    ("version", "I", "format version: major in bits 31:16, minor in bits 15:0"),
    ("header_bytes", "I", "bytes of this header (the rest of its section is zero)"),
    ("total_bytes", "Q", "bytes of the whole image"),
    ("config_hash", "Q", "hash of the dimensions, layout parameters and numerics "
                         "(config_hash()); the bitstream's LAYOUT_HASH registers hold it too"),
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


def _align(n, to):
    return -(-n // to) * to


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


def _words(ints, n=None):
    """Integers as LE int32 words (two's complement, sign-extended), zero-padded to ``n``."""
    ints = np.asarray(ints, dtype=np.int64).reshape(-1)
    if ints.size and (ints.min() < -(1 << 31) or ints.max() >= 1 << 31):
        raise ValueError("a value does not fit a 32-bit word")
    out = np.zeros(max(n or 0, ints.size), dtype="<i4")
    out[:ints.size] = ints
    return out.tobytes()
