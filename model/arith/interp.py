"""Table plus linear interpolation: the one method behind GELU, exp, reciprocal and 1/sqrt.

A function ``f`` is sampled at ``n + 1`` equally spaced nodes ``lo + i * 2**-step_log2``. The
input is an unsigned offset ``t`` from ``lo`` with ``t_frac`` fraction bits; its high bits pick the
segment, its low ``b = t_frac - step_log2`` bits the position inside it::

    i, r = t >> b, t & (2**b - 1)
    y    = T[i] + round((T[i+1] - T[i]) * r / 2**b)

one small multiply per evaluation. The entries are not ``f`` at the nodes: each interior node is
lowered by half the chord's bulge over its two segments, which halves the worst interpolation
error (to about ``h**2 |f''| / 16``). The end nodes are exact, so that e.g. exp(0) is exactly 1.
"""

from dataclasses import dataclass

import numpy as np

from model.numerics import shift_round

__all__ = ["InterpTable"]


@dataclass(frozen=True, eq=False)
class InterpTable:
    """A sampled function: integer ``entries`` with ``frac`` fraction bits, ``2**-step_log2`` apart.

    Attributes
    ----------
    entries : ndarray of int64, n + 1 values
    step_log2 : int
    frac : int
    """

    entries: np.ndarray
    step_log2: int
    frac: int

    @classmethod
    def build(cls, f, *, lo, segments, step_log2, frac):
        """Tabulate ``f`` (vectorised, float) on ``lo + [0, segments] * 2**-step_log2``."""
        h = 2.0 ** -step_log2
        x = lo + np.arange(segments + 1) * h
        y = f(x)
        bulge = (y[:-1] + y[1:]) / 2 - f(x[:-1] + h / 2)
        shift = np.zeros_like(y)
        shift[1:-1] = (bulge[:-1] + bulge[1:]) / 4
        entries = np.floor((y - shift) * 2.0 ** frac + 0.5).astype(np.int64)
        return cls(entries, step_log2, frac)

    @property
    def segments(self):
        return len(self.entries) - 1

    @property
    def width(self):
        """Bits of a signed entry."""
        peak = int(np.abs(self.entries).max())
        return peak.bit_length() + 1

    def evaluate(self, t, t_frac):
        """Interpolate at offsets ``t`` (int array, ``t_frac`` fraction bits, in range)."""
        b = t_frac - self.step_log2
        if b < 0:
            raise ValueError(f"input has {t_frac} fraction bits, fewer than the table step "
                             f"2**-{self.step_log2} needs")
        t = np.asarray(t, dtype=np.int64)
        i = t >> b
        if np.any(t < 0) or np.any(i > self.segments) or np.any((i == self.segments) & (t != i << b)):
            raise ValueError("interpolation input outside the table")
        i = np.minimum(i, self.segments - 1)
        r = t - (i << b)
        lo, hi = self.entries[i], self.entries[i + 1]
        return lo + shift_round((hi - lo) * r, b)
