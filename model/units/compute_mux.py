"""What the compute-unit mux (``hw/units/compute_mux.py``) gives each client: the results of its own
calls, in its own order, as if it had the unit to itself."""

from model.units.compute_unit import linear

__all__ = ["serve"]


def serve(calls, numerics):
    """Run ``calls``, ``(client, x, x_frac, w, b, out_fmt, gelu)`` in the order the unit accepts
    them, on one unit; returns ``{client: [results of its calls, in order]}``."""
    results = {}
    for client, x, x_frac, w, b, out_fmt, gelu in calls:
        results.setdefault(client, []).append(
            linear(x, x_frac, w, b, out_fmt, numerics, apply_gelu=gelu))
    return results
