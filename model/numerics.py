"""Fixed-point formats and the integer operations every unit shares: the one definition of the
project's numerics, read by the golden model (model/) and by the RTL (hw/).

A value ``v`` in format ``Fixed(width, frac)`` is the signed integer ``round(v * 2**frac)``
held in ``width`` bits. Two presets:

* :data:`DEFAULT` -- every multiply fits one DSP48E2 (operands at most 27 x 18 bits), products
  are accumulated at full width and rounded once per dot product (round half up), results
  saturate. Each weight tensor gets the finest format of its width that holds its largest value
  (a power-of-two scale per tensor, applied by the output shift of the call that uses it).
* :data:`EDGEMOE` -- upstream-compatible: ``ap_fixed<32,10>`` activations, ``<16,2>`` linear
  weights, ``<16,7>`` attention biases, ``<16,5>`` other biases and LayerNorm parameters,
  ``<16,0>`` patch weights; weights converted by truncation, every product floored to the
  activation format before accumulation, wrap-around on overflow.

The nonlinear units (exp, reciprocal, inverse square root, GELU) are the same in both presets;
their internal formats are the constants at the end of this module.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Fixed", "Numerics", "DEFAULT", "EDGEMOE", "PRESETS", "numerics_by_name",
           "shift_round", "shift_floor", "fit", "bit_length", "matmul", "Quantized"]


@dataclass(frozen=True)
class Fixed:
    """A signed fixed-point format: ``width`` bits of which ``frac`` are fraction bits.

    ``frac`` may exceed ``width`` (a format for small values) or be negative.
    """

    width: int
    frac: int

    def __post_init__(self):
        if not (isinstance(self.width, int) and self.width >= 2):
            raise ValueError(f"Fixed width must be an integer >= 2, not {self.width!r}")
        if not isinstance(self.frac, int):
            raise ValueError(f"Fixed frac must be an integer, not {self.frac!r}")

    @property
    def min_int(self):
        return -(1 << (self.width - 1))

    @property
    def max_int(self):
        return (1 << (self.width - 1)) - 1

    @property
    def resolution(self):
        return 2.0 ** -self.frac

    @property
    def max_value(self):
        return self.max_int * self.resolution

    def quantize(self, x, *, rounding="nearest", overflow="saturate"):
        """Float -> integers of this format.

        Returns
        -------
        ints : ndarray of int64
        saturated : int
            How many values fell outside the range (clipped, or wrapped with ``overflow="wrap"``).
        """
        scaled = np.asarray(x, dtype=np.float64) * 2.0 ** self.frac
        if not np.all(np.isfinite(scaled)):
            raise ValueError("cannot convert NaN or Inf to fixed point")
        if rounding == "nearest":
            ints = np.floor(scaled + 0.5)
        elif rounding == "floor":
            ints = np.floor(scaled)
        else:
            raise ValueError(f"rounding must be 'nearest' or 'floor', not {rounding!r}")
        saturated = int(np.count_nonzero((ints < self.min_int) | (ints > self.max_int)))
        # Clip in float before the integer cast: huge floats would overflow int64.
        big = float(1 << 62)
        ints = np.clip(ints, -big, big).astype(np.int64)
        return fit(ints, self, overflow), saturated

    def to_float(self, ints):
        return np.asarray(ints, dtype=np.float64) * self.resolution

    def __str__(self):
        return f"<{self.width},{self.frac}>"


def shift_floor(v, s):
    """``v * 2**-s`` rounded toward minus infinity (an arithmetic shift).

    ``s`` is an integer or an array of them; negative amounts shift left.
    """
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return np.where(s >= 0, v >> np.maximum(s, 0), v << np.maximum(-s, 0))


def shift_round(v, s):
    """``v * 2**-s`` rounded to nearest, halves up: what adding half an LSB before a shift does."""
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
    return shift_floor(v + half, s)


def fit(v, fmt, overflow="saturate"):
    """Bring integers into ``fmt.width`` bits by saturation or two's-complement wrap-around."""
    v = np.asarray(v, dtype=np.int64)
    if overflow == "saturate":
        return np.clip(v, fmt.min_int, fmt.max_int)
    if overflow == "wrap":
        m = 1 << fmt.width
        return ((v - fmt.min_int) % m) + fmt.min_int
    raise ValueError(f"overflow must be 'saturate' or 'wrap', not {overflow!r}")


def bit_length(v):
    """Bits of magnitude of each non-negative integer below 2**53 (0 for 0), like
    ``int.bit_length``."""
    # frexp is exact here: every such integer is a float64 without rounding.
    return np.frexp(np.asarray(v, dtype=np.float64))[1].astype(np.int64)


def matmul(a, b):
    """Exact integer product ``a @ b`` of int64 matrices.

    Uses float64 BLAS when every partial sum is provably below 2**53 (then exact), int64 otherwise.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound < 2.0 ** 53:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


@dataclass(frozen=True)
class Quantized:
    """An integer tensor with its format."""

    ints: np.ndarray
    fmt: Fixed

    def to_float(self):
        return self.fmt.to_float(self.ints)


@dataclass(frozen=True)
class Numerics:
    """A numerics preset: formats per tensor role and the arithmetic rules.

    Parameters
    ----------
    name : str
    act : Fixed
        Activations: the residual stream, LayerNorm outputs, K and V, scores, MLP hidden values.
    query : Fixed
        Q after the attention scale (folded into its weights); one operand of Q K^T, so at most
        18 bits in the default preset.
    weight_width : int
        Bits of a linear weight as stored in DRAM and fed to the MAC array.
    weight_frac : int or None
        Fixed fraction bits of the linear weights, or None to give each tensor the finest
        format that holds its largest value.
    patch_weight_frac, gate_weight_frac : int or None
        The same for the patch embedding and the gates.
    small_width : int
        Bits of multiplied per-channel parameters (LayerNorm gain).
    small_frac : int or None
        Fraction bits of those, or None for per-tensor formats.
    bias : Fixed or None
        Format of added parameters (biases, LayerNorm shift, position embedding), or None to
        use the activation format.
    attn_bias : Fixed or None
        Format of the Q, K, V biases, or None as for ``bias``.
    weight_rounding : {"nearest", "floor"}
        Float -> fixed conversion of parameters.
    product_rounding : {"once", "floor_each"}
        ``once``: products summed exactly, one rounding per dot product. ``floor_each``: each
        product floored to the activation format before it is added (upstream).
    overflow : {"saturate", "wrap"}
    """

    name: str
    act: Fixed
    query: Fixed
    weight_width: int
    weight_frac: object
    patch_weight_frac: object
    gate_weight_frac: object
    small_width: int
    small_frac: object
    bias: object
    attn_bias: object
    weight_rounding: str
    product_rounding: str
    overflow: str

    def __post_init__(self):
        if self.product_rounding not in ("once", "floor_each"):
            raise ValueError(f"product_rounding must be 'once' or 'floor_each', "
                             f"not {self.product_rounding!r}")
        if self.weight_rounding not in ("nearest", "floor"):
            raise ValueError(f"weight_rounding must be 'nearest' or 'floor', "
                             f"not {self.weight_rounding!r}")
        if self.overflow not in ("saturate", "wrap"):
            raise ValueError(f"overflow must be 'saturate' or 'wrap', not {self.overflow!r}")

    @staticmethod
    def finest(width, values, max_frac=None):
        """The format of ``width`` bits with the most fraction bits that holds ``values``."""
        peak = float(np.max(np.abs(values))) if np.size(values) else 0.0
        if peak == 0.0:
            return Fixed(width, max_frac if max_frac is not None else width - 1)
        frac = width - 1 - int(np.ceil(np.log2(peak)))
        # Rounding may carry the peak past the largest code: step back once if it does.
        while frac > -64 and np.floor(peak * 2.0 ** frac + 0.5) > (1 << (width - 1)) - 1:
            frac -= 1
        if max_frac is not None:
            frac = min(frac, max_frac)
        return Fixed(width, frac)

    def _format(self, role, values):
        if role == "weight":
            width, frac = self.weight_width, self.weight_frac
        elif role == "patch_weight":
            width, frac = self.weight_width, self.patch_weight_frac
        elif role == "gate_weight":
            width, frac = self.weight_width, self.gate_weight_frac
        elif role == "small":
            width, frac = self.small_width, self.small_frac
        elif role == "act":
            return self.act
        elif role == "bias":
            return self.bias or self.act
        elif role == "attn_bias":
            return self.attn_bias or self.bias or self.act
        else:
            raise ValueError(f"unknown tensor role {role!r}")
        return Fixed(width, frac) if frac is not None else self.finest(width, values)

    def quantize(self, role, values):
        """A parameter tensor of the given role as :class:`Quantized`, and its saturation count."""
        fmt = self._format(role, values)
        ints, saturated = fmt.quantize(values, rounding=self.weight_rounding,
                                       overflow=self.overflow)
        return Quantized(ints, fmt), saturated

    @property
    def small_format(self):
        """The fixed format of multiplied per-channel parameters (LayerNorm gains), if fixed."""
        return Fixed(self.small_width, self.small_frac) if self.small_frac is not None else None

    def fit(self, v, fmt=None):
        """Apply this preset's overflow rule for format ``fmt`` (default: activations)."""
        return fit(v, fmt or self.act, self.overflow)

    def round(self, v, s):
        """Shift right by ``s`` with the preset's final rounding (nearest, or floor upstream)."""
        return shift_round(v, s) if self.product_rounding == "once" else shift_floor(v, s)


DEFAULT = Numerics(
    name="default",
    act=Fixed(26, 16),
    query=Fixed(18, 15),
    weight_width=16, weight_frac=None, patch_weight_frac=None, gate_weight_frac=None,
    small_width=18, small_frac=13,
    bias=None, attn_bias=None,
    weight_rounding="nearest", product_rounding="once", overflow="saturate",
)

EDGEMOE = Numerics(
    name="edgemoe",
    act=Fixed(32, 22),
    query=Fixed(32, 22),
    weight_width=16, weight_frac=14, patch_weight_frac=16, gate_weight_frac=14,
    small_width=16, small_frac=11,
    bias=Fixed(16, 11), attn_bias=Fixed(16, 9),
    weight_rounding="floor", product_rounding="floor_each", overflow="wrap",
)

PRESETS = {n.name: n for n in (DEFAULT, EDGEMOE)}


def numerics_by_name(name):
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown numerics preset {name!r}; choose one of: "
                         f"{', '.join(PRESETS)}") from None


# --- Internal formats of the function units (both presets) ---------------------------------
#: Fraction bits of an exp() result in [0, 1] (unsigned, 26 bits: one DSP operand).
EXP_FRAC = 25
#: Fraction bits of a probability (softmax output, gate score); 18-bit signed operand.
PROB_FRAC = 17
#: Fraction bits of the running softmax sum, 27-bit signed operand.
SUM_FRAC = 18
SUM_WIDTH = 27
#: Mantissas of reciprocals and inverse square roots: 17 fraction bits, in (0.5, 1).
MANT_FRAC = 17
