"""The MoE half of a block: ``x + sum over the top-k experts e of g_e * expert_e(LN2(x))``.

:func:`moe_half` is the twin of the whole half-block; :func:`experts_combine`, the part after
routing, is the twin of ``hw/units/expert_engine.py``: for each active expert, longest queue
first (ties by index; see :mod:`model.units.expert_queues` for why), its queue's rows of ``h``
go through fc1 + GELU and fc2, and ``x[token] += score * y`` is scattered back (one rounding,
saturation).
"""

import numpy as np

from model.units.compute_unit import linear, scale_accumulate
from model.units.expert_queues import expert_queues
from model.units.gate import gate
from model.units.layernorm import layer_norm
from model.numerics import Quantized

__all__ = ["moe_half", "experts_combine", "expert_params"]


def expert_params(qm, b, e):
    """Expert ``e`` of MoE block ``b``: ``(fc1_w, fc1_b, fc2_w, fc2_b)`` as Quantized."""
    return tuple(Quantized(qm.block(b, n).ints[e], qm.block(b, n).fmt)
                 for n in ("expert_fc1_weight", "expert_fc1_bias", "expert_fc2_weight",
                           "expert_fc2_bias"))


def experts_combine(qm, b, h, x, queues):
    """``x`` after every queued expert of block ``b`` added its scaled output."""
    num, act = qm.numerics, qm.numerics.act
    out = np.array(x, dtype=np.int64)
    for e, tokens, scores in queues:
        w1, b1, w2, b2 = expert_params(qm, b, e)
        hid = linear(h[tokens], act.frac, w1, b1, act, num, apply_gelu=True)
        y = linear(hid, act.frac, w2, b2, act, num)
        out[tokens] = scale_accumulate(out[tokens], y, scores[:, None], num, act)
    return out


def moe_half(qm, b, x, task, routes=None):
    """MoE block ``b``'s second half. Returns ``(x, chosen, probs)``.

    ``routes`` replaces the gate's choices (not its probabilities): a measurement aid.
    """
    cfg, num, act = qm.config, qm.numerics, qm.numerics.act
    h = layer_norm(x, act, qm.block(b, "norm2_weight"), qm.block(b, "norm2_bias"), cfg.ln_eps,
                   num)
    chosen, probs = gate(h, act, qm.block(b, f"gate{task}_weight"), cfg.top_k, num)
    if routes is not None:
        chosen = np.asarray(routes)
    queues = expert_queues(chosen, probs, cfg.experts)
    return experts_combine(qm, b, h, x, queues), chosen, probs
