"""Scatter: results written back to an activation buffer by an index list (the twin of
``hw/streams/scatter.py``): plainly, or as the expert combine ``dst += score * y``
(:func:`model.units.compute_unit.scale_accumulate`)."""

import numpy as np

from model.units.compute_unit import scale_accumulate

__all__ = ["scatter"]


def scatter(buffer, rows, y, fmt, numerics, scores=None):
    """A copy of ``buffer`` with ``y[i]`` written to row ``rows[i]``; with ``scores``, each
    row becomes ``row + score * y`` (one rounding, then the preset's overflow rule)."""
    out = np.array(buffer, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= len(out)):
        raise ValueError(f"scatter index outside 0..{len(out) - 1}")
    if len(np.unique(rows)) != len(rows):
        raise ValueError("scatter indices must be distinct within one call")
    y = np.asarray(y, dtype=np.int64)
    if scores is None:
        out[rows] = y
    else:
        out[rows] = scale_accumulate(out[rows], y, np.asarray(scores)[:, None], numerics, fmt)
    return out
