"""Golden twins of hw/arith/ (the same module names): arithmetic: the multiplier and the function
units (interpolated tables, exp, reciprocal, inverse square root, GELU)."""
