"""Fetch one linear layer's parameters from memory into the compute unit's streams.

A command names the address of a record laid out by :func:`model.packer.linear_record` and the
beats of its two regions. One AXI read (:class:`hw.axi_reader.AxiReader`) brings the record;
the weight beats go to ``w`` as they are (a ``data_width``-bit beat holds ``data_width / 16``
weights, lane 0 in the low bits), the bias beats are regrouped into beats of ``cols`` 64-bit words
and each word is cut to the accumulator width for ``b``.

Throughput: one memory beat per cycle; ``w`` and ``b`` carry what the memory delivers. Errors:
those of the AXI reader (``error``).
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.packer import BIAS_WORD_BYTES

from .axi import axi4_read
from .axi_reader import AxiReader

__all__ = ["LinearFetch"]


class LinearFetch(wiring.Component):
    """Stream a linear layer's weights and biases out of memory.

    Parameters
    ----------
    cols : int
        Bias words per ``b`` beat (the compute unit's columns).
    acc_width : int
        Bits of a bias word on ``b``.
    data_width, addr_width : int
        The AXI port.
    max_beats : int
        Largest record, in beats.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"addr", "weight_beats", "bias_beats"})))``
    w : ``Out(stream.Signature(ArrayLayout(signed(16), data_width // 16)))``
    b : ``Out(stream.Signature(ArrayLayout(signed(acc_width), cols)))``
    bus : ``Out(axi4_read(...))``
    error : ``Out(1)``
    """

    def __init__(self, *, cols, acc_width, data_width=128, addr_width=40, max_beats=1 << 16):
        words = data_width // (8 * BIAS_WORD_BYTES)
        if words < 1 or cols % words:
            raise ValueError(f"LinearFetch needs data_width ({data_width}) to hold whole 64-bit "
                             f"bias words, a number that divides cols ({cols})")
        if acc_width > 8 * BIAS_WORD_BYTES:
            raise ValueError(f"LinearFetch acc_width must be at most {8 * BIAS_WORD_BYTES}")
        self._cols, self._acc_width, self._words = cols, acc_width, words
        self.reader = AxiReader(addr_width=addr_width, data_width=data_width,
                                max_beats=max_beats)
        beats = unsigned(ceil_log2(max_beats + 1))
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "addr": unsigned(addr_width), "weight_beats": beats, "bias_beats": beats}))),
            "w": Out(stream.Signature(data.ArrayLayout(signed(16), data_width // 16))),
            "b": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols))),
            "bus": Out(axi4_read(addr_width=addr_width, data_width=data_width)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = rd = self.reader
        wiring.connect(m, rd.bus, wiring.flipped(self.bus))
        m.d.comb += self.error.eq(rd.error)
        C, W = self._cols, self._words

        weights_left = Signal.like(self.cmd.payload.weight_beats)
        biases_left = Signal.like(self.cmd.payload.bias_beats)
        busy = weights_left.any() | biases_left.any()
        m.d.comb += [self.cmd.ready.eq(~busy & rd.cmd.ready), rd.cmd.valid.eq(self.cmd.valid & ~busy),
                     rd.cmd.payload.addr.eq(self.cmd.payload.addr),
                     rd.cmd.payload.beats.eq(self.cmd.payload.weight_beats +
                                             self.cmd.payload.bias_beats)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [weights_left.eq(self.cmd.payload.weight_beats),
                         biases_left.eq(self.cmd.payload.bias_beats)]

        # Bias words gather in a register until a beat of C is complete.
        group = Signal(range(C // W))
        held = Signal(data.ArrayLayout(64, C - W)) if C > W else None
        b_full = self.b.valid & ~self.b.ready
        with m.If(self.b.valid & self.b.ready):
            m.d.sync += self.b.valid.eq(0)

        with m.If(weights_left.any()):
            m.d.comb += [self.w.valid.eq(rd.o.valid), self.w.payload.eq(rd.o.payload),
                         rd.o.ready.eq(self.w.ready)]
            with m.If(rd.o.valid & rd.o.ready):
                m.d.sync += weights_left.eq(weights_left - 1)
        with m.Elif(biases_left.any()):
            m.d.comb += rd.o.ready.eq(~b_full)
            with m.If(rd.o.valid & rd.o.ready):
                m.d.sync += biases_left.eq(biases_left - 1)
                incoming = rd.o.payload
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
