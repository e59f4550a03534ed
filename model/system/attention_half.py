"""The attention half of a block, ``x + proj(attention(LN1(x)))``: twin of
``hw/system/attention_half.py``."""

from model.units.attention import attention
from model.units.compute_unit import linear
from model.units.layernorm import layer_norm
from model.units.residual import residual_add

__all__ = ["attention_half", "CALLS"]

#: The half's compute-unit calls, in the order the machine runs them (and fetches their records).
CALLS = ("k", "q", "v", "proj")


def attention_half(qm, b, x, machine):
    """``x + proj(attention(LN1(x)))`` for block ``b``; ``machine.attention_slots``
    (:class:`model.machine.MachineConfig`) sets the order of the softmax sums."""
    cfg, num, act = qm.config, qm.numerics, qm.numerics.act
    p = lambda n: qm.block(b, n)  # noqa: E731
    h = layer_norm(x, act, p("norm1_weight"), p("norm1_bias"), cfg.ln_eps, num)
    q = linear(h, act.frac, p("q_weight"), p("q_bias"), num.query, num)
    k = linear(h, act.frac, p("k_weight"), p("k_bias"), act, num)
    v = linear(h, act.frac, p("v_weight"), p("v_bias"), act, num)
    a = attention(q, num.query, k, v, act, cfg.heads, machine.attention_slots, num)
    return residual_add(x, linear(a, act.frac, p("proj_weight"), p("proj_bias"), act, num),
                        act, num)
