"""The whole accelerator: a full M3ViT inference from DRAM to DRAM, twin of
:func:`model.golden.forward`.

::

    control (AXI4-Lite) -- RegisterBlock -- start, task, addresses / status, counters, irq
                                  |
                             sequencer (the program of model.weight_image's layout)
       image bus --> image router --> shift table | PatchEmbed.image
      params bus --> params router --> pos | LN1 | LN2 (dense) | LN2 (MoE)   (int32 words)
     weights bus --> LinearFetch --> widen --> w/b routers --> PatchEmbed | AttentionHalf | MlpHalf
    experts buses <-- MoeHalf's expert engine (weights fetched once per active expert, each
                      record over expert_ports ports at once)
      output bus <-- AxiWriter <-- int32 words <-- last block's rows

    PatchEmbed --x--> AttentionHalf --x--> MlpHalf or MoeHalf --x--> AttentionHalf (next block)
        \\_______________ all four: one ComputeUnit through a ComputeMux ______________/

One :class:`hw.units.compute_unit.ComputeUnit` runs every linear layer; the patch embedding, the
attention half, the dense MLP half and the MoE half are its clients
(:class:`hw.units.compute_mux.ComputeMux`). Activations stay on chip: each stage streams its rows
into the next stage's input buffer.

**The sequencer** runs the program of the configuration (every offset and beat count comes from
:func:`model.weight_image.layout` at elaboration; only the output shifts are read from the image's
shift table at the start of each run). For each stage it issues the unit's command, the reads
of its parameters (position embeddings, LayerNorm sets) and the fetches of its linear records,
then waits until the unit's calls are all in the compute unit's queue, and launches the next
stage: so a stage's weights load while the previous stage computes. The MoE half fetches its
own gate and expert records (expert-aware reordering, :mod:`hw.units.expert_engine`); its number of
calls is known once the tokens are routed (``MoeHalf.calls_taken``), and the stage after it is
launched when they are all in the queue, like any other. At the end the last block's rows go to the
output buffer as int32 words (:func:`model.weight_image.output_layout`), and ``done`` rises when the
last write is acknowledged.

**Errors.** Start checks are the register block's (zero, out-of-range or unaligned address,
task out of range; a START while busy is ignored). An AXI error response on any port, a DMA
dropping a command, or a unit rejecting one ends the run at once with its own error code
(:class:`model.system.registers.ErrorCode`); the watchdog's TIMEOUT and SOFT_RESET end it the
same way. Ending a run holds the datapath in reset while the memory ports drain, as AXI
requires: no new request goes out, a request on offer stays until taken, the data of every read
burst is taken and dropped, and every write burst whose address went out gets its beats (the
words on offer, then zeros) and its response. STATUS.BUSY stays high until the ports are quiet.
If they are not within :data:`DRAIN_LIMIT` cycles (a memory that stopped answering), the machine
gives up on them, reports BUS_HUNG and is idle again. No wait is unbounded once the watchdog is
set.

**Cycles** (``CYCLES_TOTAL`` and per stage): the total counts from START to done; the stage
counters (:class:`hw.system.stage_counters.StageCounters`) charge each of those cycles to the
oldest stage not yet finished, so that EMBED to HEAD add up to the total, and OVERLAP counts the
cycles in which two or more units run. The total is two 32-bit halves with a registered carry
(no 64-bit carry chain), exact once the run has ended. One
m3vit-tiny image takes about 3.0 M cycles with the default shape (docs/performance.md).

**Batches.** A machine whose ``MachineConfig.batch`` is B runs B images per START through one
pass of the weights (:mod:`model.schedule`; docs/architecture.md): the MLP and MoE halves over
all their tokens, the attention half an image at a time over rows it holds for all of them.
"""

from amaranth import (Cat, ClockDomain, ClockSignal, DomainRenamer, Module, Mux, ResetInserter,
                      ResetSignal, Signal, signed, unsigned)
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.machine import ZCU102, MachineConfig
from model.numerics import DEFAULT
from model.packer import tiles
from model.system.registers import ErrorCode, Identity
from model.schedule import CALLS_PER_COMMAND, ParamsTo, Source, Unit, program
from model.system.stage_counters import stage_units
from model.weight_image import input_layout, output_layout

from hw.system.attention_half import AttentionHalf
from hw.movers.axi import axi4_lite, axi4_read, axi4_write, offer_until_taken
from hw.movers.axi_reader import AxiReader
from hw.movers.axi_writer import AxiWriter
from hw.units.compute_mux import ComputeMux
from hw.units.compute_unit import ComputeUnit
from hw.arith.gelu import Gelu
from hw.movers.linear_fetch import LinearFetch, bus_name
from hw.system.mlp_half import MlpHalf
from hw.system.moe_half import MoeHalf
from hw.units.patch_embed import PatchEmbed
from hw.system.global_net import global_net
from hw.system.registers import RegisterBlock
from hw.streams.pipeline import wide_counter
from hw.streams.router import StreamRouter
from hw.system.sequencer import Sequencer
from hw.system.stage_counters import StageCounters
from hw.streams.fork import StreamFork
from hw.streams.skid import SkidBuffer
from hw.streams.widen import Widen
from hw.streams.words import LanesToWords, WordsToLanes

__all__ = ["Accelerator", "CLIENTS", "DRAIN_LIMIT", "read_ports"]

#: The compute unit's clients, in mux order (:class:`model.schedule.Unit`).
CLIENTS = tuple(unit.name.lower() for unit in Unit)
#: Bits of the count of a client's calls accepted in a run.
ACCEPT_WIDTH = 16
#: Cycles the memory ports may take to finish their transfers when a run ends early; then the
#: machine gives up on them (BUS_HUNG). A drain takes at most a few bursts of 256 beats per port
#: plus the memory's latency: some thousand cycles on a busy DDR.
DRAIN_LIMIT = 1 << 16


def read_ports(expert_ports):
    """Names of the machine's AXI4 read masters with ``expert_ports`` expert ports."""
    return ("image_bus", "params_bus", "weights_bus",
            *(f"experts_{bus_name(p)}" for p in range(expert_ports)))


class Accelerator(wiring.Component):
    """The machine for one model configuration.

    Parameters
    ----------
    config : model.config.ModelConfig
    lanes : int
        The compute unit is ``lanes x lanes``; activation beats carry ``lanes`` values.
    slots : int
        Query slots of the attention engine.
    data_width, addr_width : int
        The AXI4 memory ports (``data_width / 8`` bytes per beat: the weight image's beat).
    expert_ports : int
        Memory ports the MoE records are read over at once (``model.weight_image.layout``):
        the compute unit takes ``expert_ports x data_width / 16`` weights per cycle, which the
        experts, whose weights are used by few tokens each, need; the dense weights come over
        one port and are widened on the way.

    Members
    -------
    control : ``In(axi4_lite(addr_width=12))``
        The register block (``docs/registers.md``).
    image_bus, params_bus, weights_bus, experts_bus, experts_bus_1, ... : ``Out(axi4_read(...))``
        Image and shift table; position embeddings and LayerNorm sets; dense linear records;
        MoE gate and expert records, one plane per port (:attr:`read_ports` names them all).
    output_bus : ``Out(axi4_write(...))``
    irq : ``Out(1)``
    progress : ``Out(range(depth + 2))``
        The stage the sequencer last launched: 0 the patch embedding, ``b + 1`` block ``b``,
        ``depth + 1`` the output (for benches and debug probes).
    stage : ``Out(range(len(stages) + 1))``
        The oldest unfinished stage of the run, an index into :attr:`stages` (the unit of each
        stage, :func:`model.system.stage_counters.stage_units`), ``len(stages)`` once all have
        finished: what the stage counters charge each cycle to (for benches).
    """

    def __init__(self, config, machine=ZCU102):
        if not isinstance(machine, MachineConfig):
            raise TypeError(f"Accelerator: machine must be a MachineConfig, not {machine!r}")
        cfg = self.config = config
        self.machine = machine
        self.layout = machine.layout(cfg)
        self.program = program(cfg, machine)
        self.stages = stage_units(cfg, machine)
        lanes, weight_lanes = machine.lanes, machine.weight_lanes
        rows = machine.batch * cfg.tokens             # token rows of a run
        dims = (cfg.patch_in, cfg.dim, cfg.mlp_hidden, cfg.expert_hidden)
        self.compute = ComputeUnit(
            rows=machine.array_rows, cols=machine.array_cols, max_in=max(dims),
            max_out=max(dims[1:] + (cfg.experts,)),
            max_weights=max(cfg.patch_in * cfg.dim, cfg.dim * cfg.mlp_hidden,
                            cfg.dim * cfg.expert_hidden),
            max_tokens=rows, banks=machine.weight_banks, weight_lanes=weight_lanes,
            out_lanes=lanes, gelu=Gelu)
        shared = dict(lanes=lanes, compute=self.compute)
        self.embed = PatchEmbed(channels=cfg.image_channels, patch=cfg.patch, dim=cfg.dim,
                                max_patches=cfg.patches, weight_lanes=weight_lanes,
                                data_width=machine.data_width, **shared)
        self.attention = AttentionHalf(dim=cfg.dim, heads=cfg.heads, max_tokens=cfg.tokens,
                                       images=machine.batch, slots=machine.attention_slots,
                                       weight_lanes=weight_lanes, eps=cfg.ln_eps, **shared)
        # In a batch, a half may be given rows before its command (model.schedule).
        preload = machine.batch > 1
        self.mlp = MlpHalf(dim=cfg.dim, hidden=cfg.mlp_hidden, max_tokens=rows,
                           weight_lanes=weight_lanes, eps=cfg.ln_eps, preload=preload, **shared)
        self.moe = MoeHalf(dim=cfg.dim, expert_hidden=cfg.expert_hidden, experts=cfg.experts,
                           top_k=cfg.top_k, max_tokens=rows, data_width=machine.data_width,
                           addr_width=machine.addr_width, ports=machine.expert_ports,
                           eps=cfg.ln_eps, preload=preload, **shared)
        self.regs = RegisterBlock(Identity.of(cfg, machine))
        self.sequencer = Sequencer(
            self.program, commands={unit: getattr(self, unit.name.lower()).cmd.payload.shape()
                                    for unit in Unit},
            shift_count=len(self.layout.shift_names), accept_width=ACCEPT_WIDTH,
            tasks=cfg.tasks, addr_width=machine.addr_width)
        read = axi4_read(addr_width=machine.addr_width, data_width=machine.data_width)
        super().__init__({
            "control": In(axi4_lite(addr_width=12)),
            "image_bus": Out(read), "params_bus": Out(read), "weights_bus": Out(read),
            **{f"experts_{bus_name(p)}": Out(bus.signature)
               for p, bus in enumerate(self.moe.buses)},
            "output_bus": Out(axi4_write(addr_width=machine.addr_width,
                                         data_width=machine.data_width)),
            "irq": Out(1),
            "progress": Out(range(cfg.depth + 2)),
            "stage": Out(range(len(self.stages) + 1)),
        })

    @property
    def read_ports(self):
        """Names of the AXI4 read masters (:func:`read_ports`)."""
        return read_ports(self.machine.expert_ports)

    def elaborate(self, platform):
        m = Module()
        cfg, lay, mc = self.config, self.layout, self.machine
        L, dw, aw, bb = mc.lanes, mc.data_width, mc.addr_width, mc.beat_bytes
        act = DEFAULT.act

        # --- Control ---------------------------------------------------------------------
        m.submodules.regs = regs = self.regs
        wiring.connect(m, wiring.flipped(self.control), regs.bus)
        m.d.comb += self.irq.eq(regs.irq)
        # Ending a run: `clear` holds the datapath in reset while `draining`, until the memory
        # ports are `quiet`; `settle` (a register) then resets what faces the bus.
        abort = Signal()                       # an error of the machine ends the run
        clear = Signal()                       # the datapath is held in reset
        draining = Signal()                    # ... until the memory ports are quiet
        quiet, settle, hung = Signal(), Signal(), Signal()
        ending = regs.soft_reset | regs.timeout | abort
        m.d.comb += clear.eq(ending | draining)
        with m.If(ending):
            m.d.sync += draining.eq(1)
        with m.Elif(settle):
            m.d.sync += draining.eq(0)
        drain_cycles = Signal(range(DRAIN_LIMIT + 1))
        with m.If(~draining | settle):
            m.d.sync += drain_cycles.eq(0)
        with m.Else():
            m.d.sync += drain_cycles.eq(drain_cycles + 1)
        given_up = drain_cycles == DRAIN_LIMIT
        m.d.sync += [settle.eq(draining & ~settle & (quiet | given_up)),
                     hung.eq(draining & ~settle & ~quiet & given_up)]
        # The datapath's reset is `clear` a cycle late, from a register: in the cycle between,
        # draining already holds back every new memory request. The datapath's units sit in a
        # domain of their own on the same clock, whose reset is this register alone (set by
        # the domain's reset too, as its initial value), so that it reaches their flip-flops as
        # one net, not through a gate with `rst`: a platform with a global network for such a
        # net puts it there (`global_net`; the ECP5's router would otherwise take it across
        # the die as ordinary wires).
        datapath_reset = Signal(init=1)
        m.d.sync += datapath_reset.eq(clear)
        m.domains.datapath = ClockDomain(local=True)
        m.d.comb += [ClockSignal("datapath").eq(ClockSignal()),
                     ResetSignal("datapath").eq(global_net(m, platform, datapath_reset))]
        datapath = DomainRenamer("datapath")

        def add(name, unit):
            m.submodules[name] = datapath(unit)
            return unit

        def add_facing_bus(name, unit):
            """A unit facing the memory bus: reset once the ports have settled, not with the
            datapath, so that what it offers stays on offer while the run ends."""
            m.submodules[name] = ResetInserter(settle)(unit)
            return unit

        # The units stall as a whole, so a ready travels back through every unit of a chain
        # in one cycle. A skid buffer (a registered ready) ends such a path where it would
        # cross from one unit into another past the logic depth bound (docs/timing.md).
        def skid(name, source):
            buffer = add(f"{name}_skid", SkidBuffer(source.payload.shape()))
            wiring.connect(m, source, buffer.i)
            return buffer.o

        # --- Datapath units --------------------------------------------------------------
        # The compute unit's streams, and each client's calls, weights, biases, rows and
        # results, pass through a skid buffer: the unit's operand ready would otherwise reach
        # through the mux and a client into its memory port, a client's streams through the
        # mux's choice into the other clients, and a client's result ready into the unit's
        # output queue.
        cu = add("compute", self.compute)
        mux = add("compute_mux", ComputeMux(cu, clients=len(CLIENTS)))
        wiring.connect(m, mux.unit.cmd, cu.cmd)
        for stream_name in ("w", "b", "x"):
            wiring.connect(m, skid(f"compute_{stream_name}", getattr(mux.unit, stream_name)),
                           getattr(cu, stream_name))
        wiring.connect(m, skid("compute_o", cu.o), mux.unit.o)
        m.d.comb += [mux.unit.error.eq(cu.error), mux.unit.busy.eq(cu.busy)]
        units = {name: add(name, getattr(self, name)) for name in CLIENTS}
        calls = {}                                    # each client's calls, past its skid
        for index, name in enumerate(CLIENTS):
            client, port = units[name].cu, mux.clients[index]
            calls[name] = skid(f"{name}_call", client.cmd)
            wiring.connect(m, calls[name], port.cmd)
            for stream_name, what in (("w", "weights"), ("b", "biases"), ("x", "rows")):
                wiring.connect(m, skid(f"{name}_{what}", getattr(client, stream_name)),
                               getattr(port, stream_name))
            wiring.connect(m, skid(f"{name}_results", port.o), client.o)
            m.d.comb += [client.error.eq(port.error), client.busy.eq(port.busy)]
        embed, att, mlp, moe = (units[name] for name in CLIENTS)
        outstanding = []

        def read_port(unit_bus, port):
            """A unit's AXI read master to a port of the machine. Requests go out through a
            skid buffer, so that the slave's ARREADY ends at a register, not in the unit's
            burst logic. While draining, no new request goes out (one on offer stays until
            taken) and every outstanding burst's data is taken and dropped; the skid buffer
            is reset when the ports have settled."""
            n = len(outstanding)
            ar_fields = ("arid", "araddr", "arlen", "arsize", "arburst")
            ar = add_facing_bus(f"port{n}_ar_skid", SkidBuffer(data.StructLayout(
                {name: len(getattr(unit_bus, name)) for name in ar_fields})))
            m.d.comb += [ar.i.valid.eq(unit_bus.arvalid), unit_bus.arready.eq(ar.i.ready)]
            m.d.comb += [ar.i.payload[name].eq(getattr(unit_bus, name)) for name in ar_fields]
            m.d.comb += [getattr(port, name).eq(ar.o.payload[name]) for name in ar_fields]
            for name, member in unit_bus.signature.members.items():
                if name in ar_fields or name in ("arvalid", "arready", "rvalid", "rready"):
                    continue
                if member.flow == Out:
                    m.d.comb += getattr(port, name).eq(getattr(unit_bus, name))
                else:
                    m.d.comb += getattr(unit_bus, name).eq(getattr(port, name))
            m.d.comb += [port.arvalid.eq(offer_until_taken(m, ar.o.valid, port.arready,
                                                           draining, name=f"port{n}_ar")),
                         ar.o.ready.eq(port.arready & port.arvalid),
                         port.rready.eq(unit_bus.rready | draining),
                         unit_bus.rvalid.eq(port.rvalid & ~draining)]
            # Bursts in flight, for `quiet`. A burst's end is counted a cycle late (from a
            # register, so that rready, which comes from deep in the datapath, ends there):
            # the count is never low, and a port reads quiet a cycle later at worst.
            bursts = Signal(8, name=f"port{n}_bursts")
            ended = Signal(name=f"port{n}_ended")
            m.d.sync += [ended.eq(port.rvalid & port.rready & port.rlast),
                         bursts.eq(bursts + (port.arvalid & port.arready) - ended)]
            with m.If(settle):                  # after giving up on a silent memory
                m.d.sync += [ended.eq(0), bursts.eq(0)]
            outstanding.append((bursts == 0) & ~port.arvalid)

        for p, bus in enumerate(moe.buses):
            read_port(bus, getattr(self, f"experts_{bus_name(p)}"))

        max_beats = max(s.beats for s in lay.sections) + input_layout(cfg, bb).length // bb
        image_reader = add("image_reader", AxiReader(addr_width=aw, data_width=dw,
                                                     max_beats=max_beats))
        params_reader = add("params_reader", AxiReader(addr_width=aw, data_width=dw,
                                                       max_beats=max_beats))
        fetch = add("fetch", LinearFetch(cols=cu.cols, acc_width=cu.acc_width, data_width=dw,
                                         addr_width=aw, max_beats=max_beats))
        # The writer is not reset with the datapath: while draining it issues no new burst and
        # finishes those it has started (with zeros), then it is reset with the ports.
        writer = add_facing_bus("writer", AxiWriter(addr_width=aw, data_width=dw))
        m.d.comb += writer.stop.eq(draining)
        read_port(image_reader.bus, self.image_bus)
        read_port(params_reader.bus, self.params_bus)
        read_port(fetch.bus, self.weights_bus)
        wiring.connect(m, writer.bus, wiring.flipped(self.output_bus))
        m.d.comb += quiet.eq(Cat(*outstanding).all() & writer.quiet)

        # Image reads: the shift table, then the image.
        image_router = add("image_router", StreamRouter(unsigned(dw), destinations=2,
                                                        max_beats=max_beats))
        wiring.connect(m, image_reader.o, image_router.i)
        wiring.connect(m, skid("image", image_router.o[1]), embed.image)
        shift_count = len(lay.shift_names)
        shifts = [Signal(8, name=f"shift_{n}") for n in range(shift_count)]
        shift_beat = Signal(range(tiles(shift_count, bb) + 1))
        table = image_router.o[0]
        m.d.comb += table.ready.eq(1)
        with m.If(table.valid):
            m.d.sync += shift_beat.eq(shift_beat + 1)
            for n, shift in enumerate(shifts):
                with m.If(shift_beat == n // bb):
                    m.d.sync += shift.eq(table.payload[8 * (n % bb):8 * (n % bb + 1)])
        # Each entry must be a shift the compute unit takes (1 .. acc_width - 1): one that is
        # not would be cut to the command's field. Judged byte by byte as the table comes in,
        # one register per byte, then their OR (SHIFT_TABLE).
        bad_byte = [Signal(name=f"bad_shift_{k}") for k in range(bb)]
        for k, bad in enumerate(bad_byte):
            entry = table.payload[8 * k:8 * (k + 1)]
            in_table = shift_beat < -(-(shift_count - k) // bb)     # entry k of this beat
            m.d.sync += bad.eq(table.valid & in_table & ((entry == 0) | (entry >= cu.acc_width)))
        bad_shift = Signal()                   # cleared with the datapath, as the units' errors
        with m.If(regs.start | clear):
            m.d.sync += bad_shift.eq(0)
        with m.Elif(Cat(*bad_byte).any()):
            m.d.sync += bad_shift.eq(1)

        # Parameter reads: position embeddings and LayerNorm sets, int32 words.
        params_router = add("params_router", StreamRouter(unsigned(dw),
                                                          destinations=len(ParamsTo),
                                                          max_beats=max_beats))
        wiring.connect(m, params_reader.o, params_router.i)
        pos = add("pos_words", WordsToLanes(lanes=L, width=act.width, data_width=dw))
        wiring.connect(m, params_router.o[0], pos.i)
        wiring.connect(m, skid("pos", pos.o), embed.pos)
        for index, name in ((ParamsTo.ATTENTION, "attention"), (ParamsTo.MLP, "mlp"),
                            (ParamsTo.MOE, "moe")):
            words = add(f"{name}_ln_words", WordsToLanes(lanes=2 * L, width=32, data_width=dw))
            wiring.connect(m, params_router.o[index], words.i)
            ln, p = skid(f"{name}_ln", words.o), units[name].p
            m.d.comb += [p.valid.eq(ln.valid), ln.ready.eq(p.ready)]
            for lane in range(L):
                m.d.comb += [p.payload[lane].gamma.eq(ln.payload[lane]),
                             p.payload[lane].beta.eq(ln.payload[L + lane])]

        # Dense linear records: the fetch's weights and biases go where the sequencer says.
        # The weights are widened to the compute unit's beat of expert_ports memory beats.
        dense = ("embed", "attention", "mlp")
        widen = add("widen", Widen(signed(16), dw // 16, mc.expert_ports))
        w_router = add("w_router", StreamRouter(widen.o.payload.shape(),
                                                destinations=len(dense), max_beats=max_beats))
        b_router = add("b_router", StreamRouter(fetch.b.payload.shape(),
                                                destinations=len(dense), max_beats=max_beats))
        wiring.connect(m, fetch.w, widen.i)
        wiring.connect(m, widen.o, w_router.i)
        wiring.connect(m, fetch.b, b_router.i)
        for index, name in enumerate(dense):
            wiring.connect(m, skid(f"{name}_w", w_router.o[index]), units[name].w)
            wiring.connect(m, skid(f"{name}_b", b_router.o[index]), units[name].b)

        # --- The sequencer: the program of model.schedule ----------------------------------
        m.submodules.sequencer = seq = self.sequencer

        def forked(name, source, sinks):
            """``source`` to every ``(stream, fields)`` of ``sinks`` at once (a StreamFork),
            ``fields`` mapping each sink field to the source's."""
            fork = add(f"{name}_fork", StreamFork(source.payload.shape(), len(sinks)))
            wiring.connect(m, source, fork.i)
            for o, (sink, fields) in zip(fork.o, sinks):
                m.d.comb += [sink.valid.eq(o.valid), o.ready.eq(sink.ready)]
                m.d.comb += [sink.payload[to].eq(o.payload[frm]) for to, frm in fields.items()]

        for name, reader, router in (("image_read", image_reader, image_router),
                                     ("params_read", params_reader, params_router)):
            forked(name, getattr(seq, name), [
                (reader.cmd, {"addr": "addr", "beats": "beats"}),
                (router.job, {"dest": "to", "beats": "beats"})])
        forked("fetch", seq.fetch, [
            (fetch.cmd, {"addr": "addr", "weight_beats": "weight_beats",
                         "bias_beats": "bias_beats"}),
            (w_router.job, {"dest": "to", "beats": "w_beats"}),
            (b_router.job, {"dest": "to", "beats": "b_beats"})])
        m.d.comb += [writer.cmd.valid.eq(seq.write.valid), seq.write.ready.eq(writer.cmd.ready),
                     writer.cmd.payload.addr.eq(seq.write.payload.addr),
                     writer.cmd.payload.beats.eq(seq.write.payload.beats)]
        # Each unit's command through a skid buffer: the sequencer's valid depends on its
        # `stop`, and a unit's handshake steps the program counter.
        for unit in Unit:
            name = unit.name.lower()
            wiring.connect(m, skid(f"{name}_command", getattr(seq, f"{name}_cmd")),
                           units[name].cmd)

        # --- Activations: each stage's rows into the next stage, where the program routes them
        # Each stage's output goes through a skid buffer before the routing multiplexers, and
        # the output words before the writer: otherwise the writer's ready would reach
        # through the multiplexers into every stage.
        to_words = add("out_words", LanesToWords(lanes=L, width=act.width, data_width=dw))
        sources = {Source.EMBED: skid("embed", embed.o), Source.MLP: skid("mlp", mlp.o),
                   Source.MOE: skid("moe", moe.o)}
        # The routes decoded into one flag per choice, registered: a route changes a cycle
        # after the program sets it, long before the rows it concerns.
        into_att, into_out = {}, {}
        for key in sources:
            into_att[key] = Signal(name=f"into_attention_{key.name.lower()}")
            into_out[key] = Signal(name=f"into_output_{key.name.lower()}")
            m.d.sync += [into_att[key].eq(seq.into_attention == key),
                         into_out[key].eq(seq.into_output == key)]
        for key, source in sources.items():
            m.d.comb += source.ready.eq(Mux(into_att[key], att.x.ready,
                                            Mux(into_out[key], to_words.i.ready, 0)))
        for sink, into in ((att.x, into_att), (to_words.i, into_out)):
            valid, payload = 0, sources[Source.EMBED].payload
            for key, source in sources.items():
                valid = Mux(into[key], source.valid, valid)
                payload = Mux(into[key], source.payload, payload)
            m.d.comb += [sink.valid.eq(valid), sink.payload.eq(payload)]
        # The attention output goes where the program says: the route set before a run's
        # command is taken with it, and each beat carries it, so that a beat still on its way
        # when the next run starts (in a batch, the next half may take rows before its
        # command) never follows the next run's route. A skid buffer on each side of the
        # choice: its ready then ends at a register in front of the attention half's residual
        # add, and its valid at one in front of the sink's loading.
        to_moe = Signal()
        with m.If(att.cmd.valid & att.cmd.ready):
            m.d.sync += to_moe.eq(seq.attention_to == Unit.MOE)
        tagged = add("attention_skid", SkidBuffer(data.StructLayout(
            {"beat": att.o.payload.shape(), "to_moe": 1})))
        m.d.comb += [tagged.i.valid.eq(att.o.valid), tagged.i.payload.beat.eq(att.o.payload),
                     tagged.i.payload.to_moe.eq(to_moe), att.o.ready.eq(tagged.i.ready)]
        att_o, att_into = tagged.o, {}
        for name, chosen in (("mlp", ~att_o.payload.to_moe), ("moe", att_o.payload.to_moe)):
            att_into[name] = add(f"attention_to_{name}_skid", SkidBuffer(att.o.payload.shape()))
            m.d.comb += [att_into[name].i.valid.eq(att_o.valid & chosen),
                         att_into[name].i.payload.eq(att_o.payload.beat)]
            wiring.connect(m, att_into[name].o, units[name].x)
        m.d.comb += att_o.ready.eq(Mux(att_o.payload.to_moe, att_into["moe"].i.ready,
                                       att_into["mlp"].i.ready))
        # The words before the writer are reset with it, not with the datapath: a word on
        # offer stays until taken. While the run ends no new word comes in, and the writer
        # gets zeros for the beats its bursts still owe once these are gone.
        words = add_facing_bus("out_words_skid", SkidBuffer(to_words.o.payload.shape()))
        m.d.comb += [words.i.valid.eq(to_words.o.valid & ~clear),
                     words.i.payload.eq(to_words.o.payload),
                     to_words.o.ready.eq(words.i.ready & ~clear),
                     writer.i.valid.eq(words.o.valid | draining),
                     writer.i.payload.eq(Mux(words.o.valid, words.o.payload, 0)),
                     words.o.ready.eq(writer.i.ready)]

        # --- The run ----------------------------------------------------------------------
        moe_calls_taken = Signal()
        m.d.sync += moe_calls_taken.eq(moe.calls_taken)
        # Calls each client has had accepted by the compute unit, and output beats written.
        accepted = {name: Signal(ACCEPT_WIDTH, name=f"{name}_calls") for name in CLIENTS}
        for index, name in enumerate(CLIENTS):
            port = mux.clients[index].cmd
            with m.If(port.valid & port.ready):
                m.d.sync += accepted[name].eq(accepted[name] + 1)
        written = Signal(range(mc.batch * output_layout(cfg, bb).length // bb + 1))
        with m.If(writer.i.valid & writer.i.ready):
            m.d.sync += written.eq(written + 1)
        task = Signal.like(regs.task_id)
        addr = {name: Signal(aw, name=f"{name}_addr") for name in ("image", "weights", "output")}
        busy = Signal()
        with m.If(regs.start):
            m.d.sync += [task.eq(regs.task_id), busy.eq(1), written.eq(0), shift_beat.eq(0)]
            m.d.sync += [count.eq(0) for count in accepted.values()]
            m.d.sync += [addr[name].eq(getattr(regs, f"{name}_addr")) for name in addr]
        m.d.comb += [seq.start.eq(regs.start), seq.stop.eq(clear | ~busy), seq.task.eq(task),
                     seq.weights_addr.eq(addr["weights"]), seq.image_addr.eq(addr["image"]),
                     seq.output_addr.eq(addr["output"]),
                     seq.shift_beats.eq(shift_beat),
                     # The MoE half counts a call taken when its skid takes it; the program
                     # waits until the mux has (the next block's calls must come after). The
                     # half's flag is registered first: it comes from the half's state.
                     seq.moe_calls_taken.eq(moe_calls_taken & ~calls["moe"].valid),
                     seq.written.eq(written), seq.writer_idle.eq(writer.idle),
                     self.progress.eq(seq.progress), regs.done.eq(seq.done)]
        m.d.comb += [seq.shifts[n].eq(shift) for n, shift in enumerate(shifts)]
        m.d.comb += [seq.accepted[int(unit)].eq(accepted[unit.name.lower()])
                     for unit in CALLS_PER_COMMAND]
        with m.If(seq.done):
            m.d.sync += busy.eq(0)

        # Counters.
        total = wide_counter(m, name="total", width=len(regs.cycles), clear=regs.start,
                             step=busy)
        m.submodules.stage_counters = stages = StageCounters(self.stages)
        m.d.comb += [stages.start.eq(regs.start), stages.busy.eq(busy),
                     stages.ready.eq(Cat(units[unit.name.lower()].cmd.ready for unit in Unit)),
                     stages.all_routed.eq(moe.all_routed),
                     regs.stage_cycles.eq(stages.counts), self.stage.eq(stages.oldest),
                     regs.busy.eq(busy | draining), regs.cycles.eq(total)]

        # Faults: an AXI error, a dropped DMA command or a rejected command ends the run, two
        # cycles after it is seen (the abort resets the whole datapath: it comes from a
        # register, and that from registered ORs of the units' sticky errors). The code is the
        # first source in this order.
        readers = (image_reader, params_reader, fetch)
        sources = (
            (ErrorCode.AXI_READ_ERROR, Cat(*(r.resp_error for r in readers), moe.resp_error)),
            (ErrorCode.AXI_WRITE_ERROR, writer.resp_error),
            (ErrorCode.DMA_COMMAND, Cat(*(r.error for r in readers), writer.error)),
            (ErrorCode.COMPUTE_REJECTED, cu.error),
            (ErrorCode.EMBED_REJECTED, embed.error),
            (ErrorCode.ATTENTION_REJECTED, att.error),
            (ErrorCode.MLP_REJECTED, mlp.error),
            (ErrorCode.MOE_REJECTED, moe.error),
            (ErrorCode.SHIFT_TABLE, bad_shift),
        )
        failing = []
        for code, flags in sources:
            flag = Signal(name=f"fails_{code.name.lower()}")
            m.d.sync += flag.eq(flags.any())
            failing.append((code, flag))
        fault_code = Signal.like(regs.fault_code)
        first = ErrorCode.NONE
        for code, flag in reversed(failing):
            first = Mux(flag, code, first)
        m.d.sync += [abort.eq(busy & ~draining & ~abort & Cat(*(f for _, f in failing)).any()),
                     fault_code.eq(first)]
        m.d.comb += [regs.fault.eq(abort | hung),
                     regs.fault_code.eq(Mux(hung, ErrorCode.BUS_HUNG, fault_code))]
        with m.If(ending):
            m.d.sync += busy.eq(0)
        return m
