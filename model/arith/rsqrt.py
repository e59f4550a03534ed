"""The inverse square root unit: ``1/sqrt(S)`` for LayerNorm, as a mantissa and a shift.

``S > 0`` is an integer. Normalising ``S = m * 4**e`` with ``m`` in [1, 4) (16 fraction bits,
truncated) and a 384-segment interpolated table of ``1/sqrt(m)`` on [1, 4) give
``1/sqrt(S) = r * 2**-(MANT_FRAC + e)`` with ``r`` in (0.5, 1) at MANT_FRAC fraction bits,
clamped below 1 to stay an 18-bit signed operand.
"""

import numpy as np

from model.arith.interp import InterpTable
from model.numerics import MANT_FRAC, bit_length, shift_floor

__all__ = ["rsqrt", "RSQRT_TABLE"]

M_FRAC = 16
RSQRT_TABLE = InterpTable.build(lambda m: 1.0 / np.sqrt(m), lo=1.0, segments=384, step_log2=7,
                                frac=MANT_FRAC)


def rsqrt(S):
    """``1/sqrt(S)`` for integers ``S > 0`` -> ``(r, e)`` with ``1/sqrt(S) = r * 2**-(MANT_FRAC +
    e)``."""
    S = np.asarray(S, dtype=np.int64)
    if np.any(S <= 0):
        raise ValueError("rsqrt takes positive inputs only")
    e = (bit_length(S) - 1) // 2
    m = shift_floor(S, 2 * e - M_FRAC)
    r = RSQRT_TABLE.evaluate(m - (1 << M_FRAC), M_FRAC)
    return np.minimum(r, (1 << MANT_FRAC) - 1), e
