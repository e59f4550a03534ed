"""Single-pass softmax (base 2): running maximum and running sum in one stream of scores.

For each row the scores arrive once, in the order the attention engine streams the keys
(query ``q`` starts at key ``start[q]`` and wraps around). With ``m`` the running maximum and
``s`` the running sum of ``2**(a - m)``::

    first score a:   m = a,  s = 1
    a > m:           s = s * 2**(m - a) + 1,  m = a        (rescale, 17-bit factor)
    otherwise:       s = s + 2**(a - m)

At the row's end only ``m`` and ``1/s`` (:mod:`model.arith.reciprocal`) are kept; the second pass
recomputes each probability as ``2**(a - m) * (1/s)``: no pass to find the maximum first and
no division per element. The order changes the last bits, so it is part of the specification.
"""

import numpy as np

from model.arith.exp import exp2
from model.numerics import (EXP_FRAC, MANT_FRAC, PROB_FRAC, SUM_FRAC, SUM_WIDTH, Fixed, fit,
                       shift_round)
from model.arith.reciprocal import reciprocal

__all__ = ["running_stats", "probabilities", "softmax", "SUM_FORMAT", "MAX_ROW"]

SUM_FORMAT = Fixed(SUM_WIDTH, SUM_FRAC)
ONE = 1 << SUM_FRAC
#: Longest row whose sum cannot overflow the running-sum format.
MAX_ROW = SUM_FORMAT.max_int >> SUM_FRAC


def running_stats(scores, frac, start=None):
    """Stream each row of ``scores`` (int [R][N], ``frac`` fraction bits) from ``start[row]``.

    Returns ``(m, s)``: per row the maximum and the sum (SUM_FRAC fraction bits).
    """
    scores = np.asarray(scores, dtype=np.int64)
    R, N = scores.shape
    if N > MAX_ROW:
        raise ValueError(f"softmax rows of {N} exceed the running sum's range ({MAX_ROW})")
    start = np.zeros(R, dtype=np.int64) if start is None else np.asarray(start) % N
    rows = np.arange(R)
    m = scores[rows, start]
    s = np.full(R, ONE, dtype=np.int64)
    for step in range(1, N):
        a = scores[rows, (start + step) % N]
        new_max = a > m
        e = exp2(-np.abs(a - m), frac)
        rescale = np.minimum(shift_round(e, EXP_FRAC - MANT_FRAC), (1 << MANT_FRAC) - 1)
        s = np.where(new_max, shift_round(s * rescale, MANT_FRAC) + ONE,
                     s + shift_round(e, EXP_FRAC - SUM_FRAC))
        s = fit(s, SUM_FORMAT)
        m = np.where(new_max, a, m)
    return m, s


def probabilities(scores, m, s, frac):
    """Second pass: ``2**(a - m) / s`` per score, PROB_FRAC fraction bits, below 1."""
    scores = np.asarray(scores, dtype=np.int64)
    r, k = reciprocal(s)
    e = exp2(scores - m[:, None], frac)
    p = shift_round(e * r[:, None], EXP_FRAC + MANT_FRAC - PROB_FRAC + k[:, None])
    return np.minimum(p, (1 << PROB_FRAC) - 1)


def softmax(scores, frac, start=None):
    """Both passes: probabilities of each row of integer scores (base 2)."""
    m, s = running_stats(scores, frac, start)
    return probabilities(scores, m, s, frac)
