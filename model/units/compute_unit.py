"""The shared compute unit: ``Y = X W^T + b`` for every linear layer, optionally with GELU.

One multiply-accumulate array serves Q, K, V, the projection, the dense and the expert MLPs,
the gate and the patch embedding. The numerics preset decides the arithmetic:

* ``once`` (default): products are summed exactly, the bias is added at full precision and the
  sum is rounded once (half up) into the output format, then saturated;
* ``floor_each`` (upstream): every product is floored to the output's fraction bits before it is
  added, the sum wraps around.

:func:`scale_accumulate` is the expert combine ``dst += score * y``.
"""

import numpy as np

from model.arith.gelu import gelu
from model.numerics import PROB_FRAC, matmul, shift_floor

__all__ = ["linear", "scale_accumulate"]

# Rows per chunk of the per-product floor: bounds the [rows][out][in] temporary.
_CHUNK_ELEMENTS = 1 << 22


def linear(x, x_frac, w, b, out_fmt, numerics, *, apply_gelu=False):
    """``x @ w.T + b`` rounded into ``out_fmt``.

    Parameters
    ----------
    x : int array [tokens][in], ``x_frac`` fraction bits
    w : Quantized [out][in]
    b : Quantized [out] or None
    out_fmt : Fixed
    numerics : Numerics
    apply_gelu : bool
        GELU on the output (same format), as the array's output stage does.
    """
    x = np.asarray(x, dtype=np.int64)
    acc_frac = x_frac + w.fmt.frac              # fraction bits of every product and of the sum
    shift = acc_frac - out_fmt.frac             # bits the output drops (model.packer.linear_record)
    if numerics.product_rounding == "once":
        acc = matmul(x, w.ints.T)
        if b is not None:
            acc = acc + _align(b, acc_frac)
        y = numerics.round(acc, shift)
    else:
        y = _sum_of_floored_products(x, w.ints, shift)
        if b is not None:
            y = y + _align(b, out_fmt.frac)
    y = numerics.fit(y, out_fmt)
    return gelu(y, out_fmt) if apply_gelu else y


def _align(b, frac):
    if b.fmt.frac > frac:
        raise ValueError(f"bias with {b.fmt.frac} fraction bits cannot be added exactly to a "
                         f"sum with {frac}")
    return b.ints << (frac - b.fmt.frac)


def _sum_of_floored_products(x, w, shift):
    rows = max(1, _CHUNK_ELEMENTS // max(1, w.size))
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.int64)
    for r in range(0, x.shape[0], rows):
        products = x[r:r + rows, None, :] * w[None, :, :]
        out[r:r + rows] = shift_floor(products, shift).sum(axis=-1)
    return out


def scale_accumulate(dst, y, score, numerics, fmt):
    """``dst + score * y`` with ``score`` a probability (PROB_FRAC bits), one rounding, then fit."""
    product = np.asarray(y, dtype=np.int64) * np.asarray(score, dtype=np.int64)
    return numerics.fit(np.asarray(dst) + numerics.round(product, PROB_FRAC), fmt)
