"""Float weights -> the integer parameters the machine uses, with their formats.

Two scales are folded into weights here rather than computed at run time: the attention scale
``1/sqrt(head_dim)`` and ``log2(e)`` go into the Q rows (the softmax is base 2, see
:mod:`model.arith.exp`), and ``log2(e)`` into the gates. Everything downstream (golden model,
packer, RTL) reads these integers, so a layout or format bug cannot hide.
"""

import math
from dataclasses import dataclass, field

__all__ = ["QuantizedModel", "quantize", "LOG2E"]

LOG2E = 1.0 / math.log(2.0)


@dataclass
class QuantizedModel:
    """Integer parameters of one model for one numerics preset.

    Attributes
    ----------
    config : ModelConfig
    numerics : Numerics
    params : dict of str to Quantized
        ``patch_weight [D][C*p*p]``, ``patch_bias``, ``pos_embed`` and per block ``l{b}_`` +
        ``norm1_weight``, ``norm1_bias``, ``q_weight``, ``q_bias``, ``k_weight``, ``k_bias``,
        ``v_weight``, ``v_bias``, ``proj_weight``, ``proj_bias``, ``norm2_weight``,
        ``norm2_bias``, then ``fc1_weight``... (dense) or ``gate{t}_weight``,
        ``expert_fc1_weight [E][H][D]``, ``expert_fc1_bias [E][H]``, ``expert_fc2_weight
        [E][D][H]``, ``expert_fc2_bias [E][D]`` (MoE).
    saturated : dict of str to int
        Values that did not fit their format, per parameter (only non-zero counts).
    """

    config: object
    numerics: object
    params: dict = field(default_factory=dict)
    saturated: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.params[name]

    def block(self, b, name):
        return self.params[f"l{b}_{name}"]

    def _add(self, name, role, values):
        q, n = self.numerics.quantize(role, values)
        self.params[name] = q
        if n:
            self.saturated[name] = n


def quantize(weights, numerics):
    """Quantize a :class:`model.weights.Weights` set for ``numerics``."""
    cfg = weights.config
    D = cfg.dim
    qm = QuantizedModel(cfg, numerics)
    qm._add("patch_weight", "patch_weight", weights["patch_embed_weight"].reshape(D, -1))
    qm._add("patch_bias", "bias", weights["patch_embed_bias"])
    qm._add("pos_embed", "act", weights["pos_embed"])
    q_scale = LOG2E / math.sqrt(cfg.head_dim)
    for b in range(cfg.depth):
        w = lambda n: weights.block(b, n)  # noqa: E731
        p = f"l{b}_"
        qkv, qkv_bias = w("qkv_weight"), w("qkv_bias")
        qm._add(p + "norm1_weight", "small", w("norm1_weight"))
        qm._add(p + "norm1_bias", "bias", w("norm1_bias"))
        qm._add(p + "q_weight", "weight", qkv[:D] * q_scale)
        qm._add(p + "q_bias", "attn_bias", qkv_bias[:D] * q_scale)
        qm._add(p + "k_weight", "weight", qkv[D:2 * D])
        qm._add(p + "k_bias", "attn_bias", qkv_bias[D:2 * D])
        qm._add(p + "v_weight", "weight", qkv[2 * D:])
        qm._add(p + "v_bias", "attn_bias", qkv_bias[2 * D:])
        qm._add(p + "proj_weight", "weight", w("attn_proj_weight"))
        qm._add(p + "proj_bias", "bias", w("attn_proj_bias"))
        qm._add(p + "norm2_weight", "small", w("norm2_weight"))
        qm._add(p + "norm2_bias", "bias", w("norm2_bias"))
        if cfg.is_moe(b):
            for t in range(cfg.tasks):
                qm._add(p + f"gate{t}_weight", "gate_weight", w(f"w_gate_T_task{t}") * LOG2E)
            qm._add(p + "expert_fc1_weight", "weight", w("htoh4_weight"))
            qm._add(p + "expert_fc1_bias", "bias", w("htoh4_bias"))
            qm._add(p + "expert_fc2_weight", "weight", w("h4toh_weight"))
            qm._add(p + "expert_fc2_bias", "bias", w("h4toh_bias"))
        else:
            qm._add(p + "fc1_weight", "weight", w("fc1_weight"))
            qm._add(p + "fc1_bias", "bias", w("fc1_bias"))
            qm._add(p + "fc2_weight", "weight", w("fc2_weight"))
            qm._add(p + "fc2_bias", "bias", w("fc2_bias"))
    return qm
