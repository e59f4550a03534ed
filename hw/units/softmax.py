"""Single-pass softmax in hardware: twin of :mod:`model.units.softmax`.

:class:`SoftmaxStats` is the first pass, :func:`model.units.softmax.running_stats` followed by
:func:`model.arith.reciprocal.reciprocal`: it keeps a running maximum ``m`` and sum ``s`` for each
of ``rows`` rows whose scores arrive interleaved, and emits ``(m, s, r, k)`` at each row's end.
:class:`SoftmaxProb` is the second pass, :func:`model.units.softmax.probabilities`: ``lanes``
probabilities ``2**(a - m) * r`` per cycle.

The recurrence of the first pass (per score, SUM_FRAC fraction bits for ``s``)::

    first score:  m = a,  s = ONE
    a > m:        s = sat(round(s * min(round(e, EXP_FRAC - MANT_FRAC), 2**17 - 1), MANT_FRAC) +
    ONE) otherwise:    s = sat(s + round(e, EXP_FRAC - SUM_FRAC))
    where         e = exp2(-|a - m|)

needs the previous ``m`` before the exponent and the previous ``s`` after it, some ten cycles
later. ``m`` alone is a short loop (``max``), so the unit updates ``m`` in the two stages after
a score enters and ``s`` when its exponent is ready; the ``s`` loop (the multiplier's two
stages and the sum) constrains the schedule: the same row may come back every
``SoftmaxStats.MIN_ROWS`` = 3 scores, and with that many rows or more interleaved the unit takes
one score per cycle. Between registers, at most 3 LUT levels and one carry chain (36 bits) on
UltraScale+.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.numerics import DEFAULT, EXP_FRAC, MANT_FRAC, PROB_FRAC, SUM_FRAC, SUM_WIDTH
from model.units.softmax import ONE, SUM_FORMAT

from hw import checks
from hw.arith.exp import EXP_WIDTH, Exp2Datapath, _check_format
from hw.arith.multiplier import Multiplier
from hw.streams.pipeline import delay, select, valid_pipeline
from hw.arith.reciprocal import K_WIDTH, ReciprocalDatapath


__all__ = ["SoftmaxStats", "SoftmaxProb"]


#: Bits of a sum, which is never negative: SUM_FORMAT without its sign bit.
_S_WIDTH = SUM_WIDTH - 1
_MANT_TOP = (1 << MANT_FRAC) - 1


def _check_fmt(owner, fmt):
    checks.fixed(owner, "format", fmt)
    # a - m takes one more bit than a score.
    _check_format(owner, fmt.width + 1, fmt.frac)


class SoftmaxStats(wiring.Component):
    """Running maximum and sum of ``rows`` interleaved softmax rows, then ``1/s``.

    Scores arrive round-robin: the ``j``-th transfer on ``i`` since reset belongs to row slot
    ``j % rows``. A transfer with ``last`` set ends its slot's row; that slot's next transfer
    starts a new row (so does its first transfer after reset). A row may be a single score.
    Within a slot, scores are taken in the order they come, the order
    :func:`model.units.softmax.running_stats` streams them (which is part of the specification).

    Pipeline, stalled as a whole while ``o`` holds a result nobody takes (so ``i.ready``
    follows ``o.ready`` combinationally): on entry the slot's ``m`` is read and ``a - m`` and
    ``m - a`` are formed; one stage later ``m`` is replaced by ``max(m, a)`` and ``-|a - m|``
    goes into an :class:`hw.arith.exp.Exp2Datapath`; when the exponent is out, the slot's ``s``
    is read and the rescale product (one :class:`hw.arith.multiplier.Multiplier`) and the plain
    sum (rounding ``e``, then adding ``s``) are formed side by side; two stages later the new
    ``s`` is chosen, saturated to ``SUM_FORMAT``, and written back; after one more register, a
    row's final ``s`` goes through a :class:`hw.arith.reciprocal.ReciprocalDatapath`.

    Latency of ``LATENCY = 1 + Exp2Datapath.LATENCY + MULTIPLIER_LATENCY + 1 +
    ReciprocalDatapath.LATENCY`` = 1 + 6 + 2 + 1 + 6 = 16 cycles, from the clock edge that accepts
    a row's last score to the edge that delivers its result on ``o`` (with ``o.ready`` high).
    Throughput of one score per cycle, whatever the rows' lengths, because ``rows >=
    MIN_ROWS``: a slot's ``s`` is written back ``MIN_ROWS`` cycles after it is read, before the
    slot's next score can need it. Three DSP48E2 (exp, rescale, reciprocal), two ROMs, and
    ``rows`` registers of ``m`` and ``s``.

    Every slot takes its turn: there is no way to skip one, so a producer with fewer than
    ``rows`` live rows must either wait or build a unit with fewer rows (at least ``MIN_ROWS``).

    Parameters
    ----------
    rows : int
        Interleaved rows, at least ``MIN_ROWS`` (e.g. query slots times heads).
    fmt : model.numerics.Fixed
        Format of the scores, 6 to 23 fraction bits.

    Members
    -------
    i : ``In(stream.Signature(SoftmaxStats.score_layout))``
        ``{"score": signed(fmt.width), "last": 1}``.
    o : ``Out(stream.Signature(SoftmaxStats.result_layout))``
        One transfer per row, in the order the rows ended: ``{"row": slot, "m": signed(
        fmt.width), "s": unsigned(SUM_WIDTH - 1), "r": unsigned(MANT_FRAC), "k":
        unsigned(K_WIDTH)}``, with ``(m, s)`` as :func:`model.units.softmax.running_stats` and ``(r,
        k)`` as :func:`model.arith.reciprocal.reciprocal` of ``s``.

    Raises
    ------
    ValueError
        If ``rows`` is not an integer of at least ``MIN_ROWS``, or ``fmt``'s fraction bits are
        out of range.
    TypeError
        If ``fmt`` is not a ``Fixed``.
    """

    #: Register stages of the rescale multiplier.
    MULTIPLIER_LATENCY = 2
    #: Fewest interleaved rows: cycles from reading a slot's ``s`` to its new value readable.
    MIN_ROWS = MULTIPLIER_LATENCY + 1
    #: Cycles from accepting a row's last score to delivering its result.
    LATENCY = 1 + Exp2Datapath.LATENCY + MULTIPLIER_LATENCY + 1 + ReciprocalDatapath.LATENCY

    def __init__(self, *, rows, fmt=DEFAULT.act):
        checks.at_least("SoftmaxStats", "rows", rows, self.MIN_ROWS)
        _check_fmt("SoftmaxStats", fmt)
        self._rows = rows
        self._fmt = fmt
        self.score_layout = data.StructLayout({"score": signed(fmt.width), "last": 1})
        self.result_layout = data.StructLayout({
            "row": unsigned(max((rows - 1).bit_length(), 1)),
            "m": signed(fmt.width),
            "s": unsigned(_S_WIDTH),
            "r": unsigned(MANT_FRAC),
            "k": unsigned(K_WIDTH),
        })
        super().__init__({
            "i": In(stream.Signature(self.score_layout)),
            "o": Out(stream.Signature(self.result_layout)),
        })

    rows = property(lambda self: self._rows)
    fmt = property(lambda self: self._fmt)

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        row_shape = self.result_layout["row"].shape
        m.submodules.exp = exp = Exp2Datapath(width=fmt.width + 1, frac=fmt.frac)
        m.submodules.rescale = multiplier = Multiplier(
            a_width=_S_WIDTH, b_width=MANT_FRAC, signed=False, latency=self.MULTIPLIER_LATENCY)
        m.submodules.reciprocal = reciprocal = ReciprocalDatapath()

        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), exp.en.eq(advance), multiplier.en.eq(advance),
                     reciprocal.en.eq(advance)]
        accept = self.i.valid & advance

        # Per slot: the running maximum, the running sum, and whether its next score starts a
        # row.
        maxima = [Signal(signed(fmt.width), name=f"max_{row}") for row in range(self._rows)]
        sums = [Signal(unsigned(_S_WIDTH), name=f"s_{row}") for row in range(self._rows)]
        fresh = [Signal(init=1, name=f"fresh_{row}") for row in range(self._rows)]

        # Entry: the slot's m is read and both differences a - m and m - a are formed side by
        # side. Stage 1: the sign of m - a says which is larger; the new m goes back to the
        # slot, in time for its next score MIN_ROWS cycles later, and -|a - m| into the
        # exponent.
        slot = Signal(row_shape)
        a = self.i.payload.score
        m_old = select(slot, maxima)
        entry = {"valid": accept, "last": self.i.payload.last, "slot": slot, "a": a,
                 "m_old": m_old, "first": select(slot, fresh),
                 "m_minus_a": (m_old - a).as_signed(), "a_minus_m": (a - m_old).as_signed()}
        entry = {name: delay(m, value, 1, en=advance, name=name)
                 for name, value in entry.items()}
        with m.If(accept):
            m.d.sync += slot.eq(Mux(slot == self._rows - 1, 0, slot + 1))
            for row in range(self._rows):
                with m.If(slot == row):
                    m.d.sync += fresh[row].eq(self.i.payload.last)

        new_max = Signal()
        m_new = Signal(signed(fmt.width))
        m.d.comb += [
            new_max.eq(entry["m_minus_a"][-1]),
            m_new.eq(Mux(entry["first"] | new_max, entry["a"], entry["m_old"])),
            exp.x.eq(Mux(new_max, entry["m_minus_a"], entry["a_minus_m"])),
        ]
        for row in range(self._rows):
            with m.If(advance & entry["valid"] & (entry["slot"] == row)):
                m.d.sync += maxima[row].eq(m_new)

        # The exponent's stages, with everything the sum update needs alongside.
        carried = {"valid": entry["valid"], "first": entry["first"], "new_max": new_max,
                   "last": entry["last"], "slot": entry["slot"], "m": m_new}
        carried = {name: delay(m, value, Exp2Datapath.LATENCY, en=advance, name=name, first=2)
                   for name, value in carried.items()}

        # The exponent is out: read s and start the rescale product. The plain sum takes the
        # multiplier's two stages too, so that its two adds (rounding e, adding s) have a stage
        # each: the second reads s again, which no write can have changed in between (the
        # slot's previous score wrote it two cycles before the first read).
        e = exp.y
        s_old = Signal(unsigned(_S_WIDTH))
        m.d.comb += s_old.eq(select(carried["slot"], sums))
        # round(e) is at most 2**MANT_FRAC, past the top only by its top bit: a Mux on that bit
        # is the min().
        rescale = Signal(unsigned(MANT_FRAC))
        shift = EXP_FRAC - MANT_FRAC
        rounded = Signal(unsigned(MANT_FRAC + 1))
        m.d.comb += [rounded.eq((e + (1 << (shift - 1))) >> shift),
                     rescale.eq(Mux(rounded[-1], _MANT_TOP, rounded)),
                     multiplier.a.eq(s_old), multiplier.b.eq(rescale)]
        shift = EXP_FRAC - SUM_FRAC
        e_sum = delay(m, (e + (1 << (shift - 1))) >> shift, 1, en=advance, name="e_sum",
                      first=1 + Exp2Datapath.LATENCY + 1)
        stage = 1 + Exp2Datapath.LATENCY + 1
        carried = {name: delay(m, value, 1, en=advance, name=name, first=stage)
                   for name, value in carried.items()}
        plain = Signal(unsigned(_S_WIDTH + 1))
        with m.If(advance):
            m.d.sync += plain.eq(select(carried["slot"], sums) + e_sum)
        carried = {name: delay(m, value, self.MULTIPLIER_LATENCY - 1, en=advance, name=name,
                               first=stage + 1)
                   for name, value in carried.items()}

        # The product is out: the new s, saturated, goes back to the slot. round(p) + ONE is
        # one add: ((p >> (MANT_FRAC - 1)) + 2 * ONE + 1) >> 1. Neither sum reaches
        # 2**(_S_WIDTH + 1) (s < 2**_S_WIDTH, the addends at most 2**SUM_FRAC), so the
        # saturation to SUM_FORMAT.max_int = 2**_S_WIDTH - 1 is a test of the top bit.
        scaled = ((multiplier.p >> (MANT_FRAC - 1)) + (2 * ONE + 1)) >> 1
        s_new = Signal(unsigned(_S_WIDTH + 1))
        s_saturated = Signal(unsigned(_S_WIDTH))
        m.d.comb += [
            s_new.eq(Mux(carried["first"], ONE,
                         Mux(carried["new_max"], scaled, plain))),
            s_saturated.eq(Mux(s_new[-1], SUM_FORMAT.max_int, s_new)),
        ]
        for row in range(self._rows):
            with m.If(advance & carried["valid"] & (carried["slot"] == row)):
                m.d.sync += sums[row].eq(s_saturated)

        # One register before the reciprocal; only a row's last score makes a result.
        done = Signal()
        s_done = Signal(unsigned(_S_WIDTH))
        m_done = Signal(signed(fmt.width))
        slot_done = Signal(row_shape)
        with m.If(advance):
            m.d.sync += [done.eq(carried["valid"] & carried["last"]), s_done.eq(s_saturated),
                         m_done.eq(carried["m"]), slot_done.eq(carried["slot"])]
        m.d.comb += reciprocal.s.eq(s_done)
        stages = ReciprocalDatapath.LATENCY
        m_out = delay(m, m_done, stages, en=advance, name="m_out")
        s_out = delay(m, s_done, stages, en=advance, name="s_out")
        slot_out = delay(m, slot_done, stages, en=advance, name="row_out")
        valid_pipeline(m, done, self.o.valid, stages, en=advance, name="done")
        m.d.comb += [self.o.payload.row.eq(slot_out), self.o.payload.m.eq(m_out),
                     self.o.payload.s.eq(s_out), self.o.payload.r.eq(reciprocal.o.r),
                     self.o.payload.k.eq(reciprocal.o.k)]
        return m


class SoftmaxProb(wiring.Component):
    """The second softmax pass, ``lanes`` probabilities per transfer, bit for bit as
    :func:`model.units.softmax.probabilities`.

    Each lane is independent: a score ``a`` with its row's maximum ``m`` and reciprocal
    ``(r, k)`` (from :class:`SoftmaxStats`) gives::

        p = min(round(exp2(a - m) * r, EXP_FRAC + MANT_FRAC - PROB_FRAC + k), 2**PROB_FRAC - 1)

    Pipeline per lane: an :class:`hw.arith.exp.Exp2Datapath` on ``a - m``, one
    :class:`hw.arith.multiplier.Multiplier` for ``e * r``, and a last stage that shifts by ``k``
    with rounding (half up); the clamp never acts (see the last stage) and is left out. Between
    registers, at most 3 LUT levels and one carry chain (36 bits) on UltraScale+, counting the
    ports as registers. The whole pipeline stalls while ``o`` holds a result nobody
    takes, so ``i.ready`` follows ``o.ready`` combinationally.

    Latency of ``LATENCY = Exp2Datapath.LATENCY + 2 + 1`` = 9 cycles, from the clock edge that
    accepts the scores on ``i`` to the edge that delivers their probabilities on ``o`` (with
    ``o.ready`` high), whatever ``lanes``; throughput of ``lanes`` probabilities (one transfer)
    per cycle. Two DSP48E2 and one ROM per lane.

    Parameters
    ----------
    lanes : int
        Scores per transfer, at least 1.
    fmt : model.numerics.Fixed
        Format of the scores and maxima, 6 to 23 fraction bits.

    Members
    -------
    i : ``In(stream.Signature(data.ArrayLayout(SoftmaxProb.lane_layout, lanes)))``
        Per lane ``{"a": signed(fmt.width), "m": signed(fmt.width), "r": unsigned(MANT_FRAC),
        "k": unsigned(K_WIDTH)}``, with ``a <= m``; ``a > m`` (the twin raises) counts as
        ``a = m``.
    o : ``Out(stream.Signature(data.ArrayLayout(unsigned(PROB_FRAC), lanes)))``
        The probabilities, PROB_FRAC fraction bits, same lanes, in the order the scores came.

    Raises
    ------
    ValueError
        If ``lanes`` is not a positive integer, or ``fmt``'s fraction bits are out of range.
    TypeError
        If ``fmt`` is not a ``Fixed``.
    """

    #: Register stages of the multiplier ``e * r``.
    MULTIPLIER_LATENCY = 2
    #: Cycles from accepting scores to delivering their probabilities.
    LATENCY = Exp2Datapath.LATENCY + MULTIPLIER_LATENCY + 1

    def __init__(self, *, lanes=1, fmt=DEFAULT.act):
        checks.positive("SoftmaxProb", "lanes", lanes)
        _check_fmt("SoftmaxProb", fmt)
        self._lanes = lanes
        self._fmt = fmt
        self.lane_layout = data.StructLayout({
            "a": signed(fmt.width), "m": signed(fmt.width),
            "r": unsigned(MANT_FRAC), "k": unsigned(K_WIDTH),
        })
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(self.lane_layout, lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(PROB_FRAC), lanes))),
        })

    lanes = property(lambda self: self._lanes)
    fmt = property(lambda self: self._fmt)

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        base = EXP_FRAC + MANT_FRAC - PROB_FRAC

        for lane in range(self._lanes):
            beat = self.i.payload[lane]
            m.submodules[f"exp_{lane}"] = exp = Exp2Datapath(width=fmt.width + 1,
                                                             frac=fmt.frac)
            m.submodules[f"multiplier_{lane}"] = multiplier = Multiplier(
                a_width=EXP_WIDTH, b_width=MANT_FRAC, signed=False,
                latency=self.MULTIPLIER_LATENCY)
            m.d.comb += [exp.x.eq(beat.a - beat.m), exp.en.eq(advance),
                         multiplier.en.eq(advance)]
            r = delay(m, beat.r, Exp2Datapath.LATENCY, en=advance, name=f"r_{lane}")
            k = delay(m, beat.k, Exp2Datapath.LATENCY + self.MULTIPLIER_LATENCY, en=advance,
                      name=f"k_{lane}")
            m.d.comb += [multiplier.a.eq(exp.y), multiplier.b.eq(r)]

            # Last stage: round half up at 2**(base + k) as ((p >> (base - 1 + k)) + 1) >> 1, an
            # add of the result's width. The twin's clamp below 1 never acts: e <= 2**EXP_FRAC
            # and r < 2**MANT_FRAC, so p < 2**(base + PROB_FRAC), and rounding up p / 2**(base +
            # k) stays below 2**PROB_FRAC; the sum is cut to PROB_FRAC bits.
            halves = (multiplier.p >> (base - 1)) >> k
            with m.If(advance):
                m.d.sync += self.o.payload[lane].eq((halves + 1) >> 1)

        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
