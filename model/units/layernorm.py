"""The LayerNorm unit: mean, variance, inverse square root, scale and shift, per token.

With ``F`` the activation's fraction bits and ``D`` the row length::

    mean  = round(round(sum(x) / 2**Db) * M_D / 2**16)      M_D = 2**(Db+16) / D, Db = ceil(log2 D)
    d     = x - mean                                        exact, one bit wider than x
    sh    = max(0, bitlen(max |d|) - 17)                    so that d >> sh fits 18 bits
    S     = sum((d >> sh)**2) + round(eps * D * 2**(2F) / 4**sh)
    r, e  = rsqrt(S)                                        1/sqrt(S) = r * 2**-(17 + e)
    c     = round(r * U_D / 2**17)                          sqrt(D) = U_D * 2**(j - 16)
    xhat  = round(d * c * 2**(j - sh - e - 16 + XHAT_FRAC))     (x - mean) / sqrt(var + eps)
    y     = round(xhat * gamma) + beta                      into the output format

so every multiply has an operand of at most 18 bits, ``max |d|`` comes from the row's minimum
and maximum found with its sum, and the constant ``sqrt(D)`` is applied once per token.
"""

import math

import numpy as np

from model.numerics import MANT_FRAC, Fixed, bit_length, fit, shift_floor, shift_round
from model.arith.rsqrt import rsqrt

__all__ = ["layer_norm", "XHAT_FORMAT"]

#: The normalised value (|xhat| < sqrt(D) <= 32 for rows up to 1024).
XHAT_FORMAT = Fixed(27, 20)
SQUARE_BITS = 18
CONST_FRAC = 16


def _row_constants(D):
    Db = max(0, math.ceil(math.log2(D)))
    mean_mult = round(2 ** (Db + CONST_FRAC) / D)
    j = math.floor(math.log2(math.sqrt(D)))
    sqrt_mant = round(math.sqrt(D) / 2 ** j * 2 ** CONST_FRAC)
    return Db, mean_mult, j, sqrt_mant


def layer_norm(x, fmt, gamma, beta, eps, numerics, out_fmt=None):
    """LayerNorm of each row of integers ``x`` (format ``fmt``).

    Parameters
    ----------
    x : int array [tokens][D]
    gamma : Quantized [D]
    beta : Quantized [D]
    eps : float
    numerics : Numerics
        Final rounding and overflow rule.
    out_fmt : Fixed, optional
        Output format (default ``fmt``).
    """
    out_fmt = out_fmt or fmt
    x = np.asarray(x, dtype=np.int64)
    D = x.shape[-1]
    F = fmt.frac
    Db, mean_mult, j, sqrt_mant = _row_constants(D)

    mean = shift_round(shift_round(x.sum(axis=-1), Db) * mean_mult, CONST_FRAC)
    d = x - mean[:, None]
    dmax = np.maximum(x.max(axis=-1) - mean, mean - x.min(axis=-1))
    sh = np.maximum(0, bit_length(dmax) - (SQUARE_BITS - 1))
    d18 = shift_floor(d, sh[:, None])
    eps_term = shift_round(np.int64(round(eps * D * 2.0 ** (2 * F))), 2 * sh)
    S = (d18 * d18).sum(axis=-1) + eps_term
    r, e = rsqrt(S)
    c = shift_round(r * sqrt_mant, MANT_FRAC)
    xhat = shift_round(d * c[:, None], (sh + e + CONST_FRAC - j - XHAT_FORMAT.frac)[:, None])
    xhat = fit(xhat, XHAT_FORMAT)
    y = numerics.round(xhat * gamma.ints, XHAT_FORMAT.frac + gamma.fmt.frac - out_fmt.frac)
    if beta.fmt.frac > out_fmt.frac:
        raise ValueError("LayerNorm shift has more fraction bits than the output")
    return numerics.fit(y + (beta.ints << (out_fmt.frac - beta.fmt.frac)), out_fmt)
