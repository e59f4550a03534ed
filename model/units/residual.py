"""The residual add: ``x + y`` in the activation format, saturating (or wrapping upstream)."""

import numpy as np

__all__ = ["residual_add"]


def residual_add(x, y, fmt, numerics):
    return numerics.fit(np.asarray(x, dtype=np.int64) + np.asarray(y, dtype=np.int64), fmt)
