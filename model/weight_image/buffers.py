"""The host's other buffers: the image (input) buffer the machine reads pixels from and the output
buffer it writes the last block's activations to."""

from dataclasses import dataclass

import numpy as np

from model.weight_image.format import WORD_BYTES, _align, _check_params, _words


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
    """The image buffer: :func:`model.units.patch_embed.image_bytes` (patch-major, one byte per
    pixel, a patch's ``C * p * p`` pixels per row), padded to whole beats at the end."""
    _check_params(1, 1, beat_bytes)
    pixels = config.image_channels * config.image_height * config.image_width
    return BufferLayout(config.patches, config.patch_in, 1, config.patch_in,
                        _align(pixels, beat_bytes))


def input_bytes(image, config, beat_bytes=16):
    """The image buffer's contents for pixel codes ``image [C][H][W]``."""
    from model.units.patch_embed import image_bytes
    shape = (config.image_channels, config.image_height, config.image_width)
    if np.shape(image) != shape:
        raise ValueError(f"the image of {config.name} is {shape}, not {np.shape(image)}")
    data = image_bytes(image, config.patch)
    return data + bytes(input_layout(config, beat_bytes).length - len(data))
