"""The reciprocal unit: ``1/s`` for the softmax sum, as a mantissa and a shift.

``s >= 1`` arrives with SUM_FRAC fraction bits. Normalising ``s = m * 2**k`` with ``m`` in
[1, 2) (truncating ``s`` to its leading bits) and a 128-segment interpolated table of ``1/m``
give ``1/s = r * 2**-k`` with ``r`` in (0.5, 1) at MANT_FRAC fraction bits; ``r`` is clamped
below 1 so that it stays an 18-bit signed multiplier operand.
"""

import numpy as np

from model.arith.interp import InterpTable
from model.numerics import MANT_FRAC, SUM_FRAC, bit_length, shift_floor

__all__ = ["reciprocal", "RECIP_TABLE"]

RECIP_TABLE = InterpTable.build(lambda m: 1.0 / m, lo=1.0, segments=128, step_log2=7,
                                frac=MANT_FRAC)


def reciprocal(s, frac=SUM_FRAC):
    """``1/s`` for integers ``s >= 2**frac`` -> ``(r, k)`` with ``1/s = r * 2**-(MANT_FRAC +
    k)``."""
    s = np.asarray(s, dtype=np.int64)
    if np.any(s < 1 << frac):
        raise ValueError("reciprocal takes inputs >= 1 only")
    k = bit_length(s) - 1 - frac
    m = shift_floor(s, k)
    r = RECIP_TABLE.evaluate(m - (1 << frac), frac)
    return np.minimum(r, (1 << MANT_FRAC) - 1), k
