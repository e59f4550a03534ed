"""Patch embedding: the 16 x 16 stride-16 convolution as a linear layer over flattened patches,
plus position embeddings; the class token is position embedding 0 alone.

Pixels are 8-bit codes ``k`` standing for ``k/256``, i.e. integers with 8 fraction bits.
"""

import numpy as np

from .compute_unit import linear
from .reference import patchify
from .residual import residual_add

__all__ = ["patch_embed", "PIXEL_FRAC"]

PIXEL_FRAC = 8


def patch_embed(image, patch, w, b, pos, fmt, numerics):
    """Tokens ``[patches + 1][dim]`` in ``fmt`` from pixel codes ``image [C][H][W]``.

    ``w`` is Quantized ``[dim][C * patch * patch]``, ``b`` Quantized ``[dim]``, ``pos`` integer
    ``[tokens][dim]`` in ``fmt``.
    """
    image = np.asarray(image, dtype=np.int64)
    if image.min() < 0 or image.max() > 255:
        raise ValueError("image pixels must be 8-bit codes 0..255")
    x = np.array(pos, dtype=np.int64)
    embedded = linear(patchify(image, patch), PIXEL_FRAC, w, b, fmt, numerics)
    x[1:] = residual_add(x[1:], embedded, fmt, numerics)
    return x
