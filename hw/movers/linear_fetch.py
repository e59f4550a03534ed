"""Fetch one linear layer's parameters from memory into the compute unit's streams.

A command names the address of a record laid out by :func:`model.packer.linear_record` and the
beats of its two regions. AXI reads (:class:`hw.movers.axi_reader.AxiReader`) bring the record: with
``ports`` memory ports, a beat is ``ports x data_width`` bits and the record is stored as that many
planes (:func:`model.packer.planes`), port ``p`` reading plane ``p`` while the others read theirs,
and the parts of each beat are put side by side again (port 0 in the low bits). The weight beats go
to ``w`` as they are (a beat holds ``ports x data_width / 16`` weights, lane 0 in the low bits),
the bias beats are regrouped into beats of ``cols`` 64-bit words and each word is cut to the
accumulator width for ``b``.

Latency: a command taken at a clock edge reaches the readers three cycles later (its length
added up, each plane's offset and address computed, one register apart), and the readers' first
addresses two cycles after that (:class:`hw.movers.axi_reader.AxiReader`). Issue runs one record
ahead of delivery: the readers take record ``n+1`` as soon as they have split record ``n`` into
bursts, while its beats still stream, so the memory's latency to ``n+1``'s first beat passes
during ``n``'s last ones instead of after them. The next command is taken while a record
streams.

Throughput: one beat per cycle, ``ports x data_width`` bits; ``w`` and ``b`` carry what the
memory delivers. Errors: those of the AXI readers (``error``).
"""

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from hw import checks
from model.packer import BIAS_WORD_BYTES

from hw.movers.axi import axi4_read
from hw.movers.axi_reader import AxiReader
from hw.streams.gather import times_constant
from hw.streams.pipeline import countdown

__all__ = ["LinearFetch", "bus_name", "buses"]


def bus_name(port):
    """The member name of memory port ``port``: ``bus``, ``bus_1``, ..."""
    return f"bus_{port}" if port else "bus"


def buses(component):
    """The memory ports of a component that has them as ``bus``, ``bus_1``, ..., port 0 first."""
    names = component.signature.members
    return [getattr(component, bus_name(p)) for p in range(len(names))
            if bus_name(p) in names]


class _Zip:
    """The output streams of several readers as one (``valid``, ``payload``, ``ready``): a beat
    is valid when every reader has its part, and taking it takes every part."""

    def __init__(self, m, readers):
        self.valid = Cat(rd.o.valid for rd in readers).all()
        self.payload = Cat(rd.o.payload for rd in readers)
        self.ready = Signal()
        for rd in readers:
            m.d.comb += rd.o.ready.eq(self.ready & self.valid)


class LinearFetch(wiring.Component):
    """Stream a linear layer's weights and biases out of memory.

    Parameters
    ----------
    cols : int
        Bias words per ``b`` beat (the compute unit's columns).
    acc_width : int
        Bits of a bias word on ``b``.
    data_width, addr_width : int
        The AXI ports.
    ports : int
        Memory ports a record is read over at once.
    max_beats : int
        Largest record, in beats.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"addr", "weight_beats", "bias_beats"})))``
    w : ``Out(stream.Signature(ArrayLayout(signed(16), ports * data_width // 16)))``
    b : ``Out(stream.Signature(ArrayLayout(signed(acc_width), cols)))``
    bus, bus_1, ... : ``Out(axi4_read(...))``
        Port 0, port 1, ... (:attr:`buses`).
    error : ``Out(1)``
        Sticky: a reader dropped a command or got an error response.
    resp_error : ``Out(1)``
        Sticky: a reader got an error response (SLVERR/DECERR).
    """

    def __init__(self, *, cols, acc_width, data_width=128, addr_width=40, ports=1,
                 max_beats=1 << 16):
        checks.positive("LinearFetch", "ports", ports)
        self._port_bytes = data_width // 8
        data_width *= ports                    # the beat, all ports side by side
        words = data_width // (8 * BIAS_WORD_BYTES)
        if words < 1 or cols % words:
            raise ValueError(f"LinearFetch needs a beat of {ports} x {data_width // ports} bits "
                             f"to hold whole 64-bit bias words, a number that divides cols "
                             f"({cols})")
        if acc_width > 8 * BIAS_WORD_BYTES:
            raise ValueError(f"LinearFetch acc_width must be at most {8 * BIAS_WORD_BYTES}")
        self._cols, self._acc_width, self._words = cols, acc_width, words
        self.readers = [AxiReader(addr_width=addr_width, data_width=self._port_bytes * 8,
                                  max_beats=max_beats) for _ in range(ports)]
        beats = unsigned(ceil_log2(max_beats + 1))
        port = axi4_read(addr_width=addr_width, data_width=self._port_bytes * 8)
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "addr": unsigned(addr_width), "weight_beats": beats, "bias_beats": beats}))),
            "w": Out(stream.Signature(data.ArrayLayout(signed(16), data_width // 16))),
            "b": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols))),
            **{bus_name(p): Out(port) for p in range(ports)},
            "error": Out(1),
            "resp_error": Out(1),
        })

    buses = property(buses, doc="The AXI read ports, port 0 first.")

    def elaborate(self, platform):
        m = Module()
        readers = self.readers
        for p, (rd, bus) in enumerate(zip(readers, self.buses)):
            m.submodules[f"reader_{p}" if p else "reader"] = rd
            wiring.connect(m, rd.bus, wiring.flipped(bus))
        m.d.comb += [self.error.eq(Cat(rd.error for rd in readers).any()),
                     self.resp_error.eq(Cat(rd.resp_error for rd in readers).any())]
        C, W = self._cols, self._words

        # A command goes to the readers in four steps, one register apart, so that each path
        # has one adder: taken (the record's length added up), planned (each plane's offset),
        # addressed (each plane's address), issued (to every reader at once, when no record
        # waits for the one streaming to end).
        TAKE, PLAN, ADDRESS, ISSUE = range(4)
        step = Signal(range(4))
        cmd = Signal.like(self.cmd.payload)
        record = Signal(len(cmd.weight_beats) + 1)
        plane_shift = exact_log2(self._port_bytes)
        offsets = [Signal(len(cmd.addr), name=f"plane_offset_{p}") for p in range(len(readers))]
        m.d.comb += self.cmd.ready.eq(step == TAKE)
        # The readers' beats, side by side: one beat of the record when every port has its part.
        beat = _Zip(m, readers)
        # An issued record waits in `pending` (its two lengths) until the one streaming has
        # been delivered; its beats are then counted down with their end known a cycle ahead:
        # which stream a beat goes to is a register, not a test of a wide count.
        issue, deliver = Signal(), Signal()
        pending = Signal()
        pending_weights, pending_biases = Signal.like(cmd.weight_beats), Signal.like(cmd.bias_beats)
        weights_left, _ = countdown(m, name="weights", load=deliver, total=pending_weights,
                                    step=self.w.valid & self.w.ready)
        biases_left, _ = countdown(m, name="biases", load=deliver, total=pending_biases,
                                   step=beat.valid & beat.ready & ~weights_left)
        m.d.comb += [issue.eq((step == ISSUE) & ~pending &
                              Cat(rd.cmd.ready for rd in readers).all()),
                     deliver.eq(pending & ~weights_left & ~biases_left)]
        with m.If(issue):
            m.d.sync += [pending.eq(1), pending_weights.eq(cmd.weight_beats),
                         pending_biases.eq(cmd.bias_beats)]
        with m.Elif(deliver):
            m.d.sync += pending.eq(0)
        with m.Switch(step):
            with m.Case(TAKE):
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), step.eq(PLAN),
                                 record.eq(self.cmd.payload.weight_beats +
                                           self.cmd.payload.bias_beats)]
            with m.Case(PLAN):
                # Plane p of the record starts p planes of `record` beats on: `record * p`
                # written as shifted copies added (one add up to four ports), not a multiplier.
                m.d.sync += [offset.eq(times_constant(record, p) << plane_shift)
                             for p, offset in enumerate(offsets)]
                m.d.sync += step.eq(ADDRESS)
            with m.Case(ADDRESS):
                for rd, offset in zip(readers, offsets):
                    m.d.sync += [rd.cmd.payload.addr.eq(cmd.addr + offset),
                                 rd.cmd.payload.beats.eq(record)]
                m.d.sync += step.eq(ISSUE)
            with m.Case(ISSUE):
                with m.If(issue):
                    m.d.sync += step.eq(TAKE)
        for rd in readers:
            m.d.comb += rd.cmd.valid.eq(issue)

        # Bias words gather in a register until a beat of C is complete.
        group = Signal(range(C // W))
        held = Signal(data.ArrayLayout(64, C - W)) if C > W else None
        b_full = self.b.valid & ~self.b.ready
        with m.If(self.b.valid & self.b.ready):
            m.d.sync += self.b.valid.eq(0)

        with m.If(weights_left):
            m.d.comb += [self.w.valid.eq(beat.valid), self.w.payload.eq(beat.payload),
                         beat.ready.eq(self.w.ready)]
        with m.Elif(biases_left):
            m.d.comb += beat.ready.eq(~b_full)
            with m.If(beat.valid & beat.ready):
                incoming = beat.payload
                if held is None:
                    words = [incoming[64 * i:64 * (i + 1)] for i in range(W)]
                    m.d.sync += [self.b.payload[i].eq(words[i][:self._acc_width])
                                 for i in range(W)]
                    m.d.sync += self.b.valid.eq(1)
                else:
                    with m.If(group == C // W - 1):
                        for i in range(C - W):
                            m.d.sync += self.b.payload[i].eq(held[i][:self._acc_width])
                        for i in range(W):
                            m.d.sync += self.b.payload[C - W + i].eq(
                                incoming[64 * i:64 * (i + 1)][:self._acc_width])
                        m.d.sync += [self.b.valid.eq(1), group.eq(0)]
                    with m.Else():
                        for i in range(W):
                            for g in range(C // W - 1):
                                with m.If(group == g):
                                    m.d.sync += held[g * W + i].eq(incoming[64 * i:64 * (i + 1)])
                        m.d.sync += group.eq(group + 1)
        return m
