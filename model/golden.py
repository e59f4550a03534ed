"""The golden model: the integer specification of the whole machine, unit by unit.

Every function called here is the twin of a hardware unit (same module name in hw/); the RTL
must equal these results bit for bit. ``run`` calls them in the order of the machine's program
(:func:`model.schedule.commands`: the hardware's sequencer runs the same list), which is::

    x = patch_embed(image) (+ position embeddings)
    per block:  h = layer_norm1(x); q, k, v = linear(h); a = attention(q, k, v)
                x = residual_add(x, linear(a))
                h = layer_norm2(x)
                dense:  x = residual_add(x, linear(linear(h, gelu)))
                MoE:    chosen, probs = gate(h); for each active expert e, longest queue first:
                        x[queue] = scale_accumulate(x[queue], linear(linear(h[queue], gelu)), score)

``routes`` replaces the gate's choices (not its probabilities) by given ones: a measurement aid
that separates arithmetic error from routing flips (see :mod:`model.accuracy`).
"""

from dataclasses import dataclass

import numpy as np

from model.system.attention_half import attention_half
from model.machine import ZCU102
from model.system.mlp_half import mlp_half
from model.system.moe_half import moe_half
from model.numerics import DEFAULT
from model.units.patch_embed import patch_embed
from model.quantize import QuantizedModel, quantize
from model.reference import Trace
from model.schedule import Unit, commands

__all__ = ["forward", "run", "GoldenTrace", "attention_half", "mlp_half", "moe_half"]


@dataclass
class GoldenTrace(Trace):
    """:class:`model.reference.Trace` holding integers in the activation format ``fmt``."""

    fmt: object = None

    def to_float(self, ints):
        return self.fmt.to_float(ints)


def run(weights, image, task, *, numerics=DEFAULT, machine=ZCU102, routes=None):
    """Run the golden model; ``weights`` is a float Weights set or a QuantizedModel, ``machine``
    the :class:`model.machine.MachineConfig` whose results to reproduce.

    ``routes`` (optional): ``{moe block: chosen experts [tokens][k]}`` to impose.
    """
    qm = weights if isinstance(weights, QuantizedModel) else quantize(weights, numerics)
    cfg, num = qm.config, qm.numerics
    if not (isinstance(task, (int, np.integer)) and 0 <= task < cfg.tasks):
        raise ValueError(f"task must be an integer in 0..{cfg.tasks - 1}, not {task!r}")
    trace = GoldenTrace(fmt=num.act)
    x = None
    # A batch's results are those of its images one by one (model.schedule).
    for command in commands(cfg, task, machine.per_image):
        b = command.block
        if command.unit is Unit.EMBED:
            x = patch_embed(image, cfg.patch, qm["patch_weight"], qm["patch_bias"],
                            qm["pos_embed"].ints, num.act, num)
            trace.embedded = x
        elif command.unit is Unit.ATTENTION:
            x = attention_half(qm, b, x, machine)
        elif command.unit is Unit.MOE:
            x, chosen, probs = moe_half(qm, b, x, task, None if routes is None else routes[b])
            trace.experts[b], trace.gate_probs[b] = chosen, probs
            trace.blocks.append(x)
        else:
            x = mlp_half(qm, b, x)
            trace.blocks.append(x)
    return trace


def forward(weights, image, task, *, numerics=DEFAULT, machine=ZCU102, routes=None):
    """The model's output as integers ``[tokens][dim]`` in ``numerics.act``."""
    return run(weights, image, task, numerics=numerics, machine=machine, routes=routes).output
