"""GELU approximator: ``GELU(x) = ReLU(x) - d(|x|)`` with ``d(a) = a * Phi(-a)`` tabulated.

``d`` is an even bump, tabulated on [0, 5.5] in steps of 1/32 (176 segments) and linearly
interpolated (:mod:`model.arith.interp`); beyond 5.5 GELU is ReLU (``d(5.5) < 1.1e-7``). The
subtraction and the final rounding happen at the table's precision: one rounding per value.
"""

import math

import numpy as np

from model.arith.interp import InterpTable
from model.numerics import Numerics, shift_round

__all__ = ["gelu", "D_TABLE", "LIMIT"]

LIMIT = 5.5
STEP_LOG2 = 5


def _bump(a):
    return a * 0.5 * np.vectorize(math.erfc)(a / math.sqrt(2.0))


#: d(a) on [0, 5.5]; its peak (0.17) fits 18 signed bits with 19 fraction bits.
D_TABLE = InterpTable.build(_bump, lo=0.0, segments=int(LIMIT * 2 ** STEP_LOG2),
                            step_log2=STEP_LOG2, frac=Numerics.finest(18, [0.17]).frac)


def gelu(x, fmt):
    """GELU of integers ``x`` in format ``fmt`` (at least 5 fraction bits); same format out.

    The result never leaves the input's range, so no overflow rule is needed.
    """
    x = np.asarray(x, dtype=np.int64)
    a = np.abs(x)
    inside = a < round(LIMIT * 2 ** fmt.frac)
    d = np.zeros_like(x)
    d[inside] = D_TABLE.evaluate(a[inside], fmt.frac)
    relu = np.maximum(x, 0)
    # Subtract at the finer of the two precisions, then round once.
    extra = D_TABLE.frac - fmt.frac
    if extra >= 0:
        return shift_round((relu << extra) - d, extra)
    return relu - (d << -extra)
