"""Model weights in the upstream Edge-MoE directory format.

The directory holds one raw little-endian float32 file per tensor, C order, no header, named
``<tensor>.float32.bin``. :func:`tensor_shapes` is the single description of the names and
shapes; loading, saving and synthesis all follow it.

Linear weights are stored ``[out][in]`` (``y = W x + b``). ``l{L}_qkv_weight`` stacks Q, K and V
rows. MoE blocks carry their experts' matrices ``l{L}_htoh4_weight [E][H][D]`` and
``l{L}_h4toh_weight [E][D][H]``; the published directory lacks those twelve, so
:func:`load_edge_moe` fills them with seeded synthetic values when they are all missing.
"""

import os
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Weights", "WeightsError", "tensor_shapes", "expert_matrix_names",
           "load_edge_moe", "save_edge_moe", "synthetic", "synthetic_image", "load_image", "shared_weights_dir"]

SUFFIX = ".float32.bin"


class WeightsError(ValueError):
    """A weight directory or file that does not match the configuration."""


def tensor_shapes(config):
    """Every tensor of a model: ``{name: shape}`` in a stable order (image not included)."""
    D, T, E = config.dim, config.tokens, config.experts
    shapes = {
        "patch_embed_weight": (D, config.image_channels, config.patch, config.patch),
        "patch_embed_bias": (D,),
        "pos_embed": (T, D),
    }
    for b in range(config.depth):
        p = f"l{b}_"
        shapes.update({
            p + "norm1_weight": (D,), p + "norm1_bias": (D,),
            p + "qkv_weight": (3 * D, D), p + "qkv_bias": (3 * D,),
            p + "attn_proj_weight": (D, D), p + "attn_proj_bias": (D,),
            p + "norm2_weight": (D,), p + "norm2_bias": (D,),
        })
        if config.is_moe(b):
            H = config.expert_hidden
            for t in range(config.tasks):
                shapes[p + f"w_gate_T_task{t}"] = (E, D)
            shapes.update({
                p + "htoh4_weight": (E, H, D), p + "htoh4_bias": (E, H),
                p + "h4toh_weight": (E, D, H), p + "h4toh_bias": (E, D),
            })
        else:
            H = config.mlp_hidden
            shapes.update({
                p + "fc1_weight": (H, D), p + "fc1_bias": (H,),
                p + "fc2_weight": (D, H), p + "fc2_bias": (D,),
            })
    return shapes


def expert_matrix_names(config):
    """The expert weight matrices, which the published directory does not include."""
    return [f"l{b}_{n}_weight" for b in config.moe_blocks for n in ("htoh4", "h4toh")]


@dataclass
class Weights:
    """A complete set of float weights for one configuration.

    Attributes
    ----------
    config : ModelConfig
    tensors : dict of str to ndarray
        Every tensor of :func:`tensor_shapes`, float64.
    synthetic_experts : bool
        True when the expert matrices were made up rather than loaded.
    """

    config: object
    tensors: dict
    synthetic_experts: bool = False

    def __post_init__(self):
        shapes = tensor_shapes(self.config)
        missing = [n for n in shapes if n not in self.tensors]
        if missing:
            raise WeightsError(f"weights lack {len(missing)} tensors, e.g. {missing[0]!r}")
        for name, shape in shapes.items():
            t = np.asarray(self.tensors[name], dtype=np.float64)
            if t.shape != shape:
                raise WeightsError(f"tensor {name!r} has shape {t.shape}, expected {shape}")
            if not np.all(np.isfinite(t)):
                raise WeightsError(f"tensor {name!r} contains NaN or Inf")
            self.tensors[name] = t

    def __getitem__(self, name):
        return self.tensors[name]

    def block(self, b, name):
        return self.tensors[f"l{b}_{name}"]


def _read(directory, name, shape):
    path = os.path.join(directory, name + SUFFIX)
    expected = int(np.prod(shape)) * 4
    if not os.path.isfile(path):
        raise WeightsError(f"missing weight file {path} (expected float32 tensor of shape {shape}, "
                           f"{expected} bytes)")
    size = os.path.getsize(path)
    if size != expected:
        raise WeightsError(f"weight file {path} has {size} bytes; a float32 tensor of shape "
                           f"{shape} needs {expected}")
    data = np.fromfile(path, dtype="<f4").reshape(shape)
    if not np.all(np.isfinite(data)):
        raise WeightsError(f"weight file {path} contains NaN or Inf")
    return data.astype(np.float64)


def _synthetic_experts(config, tensors, rng):
    """Expert matrices with the spread of the dense MLP weights (or a ViT-typical 0.05)."""
    def spread(kind):
        dense = [tensors[f"l{b}_{kind}_weight"] for b in range(config.depth)
                 if not config.is_moe(b) and f"l{b}_{kind}_weight" in tensors]
        return float(np.mean([d.std() for d in dense])) if dense else 0.05
    E, D, H = config.experts, config.dim, config.expert_hidden
    out = {}
    for b in config.moe_blocks:
        out[f"l{b}_htoh4_weight"] = rng.normal(0.0, spread("fc1"), (E, H, D))
        out[f"l{b}_h4toh_weight"] = rng.normal(0.0, spread("fc2"), (E, D, H))
    return out


def load_edge_moe(directory, config, *, seed=0):
    """Load a weight directory in the upstream format.

    When every expert matrix is absent (as in the published directory) they are filled with
    seeded synthetic values whose spread matches the dense MLP weights, with one warning.

    Raises
    ------
    WeightsError
        A file is missing (other than all expert matrices together), has the wrong size for
        its shape, or holds NaN or Inf.
    """
    if not os.path.isdir(directory):
        raise WeightsError(f"weight directory {directory} does not exist")
    shapes = tensor_shapes(config)
    experts = expert_matrix_names(config)
    present = [n for n in experts if os.path.exists(os.path.join(directory, n + SUFFIX))]
    fill = not present
    tensors = {n: _read(directory, n, s) for n, s in shapes.items() if not (fill and n in experts)}
    if fill:
        warnings.warn(f"{directory} has no expert weight matrices; using synthetic experts "
                      f"(seed {seed}) with the spread of the dense MLP weights", stacklevel=2)
        tensors.update(_synthetic_experts(config, tensors, np.random.default_rng(seed)))
    return Weights(config, tensors, synthetic_experts=fill)


def save_edge_moe(weights, directory):
    """Write every tensor in the upstream format (so that a set round-trips)."""
    os.makedirs(directory, exist_ok=True)
    for name, tensor in weights.tensors.items():
        tensor.astype("<f4").tofile(os.path.join(directory, name + SUFFIX))


def load_image(directory, config):
    """The image stored beside the weights (``image.float32.bin``), as pixel codes 0..255."""
    image = _read(directory, "image", (config.image_channels, config.image_height,
                                       config.image_width))
    codes = np.rint(image * 256)
    if np.any(np.abs(codes / 256 - image) > 1e-6) or codes.min() < 0 or codes.max() > 255:
        raise WeightsError(f"image in {directory} is not made of 8-bit pixels k/256")
    return codes.astype(np.int64)


def synthetic(config, seed=0):
    """A complete, plausible weight set for any configuration.

    Scales follow the trained M3ViT: linear weights ~ N(0, 0.05), biases ~ N(0, 0.5),
    LayerNorm gains around 1, position embeddings ~ N(0, 0.7).
    """
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in tensor_shapes(config).items():
        if name.endswith("norm1_weight") or name.endswith("norm2_weight"):
            t = rng.normal(1.0, 0.3, shape)
        elif "bias" in name or name == "pos_embed":
            t = rng.normal(0.0, 0.5 if name != "pos_embed" else 0.7, shape)
        elif "w_gate" in name:
            t = rng.normal(0.0, 0.1, shape)
        else:
            t = rng.normal(0.0, 0.05, shape)
        tensors[name] = t
    return Weights(config, tensors)


def synthetic_image(config, seed=0):
    """A random image of 8-bit pixel codes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (config.image_channels, config.image_height, config.image_width))



def shared_weights_dir():
    """The published Edge-MoE tensors, if this machine has them: ``$EDGEMOE_WEIGHTS``, else
    ``../shared/edge-moe/weights`` beside the repository. None when neither exists."""
    candidates = [os.environ.get("EDGEMOE_WEIGHTS"),
                  os.path.join(os.path.dirname(__file__), "..", "..", "shared", "edge-moe",
                               "weights")]
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "image" + SUFFIX)):
            return os.path.abspath(path)
    return None
