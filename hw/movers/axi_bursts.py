"""The burst splitter of the AXI DMAs: a command (address, beats) in, AXI4 INCR bursts out, each
at most 256 beats long and never crossing a 4 KiB boundary. Twin of
:func:`model.movers.axi_bursts.bursts`; used by :class:`hw.movers.axi_reader.AxiReader` (for AR) and
:class:`hw.movers.axi_writer.AxiWriter` (for AW), each through :func:`address_channel`, which puts
the bursts on the bus at most ``max_outstanding`` ahead of their completion.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from hw import checks
from hw.movers.axi import (BOUNDARY, BURST_INCR, CACHE_NORMAL, MAX_BURST, PROT_DATA,
                           dma_command_layout, offer_until_taken)

__all__ = ["BurstSplitter", "burst_layout", "address_channel"]


def burst_layout(addr_width):
    """One burst: its byte address and its length in AXI's encoding, beats minus one (the
    ``araddr``/``arlen`` or ``awaddr``/``awlen`` of an address channel)."""
    return data.StructLayout({"addr": unsigned(addr_width), "len": unsigned(8)})


class BurstSplitter(wiring.Component):
    """Split each command on ``i`` into the INCR bursts of :func:`model.movers.axi_bursts.bursts`,
    on ``o``.

    Each burst is as long as it can be: the beats left, the beats to the next ``boundary``, or
    ``max_burst``, whichever is least. A command whose address is not a multiple of
    ``data_width / 8`` bytes or whose beat count is zero is dropped with ``error`` set.

    Latency: a command taken on ``i`` at a clock edge offers its first burst on ``o`` two
    cycles later. ``o.valid`` is high while a burst is on offer, and the burst on offer does not
    change before it is taken, so ``o`` may drive an AXI address channel (``ARVALID``/``AWVALID``
    stay high with a stable payload until ``READY``) through any gate that, once open, stays open
    until the handshake.

    Throughput: one burst every two cycles while ``o.ready`` is high (a burst of up to 256
    beats, so the address channel stays far ahead of the data). ``i.ready`` is low from a
    command's acceptance until the cycle after its last burst is taken, so at full rate a
    command of ``B`` bursts takes ``1 + 2B`` cycles and a dropped command one. With
    ``K = boundary / (data_width / 8)`` beats per boundary, ``M = max_burst``, and the command's
    first ``f = min(beats, K - (addr / (data_width / 8)) mod K)`` beats before a boundary and
    ``r = beats - f`` after it::

        B = ceil(f / M) + (r // K) * ceil(K / M) + ceil((r mod K) / M)

    which is the number of ``boundary`` pages the command touches when ``K <= M`` (at AXI's
    4 KiB and 256 beats: ``data_width >= 128``).

    Timing: every path has one carry chain. The beats to the boundary are kept in a register
    (set from the command's address, then stepped with each burst); a cycle after each step the
    burst length, the least of the beats left, the beats to the boundary and ``max_burst``, is
    registered; the burst taken steps the address, the beats left and the beats to the
    boundary, one adder each.

    Parameters
    ----------
    addr_width : int
        Bits of a byte address.
    data_width : int
        Bits of a beat: a power of two, 8 to 1024.
    max_beats : int
        Largest beat count of one command.
    max_burst : int
        Longest burst, 1 to 256 beats; AXI4's 256 by default.
    boundary : int
        Bytes a burst may not cross: a power of two of at least ``data_width / 8``; AXI's 4096
        by default.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"addr", "beats"})))``
        Commands; the layout is :func:`hw.movers.axi.dma_command_layout`'s.
    o : ``Out(stream.Signature(burst_layout(addr_width)))``
        Bursts, in order: ``addr`` and ``len`` (beats minus one).
    error : ``Out(1)``
        Sticky: a command was dropped.

    Raises
    ------
    ValueError
        If a parameter is out of range; the message names it.
    """

    def __init__(self, *, addr_width, data_width, max_beats, max_burst=MAX_BURST,
                 boundary=BOUNDARY):
        command = dma_command_layout("BurstSplitter", addr_width=addr_width,
                                     data_width=data_width, max_beats=max_beats)
        checks.in_range("BurstSplitter", "max_burst", max_burst, 1, MAX_BURST)
        if not (checks.is_int(boundary) and boundary >= data_width // 8
                and boundary & (boundary - 1) == 0):
            raise ValueError(f"BurstSplitter boundary must be a power of two of at least "
                             f"{data_width // 8} bytes, not {boundary!r}")
        self._data_width, self._max_burst, self._boundary = data_width, max_burst, boundary
        super().__init__({
            "i": In(stream.Signature(command)),
            "o": Out(stream.Signature(burst_layout(addr_width))),
            "error": Out(1),
        })

    @property
    def size(self):
        """The bursts' beat size in AXI's encoding (``AxSIZE``): log2 of ``data_width / 8``."""
        return exact_log2(self._data_width // 8)

    def elaborate(self, platform):
        m = Module()
        size = self.size
        boundary, max_burst = self._boundary, self._max_burst
        page_beats = boundary >> size
        addr = Signal.like(self.i.payload.addr)
        left = Signal.like(self.i.payload.beats)
        to_boundary = Signal(range(page_beats + 1))     # beats from addr to the next boundary
        burst = Signal(range(max_burst + 1))            # the burst on offer, when offering
        active = Signal()                               # a command is being split
        offering = Signal()                             # ... and its next burst is on offer

        bad = self.i.payload.beats == 0
        if size:
            bad = bad | (self.i.payload.addr[:size] != 0)
        m.d.comb += self.i.ready.eq(~active)
        with m.If(self.i.valid & ~active):
            with m.If(bad):
                m.d.sync += self.error.eq(1)
            with m.Else():
                offset = self.i.payload.addr[:ceil_log2(boundary)]
                m.d.sync += [addr.eq(self.i.payload.addr), left.eq(self.i.payload.beats),
                             to_boundary.eq((boundary - offset) >> size), active.eq(1)]

        # The burst length, a cycle after the beats left and to the boundary are known.
        with m.If(active & ~offering):
            with m.If((left <= to_boundary) & (left <= max_burst)):
                m.d.sync += burst.eq(left)
            with m.Elif(to_boundary <= max_burst):
                m.d.sync += burst.eq(to_boundary)
            with m.Else():
                m.d.sync += burst.eq(max_burst)
            m.d.sync += offering.eq(1)

        m.d.comb += [self.o.valid.eq(offering), self.o.payload.addr.eq(addr),
                     self.o.payload.len.eq(burst - 1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [addr.eq(addr + (burst << size)), left.eq(left - burst),
                         offering.eq(0)]
            # A burst ends at the boundary or before it (then it is max_burst long).
            with m.If(burst == to_boundary):
                m.d.sync += to_boundary.eq(page_beats)
            with m.Else():
                m.d.sync += to_boundary.eq(to_boundary - burst)
            with m.If(left == burst):
                m.d.sync += active.eq(0)
        return m


def address_channel(m, bursts, bus, channel, *, max_outstanding, done, stop=0):
    """Issue the bursts of ``bursts`` (a :class:`BurstSplitter`) on the address channel
    ``channel`` of ``bus`` (``"ar"`` of :func:`hw.movers.axi.axi4_read`, ``"aw"`` of
    :func:`hw.movers.axi.axi4_write`), at most ``max_outstanding`` ahead of their completion.

    A burst goes out while fewer than ``max_outstanding`` are outstanding; ``done`` (one bit,
    the last read beat of a burst or a write response) ends one. While a burst waits for
    ``READY`` the count can only fall, so ``VALID``, once high, stays high with the same
    payload until the handshake, as AXI requires. No cycle is added: the burst on offer is on
    the bus in the same cycle. While ``stop`` is high no new burst is offered; one on offer
    stays until taken (:func:`hw.movers.axi.offer_until_taken`).

    Parameters
    ----------
    m : amaranth.hdl.Module
        The DMA's module; the count of outstanding bursts is a register of its ``sync`` domain.
    bursts : BurstSplitter
    bus : wiring interface
        The DMA's AXI4 master port.
    channel : str
        ``"ar"`` or ``"aw"``: the prefix of the address channel's members.
    max_outstanding : int
    done : value-like
        One bit: a burst is complete this cycle.
    stop : value-like
        One bit: offer no new burst.

    Returns
    -------
    (issued, outstanding)
        ``issued``: a burst is taken this cycle; ``outstanding``: the bursts issued and not
        done (a register).
    """
    outstanding = Signal(range(max_outstanding + 1), name="outstanding")
    room = outstanding < max_outstanding

    def field(name):
        return getattr(bus, channel + name)

    valid = offer_until_taken(m, bursts.o.valid & room, field("ready"), stop, name=channel)
    m.d.comb += [field("valid").eq(valid),
                 bursts.o.ready.eq(field("ready") & valid),
                 field("addr").eq(bursts.o.payload.addr), field("len").eq(bursts.o.payload.len),
                 field("size").eq(bursts.size),
                 field("burst").eq(BURST_INCR), field("id").eq(0),
                 field("prot").eq(PROT_DATA), field("cache").eq(CACHE_NORMAL)]
    issued = field("valid") & field("ready")
    m.d.sync += outstanding.eq(outstanding + issued - done)
    return issued, outstanding
