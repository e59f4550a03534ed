"""The dense MLP half of a block, ``x + fc2(GELU(fc1(LN2(x))))``: twin of
``hw/system/mlp_half.py``."""

from model.units.compute_unit import linear
from model.units.layernorm import layer_norm
from model.units.residual import residual_add

__all__ = ["mlp_half"]


def mlp_half(qm, b, x):
    """``x + fc2(GELU(fc1(LN2(x))))`` for dense block ``b``."""
    cfg, num, act = qm.config, qm.numerics, qm.numerics.act
    p = lambda n: qm.block(b, n)  # noqa: E731
    h = layer_norm(x, act, p("norm2_weight"), p("norm2_bias"), cfg.ln_eps, num)
    hid = linear(h, act.frac, p("fc1_weight"), p("fc1_bias"), act, num, apply_gelu=True)
    return residual_add(x, linear(hid, act.frac, p("fc2_weight"), p("fc2_bias"), act, num),
                        act, num)
