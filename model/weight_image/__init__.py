"""The weights image: every parameter of a model in one block of memory, laid out exactly as the
machine reads it, plus the layouts of the image (input) and output buffers.

:func:`layout` computes every section's offset and beat counts from the dimensions alone (no
weight values), so the RTL sequencer can take them as constants at elaboration time; only
data-dependent values live in the image: weights, biases, LayerNorm parameters, position
embeddings and a table of the linear layers' output shifts. :func:`pack` fills the layout from a
:class:`model.quantize.QuantizedModel`; :func:`check` validates an image against the
configuration a bitstream was built for.

One module per job; every name is re-exported here, so ``from model.weight_image import ...``
is all a user needs:

- :mod:`~model.weight_image.format`: the format's constants (magic, version, section alignment,
  word size), the header's fields and the layout parameters' checks, shared by the others;
- :mod:`~model.weight_image.hashes`: :func:`config_hash`, what makes
  an image fit a bitstream;
- :mod:`~model.weight_image.sections`: :class:`Section`, :class:`ImageLayout` and
  :func:`layout`, where each section lies and what it holds;
- :mod:`~model.weight_image.packing`: :func:`pack`, the image's bytes from a quantized model;
- :mod:`~model.weight_image.checking`: :func:`check`, :func:`read_header`, :func:`read_shifts`
  and :class:`ImageError`, for an image that already exists;
- :mod:`~model.weight_image.buffers`: :class:`BufferLayout` and the image (input) and output
  buffers the host shares with the machine;
- :mod:`~model.weight_image.report`: :func:`summary`, :func:`markdown` and the command line
  (:func:`main`, run by ``python -m model.weight_image``).

Print the layout with ``python -m model.weight_image --config m3vit-tiny``; write an image with
``--weights DIR`` or ``--synthetic SEED`` and ``--out FILE``.
"""

from model.weight_image.format import (FORMAT_MAGIC, FORMAT_VERSION, HEADER_FIELDS, MAX_SHIFT,
                     SECTION_ALIGN, WORD_BYTES, _DIMS, _HEADER, _align, _check_params, _words)
from model.weight_image.hashes import config_hash
from model.weight_image.sections import ImageLayout, Section, layout
from model.weight_image.buffers import (BufferLayout, input_bytes, input_layout, output_layout, pack_output,
                      unpack_output)
from model.weight_image.packing import _header, _ln_set, pack
from model.weight_image.checking import ImageError, _ports, _repack_hint, check, read_header, read_shifts
from model.weight_image.report import _describe, _load, main, markdown, summary

# When this package was one module these names were importable from it too; they stay so.
from ..config import CONFIGS, ModelConfig, config_by_name
from ..numerics import DEFAULT
from ..packer import (expert_record_layout, linear_record, linear_record_beats,
                      moe_layer_records, tiles)
from model.units.patch_embed import PIXEL_FRAC

__all__ = [
    "FORMAT_MAGIC", "FORMAT_VERSION", "SECTION_ALIGN", "WORD_BYTES", "HEADER_FIELDS", "MAX_SHIFT",
    "Section", "ImageLayout", "layout", "config_hash", "pack", "check",
    "read_header", "read_shifts", "summary", "ImageError",
    "BufferLayout", "output_layout", "unpack_output", "pack_output", "input_layout",
    "input_bytes", "markdown", "main",
]
