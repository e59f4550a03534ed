"""The reordered attention engine: Q K^T with P staggered query slots, single-pass softmax, A V.

Keys stream past P query slots, one key row per step. Slot ``s`` takes its next query while key
row ``s`` streams by, so query ``q`` is loaded at key ``q mod P`` during pass ``q // P`` and sees
the keys in the rotated order ``q mod P, ..., N-1, 0, ..., q mod P - 1``; one query row and one
key row are read per step whatever P is, and P only sets the number of passes over K,
``ceil((N + P - 1) / P)``. The A V pass follows the same schedule and emits rows in token order.

Numerically the schedule matters through the order of each row's scores in the single-pass
softmax (:mod:`model.units.softmax`); the dot products are exact before their single rounding.
"""

import numpy as np

from model.units.compute_unit import linear
from model.numerics import PROB_FRAC, Quantized
from model.units.softmax import softmax

__all__ = ["attention", "schedule", "passes", "key_order"]


def passes(tokens, slots):
    """Passes over K (each ``tokens`` steps long) for ``tokens`` queries in ``slots`` slots."""
    return -(-(tokens + slots - 1) // slots)


def key_order(query, tokens, slots):
    """The order in which query row ``query`` meets the keys."""
    start = query % slots
    return [(start + i) % tokens for i in range(tokens)]


def schedule(tokens, slots):
    """The engine's steps: yields ``(pass, key, loads)`` per step, where ``loads`` maps each slot
    that takes a new query at this step to that query."""
    for p in range(passes(tokens, slots)):
        for key in range(tokens):
            loads = {}
            if key < slots:
                q = p * slots + key
                if q < tokens:
                    loads[key] = q
            yield p, key, loads


def attention(q, q_fmt, k, v, fmt, heads, slots, numerics):
    """Multi-head attention of integer Q (``q_fmt``, scale folded in), K and V (``fmt``).

    Returns the heads' outputs side by side, ``[tokens][dim]`` in ``fmt``.
    """
    T, D = q.shape
    if D % heads:
        raise ValueError(f"dim {D} is not divisible by {heads} heads")
    hd = D // heads
    start = np.arange(T) % slots
    out = np.empty((T, D), dtype=np.int64)
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        scores = linear(q[:, cols], q_fmt.frac, Quantized(k[:, cols], fmt), None, fmt, numerics)
        p = softmax(scores, fmt.frac, start)
        out[:, cols] = linear(p, PROB_FRAC, Quantized(v[:, cols].T, fmt), None, fmt, numerics)
    return out
