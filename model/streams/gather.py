"""Gather: token rows read from an on-chip activation buffer by an index list (the twin of
``hw/streams/gather.py``). The dense layers read rows 0..T-1; an expert reads its queue."""

import numpy as np

__all__ = ["gather"]


def gather(buffer, rows):
    """Rows ``rows`` of ``buffer`` (int [N][D]), in list order."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= len(buffer)):
        raise ValueError(f"gather index outside 0..{len(buffer) - 1}")
    return np.asarray(buffer)[rows]
