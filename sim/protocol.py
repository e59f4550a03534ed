"""A protocol checker for the cocotb benches: the VALID/READY rule on the channels a design
drives.

AXI (and every stream of ``amaranth.lib.stream``) requires that once a source raises VALID it
keeps VALID high, and its payload unchanged, until the cycle READY is high too. A master that
drops a request or changes a write beat while the slave stalls can lock up an interconnect, and
a memory model that answers at full rate would never show it. :class:`HandshakeChecker` samples
the channels at every clock edge, after everything has settled, and records each breach with
its cycle; :func:`axi_master_channels` names the channels of an AXI4 master port (AR; AW and W)
by the flattened port names of Amaranth's Verilog.

Typical use::

    checker = HandshakeChecker(dut, axi_master_channels(dut, "weights_bus"))
    ...                                       # the test runs
    checker.check()                           # AssertionError naming the first breaches
"""

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["HandshakeChecker", "axi_master_channels"]

#: The payload signals of each master-driven AXI4 channel.
_AXI_PAYLOADS = {
    "ar": ("arid", "araddr", "arlen", "arsize", "arburst", "arprot", "arcache"),
    "aw": ("awid", "awaddr", "awlen", "awsize", "awburst", "awprot", "awcache"),
    "w": ("wdata", "wstrb", "wlast"),
}


def axi_master_channels(dut, port):
    """The master-driven channels of the AXI4 port ``port`` of ``dut`` (``AR`` of a read port;
    ``AW`` and ``W`` of a write port), as ``(name, valid, ready, payload)`` tuples for
    :class:`HandshakeChecker`; payload signals the port lacks are left out."""
    channels = []
    for channel, payload in _AXI_PAYLOADS.items():
        valid = getattr(dut, f"{port}__{channel}valid", None)
        if valid is None:
            continue
        signals = [getattr(dut, f"{port}__{name}") for name in payload
                   if hasattr(dut, f"{port}__{name}")]
        channels.append((f"{port}.{channel.upper()}", valid,
                         getattr(dut, f"{port}__{channel}ready"), signals))
    return channels


class HandshakeChecker:
    """Watch ``channels`` (``(name, valid, ready, payload signals)``) from now on: a VALID that
    falls before its READY, or a payload that changes while VALID waits, is a breach.

    Parameters
    ----------
    dut : cocotb handle
    channels : list
        What :func:`axi_master_channels` returns, or tuples like it for any stream.
    clock, reset : str
        The clock the channels are sampled on, and the reset that may end an offer (AXI
        allows VALID to fall in reset).
    """

    def __init__(self, dut, channels, *, clock="clk", reset="rst"):
        self.channels = list(channels)
        self.breaches = []
        self.handshakes = dict.fromkeys((name for name, *_ in self.channels), 0)
        self._clock, self._reset = getattr(dut, clock), getattr(dut, reset)
        self._task = cocotb.start_soon(self._watch())

    async def _watch(self):
        waiting = {}                       # channel -> payload offered and not yet taken
        cycle = 0
        while True:
            await RisingEdge(self._clock)
            await ReadOnly()
            cycle += 1
            if str(self._reset.value) == "1":
                waiting.clear()
                continue
            for name, valid, ready, payload in self.channels:
                v, r = str(valid.value) == "1", str(ready.value) == "1"
                now = tuple(str(p.value) for p in payload)
                if name in waiting:
                    if not v:
                        self.breaches.append(f"cycle {cycle}: {name} VALID fell before READY")
                    elif now != waiting[name]:
                        self.breaches.append(f"cycle {cycle}: {name} payload changed while "
                                             f"VALID waited for READY")
                if v and r:
                    self.handshakes[name] += 1
                if v and not r:
                    waiting[name] = now
                else:
                    waiting.pop(name, None)

    def check(self):
        """Raise ``AssertionError`` naming the first breaches, if there were any."""
        if self.breaches:
            shown = "; ".join(self.breaches[:5])
            raise AssertionError(f"{len(self.breaches)} handshake breaches: {shown}")

    def stop(self):
        self._task.cancel()
