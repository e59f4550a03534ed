"""Stream router: one stream to several destinations, job by job.

A job names a destination and a number of transfers; the router passes that many transfers from
``i`` to ``o[dest]``, then takes the next job. Jobs may be queued ahead (up to ``depth``), so a
producer working through a list of reads (an AXI reader, a weight fetch) has each read's data go
where the sequencer sent it, however far ahead the sequencer runs.

No register on the data path (``valid``, ``ready`` and the payload pass through multiplexers), so
it costs no cycle; one transfer per cycle. A job of zero transfers is skipped.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["StreamRouter"]


class StreamRouter(wiring.Component):
    """Route ``i`` to ``destinations`` outputs by a queue of jobs.

    Parameters
    ----------
    shape : shape-castable
        Payload of the streams.
    destinations : int
    max_beats : int
        Largest job.
    depth : int
        Jobs queued ahead.

    Members
    -------
    job : ``In(stream.Signature(StructLayout({"dest", "beats"})))``
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape)).array(destinations)``
    """

    def __init__(self, shape, *, destinations, max_beats, depth=4):
        self._destinations, self._depth = destinations, depth
        self.job_layout = data.StructLayout({
            "dest": unsigned(max(1, ceil_log2(destinations))),
            "beats": unsigned(ceil_log2(max_beats + 1))})
        super().__init__({
            "job": In(stream.Signature(self.job_layout)),
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)).array(destinations),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.jobs = jobs = fifo.SyncFIFOBuffered(width=self.job_layout.size,
                                                         depth=self._depth)
        wiring.connect(m, wiring.flipped(self.job), jobs.w_stream)
        queued = jobs.r_stream                          # the job at the head of the queue
        head = data.View(self.job_layout, queued.payload)
        count = Signal.like(head.beats)
        transfer = self.i.valid & self.i.ready
        with m.If(queued.valid & (head.beats == 0)):
            m.d.comb += queued.ready.eq(1)
        with m.Elif(transfer):
            with m.If(count == head.beats - 1):
                m.d.sync += count.eq(0)
                m.d.comb += queued.ready.eq(1)
            with m.Else():
                m.d.sync += count.eq(count + 1)
        active = queued.valid & (head.beats != 0)
        for dest, port in enumerate(self.o):
            selected = active & (head.dest == dest)
            m.d.comb += [port.payload.eq(self.i.payload),
                         port.valid.eq(selected & self.i.valid)]
            with m.If(selected):
                m.d.comb += self.i.ready.eq(port.ready)
        return m
