"""The skeleton the half-blocks share (:mod:`hw.system.attention_half`, :mod:`hw.system.mlp_half`,
:mod:`hw.system.moe_half`): their input buffer, their run, their compute-unit calls and the row
indices they hand to their gathers and scatters.

A half-block takes a command, loads its input rows into an on-chip buffer, reads them back
(row by row, through :class:`hw.streams.gather.Gather`) into LayerNorm and the residual add, and
makes its compute-unit calls in order. Each piece is written once here; the halves state only what
is theirs (which calls, which rows, where results go).
"""

from amaranth import Mux, Signal, unsigned
from amaranth.lib import data, memory, stream
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.numerics import DEFAULT

from hw.streams.pipeline import countdown
from hw.streams.scatter import Scatter

__all__ = ["members", "shift_command", "row_buffer", "load_then_run", "issue_calls", "index_rows",
           "count_rows", "rows_written"]


def shift_command(compute, calls, *, tokens=None, **more):
    """A half's command: ``tokens`` and the output shift of each of its compute-unit ``calls``
    (``<call>_shift``), as wide as ``compute``'s command fields, then the fields ``more``.
    ``tokens`` (optional) is the most rows of a run, when they are more than one call's."""
    shift = compute.command_layout["shift"].shape
    width = (compute.command_layout["tokens"].shape.width if tokens is None
             else ceil_log2(tokens + 1))
    return data.StructLayout({"tokens": unsigned(width), **more,
                              **{f"{call}_shift": shift for call in calls}})


def members(*, command, lanes, layernorm, compute=None, **more):
    """The members every half has: ``cmd`` (``command``), token rows ``x`` and ``o``
    (``lanes`` activations a beat), LayerNorm parameters ``p`` (a run's set is taken only once
    the run's command is, :func:`hw.units.layernorm.run_parameters`), ``cycles`` and ``error``;
    with ``compute``, the weights ``w`` and biases ``b`` of its calls; then ``more``."""
    beat = data.ArrayLayout(DEFAULT.act.width, lanes)
    return {
        "cmd": In(stream.Signature(command)),
        "x": In(stream.Signature(beat)),
        "p": In(layernorm.p.signature.flip()),
        **({"w": In(compute.w.signature.flip()), "b": In(compute.b.signature.flip())}
           if compute is not None else {}),
        "o": Out(stream.Signature(beat)),
        "cycles": Out(32),
        "error": Out(1),
        **more,
    }


def row_buffer(m, name, *, fmt, lanes, depth, gathers):
    """A buffer of token rows (``depth`` beats of ``lanes`` values in ``fmt``) read by each of
    ``gathers`` through its own read port; returns the memory's write port."""
    beat = data.ArrayLayout(fmt.width, lanes)
    m.submodules[name] = buffer = memory.Memory(shape=beat, depth=depth, init=[])
    for gather in gathers:
        port = buffer.read_port()
        m.d.comb += [port.addr.eq(gather.rd_addr), gather.rd_data.eq(port.data)]
    return buffer.write_port()


def load_then_run(m, half, write, row_beats, *, depth, preload=False, on_command=(),
                  on_prepare=(), on_loaded=()):
    """The run of a half that loads its input before it computes.

    ``IDLE``: ``half.cmd`` is ready; a command does ``on_command``. ``PREPARE``: the run's
    totals are computed from the command's registers into registers (``row_beats``, an
    expression of them, and ``on_prepare``, more such statements), ``ARM``: the counts of the
    load are set from them; so no product or comparison of a run-time total sits between a
    handshake and a register. ``LOAD``: ``half.x`` streams into the buffer (``write``, of
    ``depth`` beats) until ``row_beats`` beats are in; then ``on_loaded``, ``half.cycles``
    restarts and the run is on. ``RUN``: ``half.cycles`` counts until the last of
    ``row_beats`` beats leaves on ``half.o``.

    With ``preload`` (a machine that takes a batch, :mod:`model.schedule`), the buffer also
    takes rows in ``IDLE``, before the run's command: a stage before this one may have rows
    to give before the program can launch this one. ``REMAIN`` (a cycle more per run) then
    counts what is left to load.

    Returns ``(running, begin, total)``: ``running`` is high from the end of the load to the
    last beat out; ``begin`` (combinational) in the cycle the load ends; ``total`` is the
    register of ``row_beats``, set from ``ARM`` on.
    """
    total = Signal(len(write.addr) + 1, name="row_beats")
    remaining = Signal(len(write.addr) + 1, name="beats_to_load")
    loaded = Signal(len(write.addr), name="loaded")       # beats of x in
    room = Signal(init=1, name="room")                    # loaded < depth, in IDLE
    running = Signal()
    idle = Signal(init=1)
    arm, begin = Signal(), Signal()
    load_active, load_last = countdown(m, name="load", load=arm,
                                       total=remaining if preload else total,
                                       step=half.x.valid & half.x.ready)
    _, send_last = countdown(m, name="send", load=begin, total=total,
                             step=half.o.valid & half.o.ready)
    # cmd.ready is a register (high in IDLE), not a decode of the state: the sequencer steps
    # its program on the handshake.
    m.d.comb += half.cmd.ready.eq(idle)
    m.d.comb += [write.addr.eq(loaded), write.data.eq(half.x.payload)]

    def take(active):
        m.d.comb += [half.x.ready.eq(active), write.en.eq(half.x.valid & active)]
        with m.If(half.x.valid & active):
            m.d.sync += loaded.eq(loaded + 1)

    with m.FSM():
        with m.State("IDLE"):
            if preload:
                take(room)
                with m.If(half.x.valid & room):
                    m.d.sync += room.eq(loaded != depth - 1)
            with m.If(half.cmd.valid):
                m.d.sync += [idle.eq(0), *on_command]
                if not preload:
                    m.d.sync += loaded.eq(0)
                m.next = "PREPARE"
        with m.State("PREPARE"):
            m.d.sync += [total.eq(row_beats), *on_prepare]
            m.next = "REMAIN" if preload else "ARM"
        if preload:
            with m.State("REMAIN"):
                m.d.sync += remaining.eq(total - loaded)
                m.next = "ARM"
        with m.State("ARM"):
            m.d.comb += arm.eq(1)
            m.next = "LOAD"
            if preload:
                with m.If(remaining == 0):            # every row came before the command
                    m.d.comb += begin.eq(1)
                    m.d.sync += [half.cycles.eq(0), running.eq(1), *on_loaded]
                    m.next = "RUN"
        with m.State("LOAD"):
            take(load_active)
            with m.If(half.x.valid & load_active & load_last):
                m.d.comb += begin.eq(1)
                m.d.sync += [half.cycles.eq(0), running.eq(1), *on_loaded]
                m.next = "RUN"
        with m.State("RUN"):
            m.d.sync += half.cycles.eq(half.cycles + 1)
            with m.If(half.o.valid & half.o.ready & send_last):
                m.d.sync += [running.eq(0), idle.eq(1)]
                if preload:
                    m.d.sync += [loaded.eq(0), room.eq(1)]
                m.next = "IDLE"
    return running, begin, total


def issue_calls(m, cu, calls, *, start, tokens, again=0):
    """The compute unit's ``calls`` (dicts of its command fields but ``tokens``), one after the
    other on ``cu.cmd`` from the cycle after ``start``, and once more from the top each time
    the last is taken while ``again`` (a register) is high. ``cu.cmd.valid`` is a register (set
    by ``start``, cleared as the last call is taken), so that no decoding of the half's state
    sits in front of the compute unit's command port. Every field is assigned in every branch:
    a constant driven alone into part of a signal becomes an input-less ``always @*`` in the
    Verilog, which simulators never run. Returns a flag, high as the last call is taken."""
    issued = Signal(range(len(calls)), name="calls")
    for n, call in enumerate(calls):
        with (m.If(issued == n) if n == 0 else m.Elif(issued == n)):
            m.d.comb += [cu.cmd.payload.tokens.eq(tokens)]
            m.d.comb += [cu.cmd.payload[name].eq(value) for name, value in call.items()]
    last = Signal(name="last_call")
    m.d.comb += last.eq(cu.cmd.valid & cu.cmd.ready & (issued == len(calls) - 1))
    with m.If(start):
        m.d.sync += [issued.eq(0), cu.cmd.valid.eq(1)]
    with m.Elif(cu.cmd.valid & cu.cmd.ready):
        m.d.sync += issued.eq(issued + 1)
        with m.If(last):
            m.d.sync += [issued.eq(0), cu.cmd.valid.eq(again)]
    return last


def index_rows(m, port, counter, count, beats, enable=1, **fields):
    """Row indices ``0 .. count - 1`` of ``beats`` beats each on a gather's or scatter's
    ``idx`` stream while ``enable``, counted in ``counter``; ``fields`` sets the index's other
    fields."""
    m.d.comb += [port.valid.eq(enable & (counter < count)),
                 port.payload.row.eq(counter), port.payload.beats.eq(beats)]
    for name, value in fields.items():
        m.d.comb += port.payload[name].eq(value)
    with m.If(port.valid & port.ready):
        m.d.sync += counter.eq(counter + 1)


def count_rows(m, beat_taken, row_beats, count, *, restart, name):
    """Whole rows of ``row_beats`` beats counted up in ``count`` (a signal) as ``beat_taken``
    marks each beat; ``restart`` clears the count and the beat within the row."""
    beat = Signal(range(row_beats), name=f"{name}_beat")
    with m.If(restart):
        m.d.sync += [count.eq(0), beat.eq(0)]
    with m.Elif(beat_taken):
        m.d.sync += beat.eq(Mux(beat == row_beats - 1, 0, beat + 1))
        with m.If(beat == row_beats - 1):
            m.d.sync += count.eq(count + 1)


def rows_written(m, scatter, row_beats, count, *, restart, name):
    """Rows a scatter has written into its buffer: it takes a row's last beat on ``i``, then
    writes it :attr:`Scatter.LATENCY` cycles later, so a row may be read back from the cycle
    after that. ``count`` (a signal) counts the rows taken; the result is its copy delayed by
    ``Scatter.LATENCY + 1`` cycles. ``restart`` clears the count and every copy at once, so a
    unit that starts with the command never sees the last run's rows."""
    count_rows(m, scatter.i.valid & scatter.i.ready, row_beats, count, restart=restart,
               name=name)
    written = count
    for n in range(Scatter.LATENCY + 1):
        copy = Signal.like(count, name=f"{name}_written_{n}")
        m.d.sync += copy.eq(Mux(restart, 0, written))
        written = copy
    return written
