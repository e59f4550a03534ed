"""Scatter: write result beats back into an activation buffer by an index list, plainly or as
the expert combine ``dst += score * y``; twin of :mod:`model.streams.scatter`.

Each entry of ``idx`` names a row, its beat count, a score and whether to accumulate; the row's
beats then arrive on ``i``. Every beat goes through the same five-stage read-modify-write
pipeline (read ``dst`` and multiply ``y * score`` on one DSP48E2 per lane, three stages; round
and add; saturate and write), so both modes take one beat per cycle with a latency of
``LATENCY`` = 5 cycles from beat to write. Rows within one call must be distinct (as an
expert's queue is), so no write can race a read of the same address.

The buffer is outside the unit: a synchronous read port (``rd_addr`` -> ``rd_data`` one cycle
later) and a write port (``wr_addr``, ``wr_data``, ``wr_en``), row ``r`` beat ``b`` at address
``r * row_beats + b``. An index beyond the buffer or a bad beat count sets ``error`` (sticky) and
the entry is dropped (its beats are not consumed).
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.numerics import DEFAULT, PROB_FRAC

from hw import checks
from hw.arith.multiplier import MULTIPLY_LATENCY, Multiplier
from hw.streams.gather import times_constant
from hw.streams.pipeline import delay

__all__ = ["Scatter"]


class Scatter(wiring.Component):
    """Write rows of ``lanes`` values of format ``fmt`` by index, optionally scaled and added.

    Parameters
    ----------
    lanes : int
    rows, row_beats : int
        Buffer shape, as for :class:`hw.streams.gather.Gather`.
    fmt : Fixed
        Activation format (default ``DEFAULT.act``); results saturate to it.

    Members
    -------
    idx : ``In(stream.Signature(StructLayout({"row", "beats", "score", "accumulate"})))``
        ``score`` is a probability with PROB_FRAC fraction bits (18-bit signed).
    i : ``In(stream.Signature(ArrayLayout(signed(fmt.width), lanes)))``
    rd_addr, rd_data, wr_addr, wr_data, wr_en
        The buffer's ports.
    error : ``Out(1)``
    """

    #: Cycles from a beat to its write: the product (:data:`MULTIPLY_LATENCY`), the sum, the
    #: saturation and write.
    LATENCY = MULTIPLY_LATENCY + 2

    def __init__(self, *, lanes, rows, row_beats, fmt=DEFAULT.act):
        for name, value in (("lanes", lanes), ("rows", rows), ("row_beats", row_beats)):
            checks.positive("Scatter", name, value)
        self._lanes, self._rows, self._row_beats, self._fmt = lanes, rows, row_beats, fmt
        beat = data.ArrayLayout(signed(fmt.width), lanes)
        self.index_layout = data.StructLayout({
            "row": unsigned(ceil_log2(rows + 1)),
            "beats": unsigned(ceil_log2(row_beats + 1)),
            "score": signed(PROB_FRAC + 1),
            "accumulate": unsigned(1),
        })
        super().__init__({
            "idx": In(stream.Signature(self.index_layout)),
            "i": In(stream.Signature(beat)),
            "rd_addr": Out(range(rows * row_beats)),
            "rd_data": In(beat),
            "wr_addr": Out(range(rows * row_beats)),
            "wr_data": Out(beat),
            "wr_en": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, lanes = self._fmt, self._lanes
        active = Signal()
        base = Signal(range(self._rows * self._row_beats))
        beat = Signal(range(self._row_beats))
        left = Signal(range(self._row_beats))          # beats after the current one
        last = Signal()                                # left == 0, registered
        score = Signal(signed(PROB_FRAC + 1))
        accumulate = Signal()
        take = active & self.i.valid

        p = self.idx.payload
        bad = (p.row >= self._rows) | (p.beats == 0) | (p.beats > self._row_beats)
        m.d.comb += [self.idx.ready.eq(~active | (take & last)), self.i.ready.eq(active)]
        with m.If(self.idx.valid & self.idx.ready):
            # Loaded whether or not the entry is bad (unused while inactive; beats in flight
            # took theirs along), so that only active waits for the checks.
            m.d.sync += [beat.eq(0), left.eq(p.beats - 1), last.eq(p.beats == 1),
                         score.eq(p.score), accumulate.eq(p.accumulate),
                         base.eq(times_constant(p.row, self._row_beats))]
            with m.If(bad):
                m.d.sync += [self.error.eq(1), active.eq(0)]
            with m.Else():
                m.d.sync += active.eq(1)
        with m.Elif(take & last):
            m.d.sync += active.eq(0)
        # The row's last beat as a flag of its own: a count compared with the beat count
        # would put a carry chain in front of the index handshake.
        with m.If(take & ~last):
            m.d.sync += [beat.eq(beat + 1), left.eq(left - 1), last.eq(left == 1)]

        # Stage 0: read dst, operands into the multipliers. Stages 1 to MULTIPLY_LATENCY - 1:
        # dst arrives and waits for the product. Then: round and add; saturate, write.
        # (Saturating with the add put two adds and two comparisons on one path.)
        m.d.comb += self.rd_addr.eq(base + beat)
        product_at = MULTIPLY_LATENCY + 1              # stages to the sum, after the product
        valid = delay(m, take, product_at, name="valid")
        addr = delay(m, self.rd_addr, product_at, name="addr")
        acc = delay(m, accumulate, product_at, name="accumulate")
        y = delay(m, self.i.payload, product_at, name="y")
        dst = delay(m, self.rd_data, MULTIPLY_LATENCY - 1, name="dst")

        out = Signal.like(self.wr_data)
        lo, hi = fmt.min_int, fmt.max_int
        for lane in range(lanes):
            mul = Multiplier(a_width=fmt.width, b_width=PROB_FRAC + 1, latency=MULTIPLY_LATENCY)
            m.submodules[f"mul_{lane}"] = mul
            # Operands that differ from every other register, so that Yosys keeps them apart
            # and the DSP48E2 absorbs them: a is y only when the product counts (else it would
            # be y's delay register), b is score only when y is not zero (else it would be one
            # register shared by every lane). The product is the same whenever it counts.
            y_in = self.i.payload[lane]
            m.d.comb += [mul.a.eq(Mux(accumulate, y_in, 0)),
                         mul.b.eq(Mux(y_in.any(), score, 0)), mul.en.eq(1)]
            total = Signal(signed(fmt.width + 2), name=f"total_{lane}")
            m.d.sync += total.eq(dst[lane] + ((mul.p + (1 << (PROB_FRAC - 1))) >> PROB_FRAC))
            summed = Mux(total > hi, hi, Mux(total < lo, lo, total))
            m.d.sync += out[lane].eq(Mux(acc, summed, y[lane]))
        m.d.sync += [self.wr_en.eq(valid), self.wr_addr.eq(addr)]
        m.d.comb += self.wr_data.eq(out)
        return m
