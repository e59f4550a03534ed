"""The exp unit: ``2**x`` for ``x <= 0``, in [0, 1] with 25 fraction bits.

Softmax needs ``exp(a - m)``; the machine computes ``2**(a' - m')`` instead, with ``log2(e)``
folded into the weights that produce the scores and the gate logits (:mod:`model.quantize`), so
no constant multiply stands in front of the exponent. The input splits into an integer part
``n <= 0`` and a fraction ``f``; ``2**f`` in [1, 2) comes from a 64-segment interpolated table,
and the integer part is a right shift with rounding.
"""

import numpy as np

from model.arith.interp import InterpTable
from model.numerics import EXP_FRAC, shift_round

__all__ = ["exp2", "EXP2_TABLE", "FLOOR"]

#: Inputs below this give 0 at 25 fraction bits; clamping there keeps the shifter small.
FLOOR = -32

EXP2_TABLE = InterpTable.build(np.exp2, lo=0.0, segments=64, step_log2=6, frac=EXP_FRAC)


def exp2(x, frac):
    """``2**x`` for integers ``x <= 0`` with ``frac`` fraction bits -> integers, EXP_FRAC bits."""
    x = np.asarray(x, dtype=np.int64)
    if np.any(x > 0):
        raise ValueError("exp2 takes non-positive inputs only")
    x = np.maximum(x, FLOOR << frac)
    n = x >> frac
    mantissa = EXP2_TABLE.evaluate(x - (n << frac), frac)
    return shift_round(mantissa, -n)

