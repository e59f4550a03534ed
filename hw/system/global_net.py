"""A net of very high fan-out on the platform's global network, where the platform has one.

A platform (see ``boards/``) may offer ``global_net(module, signal)``, which returns ``signal``
as driven onto a global routing network it adds to ``module``; :func:`global_net` asks for it
and, on any other platform or in simulation (no platform), returns ``signal`` itself. The
accelerator's datapath reset, one register that reaches every flip-flop of the datapath, is the
net it is for: nextpnr-ecp5 takes such a net across the die as ordinary wires (it promotes only
clocks), where it was the self-test's critical path (docs/build.md). Vivado replicates a
high-fan-out register itself, so the ZCU102 offers none.
"""

__all__ = ["global_net"]


def global_net(m, platform, signal):
    """``signal`` on ``platform``'s global network (buffers added to ``m``), or ``signal``."""
    buffer = getattr(platform, "global_net", None)
    return signal if buffer is None else buffer(m, signal)
