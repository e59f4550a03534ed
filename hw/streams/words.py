"""Memory words <-> activation lanes: twin of :mod:`model.weight_image`'s int32 word layout
(position embeddings, LayerNorm parameters, the output buffer).

In memory every value is a sign-extended little-endian 32-bit word, ``data_width / 32`` to an
AXI beat; on chip a beat carries ``lanes`` values of ``width`` bits. :class:`WordsToLanes` gathers
``lanes * 32 / data_width`` memory beats into one lane beat (each word cut to ``width`` bits);
:class:`LanesToWords` spreads a lane beat over as many memory beats (each value sign-extended).

Latency: :class:`WordsToLanes` delivers a lane beat the cycle after its last memory beat;
:class:`LanesToWords` passes each memory beat combinationally from its held lane beat.
Throughput: one memory beat per cycle either way.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WordsToLanes", "LanesToWords", "WORD_BITS"]

#: Bits of a value in memory.
WORD_BITS = 32


def _words_per_beat(owner, lanes, data_width):
    per_beat = data_width // WORD_BITS
    if data_width % WORD_BITS or lanes % per_beat:
        raise ValueError(f"{owner}: a {data_width}-bit beat must hold whole 32-bit words, "
                         f"a number that divides lanes ({lanes})")
    return per_beat


class WordsToLanes(wiring.Component):
    """Memory beats of 32-bit words in, beats of ``lanes`` signed ``width``-bit values out.

    Members
    -------
    i : ``In(stream.Signature(unsigned(data_width)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(width), lanes)))``
    """

    def __init__(self, *, lanes, width, data_width=128):
        self._per_beat = _words_per_beat("WordsToLanes", lanes, data_width)
        self._lanes, self._width, self._data_width = lanes, width, data_width
        super().__init__({
            "i": In(stream.Signature(unsigned(data_width))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(width), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        parts = self._lanes // self._per_beat
        held = [Signal(self._data_width, name=f"part_{n}") for n in range(parts - 1)]
        part = Signal(range(parts))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += part.eq(part + 1)
            for n in range(parts - 1):
                with m.If(part == n):
                    m.d.sync += held[n].eq(self.i.payload)
            with m.If(part == parts - 1):
                beats = held + [self.i.payload]
                words = [beat[WORD_BITS * k:WORD_BITS * (k + 1)]
                         for beat in beats for k in range(self._per_beat)]
                m.d.sync += [part.eq(0), self.o.valid.eq(1),
                             self.o.payload.eq(Cat(*(w[:self._width] for w in words)))]
        return m


class LanesToWords(wiring.Component):
    """Beats of ``lanes`` signed ``width``-bit values in, memory beats of 32-bit words out.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(width), lanes)))``
    o : ``Out(stream.Signature(unsigned(data_width)))``
    """

    def __init__(self, *, lanes, width, data_width=128):
        self._per_beat = _words_per_beat("LanesToWords", lanes, data_width)
        self._lanes, self._width, self._data_width = lanes, width, data_width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(width), lanes))),
            "o": Out(stream.Signature(unsigned(data_width))),
        })

    def elaborate(self, platform):
        m = Module()
        per_beat, parts = self._per_beat, self._lanes // self._per_beat
        part = Signal(range(parts))
        words = [_sign_extend(self.i.payload[lane]) for lane in range(self._lanes)]
        beats = [Cat(*words[n * per_beat:(n + 1) * per_beat]) for n in range(parts)]
        selected = beats[0]
        for n in range(1, parts):
            selected = Mux(part == n, beats[n], selected)
        m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(selected)]
        last = part == parts - 1
        m.d.comb += self.i.ready.eq(self.o.ready & last)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += part.eq(0)
            with m.If(~last):
                m.d.sync += part.eq(part + 1)
        return m


def _sign_extend(value):
    """A signed value as a 32-bit word."""
    return Cat(value, value[-1].replicate(WORD_BITS - len(value)))
