"""The MoE gate: logits of the task's gate, softmax over the experts, top-k.

Experts are ranked by their logits (the softmax is monotonic, and the logits carry more bits
than the probabilities); ties go to the lower expert index. A token's scores are the
probabilities of its chosen experts, not renormalised.
"""

import numpy as np

from model.units.compute_unit import linear
from model.units.softmax import softmax

__all__ = ["gate", "route", "top_k"]


def top_k(logits, k):
    """Indices of the ``k`` largest values per row, largest first, ties to the lower index."""
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"top-k needs 1 <= k <= {logits.shape[-1]} experts, not k={k}")
    return np.argsort(-np.asarray(logits), axis=-1, kind="stable")[..., :k]


def route(logits, fmt, k):
    """Routing from gate logits (``fmt``): the twin of ``hw/units/gate.py``.

    Returns ``(chosen, probs)``: chosen experts ``[tokens][k]`` and all probabilities
    ``[tokens][experts]`` (PROB_FRAC fraction bits; the softmax streams each row in expert
    order).
    """
    return top_k(logits, k), softmax(logits, fmt.frac)


def gate(h, fmt, w_gate, k, numerics):
    """Route tokens ``h`` (``fmt``) with gate weights ``w_gate`` (Quantized [experts][dim]):
    the logits on the shared compute unit, then :func:`route`."""
    return route(linear(h, fmt.frac, w_gate, None, fmt, numerics), fmt, k)
