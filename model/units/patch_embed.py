"""Patch embedding: the 16 x 16 stride-16 convolution as a linear layer over flattened patches,
plus position embeddings; the class token is position embedding 0 alone.

Pixels are 8-bit codes ``k`` standing for ``k/256``, i.e. integers with 8 fraction bits.
"""

import numpy as np

from model.units.compute_unit import linear
from model.reference import patchify
from model.units.residual import residual_add

__all__ = ["patch_embed", "image_bytes", "PIXEL_FRAC"]

PIXEL_FRAC = 8


def image_bytes(image, patch):
    """The image as the hardware reads it: patch-major bytes, one pixel code per byte.

    Patch 0's ``C * patch * patch`` pixels come first, in :func:`model.reference.patchify`
    order (channel, then row, then column within the patch), then patch 1, ..., patches in
    row-major order over the image. Each patch is thus one token row of the patch embedding's
    matrix product, and a stream of ``n``-byte beats taken little-endian (byte ``i`` of a beat
    in bits ``8i .. 8i+7``, as an AXI port delivers memory) carries pixels ``n*j .. n*j+n-1``
    in beat ``j``. The host lays the image out this way once; ``hw.units.patch_embed.PatchEmbed``
    streams it straight into the compute unit.

    Parameters
    ----------
    image : int array [C][H][W]
        Pixel codes 0..255.
    patch : int
        Patch edge; ``H`` and ``W`` must be multiples of it.

    Returns
    -------
    bytes
        ``C * H * W`` bytes.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be [C][H][W], not of shape {image.shape}")
    if image.size and (image.min() < 0 or image.max() > 255):
        raise ValueError("image pixels must be 8-bit codes 0..255")
    _, H, W = image.shape
    if H % patch or W % patch:
        raise ValueError(f"image height and width ({H} x {W}) must be multiples of the patch "
                         f"edge ({patch})")
    return patchify(image, patch).astype(np.uint8).tobytes()


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
