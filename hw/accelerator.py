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

One :class:`hw.compute_unit.ComputeUnit` runs every linear layer; the patch embedding, the
attention half, the dense MLP half and the MoE half are its clients
(:class:`hw.compute_mux.ComputeMux`). Activations stay on chip: each stage streams its rows into
the next stage's input buffer.

**The sequencer** runs the program of the configuration (every offset and beat count comes from
:func:`model.weight_image.layout` at elaboration; only the output shifts are read from the image's
shift table at the start of each run). For each stage it issues the unit's command, the reads
of its parameters (position embeddings, LayerNorm sets) and the fetches of its linear records,
then waits until the unit's calls are all in the compute unit's queue, and launches the next
stage: so a stage's weights load while the previous stage computes. The MoE half fetches its
own gate and expert records (expert-aware reordering, :mod:`hw.expert_engine`); its number of
calls is known once the tokens are routed (``MoeHalf.calls_taken``), and the stage after it is
launched when they are all in the queue, like any other. At the end the last block's rows go to the output
buffer as int32 words (:func:`model.weight_image.output_layout`), and ``done`` rises when the
last write is acknowledged.

**Errors.** Start checks are the register block's (busy, zero or unaligned address, task out of
range). An AXI error response on any port, or a unit rejecting a command, ends the run at once
with STATUS.ERROR and AXI_READ_ERROR, AXI_WRITE_ERROR or INTERNAL; SOFT_RESET ends it the same
way without an error. Either holds the datapath in reset while the memory ports drain (no new
request; outstanding read bursts taken and dropped; a write in progress finished with zeros), so
the next run starts on quiet ports; STATUS.BUSY stays high until then. The machine never hangs.

**Cycles** (``CYCLES_TOTAL`` and per stage): the total counts from START to done; a stage counts
the cycles in which its unit is running (they overlap where units overlap). One m3vit-tiny image
takes about 3.0 M cycles with the default shape (docs/performance.md); throughput is one image at
a time.
"""

from amaranth import Cat, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.numerics import DEFAULT
from model.packer import tiles
from model.registers import ErrorCode
from model.weight_image import input_layout, layout, output_layout

from .attention_half import CALLS, AttentionHalf
from .axi import axi4_lite, axi4_read, axi4_write
from .axi_reader import AxiReader
from .axi_writer import AxiWriter
from .compute_mux import ComputeMux
from .compute_unit import ComputeUnit
from .gelu import Gelu
from .linear_fetch import LinearFetch, bus_name
from .mlp_half import MlpHalf
from .moe_half import MoeHalf
from .patch_embed import PatchEmbed
from .registers import RegisterBlock
from .router import StreamRouter
from .widen import Widen
from .words import LanesToWords, WordsToLanes

__all__ = ["Accelerator", "CLIENTS", "read_ports"]

#: The compute unit's clients, in mux order.
CLIENTS = ("embed", "attention", "mlp", "moe")
#: Where the params router sends its reads.
_PARAMS = ("pos", "attention", "mlp", "moe")


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
    """

    def __init__(self, config, *, lanes=16, slots=4, data_width=128, addr_width=40,
                 expert_ports=2):
        cfg = self.config = config
        beat_bytes = data_width // 8
        self.layout = layout(cfg, rows=lanes, cols=lanes, beat_bytes=beat_bytes,
                             expert_ports=expert_ports)
        self._lanes, self._data_width, self._addr_width = lanes, data_width, addr_width
        self._expert_ports = expert_ports
        weight_lanes = expert_ports * data_width // 16
        if (lanes * lanes) % weight_lanes:
            raise ValueError(f"Accelerator: a {lanes} x {lanes} tile of weights is not whole "
                             f"beats of {expert_ports} x {data_width} bits; use fewer "
                             f"expert_ports or narrower ports")
        dims = (cfg.patch_in, cfg.dim, cfg.mlp_hidden, cfg.expert_hidden)
        self.compute = ComputeUnit(
            rows=lanes, cols=lanes, max_in=max(dims), max_out=max(dims[1:] + (cfg.experts,)),
            max_weights=max(cfg.patch_in * cfg.dim, cfg.dim * cfg.mlp_hidden,
                            cfg.dim * cfg.expert_hidden),
            max_tokens=cfg.tokens, weight_lanes=weight_lanes, gelu=Gelu)
        shared = dict(lanes=lanes, compute=self.compute)
        self.embed = PatchEmbed(channels=cfg.image_channels, patch=cfg.patch, dim=cfg.dim,
                                max_patches=cfg.patches, weight_lanes=weight_lanes,
                                data_width=data_width, **shared)
        self.attention = AttentionHalf(dim=cfg.dim, heads=cfg.heads, max_tokens=cfg.tokens,
                                       slots=slots, weight_lanes=weight_lanes, eps=cfg.ln_eps,
                                       **shared)
        self.mlp = MlpHalf(dim=cfg.dim, hidden=cfg.mlp_hidden, max_tokens=cfg.tokens,
                           weight_lanes=weight_lanes, eps=cfg.ln_eps, **shared)
        self.moe = MoeHalf(dim=cfg.dim, expert_hidden=cfg.expert_hidden, experts=cfg.experts,
                           top_k=cfg.top_k, max_tokens=cfg.tokens, data_width=data_width,
                           addr_width=addr_width, ports=expert_ports, eps=cfg.ln_eps, **shared)
        self.regs = RegisterBlock(tasks=cfg.tasks, alignment=beat_bytes,
                                  variant=self.layout.variant)
        read = axi4_read(addr_width=addr_width, data_width=data_width)
        super().__init__({
            "control": In(axi4_lite(addr_width=12)),
            "image_bus": Out(read), "params_bus": Out(read), "weights_bus": Out(read),
            **{f"experts_{bus_name(p)}": Out(bus.signature)
               for p, bus in enumerate(self.moe.buses)},
            "output_bus": Out(axi4_write(addr_width=addr_width, data_width=data_width)),
            "irq": Out(1),
            "progress": Out(range(cfg.depth + 2)),
        })

    @property
    def read_ports(self):
        """Names of the AXI4 read masters (:func:`read_ports`)."""
        return read_ports(self._expert_ports)

    def elaborate(self, platform):
        m = Module()
        cfg, lay, L = self.config, self.layout, self._lanes
        dw, aw, bb = self._data_width, self._addr_width, self._data_width // 8
        act = DEFAULT.act

        # --- Control ---------------------------------------------------------------------
        m.submodules.regs = regs = self.regs
        wiring.connect(m, wiring.flipped(self.control), regs.bus)
        m.d.comb += self.irq.eq(regs.irq)
        abort = Signal()                       # an error ends the run: reset the datapath
        clear = Signal()                       # the datapath is held in reset
        draining = Signal()                    # ... until the memory ports are quiet
        quiet = Signal()
        m.d.comb += clear.eq(regs.soft_reset | abort | draining)
        with m.If(regs.soft_reset | abort):
            m.d.sync += draining.eq(1)
        with m.Elif(quiet):
            m.d.sync += draining.eq(0)
        datapath = ResetInserter(clear)

        def add(name, unit):
            m.submodules[name] = datapath(unit)
            return unit

        # --- Datapath units --------------------------------------------------------------
        cu = add("compute", self.compute)
        mux = add("compute_mux", ComputeMux(cu, clients=len(CLIENTS)))
        wiring.connect(m, mux.unit, cu)
        units = {name: add(name, getattr(self, name)) for name in CLIENTS}
        for index, name in enumerate(CLIENTS):
            wiring.connect(m, units[name].cu, mux.clients[index])
        embed, att, mlp, moe = (units[name] for name in CLIENTS)
        outstanding = []

        def read_port(unit_bus, port):
            """A unit's AXI read master to a port of the machine. While draining, no new
            request goes out and every outstanding burst's data is taken and dropped."""
            for name, member in unit_bus.signature.members.items():
                if name in ("arvalid", "arready", "rvalid", "rready"):
                    continue
                if member.flow == Out:
                    m.d.comb += getattr(port, name).eq(getattr(unit_bus, name))
                else:
                    m.d.comb += getattr(unit_bus, name).eq(getattr(port, name))
            m.d.comb += [port.arvalid.eq(unit_bus.arvalid & ~draining),
                         unit_bus.arready.eq(port.arready & ~draining),
                         port.rready.eq(unit_bus.rready | draining),
                         unit_bus.rvalid.eq(port.rvalid & ~draining)]
            bursts = Signal(8, name=f"port{len(outstanding)}_bursts")
            m.d.sync += bursts.eq(bursts + (port.arvalid & port.arready) -
                                  (port.rvalid & port.rready & port.rlast))
            outstanding.append(bursts)

        for p, bus in enumerate(moe.buses):
            read_port(bus, getattr(self, f"experts_{bus_name(p)}"))

        max_beats = max(s.beats for s in lay.sections) + input_layout(cfg, bb).length // bb
        image_reader = add("image_reader", AxiReader(addr_width=aw, data_width=dw,
                                                     max_beats=max_beats))
        params_reader = add("params_reader", AxiReader(addr_width=aw, data_width=dw,
                                                       max_beats=max_beats))
        fetch = add("fetch", LinearFetch(cols=L, acc_width=cu.acc_width, data_width=dw,
                                         addr_width=aw, max_beats=max_beats))
        # The writer is not reset with the datapath: a write in progress is finished (with
        # zeros) while draining, then the writer alone is reset.
        writer = AxiWriter(addr_width=aw, data_width=dw)
        m.submodules.writer = ResetInserter(draining & quiet)(writer)
        read_port(image_reader.bus, self.image_bus)
        read_port(params_reader.bus, self.params_bus)
        read_port(fetch.bus, self.weights_bus)
        wiring.connect(m, writer.bus, wiring.flipped(self.output_bus))
        m.d.comb += quiet.eq(Cat(*(b == 0 for b in outstanding)).all() & writer.idle)

        # Image reads: the shift table, then the image.
        image_router = add("image_router", StreamRouter(unsigned(dw), destinations=2,
                                                        max_beats=max_beats))
        wiring.connect(m, image_reader.o, image_router.i)
        m.d.comb += [embed.image.valid.eq(image_router.o[1].valid),
                     embed.image.payload.eq(image_router.o[1].payload),
                     image_router.o[1].ready.eq(embed.image.ready)]
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

        # Parameter reads: position embeddings and LayerNorm sets, int32 words.
        params_router = add("params_router", StreamRouter(unsigned(dw),
                                                          destinations=len(_PARAMS),
                                                          max_beats=max_beats))
        wiring.connect(m, params_reader.o, params_router.i)
        pos = add("pos_words", WordsToLanes(lanes=L, width=act.width, data_width=dw))
        wiring.connect(m, params_router.o[0], pos.i)
        wiring.connect(m, pos.o, embed.pos)
        for index, name in enumerate(_PARAMS[1:], start=1):
            words = add(f"{name}_ln_words", WordsToLanes(lanes=2 * L, width=32, data_width=dw))
            wiring.connect(m, params_router.o[index], words.i)
            p = units[name].p
            m.d.comb += [p.valid.eq(words.o.valid), words.o.ready.eq(p.ready)]
            for lane in range(L):
                m.d.comb += [p.payload[lane].gamma.eq(words.o.payload[lane]),
                             p.payload[lane].beta.eq(words.o.payload[L + lane])]

        # Dense linear records: the fetch's weights and biases go where the sequencer says.
        # The weights are widened to the compute unit's beat of expert_ports memory beats.
        dense = ("embed", "attention", "mlp")
        widen = add("widen", Widen(signed(16), dw // 16, self._expert_ports))
        w_router = add("w_router", StreamRouter(widen.o.payload.shape(),
                                                destinations=len(dense), max_beats=max_beats))
        b_router = add("b_router", StreamRouter(fetch.b.payload.shape(),
                                                destinations=len(dense), max_beats=max_beats))
        wiring.connect(m, fetch.w, widen.i)
        wiring.connect(m, widen.o, w_router.i)
        wiring.connect(m, fetch.b, b_router.i)
        for index, name in enumerate(dense):
            wiring.connect(m, w_router.o[index], units[name].w)
            wiring.connect(m, b_router.o[index], units[name].b)

        # --- Activations: each stage's rows into the next stage ----------------------------
        att_source = Signal(range(4))          # 0 embed, 1 mlp, 2 moe, 3 none
        att_to_moe = Signal()                  # attention rows to the MoE half, else the MLP
        out_source = Signal(range(3))          # 0 none, 1 mlp, 2 moe
        to_words = add("out_words", LanesToWords(lanes=L, width=act.width, data_width=dw))
        sources = [embed.o, mlp.o, moe.o]
        for index, source in enumerate(sources):
            into_att = att_source == index
            into_out = out_source == index if index else 0
            m.d.comb += source.ready.eq(Mux(into_att, att.x.ready,
                                            Mux(into_out, to_words.i.ready, 0)))
        for sink, select in ((att.x, att_source), (to_words.i, out_source)):
            valid, payload = 0, sources[0].payload
            for index, source in enumerate(sources):
                if sink is to_words.i and index == 0:
                    continue
                valid = Mux(select == index, source.valid, valid)
                payload = Mux(select == index, source.payload, payload)
            m.d.comb += [sink.valid.eq(valid), sink.payload.eq(payload)]
        for sink, chosen in ((mlp.x, ~att_to_moe), (moe.x, att_to_moe)):
            m.d.comb += [sink.valid.eq(att.o.valid & chosen), sink.payload.eq(att.o.payload)]
        m.d.comb += att.o.ready.eq(Mux(att_to_moe, moe.x.ready, mlp.x.ready))
        m.d.comb += [writer.i.valid.eq(to_words.o.valid | draining),
                     writer.i.payload.eq(Mux(draining, 0, to_words.o.payload)),
                     to_words.o.ready.eq(writer.i.ready)]

        # --- The run ----------------------------------------------------------------------
        # Calls each client has had accepted by the compute unit, and output beats written.
        accepted = {name: Signal(16, name=f"{name}_calls") for name in CLIENTS}
        for index, name in enumerate(CLIENTS):
            port = mux.clients[index].cmd
            with m.If(port.valid & port.ready):
                m.d.sync += accepted[name].eq(accepted[name] + 1)
        written = Signal(range(output_layout(cfg, bb).length // bb + 1))
        with m.If(writer.i.valid & writer.i.ready):
            m.d.sync += written.eq(written + 1)
        task = Signal.like(regs.task_id)
        addr = {name: Signal(aw, name=f"{name}_addr") for name in ("image", "weights", "output")}
        busy = Signal()
        with m.If(regs.start):
            m.d.sync += [task.eq(regs.task_id), busy.eq(1), written.eq(0), shift_beat.eq(0)]
            m.d.sync += [count.eq(0) for count in accepted.values()]
            m.d.sync += [addr[name].eq(getattr(regs, f"{name}_addr")) for name in addr]

        # Counters.
        total = Signal(64)
        stage = {name: Signal(32, name=f"{name}_cycles") for name in CLIENTS}
        with m.If(regs.start):
            m.d.sync += [total.eq(0)] + [c.eq(0) for c in stage.values()]
        with m.Elif(busy):
            m.d.sync += total.eq(total + 1)
            for name in CLIENTS:
                with m.If(~units[name].cmd.ready):
                    m.d.sync += stage[name].eq(stage[name] + 1)
        m.d.comb += [regs.busy.eq(busy | draining), regs.cycles.eq(total),
                     regs.stage_cycles.embed.eq(stage["embed"]),
                     regs.stage_cycles.attention.eq(stage["attention"]),
                     regs.stage_cycles.mlp.eq(stage["mlp"]),
                     regs.stage_cycles.moe.eq(stage["moe"])]

        # Faults: an AXI error or a rejected command ends the run.
        read_error = image_reader.error | params_reader.error | fetch.error | moe.error
        internal = cu.error | embed.error | att.error | mlp.error
        with m.If(busy & ~draining & (read_error | writer.error | internal)):
            m.d.comb += [abort.eq(1), regs.fault.eq(1),
                         regs.fault_code.eq(Mux(read_error, ErrorCode.AXI_READ_ERROR,
                                                Mux(writer.error, ErrorCode.AXI_WRITE_ERROR,
                                                    ErrorCode.INTERNAL)))]
            m.d.sync += busy.eq(0)
        with m.If(regs.soft_reset):
            m.d.sync += busy.eq(0)

        self._sequencer(m, regs=regs, units=units, addr=addr, task=task, shifts=shifts,
                        accepted=accepted, written=written, busy=busy, clear=clear,
                        image_reader=image_reader, image_router=image_router,
                        params_reader=params_reader, params_router=params_router,
                        fetch=fetch, w_router=w_router, b_router=b_router, writer=writer,
                        att_source=att_source, att_to_moe=att_to_moe, out_source=out_source,
                        shift_beat=shift_beat)
        return m

    def _sequencer(self, m, *, regs, units, addr, task, shifts, accepted, written, busy, clear,
                   image_reader, image_router, params_reader, params_router, fetch, w_router,
                   b_router, writer, att_source, att_to_moe, out_source, shift_beat):
        """The program of the configuration as one FSM: a state per push or wait."""
        cfg, lay, L, bb = self.config, self.layout, self._lanes, self._data_width // 8
        embed, att, mlp, moe = (units[name] for name in CLIENTS)
        states = []                             # (name, body(next_state))

        def push(name, streams, fields):
            """Offer one transfer on every stream together; go on when all take it."""
            def body(following):
                for s in streams:
                    others = [o.ready for o in streams if o is not s]
                    m.d.comb += s.valid.eq(Cat(*others).all() if others else 1)
                for target, value in fields:
                    m.d.comb += target.eq(value)
                with m.If(Cat(*(s.ready for s in streams)).all()):
                    m.next = following
            states.append((name, body))

        def mark(name, value):
            wait(name, 1, [self.progress.eq(value)])

        def wait(name, condition, actions=()):
            def body(following):
                with m.If(condition):
                    m.d.sync += list(actions)
                    m.next = following
            states.append((name, body))

        def read(name, reader, router, dest, address, beats):
            push(name, [reader.cmd, router.job],
                 [(reader.cmd.payload.addr, address), (reader.cmd.payload.beats, beats),
                  (router.job.payload.dest, dest), (router.job.payload.beats, beats)])

        def weights(section):
            return addr["weights"] + lay[section].offset

        def fetch_record(section, dest):
            s = lay[section]
            push(f"fetch_{section}", [fetch.cmd, w_router.job, b_router.job],
                 [(fetch.cmd.payload.addr, weights(section)),
                  (fetch.cmd.payload.weight_beats, s.weight_beats),
                  (fetch.cmd.payload.bias_beats, s.bias_beats),
                  (w_router.job.payload.dest, dest),
                  (w_router.job.payload.beats, s.weight_beats // self._expert_ports),
                  (b_router.job.payload.dest, dest),
                  (b_router.job.payload.beats, tiles(s.out_features, L))])

        def shift(section):
            return shifts[lay[section].shift]

        T = cfg.tokens
        # The shift table.
        read("shifts", image_reader, image_router, 0, weights("shifts"), lay["shifts"].beats)
        wait("shifts_in", shift_beat == lay["shifts"].beats)
        # Patch embedding.
        mark("embed_mark", 0)
        push("embed", [embed.cmd], [(embed.cmd.payload.patches, cfg.patches),
                                    (embed.cmd.payload.shift, shift("patch"))])
        read("image", image_reader, image_router, 1, addr["image"],
             input_layout(cfg, bb).length // bb)
        read("pos", params_reader, params_router, 0, weights("pos_embed"),
             lay["pos_embed"].beats)
        fetch_record("patch", 0)
        wait("embed_calls", accepted["embed"] == 1, [att_source.eq(0)])
        dense_blocks = 0
        for b in range(cfg.depth):
            p = f"l{b}."
            mark(p + "mark", b + 1)
            push(p + "attention", [att.cmd], [(att.cmd.payload.tokens, T)] +
                 [(att.cmd.payload[f"{c}_shift"], shift(p + c)) for c in CALLS])
            read(p + "ln1", params_reader, params_router, 1, weights(p + "ln1"),
                 lay[p + "ln1"].beats)
            for c in CALLS:
                fetch_record(p + c, 1)
            last = b == cfg.depth - 1
            if cfg.is_moe(b):
                wait(p + "attention_calls", accepted["attention"] == 4 * (b + 1),
                     [att_to_moe.eq(1)])
                # The expert engine's layer command: addresses in the image, the task's gate.
                fields = [lay.expert_engine_fields(b, t) for t in range(cfg.tasks)]
                payload = moe.cmd.payload
                values = [(payload.tokens, T)]
                for key, value in fields[0].items():
                    if key in ("base", "gate_addr"):
                        value = addr["weights"] + value
                        for t in range(1, cfg.tasks):
                            value = Mux(task == t, addr["weights"] + fields[t][key], value)
                    values.append((payload[key], value))
                experts = lay[p + "experts"].engine
                gates = [shifts[lay[f"{p}gate{t}"].shift] for t in range(cfg.tasks)]
                gate_shift = gates[0]
                for t in range(1, cfg.tasks):
                    gate_shift = Mux(task == t, gates[t], gate_shift)
                values += [(payload.fc1_shift, shifts[experts["fc1_shift_index"]]),
                           (payload.fc2_shift, shifts[experts["fc2_shift_index"]]),
                           (payload.gate_shift, gate_shift)]
                push(p + "moe", [moe.cmd], values)
                read(p + "ln2", params_reader, params_router, 3, weights(p + "ln2"),
                     lay[p + "ln2"].beats)
                wait(p + "moe_calls", moe.calls_taken,
                     [out_source.eq(2), att_source.eq(3)] if last else [att_source.eq(2)])
            else:
                dense_blocks += 1
                wait(p + "attention_calls", accepted["attention"] == 4 * (b + 1),
                     [att_to_moe.eq(0)])
                push(p + "mlp", [mlp.cmd], [(mlp.cmd.payload.tokens, T),
                                            (mlp.cmd.payload.fc1_shift, shift(p + "fc1")),
                                            (mlp.cmd.payload.fc2_shift, shift(p + "fc2"))])
                read(p + "ln2", params_reader, params_router, 2, weights(p + "ln2"),
                     lay[p + "ln2"].beats)
                fetch_record(p + "fc1", 2)
                fetch_record(p + "fc2", 2)
                wait(p + "mlp_calls", accepted["mlp"] == 2 * dense_blocks,
                     [out_source.eq(1), att_source.eq(3)] if last else [att_source.eq(1)])
        out = output_layout(cfg, bb)
        mark("output_mark", cfg.depth + 1)
        push("output", [writer.cmd], [(writer.cmd.payload.addr, addr["output"]),
                                      (writer.cmd.payload.beats, out.length // bb)])
        wait("written", (written == out.length // bb) & writer.idle)

        with m.FSM(name="sequencer"):
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.next = states[0][0]
            for index, (name, body) in enumerate(states):
                with m.State(name):
                    with m.If(clear | ~busy):
                        m.next = "IDLE"
                    with m.Else():
                        body(states[index + 1][0] if index + 1 < len(states) else "DONE")
            with m.State("DONE"):
                m.d.comb += regs.done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "IDLE"
