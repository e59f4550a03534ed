"""Float64 reference of M3ViT: the mathematics the accelerator approximates, written to be read.

::

    x[0]   = pos_embed[0]                                  (class token folded into pos_embed)
    x[1+p] = patch_conv(image)[p] + pos_embed[1+p]
    for each block:
        x = x + proj(MHSA(LN1(x)))
        x = x + MLP(LN2(x))        dense blocks
        x = x + sum_top-k g_e * expert_e(LN2(x))          MoE blocks, g = softmax(gate(h))

Images are pixel codes 0..255 standing for k/256.
"""

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["forward", "run", "Trace", "layer_norm", "gelu", "softmax", "top_k",
           "patchify", "attention"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact GELU, erf form."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def top_k(logits, k):
    """Indices of the k largest logits per row, largest first; ties go to the lower index."""
    # A stable sort of the negated logits keeps equal values in index order.
    return np.argsort(-logits, axis=-1, kind="stable")[..., :k]


def patchify(image, patch):
    """[C][H][W] -> [patches][C*patch*patch], patches in row-major order, elements in (C, y, x)."""
    C, H, W = image.shape
    p = image.reshape(C, H // patch, patch, W // patch, patch)
    return p.transpose(1, 3, 0, 2, 4).reshape((H // patch) * (W // patch), C * patch * patch)


def attention(q, k, v, heads):
    """Multi-head attention with exact softmax; q, k, v are [tokens][dim]."""
    T, D = q.shape
    hd = D // heads
    out = np.empty_like(q)
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        p = softmax(q[:, s] @ k[:, s].T / math.sqrt(hd))
        out[:, s] = p @ v[:, s]
    return out


@dataclass
class Trace:
    """Everything :func:`run` saw: the input tokens, each block's output, and the routing.

    Attributes
    ----------
    embedded : ndarray [tokens][dim]
    blocks : list of ndarray [tokens][dim]
        Output of every block; ``blocks[-1]`` is the model's output.
    gate_probs : dict of int to ndarray [tokens][experts]
        Per MoE block, the softmax of the task's gate.
    experts : dict of int to ndarray [tokens][top_k]
        Per MoE block, the chosen experts, highest probability first.
    """

    embedded: np.ndarray = None
    blocks: list = field(default_factory=list)
    gate_probs: dict = field(default_factory=dict)
    experts: dict = field(default_factory=dict)

    @property
    def output(self):
        return self.blocks[-1]


def _check_task(config, task):
    if not (isinstance(task, (int, np.integer)) and 0 <= task < config.tasks):
        raise ValueError(f"task must be an integer in 0..{config.tasks - 1}, not {task!r}")


def run(weights, image, task):
    """Run the model and keep the intermediate results (see :class:`Trace`)."""
    cfg = weights.config
    _check_task(cfg, task)
    w = weights
    trace = Trace()
    pixels = patchify(np.asarray(image, dtype=np.float64) / 256.0, cfg.patch)
    conv = w["patch_embed_weight"].reshape(cfg.dim, -1)
    x = w["pos_embed"].copy()
    x[1:] += pixels @ conv.T + w["patch_embed_bias"]
    trace.embedded = x.copy()

    for b in range(cfg.depth):
        h = layer_norm(x, w.block(b, "norm1_weight"), w.block(b, "norm1_bias"), cfg.ln_eps)
        qkv = h @ w.block(b, "qkv_weight").T + w.block(b, "qkv_bias")
        q, k, v = np.split(qkv, 3, axis=1)
        a = attention(q, k, v, cfg.heads)
        x = x + a @ w.block(b, "attn_proj_weight").T + w.block(b, "attn_proj_bias")

        h = layer_norm(x, w.block(b, "norm2_weight"), w.block(b, "norm2_bias"), cfg.ln_eps)
        if cfg.is_moe(b):
            probs = softmax(h @ w.block(b, f"w_gate_T_task{task}").T)
            chosen = top_k(probs, cfg.top_k)
            trace.gate_probs[b], trace.experts[b] = probs, chosen
            y = np.zeros_like(x)
            for e in range(cfg.experts):
                tokens = np.nonzero((chosen == e).any(axis=1))[0]
                if tokens.size == 0:
                    continue
                hid = gelu(h[tokens] @ w.block(b, "htoh4_weight")[e].T + w.block(b, "htoh4_bias")[e])
                out = hid @ w.block(b, "h4toh_weight")[e].T + w.block(b, "h4toh_bias")[e]
                y[tokens] += probs[tokens, e:e + 1] * out
            x = x + y
        else:
            hid = gelu(h @ w.block(b, "fc1_weight").T + w.block(b, "fc1_bias"))
            x = x + hid @ w.block(b, "fc2_weight").T + w.block(b, "fc2_bias")
        trace.blocks.append(x.copy())
    return trace


def forward(weights, image, task):
    """The model's output, ``[tokens][dim]`` float64."""
    return run(weights, image, task).output
