"""The schedule as data: the program the machine runs for one inference.

:func:`program` turns a model and a machine into the list of operations the machine performs,
in order. The same list drives both sides:

* the hardware stores it in a small program memory and steps through it
  (:class:`hw.system.sequencer.Sequencer`, an interpreter of a few states, three cycles per
  operation at best);
* the golden model's forward pass runs the unit twins in the order of its :class:`Command`
  operations (:func:`model.golden.run`),

so the two cannot drift apart. ``python -m model.schedule --config micro`` prints a program.

The operations:

======================  =====================================================================
:class:`Read`           a parameter or data read on the image or params port, routed to a unit
:class:`Fetch`          a dense linear record (weights and biases) on the weights port, routed
                        to a unit's compute-unit calls
:class:`Command`        a unit's command; its fields are plain values, indices into the shift
                        table (:class:`Shift`) or offsets into the weights image
                        (:class:`Address`); ``task`` makes it apply to one task only
:class:`Wait`           hold until a condition (:class:`Until`): the shift table loaded, a unit's
                        calls all accepted by the compute unit, the output written
:class:`Route`          where activation rows flow: into the attention half, out of it, to the
                        output buffer
:class:`Mark`           the stage now launched (the ``progress`` output, for benches)
:class:`Write`          the output buffer's write
:class:`End`            the run is done
======================  =====================================================================

A stage is launched by its command, its parameter reads and its record fetches; the program then
waits until the stage's calls are all in the compute unit's queue and goes on to the next stage,
so a stage's weights load while the previous stage computes.

A machine that takes a batch (:attr:`model.machine.MachineConfig.batch` ``= B``) runs one program
for B images laid one after the other in the image and output buffers: the patch embedding once
per image, then per block one attention command over the B images' rows (``images = B``, its
four records fetched once per image) and one MLP or MoE command over all ``B x tokens`` rows, so
each expert's records are read once per layer for the whole batch. The results are those of B
runs of one image (:attr:`model.machine.MachineConfig.per_image`): every unit but attention
works token by token, and attention runs an image at a time. A stage's first rows may then come
before its command (the stage before makes a call per image, and the program launches the next
stage only once all of them are in the compute unit's queue): the halves of such a machine take
rows while idle (:func:`hw.system.half_block.load_then_run`).
"""

import argparse
import enum
import functools
import sys
from dataclasses import dataclass

from model.system.attention_half import CALLS as ATTENTION_CALLS
from model.config import ModelConfig, config_by_name
from model.machine import ZCU102, MachineConfig, machine_by_name
from model.packer import tiles
from model.weight_image import input_layout, output_layout

__all__ = ["Port", "ImageTo", "ParamsTo", "Unit", "Buffer", "Until", "Source",
           "Shift", "Address", "Read", "Fetch", "Command", "Wait", "Route", "Mark", "Write", "End",
           "CALLS_PER_COMMAND", "calls_of", "program", "commands", "listing"]


class Port(enum.IntEnum):
    """The memory ports the program reads parameters and data over (the dense records have
    their own, :class:`Fetch`)."""
    IMAGE = 0          # the shift table, then the image
    PARAMS = 1         # position embeddings and LayerNorm sets


class ImageTo(enum.IntEnum):
    """Where the image port's beats go."""
    SHIFT_TABLE = 0
    EMBED = 1


class ParamsTo(enum.IntEnum):
    """Where the params port's beats go."""
    POS_EMBED = 0
    ATTENTION = 1      # LN1 set
    MLP = 2            # LN2 set of a dense block
    MOE = 3            # LN2 set of a MoE block


class Unit(enum.IntEnum):
    """The compute unit's clients, in the order of its multiplexer."""
    EMBED = 0
    ATTENTION = 1
    MLP = 2
    MOE = 3


class Buffer(enum.IntEnum):
    """The host's buffers, whose addresses the program's reads are relative to."""
    WEIGHTS = 0
    IMAGE = 1


class Until(enum.IntEnum):
    """What a :class:`Wait` waits for."""
    SHIFT_TABLE = 0    # ``count`` beats of the shift table are in
    CALLS = 1          # ``unit`` has had ``count`` calls accepted since the start
    MOE_CALLS = 2      # the MoE half's calls of the current layer are all accepted
    OUTPUT_WRITTEN = 3  # ``count`` output beats written and acknowledged


class Source(enum.IntEnum):
    """A stage whose output rows are routed somewhere."""
    EMBED = 0
    MLP = 1
    MOE = 2
    NONE = 3


#: Compute-unit calls of one command of a unit, per image it runs (the MoE half's depend on
#: the routing).
CALLS_PER_COMMAND = {Unit.EMBED: 1, Unit.ATTENTION: len(ATTENTION_CALLS), Unit.MLP: 2}


def calls_of(command):
    """Compute-unit calls of ``command`` (a :class:`Command` of a unit of
    :data:`CALLS_PER_COMMAND`): an attention command makes its calls once per image."""
    return CALLS_PER_COMMAND[command.unit] * dict(command.fields).get("images", 1)


@dataclass(frozen=True)
class Shift:
    """A command field read from the image's shift table: the output shift of ``layer``."""
    index: int
    layer: str

    def __str__(self):
        return f"shift[{self.layer}]"


@dataclass(frozen=True)
class Address:
    """A command field that is an address: ``offset`` bytes into the weights image."""
    offset: int

    def __str__(self):
        return f"weights+{self.offset:#x}"


@dataclass(frozen=True)
class Read:
    port: Port
    to: enum.IntEnum
    buffer: Buffer
    offset: int
    beats: int
    what: str = ""

    def __str__(self):
        return (f"read    {self.port.name.lower():6} {self.what:12} -> {self.to.name.lower():11}"
                f" {self.buffer.name.lower()}+{self.offset:#x}, {self.beats} beats")


@dataclass(frozen=True)
class Fetch:
    record: str
    to: Unit
    offset: int
    weight_beats: int
    bias_beats: int
    w_beats: int           # compute-unit weight beats (expert_ports memory beats each)
    b_beats: int           # bias beats of cols accumulator words

    def __str__(self):
        return (f"fetch   {self.record:19} -> {self.to.name.lower():11} weights+{self.offset:#x},"
                f" {self.weight_beats} + {self.bias_beats} beats")


@dataclass(frozen=True)
class Command:
    unit: Unit
    block: int             # None for the patch embedding
    fields: tuple          # ((name, int | Shift | Address), ...), the unit's command fields
    task: int = None       # None: every task

    def applies(self, task):
        return self.task is None or self.task == task

    def __str__(self):
        where = "" if self.block is None else f" l{self.block}"
        only = "" if self.task is None else f" [task {self.task}]"
        args = ", ".join(f"{name}={value}" for name, value in self.fields)
        return f"command {self.unit.name.lower()}{where}{only}: {args}"


@dataclass(frozen=True)
class Wait:
    until: Until
    unit: Unit = None
    count: int = 0

    def __str__(self):
        what = {Until.SHIFT_TABLE: f"shift table in ({self.count} beats)",
                Until.CALLS: f"{self.unit.name.lower() if self.unit is not None else ''} calls "
                             f"accepted = {self.count}",
                Until.MOE_CALLS: "moe calls of the layer accepted",
                Until.OUTPUT_WRITTEN: f"output written ({self.count} beats)"}[self.until]
        return f"wait    {what}"


@dataclass(frozen=True)
class Route:
    into_attention: Source
    attention_to: Unit     # MLP or MOE
    into_output: Source

    def __str__(self):
        return (f"route   {self.into_attention.name.lower()} -> attention -> "
                f"{self.attention_to.name.lower()}; {self.into_output.name.lower()} -> output")


@dataclass(frozen=True)
class Mark:
    stage: int             # 0 the patch embedding, b + 1 block b, depth + 1 the output

    def __str__(self):
        return f"mark    stage {self.stage}"


@dataclass(frozen=True)
class Write:
    beats: int

    def __str__(self):
        return f"write   output, {self.beats} beats"


@dataclass(frozen=True)
class End:
    def __str__(self):
        return "end"


@functools.lru_cache(maxsize=32)
def program(config, machine=ZCU102):
    """The operations of one inference of ``config`` on ``machine``, as a tuple."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, not {config!r}")
    if not isinstance(machine, MachineConfig):
        raise TypeError(f"machine must be a MachineConfig, not {machine!r}")
    lay = machine.layout(config)
    bb, cols = machine.beat_bytes, machine.array_cols
    ops = []

    def shift(layer):
        return Shift(lay[layer].shift, layer)

    def read(port, to, section):
        s = lay[section]
        ops.append(Read(port, to, Buffer.WEIGHTS, s.offset, s.beats, section))

    def fetch(record, to):
        s = lay[record]
        ops.append(Fetch(record, to, s.offset, s.weight_beats, s.bias_beats,
                         s.weight_beats // machine.expert_ports, tiles(s.out_features, cols)))

    accepted = {unit: 0 for unit in CALLS_PER_COMMAND}

    def wait_calls(command):
        accepted[command.unit] += calls_of(command)
        ops.append(Wait(Until.CALLS, command.unit, accepted[command.unit]))

    def command(*args):
        ops.append(Command(*args))
        return ops[-1]

    images = machine.batch
    tokens = images * config.tokens
    image_bytes = input_layout(config, bb).length
    ops.append(Route(Source.EMBED, Unit.MLP, Source.NONE))
    read(Port.IMAGE, ImageTo.SHIFT_TABLE, "shifts")
    ops.append(Wait(Until.SHIFT_TABLE, count=lay["shifts"].beats))
    ops.append(Mark(0))
    for image in range(images):
        embed = command(Unit.EMBED, None, (("patches", config.patches),
                                           ("shift", shift("patch"))))
        ops.append(Read(Port.IMAGE, ImageTo.EMBED, Buffer.IMAGE, image * image_bytes,
                        image_bytes // bb, "image" if images == 1 else f"image {image}"))
        read(Port.PARAMS, ParamsTo.POS_EMBED, "pos_embed")
        fetch("patch", Unit.EMBED)
        wait_calls(embed)
    for b in range(config.depth):
        p = f"l{b}."
        moe = config.is_moe(b)
        stage = Source.MOE if moe else Source.MLP
        ops.append(Mark(b + 1))
        # Where the attention half's rows go is taken with its command: set it just before.
        previous = Source.EMBED if b == 0 else (Source.MOE if config.is_moe(b - 1)
                                                else Source.MLP)
        ops.append(Route(previous, Unit.MOE if moe else Unit.MLP, Source.NONE))
        attention = command(Unit.ATTENTION, b, (
            ("tokens", tokens), ("images", images), ("image_tokens", config.tokens)) + tuple(
            (f"{c}_shift", shift(p + c)) for c in ATTENTION_CALLS))
        read(Port.PARAMS, ParamsTo.ATTENTION, p + "ln1")
        for _ in range(images):
            for c in ATTENTION_CALLS:
                fetch(p + c, Unit.ATTENTION)
        wait_calls(attention)
        if moe:
            for task in range(config.tasks):
                fields = lay.expert_engine_fields(b, task)
                experts = lay[p + "experts"].engine
                values = [("tokens", tokens)]
                for name, value in fields.items():
                    values.append((name, Address(value) if name in ("base", "gate_addr")
                                   else value))
                values += [("fc1_shift", Shift(experts["fc1_shift_index"], p + "expert_fc1")),
                           ("fc2_shift", Shift(experts["fc2_shift_index"], p + "expert_fc2")),
                           ("gate_shift", shift(f"{p}gate{task}"))]
                ops.append(Command(Unit.MOE, b, tuple(values),
                                   task if config.tasks > 1 else None))
            read(Port.PARAMS, ParamsTo.MOE, p + "ln2")
            ops.append(Wait(Until.MOE_CALLS))
        else:
            mlp = command(Unit.MLP, b, (("tokens", tokens), ("fc1_shift", shift(p + "fc1")),
                                        ("fc2_shift", shift(p + "fc2"))))
            read(Port.PARAMS, ParamsTo.MLP, p + "ln2")
            fetch(p + "fc1", Unit.MLP)
            fetch(p + "fc2", Unit.MLP)
            wait_calls(mlp)
        last = b == config.depth - 1
        ops.append(Route(Source.NONE, Unit.MOE if moe else Unit.MLP, stage) if last
                   else Route(stage, Unit.MOE if moe else Unit.MLP, Source.NONE))
    out_beats = images * output_layout(config, bb).length // bb
    ops.append(Mark(config.depth + 1))
    ops.append(Write(out_beats))
    ops.append(Wait(Until.OUTPUT_WRITTEN, count=out_beats))
    ops.append(End())
    return tuple(ops)


def commands(config, task, machine=ZCU102):
    """The program's unit commands that apply to ``task``, in order (what the golden model
    runs)."""
    return [op for op in program(config, machine)
            if isinstance(op, Command) and op.applies(task)]


def listing(ops):
    """The program as text, one numbered operation a line."""
    width = len(str(len(ops) - 1))
    return "\n".join(f"{n:>{width}}  {op}" for n, op in enumerate(ops))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.schedule",
                                     description="Print the program the machine runs.")
    parser.add_argument("--config", default="micro", help="model configuration (default micro)")
    parser.add_argument("--machine", default=ZCU102.name, help="machine preset (default zcu102)")
    parser.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    args = parser.parse_args(argv)
    try:
        ops = program(config_by_name(args.config),
                      machine_by_name(args.machine).batched(args.batch))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(listing(ops))
    print(f"# {len(ops)} operations", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
