"""Gather: stream token rows out of an activation buffer by an index list; twin of
:mod:`model.streams.gather`.

Each entry of ``idx`` names a row and how many beats of it to read (a dense layer reads rows
0..T-1, an expert its queue); the row's beats follow on ``o`` in order. The buffer is outside the
unit: it drives a synchronous read port (``rd_addr`` -> ``rd_data`` one cycle later), with row
``r`` beat ``b`` at address ``r * row_beats + b``.

Latency of 2 cycles from an accepted index to its first beat on ``o``; throughput of one beat per
cycle, also across rows. An index beyond the buffer or a beat count of zero or beyond
``row_beats`` sets ``error`` (sticky) and the entry is dropped.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw import checks

__all__ = ["Gather"]


def times_constant(value, k):
    """``value * k`` for a constant ``k > 0``, as a sum of shifted copies of ``value`` (one per
    set bit of ``k``): a multiply that Yosys would put in a DSP48E2 between the index port and a
    register, which no pipeline register could be absorbed into; the few adds are shorter."""
    return sum(value << bit for bit in range(k.bit_length()) if k >> bit & 1)


def row_index_layout(rows, row_beats):
    return data.StructLayout({"row": unsigned(ceil_log2(rows + 1)),
                              "beats": unsigned(ceil_log2(row_beats + 1))})


class Gather(wiring.Component):
    """Read rows of ``lanes`` x ``width``-bit beats by index.

    Parameters
    ----------
    lanes, width : int
        Beat shape: ``lanes`` signed values of ``width`` bits.
    rows : int
        Rows in the buffer.
    row_beats : int
        Beats per row in the buffer (its pitch).

    Members
    -------
    idx : ``In(stream.Signature(StructLayout({"row", "beats"})))``
    o : ``Out(stream.Signature(ArrayLayout(signed(width), lanes)))``
    rd_addr : ``Out(range(rows * row_beats))``
    rd_en : ``Out(1)``
        A read of ``rd_addr`` is issued this cycle; its data is taken from ``rd_data`` in the
        next (so gathers that never read in the same cycle can share a read port).
    rd_data : ``In(ArrayLayout(signed(width), lanes))``
    busy : ``Out(1)``
        Reads are issued or beats wait to leave on ``o``.
    error : ``Out(1)``
    """

    # Covers the credit loop: read, FIFO write, FIFO output register, pop.
    _FIFO_DEPTH = 4

    def __init__(self, *, lanes, width, rows, row_beats):
        for name, value in (("lanes", lanes), ("width", width), ("rows", rows),
                            ("row_beats", row_beats)):
            checks.positive("Gather", name, value)
        self._rows, self._row_beats = rows, row_beats
        beat = data.ArrayLayout(signed(width), lanes)
        super().__init__({
            "idx": In(stream.Signature(row_index_layout(rows, row_beats))),
            "o": Out(stream.Signature(beat)),
            "rd_addr": Out(range(rows * row_beats)),
            "rd_en": Out(1),
            "rd_data": In(beat),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._FIFO_DEPTH
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(
            width=len(self.o.payload.as_value()), depth=depth)

        active = Signal()
        base = Signal(range(self._rows * self._row_beats))
        beat = Signal(range(self._row_beats))
        left = Signal(range(self._row_beats))          # beats after the current one
        last = Signal()                                # left == 0, registered
        in_flight = Signal()                           # a read answered next cycle
        queued = Signal(range(depth + 2))              # reads issued, not yet sent on o
        issue = active & (queued < depth)

        bad = ((self.idx.payload.row >= self._rows) | (self.idx.payload.beats == 0) |
               (self.idx.payload.beats > self._row_beats))
        m.d.comb += self.idx.ready.eq(~active | (issue & last))
        with m.If(self.idx.valid & self.idx.ready):
            # Loaded whether or not the entry is bad (unused while inactive), so that only
            # active waits for the checks.
            m.d.sync += [beat.eq(0), left.eq(self.idx.payload.beats - 1),
                         last.eq(self.idx.payload.beats == 1),
                         base.eq(times_constant(self.idx.payload.row, self._row_beats))]
            with m.If(bad):
                m.d.sync += [self.error.eq(1), active.eq(0)]
            with m.Else():
                m.d.sync += active.eq(1)
        with m.Elif(issue & last):
            m.d.sync += active.eq(0)
        # The row's last beat as a flag of its own: a count compared with the beat count
        # would put a carry chain in front of the index handshake.
        with m.If(issue & ~last):
            m.d.sync += [beat.eq(beat + 1), left.eq(left - 1), last.eq(left == 1)]

        m.d.comb += [self.rd_addr.eq(base + beat), self.rd_en.eq(issue),
                     self.busy.eq(active | (queued != 0))]
        m.d.sync += in_flight.eq(issue)
        m.d.comb += [queue.w_en.eq(in_flight), queue.w_data.eq(self.rd_data),
                     self.o.valid.eq(queue.r_rdy), self.o.payload.eq(queue.r_data),
                     queue.r_en.eq(self.o.ready)]
        m.d.sync += queued.eq(queued + issue - (self.o.valid & self.o.ready))
        return m
