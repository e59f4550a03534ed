"""Arithmetic: the multiplier and the function units (interpolated tables, exp, reciprocal, inverse
square root, GELU)."""
