"""The sequencer: an interpreter of :mod:`model.schedule`'s program, held in a ROM.

Each operation of the program is one word of the program memory (:attr:`Sequencer.word_layout`:
an opcode and a union of the operations' operands, each field as wide as the program needs).
The interpreter reads the word at ``pc``, decodes it into registers (the addresses added, the
shifts looked up), offers its transfer or tests its condition, and steps to the next word when
the operation completes: **three cycles per operation** at best (four for a wait, whose
condition is registered), so that no path runs from a handshake through the decoding into the
program memory. The m3vit-tiny program has 187 operations, so this costs a few hundred cycles
per image, while the units work. START restarts at word 0; ``stop`` (a
soft reset, an error, the end of the run) ends the run and leaves every output quiet.

* ``read``, ``fetch`` and ``write`` offer one payload on the stream of the same name (the
  machine forks it to the port's reader and router); addresses are the host's buffer address
  (:class:`model.schedule.Buffer`) plus the program's offset.
* ``command`` offers the unit's command. Its fields are program constants, entries of the shift
  table (``shifts``, read from the weights image at the start), or addresses in the weights
  image; a command for one task only is skipped (one cycle) in a run of another task.
* ``wait`` holds until its condition; ``route`` and ``mark`` set outputs and take one cycle;
  ``end`` raises ``done`` for one cycle.

The routes, the progress mark and the accepted-call counts are state of the machine, not of
the program: the program only says when they change.
"""

from amaranth import Array, Module, Signal, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model import schedule
from model.schedule import (Address, Command, End, Fetch, Mark, Read, Route, Shift, Source,
                            Unit, Until, Wait, Write)

__all__ = ["Sequencer", "Opcode"]


class Opcode(enum.Enum, shape=3):
    READ = 0
    FETCH = 1
    COMMAND = 2
    WAIT = 3
    ROUTE = 4
    MARK = 5
    WRITE = 6
    END = 7


_OPCODES = {Read: Opcode.READ, Fetch: Opcode.FETCH, Command: Opcode.COMMAND, Wait: Opcode.WAIT,
            Route: Opcode.ROUTE, Mark: Opcode.MARK, Write: Opcode.WRITE, End: Opcode.END}


def _bits(values):
    """Bits of an unsigned field that holds every value of ``values``."""
    return unsigned(max(1, ceil_log2(max(values, default=0) + 1)))


class Sequencer(wiring.Component):
    """Runs ``program`` (:func:`model.schedule.program`).

    Parameters
    ----------
    program : tuple of model.schedule operations
    commands : dict of Unit to data.Layout
        Each unit's command layout: the payload of its ``<unit>_cmd`` stream.
    shift_count : int
        Entries of the shift table.
    accept_width : int
        Bits of the accepted-call counters.
    tasks : int
    addr_width : int

    Members
    -------
    start, stop : ``In(1)``
        Start the program at word 0 (the same cycle's ``stop`` is ignored); end the run.
    task : ``In(range(tasks))``
    weights_addr, image_addr, output_addr : ``In(addr_width)``
    shifts : ``In(ArrayLayout(8, shift_count))``
    shift_beats, accepted, moe_calls_taken, written, writer_idle : ``In``
        What waits wait for: beats of the shift table in; calls accepted per dense client
        (:class:`Unit` order, EMBED to MLP); the MoE half's calls all accepted; output beats
        written; the writer idle.
    image_read, params_read : ``Out(stream.Signature(StructLayout({"addr", "beats", "to"})))``
    fetch : ``Out(stream.Signature(StructLayout({"addr", "weight_beats", "bias_beats", "to",
    "w_beats", "b_beats"})))``
    write : ``Out(stream.Signature(StructLayout({"addr", "beats"})))``
    embed_cmd, attention_cmd, mlp_cmd, moe_cmd : ``Out(stream.Signature(commands[unit]))``
    into_attention, into_output : ``Out(Source)``; attention_to : ``Out(Unit)``
    progress : ``Out(range(stages))``
    done : ``Out(1)``
    """

    def __init__(self, program, *, commands, shift_count, accept_width, tasks, addr_width):
        self.program = tuple(program)
        if not self.program or not isinstance(self.program[-1], End):
            raise ValueError("Sequencer: the program must end with End()")
        ops = self.program

        def each(kind):
            return [op for op in ops if isinstance(op, kind)]

        offsets = [op.offset for op in each(Read) + each(Fetch)]
        offsets += [value.offset for op in each(Command) for _, value in op.fields
                    if isinstance(value, Address)]
        offset = _bits(offsets)
        beats = _bits([op.beats for op in each(Read) + each(Write)])
        self._commands = commands
        command_args = {}
        for unit, layout in commands.items():
            fields, names = {}, {name for name, _ in layout}
            for op in (op for op in each(Command) if op.unit is unit):
                for name, value in op.fields:
                    if name not in names:
                        raise ValueError(f"Sequencer: the {unit.name} command has no field "
                                         f"{name!r}")
                    kind = (_bits([shift_count - 1]) if isinstance(value, Shift) else
                            offset if isinstance(value, Address) else layout[name].shape)
                    if fields.setdefault(name, kind) != kind:
                        raise ValueError(f"Sequencer: the {unit.name} command's field {name!r} "
                                         f"is not of one kind in the program")
            command_args[unit.name.lower()] = data.StructLayout(fields or {"none": 1})
        self._kinds = {unit: {name: type(value) for op in each(Command) if op.unit is unit
                              for name, value in op.fields} for unit in commands}
        target = unsigned(2)
        self.word_layout = data.StructLayout({
            "op": Opcode,
            "arg": data.UnionLayout({
                "read": data.StructLayout({"port": schedule.Port, "to": target,
                                           "buffer": schedule.Buffer, "offset": offset,
                                           "beats": beats}),
                "fetch": data.StructLayout({
                    "to": Unit, "offset": offset,
                    **{f: _bits([getattr(op, f) for op in each(Fetch)])
                       for f in ("weight_beats", "bias_beats", "w_beats", "b_beats")}}),
                "command": data.StructLayout({
                    "unit": Unit, "any_task": 1, "task": _bits([tasks - 1]),
                    "args": data.UnionLayout(command_args)}),
                "wait": data.StructLayout({"until": Until, "unit": Unit,
                                           "count": _bits([op.count for op in each(Wait)])}),
                "route": data.StructLayout({"into_attention": Source, "attention_to": Unit,
                                            "into_output": Source}),
                "mark": data.StructLayout({"stage": _bits([op.stage for op in each(Mark)])}),
                "write": data.StructLayout({"beats": beats}),
            }),
        })
        read = data.StructLayout({"addr": addr_width, "beats": beats, "to": target})
        fetch = self.word_layout["arg"].shape["fetch"].shape
        super().__init__({
            "start": In(1), "stop": In(1),
            "task": In(range(max(tasks, 2))),
            "weights_addr": In(addr_width), "image_addr": In(addr_width),
            "output_addr": In(addr_width),
            "shifts": In(data.ArrayLayout(8, shift_count)),
            "shift_beats": In(16),
            "accepted": In(data.ArrayLayout(accept_width, len(schedule.CALLS_PER_COMMAND))),
            "moe_calls_taken": In(1),
            "written": In(beats.width + 1),
            "writer_idle": In(1),
            "image_read": Out(stream.Signature(read)),
            "params_read": Out(stream.Signature(read)),
            "fetch": Out(stream.Signature(data.StructLayout({
                "addr": addr_width, **{f: fetch[f].shape for f in (
                    "to", "weight_beats", "bias_beats", "w_beats", "b_beats")}}))),
            "write": Out(stream.Signature(data.StructLayout({"addr": addr_width,
                                                             "beats": beats}))),
            **{f"{unit.name.lower()}_cmd": Out(stream.Signature(layout))
               for unit, layout in commands.items()},
            "into_attention": Out(Source, init=Source.NONE),
            "attention_to": Out(Unit, init=Unit.MLP),
            "into_output": Out(Source, init=Source.NONE),
            "progress": Out(_bits([op.stage for op in each(Mark)])),
            "done": Out(1),
        })

    def encode(self, op):
        """``op`` as a word of the program memory."""
        arg = {}
        if isinstance(op, Read):
            arg["read"] = dict(port=op.port, to=int(op.to), buffer=op.buffer, offset=op.offset,
                               beats=op.beats)
        elif isinstance(op, Fetch):
            arg["fetch"] = {f: getattr(op, f) for f in ("to", "offset", "weight_beats",
                                                         "bias_beats", "w_beats", "b_beats")}
        elif isinstance(op, Command):
            fields = {name: (value.index if isinstance(value, Shift) else
                             value.offset if isinstance(value, Address) else value)
                      for name, value in op.fields}
            arg["command"] = dict(unit=op.unit, any_task=op.task is None, task=op.task or 0,
                                  args={op.unit.name.lower(): fields})
        elif isinstance(op, Wait):
            arg["wait"] = dict(until=op.until, unit=op.unit or 0, count=op.count)
        elif isinstance(op, Route):
            arg["route"] = dict(into_attention=op.into_attention, attention_to=op.attention_to,
                                into_output=op.into_output)
        elif isinstance(op, Mark):
            arg["mark"] = dict(stage=op.stage)
        elif isinstance(op, Write):
            arg["write"] = dict(beats=op.beats)
        return self.word_layout.const({"op": _OPCODES[type(op)], "arg": arg})

    def elaborate(self, platform):
        m = Module()
        words = [self.encode(op) for op in self.program]
        m.submodules.program = rom = memory.Memory(shape=self.word_layout, depth=len(words),
                                                   init=words)
        port = rom.read_port()
        word, arg = port.data, port.data.arg

        # Each operation goes through three stages, one register apart: the program memory is
        # read at pc (LOAD), the word is decoded into the registers that drive the outputs
        # (DECODE: addresses added, shifts looked up), then the operation runs (RUN) until its
        # transfer is taken or its condition, registered, holds. So no path runs from a
        # handshake through the decoding to the program memory.
        pc = Signal(range(len(words)))
        stage = Signal(range(3))
        LOAD, DECODE, RUN = 0, 1, 2
        running = Signal()
        step = Signal()                        # the running operation completes
        m.d.comb += port.addr.eq(pc)
        with m.If(self.start):
            m.d.sync += [running.eq(1), pc.eq(0), stage.eq(LOAD)]
        with m.Elif(self.stop | self.done):
            m.d.sync += running.eq(0)
        with m.Elif(running):
            with m.Switch(stage):
                with m.Case(LOAD):
                    m.d.sync += stage.eq(DECODE)
                with m.Case(DECODE):
                    m.d.sync += stage.eq(RUN)
                with m.Case(RUN):
                    with m.If(step):
                        m.d.sync += [pc.eq(pc + 1), stage.eq(LOAD)]
        active = running & ~self.stop & (stage == RUN)
        decode = stage == DECODE

        # Decoded: the operation, and which output it drives.
        op = Signal(Opcode)
        with m.If(decode):
            m.d.sync += op.eq(word.op)
        base = Array([self.weights_addr, self.image_addr])

        def offer(stream_, opcode, fields, when=1):
            """Offer ``fields`` on ``stream_`` while the operation is ``opcode`` (and ``when``),
            from registers loaded at DECODE."""
            chosen = Signal()
            with m.If(decode):
                m.d.sync += chosen.eq((word.op == opcode) & when)
                for name, value in fields.items():
                    m.d.sync += stream_.payload[name].eq(value)
            m.d.comb += stream_.valid.eq(active & chosen)
            with m.If(stream_.valid & stream_.ready):
                m.d.comb += step.eq(1)

        read = arg.read
        for stream_, port_ in ((self.image_read, schedule.Port.IMAGE),
                               (self.params_read, schedule.Port.PARAMS)):
            offer(stream_, Opcode.READ, {"addr": base[read.buffer] + read.offset,
                                         "beats": read.beats, "to": read.to},
                  when=read.port == port_)
        fetch = arg.fetch
        offer(self.fetch, Opcode.FETCH,
              {"addr": self.weights_addr + fetch.offset,
               **{f: fetch[f] for f in ("to", "weight_beats", "bias_beats", "w_beats",
                                        "b_beats")}})
        offer(self.write, Opcode.WRITE, {"addr": self.output_addr, "beats": arg.write.beats})

        command = arg.command
        ours = command.any_task | (command.task == self.task)
        for unit in self._commands:
            args = command.args[unit.name.lower()]
            fields = {}
            for name, kind in self._kinds[unit].items():
                value = args[name]
                if kind is Shift:
                    value = self.shifts[value]
                elif kind is Address:
                    value = self.weights_addr + value
                fields[name] = value
            offer(getattr(self, f"{unit.name.lower()}_cmd"), Opcode.COMMAND, fields,
                  when=(command.unit == unit) & ours)
        skip = Signal()                        # a command for another task
        with m.If(decode):
            m.d.sync += skip.eq((word.op == Opcode.COMMAND) & ~ours)
        with m.If(active & skip):
            m.d.comb += step.eq(1)

        # A wait's condition is registered; it is cleared at DECODE, so a wait takes at least
        # two cycles. The counts it compares only grow, up to the count waited for.
        wait = Signal.like(arg.wait)
        with m.If(decode):
            m.d.sync += wait.eq(arg.wait)
        accepted = Array(self.accepted[n] for n in range(len(self.accepted)))
        holds = Signal()
        with m.If(decode):
            m.d.sync += holds.eq(0)
        with m.Else():
            with m.Switch(wait.until):
                with m.Case(Until.SHIFT_TABLE):
                    m.d.sync += holds.eq(self.shift_beats == wait.count)
                with m.Case(Until.CALLS):
                    m.d.sync += holds.eq(accepted[wait.unit] == wait.count)
                with m.Case(Until.MOE_CALLS):
                    m.d.sync += holds.eq(self.moe_calls_taken)
                with m.Case(Until.OUTPUT_WRITTEN):
                    m.d.sync += holds.eq((self.written == wait.count) & self.writer_idle)
        with m.If(active & (op == Opcode.WAIT) & holds):
            m.d.comb += step.eq(1)

        route = Signal.like(arg.route)
        mark = Signal.like(arg.mark)
        with m.If(decode):
            m.d.sync += [route.eq(arg.route), mark.eq(arg.mark)]
        with m.If(active & (op == Opcode.ROUTE)):
            m.d.sync += [self.into_attention.eq(route.into_attention),
                         self.attention_to.eq(route.attention_to),
                         self.into_output.eq(route.into_output)]
            m.d.comb += step.eq(1)
        with m.If(active & (op == Opcode.MARK)):
            m.d.sync += self.progress.eq(mark.stage)
            m.d.comb += step.eq(1)
        m.d.comb += self.done.eq(active & (op == Opcode.END))
        return m
