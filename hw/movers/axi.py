"""AXI4 signatures, defined once for every master of the design: :func:`axi4_read` (AR and R
channels), :func:`axi4_write` (AW, W and B channels) and :func:`axi4_lite`. Names are as in the
AXI spec, so that Amaranth's flattened ports ``<port>__araddr`` and ``<port>__awaddr`` bind to
cocotbext-axi (``AxiReadBus.from_prefix(dut, "<port>_")``, ``AxiWriteBus.from_prefix(dut,
"<port>_")``) and to Vivado's interface inference alike."""

from amaranth import Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw import checks

__all__ = ["axi4_read", "axi4_write", "axi4_lite", "dma_command_layout", "offer_until_taken",
           "RESP_OKAY", "RESP_SLVERR", "BURST_INCR", "MAX_BURST", "BOUNDARY", "PROT_DATA",
           "CACHE_NORMAL"]

RESP_OKAY = 0
RESP_SLVERR = 2
BURST_INCR = 1
#: Longest INCR burst, in beats.
MAX_BURST = 256
#: A burst may not cross this many bytes.
BOUNDARY = 4096
#: AxPROT of every DMA access: unprivileged, non-secure, data. A Zynq UltraScale+ running Linux
#: keeps its DRAM non-secure, and the SMMU/XMPU may refuse a secure access from the PL.
PROT_DATA = 0b010
#: AxCACHE of every DMA access: normal memory, non-cacheable, bufferable (AXI4 0b0011), so that
#: the interconnect may merge and buffer writes; device memory (0b0000) would forbid both.
CACHE_NORMAL = 0b0011


def axi4_read(*, addr_width, data_width, id_width=1):
    """The read half of an AXI4 master port (AR and R channels), as seen by the master."""
    return wiring.Signature({
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arprot": Out(3), "arcache": Out(4), "arvalid": Out(1),
        "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def axi4_write(*, addr_width, data_width, id_width=1):
    """The write half of an AXI4 master port (AW, W and B channels), as seen by the master.

    ``wstrb`` has one bit per byte of ``wdata``.
    """
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awprot": Out(3), "awcache": Out(4), "awvalid": Out(1),
        "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


def axi4_lite(*, addr_width, data_width=32):
    """An AXI4-Lite port (AW, W, B, AR, R), as seen by the master; a slave takes
    ``In(axi4_lite(...))``."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def dma_command_layout(owner, *, addr_width, data_width, max_beats, max_outstanding=None):
    """The command ``{addr, beats}`` of an AXI DMA (:class:`hw.movers.axi_reader.AxiReader`,
    :class:`hw.movers.axi_writer.AxiWriter`) and of its burst splitter
    (:class:`hw.movers.axi_bursts.BurstSplitter`), after checking its parameters (ValueError naming
    the field); ``max_outstanding`` is checked when given."""
    if not (checks.is_int(data_width) and 8 <= data_width <= 1024
            and data_width & (data_width - 1) == 0):
        raise ValueError(f"{owner} data_width must be a power of two in 8..1024, "
                         f"not {data_width!r}")
    for name, value in (("addr_width", addr_width), ("max_beats", max_beats),
                        ("max_outstanding", max_outstanding)):
        if name != "max_outstanding" or value is not None:
            checks.positive(owner, name, value)
    return data.StructLayout({"addr": unsigned(addr_width),
                              "beats": unsigned(ceil_log2(max_beats + 1))})


def offer_until_taken(m, valid, ready, stop, *, name):
    """``valid`` gated by ``stop`` the way AXI allows: while ``stop`` is high no new request is
    offered, but one already on offer (``valid`` high and not taken in the cycle before) stays
    until its handshake. ``valid`` must itself keep a request on offer with a stable payload
    until taken (a burst splitter's output, a skid buffer's); the result drives the channel's
    ``VALID``, and the handshake is ``result & ready``.

    Returns the gated valid; ``{name}_held``, a register of ``m``'s ``sync`` domain, says a
    request is on offer since an earlier cycle.
    """
    held = Signal(name=f"{name}_held")
    gated = Signal(name=f"{name}_valid")
    m.d.comb += gated.eq(valid & (~stop | held))
    m.d.sync += held.eq(gated & ~ready)
    return gated
