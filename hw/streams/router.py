"""Stream router: one stream to several destinations, job by job. Twin of
:func:`model.streams.router.route`.

A job names a destination and a number of transfers; the router passes that many transfers from
``i`` to ``o[dest]``, then takes the next job. Jobs may be queued ahead (up to ``depth``, plus two
waiting behind the running one), so a producer working through a list of reads (an AXI
reader, a weight fetch) has each read's data go where the sequencer sent it, however far ahead
the sequencer runs.

No register on the data path (``valid``, ``ready`` and the payload pass through multiplexers),
so it costs no cycle; one transfer per cycle, also from one job to the next when the next was
queued a few cycles before the running one's last transfer. A job of zero transfers is skipped.

Latency: a job pushed into an idle router steers its first transfer three cycles later (the
queue, a waiting job, the running job; each a register).

Timing: the job queue feeds two registers of waiting jobs (each job's length minus one and
whether it is one computed on the way in), filled while fewer than two wait, so the queue's
``ready`` is a register's. The first waiting job moves into the running job's registers at the
running job's last transfer. The running job counts down and knows a cycle ahead that its next
transfer is its last, so the handshake only decides whether registers move: no adder or
comparator sits between ``ready`` and a register.
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
        queued = data.View(self.job_layout, jobs.r_stream.payload)
        dest_shape, beats_shape = self.job_layout["dest"].shape, self.job_layout["beats"].shape

        # Two waiting jobs in registers, filled from the queue while fewer than two wait: the
        # queue's ready is a register's, and the running job can take a new one every cycle.
        Job = data.StructLayout({"dest": dest_shape,
                                 "left": beats_shape,           # transfers minus one
                                 "last": 1})                    # ... which is zero
        waiting = [Signal(Job, name=f"waiting_{n}") for n in range(2)]
        count = Signal(range(3))                        # jobs waiting
        popped = Signal(Job)
        m.d.comb += [jobs.r_stream.ready.eq(count < 2),
                     popped.dest.eq(queued.dest), popped.left.eq(queued.beats - 1),
                     popped.last.eq(queued.beats == 1)]
        # A job of zero transfers is dropped as it leaves the queue.
        append = jobs.r_stream.valid & (count < 2) & (queued.beats != 0)

        # The running job.
        running = Signal(Job)
        valid = Signal()
        transfer = self.i.valid & self.i.ready
        take = ~valid | (transfer & running.last)      # the running job ends, or there is none
        move = take & (count != 0)
        with m.If(take):
            m.d.sync += [valid.eq(count != 0), running.eq(waiting[0])]
        with m.Elif(transfer):
            m.d.sync += [running.left.eq(running.left - 1), running.last.eq(running.left == 1)]
        with m.If(move):
            with m.If(count == 2):
                m.d.sync += waiting[0].eq(waiting[1])
                with m.If(append):
                    m.d.sync += waiting[1].eq(popped)
            with m.Elif(append):
                m.d.sync += waiting[0].eq(popped)
        with m.Elif(append):
            with m.If(count == 0):
                m.d.sync += waiting[0].eq(popped)
            with m.Else():
                m.d.sync += waiting[1].eq(popped)
        m.d.sync += count.eq(count + append - move)
        dest = running.dest

        for index, port in enumerate(self.o):
            selected = valid & (dest == index)
            m.d.comb += [port.payload.eq(self.i.payload),
                         port.valid.eq(selected & self.i.valid)]
            with m.If(selected):
                m.d.comb += self.i.ready.eq(port.ready)
        return m
