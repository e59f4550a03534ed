"""Model configurations: the one place where the model's dimensions are defined.

Two presets describe the models the project runs:

* :data:`M3VIT_TINY` -- the configuration Edge-MoE accelerates (ViT-Tiny with MoE MLPs,
  129 tokens x 192, 12 blocks, odd blocks are 16-expert top-2 MoE layers, 2 tasks);
* :data:`MICRO` -- a miniature with the same structure (one dense and one MoE block) that
  keeps RTL simulations of a whole inference to seconds.

The machine that runs them is described by :class:`model.machine.MachineConfig`.
"""

from dataclasses import dataclass, fields

__all__ = ["ModelConfig", "M3VIT_TINY", "MICRO", "NANO", "CONFIGS",
           "config_by_name"]


def _require(condition, field, rule):
    if not condition:
        raise ValueError(f"invalid configuration: {field}: {rule}")


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of an M3ViT-style model.

    Parameters
    ----------
    name : str
        Preset name, used in file names and reports.
    image_channels, image_height, image_width : int
        Input image shape (CHW).
    patch : int
        Patch edge; the patch embedding is a ``patch x patch`` convolution with stride ``patch``.
    dim : int
        Embedding width.
    heads : int
        Attention heads; ``dim`` must be divisible by ``heads``.
    depth : int
        Number of transformer blocks. Even blocks are dense, odd blocks are MoE.
    mlp_hidden : int
        Hidden width of the dense MLPs.
    experts, top_k, expert_hidden : int
        MoE layer: number of experts, experts chosen per token, hidden width of each expert.
    tasks : int
        Number of tasks; each MoE block has one gate per task.
    ln_eps : float
        LayerNorm epsilon.
    """

    name: str
    image_channels: int
    image_height: int
    image_width: int
    patch: int
    dim: int
    heads: int
    depth: int
    mlp_hidden: int
    experts: int
    top_k: int
    expert_hidden: int
    tasks: int
    ln_eps: float = 1e-6

    def __post_init__(self):
        for f in fields(self):
            if f.type == "int" or f.type is int:
                value = getattr(self, f.name)
                _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                         f.name, f"must be a positive integer, not {value!r}")
        _require(self.dim % self.heads == 0, "heads",
                 f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        _require(self.top_k <= self.experts, "top_k",
                 f"top_k ({self.top_k}) must not exceed experts ({self.experts})")
        _require(self.image_height % self.patch == 0, "image_height",
                 f"image_height ({self.image_height}) must be divisible by patch ({self.patch})")
        _require(self.image_width % self.patch == 0, "image_width",
                 f"image_width ({self.image_width}) must be divisible by patch ({self.patch})")
        _require(self.ln_eps > 0, "ln_eps", f"must be positive, not {self.ln_eps!r}")

    @property
    def head_dim(self):
        return self.dim // self.heads

    @property
    def patches(self):
        return (self.image_height // self.patch) * (self.image_width // self.patch)

    @property
    def tokens(self):
        """Patches plus the class token."""
        return self.patches + 1

    @property
    def patch_in(self):
        """Inputs of the patch embedding seen as a linear layer (channels x patch x patch)."""
        return self.image_channels * self.patch * self.patch

    def is_moe(self, block):
        """Odd blocks are mixture-of-experts blocks, even blocks dense."""
        return block % 2 == 1

    @property
    def moe_blocks(self):
        return [b for b in range(self.depth) if self.is_moe(b)]


M3VIT_TINY = ModelConfig(
    name="m3vit-tiny", image_channels=3, image_height=128, image_width=256, patch=16,
    dim=192, heads=3, depth=12, mlp_hidden=768, experts=16, top_k=2, expert_hidden=384, tasks=2)

MICRO = ModelConfig(
    name="micro", image_channels=3, image_height=16, image_width=16, patch=4,
    dim=32, heads=2, depth=2, mlp_hidden=64, experts=4, top_k=2, expert_hidden=32, tasks=2)

#: The smallest machine with every mechanism: micro at half the width (head_dim 8), with two
#: experts and top-1 routing, so that a 2 x 2 array runs it (the gate's logits fit one beat of
#: the array's lanes). It is the ULX3S self-test's model: the ECP5 has 156 18 x 18 multipliers.
NANO = ModelConfig(
    name="nano", image_channels=3, image_height=16, image_width=16, patch=4,
    dim=16, heads=2, depth=2, mlp_hidden=32, experts=2, top_k=1, expert_hidden=16, tasks=2)

CONFIGS = {c.name: c for c in (M3VIT_TINY, MICRO, NANO)}


def config_by_name(name):
    """Look a preset up by name; an unknown name lists the valid ones."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model configuration {name!r}; "
                         f"choose one of: {', '.join(CONFIGS)}") from None
