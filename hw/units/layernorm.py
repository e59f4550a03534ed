"""The LayerNorm unit in hardware: twin of :func:`model.units.layernorm.layer_norm` (default
numerics).

Each token row of ``dim`` activations arrives as ``dim / lanes`` beats on ``i`` and leaves,
normalised, scaled by gamma and shifted by beta, as as many beats on ``o``. The unit follows the
golden model step for step, in three passes over a row kept in a row buffer of two banks::

    pass 1 (beats in)   sum, min, max of the row, which is written to the buffer
                        mean = round(round(sum / 2**Db) * mean_mult / 2**CONST_FRAC)
                        dmax = max(max - mean, mean - min)
                        sh = max(0, bitlen(dmax) - (SQUARE_BITS - 1))
    pass 2 (buffer)     S = eps_term(sh) + sum(((x - mean) >> sh)**2)
                        r, e = rsqrt(S)                                     (hw.arith.rsqrt.Rsqrt)
                        c = round(r * sqrt_mant / 2**MANT_FRAC)
    pass 3 (buffer)     xhat = fit(round((x - mean) * c / 2**(sh + e + CONST_FRAC - j - XF)))
                        y = fit(round(xhat * gamma / 2**(XF + gamma_frac - out_frac))
                                + (beta << (out_frac - beta_frac)))

Two FSMs share the work: the *loader* takes a row's beats (pass 1) into one bank and works out
its mean and ``sh``; the *normaliser* runs passes 2 and 3 over the other bank. So the next row
loads while the current one is normalised, and a row's pass-2 beats follow the previous row's
pass-3 beats through the pipeline without a gap.

Every register-to-register path stays within 4 LUT levels and one carry chain of at most 48
bits on UltraScale+ (``python -m hw.timing layernorm``): pass 1 reduces each beat in registered
trees (:func:`hw.streams.pipeline.tree`) before adding it to the row's sums; ``dmax``, ``sh``
and the eps term take a stage each; the squares are summed four at a time, then into ``S``;
``x - mean``, its shift, ``(x - mean) * c``, its rounding shift and the rounding each have a
stage.

With ``XF = XHAT_FORMAT.frac``, ``eps_term(sh) = round(eps * D * 2**(2 * fmt.frac) / 4**sh)``
(a small table indexed by ``sh``) and the constants of
``model.units.layernorm._row_constants(dim)``, all read from :mod:`model.units.layernorm`. The shift
of pass 3 is negative for small ``sh + e`` (a left shift); the hardware shifts the product left by
the most that can occur and then right by the (non-negative) rest, rounding as the model does.

Multiplies go through :class:`hw.arith.multiplier.Multiplier`: per lane one for the squares of
pass 2 and ``(x - mean) * c`` of pass 3 (a 27 x 18-bit DSP; ``c`` reaches 18 unsigned bits,
so its top bit is added as ``(x - mean) << MANT_FRAC`` beside the product), one for
``xhat * gamma``;
one for each per-row product, ``mean`` (loader) and ``c`` (normaliser); and the one in the rsqrt
unit: ``2 * lanes + 3`` DSPs.

**Parameters** (gamma and beta) arrive on the stream ``p``: a set is ``dim / lanes`` beats,
channel ``k`` in lane ``k % lanes`` of beat ``k // lanes``, like the rows. The unit takes a set
whole and only between rows: when the loader is ready for a new row and ``p`` is valid, the
set goes first (as soon as the rows loaded before it have read their parameters: the loader
waits for the normaliser to finish), and applies from the next row on. A producer that
changes parameters between two rows offers the set before the second row's first beat (or
simply waits until every beat of the first row was taken on ``i``). Until a set is loaded,
gamma and beta are zero.
"""

import numpy as np

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.units.layernorm import CONST_FRAC, SQUARE_BITS, XHAT_FORMAT, _row_constants
from model.numerics import DEFAULT, MANT_FRAC, shift_round

from hw import checks
from hw.arith.multiplier import DSP_A_WIDTH, DSP_B_WIDTH, MULTIPLY_LATENCY, Multiplier
from hw.streams.pipeline import delay, tree, tree_stages
from hw.arith.rsqrt import Rsqrt


__all__ = ["LayerNorm", "MAX_DIM", "run_parameters"]


#: Longest row: ``x - mean`` then fits one bit more than an activation (the rounding of the
#: mean's multiplier moves it by far less than ``2**fmt.width / dim``), and ``XHAT_FORMAT`` holds
#: ``|xhat| < sqrt(dim)``.
MAX_DIM = 1024


# Combinational choices below are Mux expressions rather than m.If blocks: Amaranth's Verilog
# turns m.If into `always @*` processes, which Icarus does not run at time zero, so a value
# computed only from registers that keep their initial value (an all-zero row, say) would stay
# unknown; a Mux becomes a continuous assignment.

def _shift_right(value, amount, most, alt=None):
    """``value >> amount`` (arithmetic) for ``0 <= amount <= most``, or ``alt`` (unsigned,
    narrower) for ``amount == most + 1``: per bit, a tree of 4-to-1 multiplexers on two bits of
    ``amount`` each, one LUT level each, where Yosys's shifter of 2-to-1 stages and a choice
    after it map to more. Codes above the last are don't-cares."""
    top = most + (alt is not None)

    def choice(i, code):
        if alt is not None and code == most + 1:
            return alt[i] if i < len(alt) else 0
        return value[min(i + code, len(value) - 1)]

    def pick(i, base, level):
        if level < 0:
            return choice(i, base)
        options = [pick(i, base + s * 4 ** level, level - 1) for s in range(4)
                   if base + s * 4 ** level <= top]
        options += options[-1:] * (4 - len(options))
        sel = amount[2 * level:2 * level + 2]
        if len(sel) == 1:
            return Mux(sel[0], options[1], options[0])
        return Mux(sel[1], Mux(sel[0], options[3], options[2]),
                   Mux(sel[0], options[1], options[0]))

    levels = max(1, (top.bit_length() + 1) // 2)
    return Cat(*(pick(i, 0, levels - 1) for i in range(len(value)))).as_signed()


def _clamp(value, fmt):
    """``value`` saturated to ``fmt``'s range."""
    return Mux(value > fmt.max_int, fmt.max_int, Mux(value < fmt.min_int, fmt.min_int, value))


class LayerNorm(wiring.Component):
    """LayerNorm over token rows of ``dim`` activations, ``lanes`` per beat.

    With ``B = dim / lanes`` beats per row, ``o`` never back-pressured and ``i`` and ``p``
    keeping pace:

    * throughput: one row every :attr:`row_cycles` ``= 2 * B + ROW_OVERHEAD`` cycles (``2 * B +
      14``), the normaliser's work per row (the loader's, ``B +`` :attr:`load_overhead`, is
      less unless rows have very few beats of very many lanes);
    * latency: :attr:`latency` ``= 2 * B + load_overhead + ROW_OVERHEAD + PIPELINE`` cycles
      (``2 * B + 40`` with 16 lanes, ``2 * B + 38`` with 4), from the edge that takes the first
      beat of a row that finds the unit idle to the edge that delivers its first beat on
      ``o``; the others follow one per cycle;
    * a parameter set takes ``B`` cycles, between rows.

    Parameters
    ----------
    dim : int
        Row length ``D``, at most ``MAX_DIM``, a multiple of ``lanes``.
    lanes : int
        Values per beat.
    gamma_fmt : model.numerics.Fixed
        Format of gamma (the gain), at most ``DSP_B_WIDTH`` bits: ``Quantized.fmt`` of the
        block's gamma.
    eps : float
        Epsilon added to the variance, positive.
    fmt : model.numerics.Fixed
        Format of the input activations, at most ``DSP_A_WIDTH - 1`` bits.
    beta_fmt : model.numerics.Fixed, optional
        Format of beta (the shift); default ``fmt``.
    out_fmt : model.numerics.Fixed, optional
        Format of the results; default ``fmt``. At least as many fraction bits as ``beta_fmt``.

    Members
    -------
    p : ``In(stream.Signature(data.ArrayLayout(LayerNorm.parameter_layout, lanes)))``
        Parameter sets, ``B`` beats each (see the module's documentation).
    i : ``In(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes)))``
        Token rows, ``B`` beats each.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), lanes)))``
        Normalised rows, ``B`` beats each, in order.

    Attributes
    ----------
    parameter_layout : data.StructLayout
        ``{"gamma": signed(gamma_fmt.width), "beta": signed(beta_fmt.width)}``, one channel.

    Raises
    ------
    ValueError
        If a dimension is not a positive integer, ``dim`` exceeds ``MAX_DIM`` or is not a
        multiple of ``lanes``, ``eps`` is not positive, a format is too wide for the
        multipliers, or beta has more fraction bits than the output.
    TypeError
        If a format is not a :class:`model.numerics.Fixed`.
    """

    #: Register stages of each :class:`hw.arith.multiplier.Multiplier`.
    MULTIPLIER_LATENCY = MULTIPLY_LATENCY
    #: Stages of passes 2 and 3 from the buffer read to ``o``: read (1), ``x - mean`` (1),
    #: first product (3), ``(x - mean) * c`` completed (1), shifted (1), rounded and saturated
    #: to ``xhat`` (1), second product (3), sum with beta (1), saturated (1).
    PIPELINE = 2 + MULTIPLIER_LATENCY + 3 + MULTIPLIER_LATENCY + 2
    #: Cycles of the loader per row beyond its statistics (:attr:`stats_stages`) and the mean's
    #: product: rounding the product to the mean (1), the four stages of ``dmax``, ``sh`` and
    #: the eps term (4), handing the row over (at least 1).
    LOAD_EXTRA = 1 + 4 + 1

    def __init__(self, *, dim, lanes, gamma_fmt, eps, fmt=DEFAULT.act, beta_fmt=None,
                 out_fmt=None):
        for name, value in (("dim", dim), ("lanes", lanes)):
            checks.positive("LayerNorm", name, value)
        if dim > MAX_DIM:
            raise ValueError(f"LayerNorm dim must be at most {MAX_DIM}, not {dim}")
        if dim % lanes:
            raise ValueError(f"LayerNorm dim ({dim}) must be a multiple of lanes ({lanes})")
        beta_fmt = fmt if beta_fmt is None else beta_fmt
        out_fmt = fmt if out_fmt is None else out_fmt
        for name, value in (("fmt", fmt), ("gamma_fmt", gamma_fmt), ("beta_fmt", beta_fmt),
                            ("out_fmt", out_fmt)):
            checks.fixed("LayerNorm", name, value)
        if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0):
            raise ValueError(f"LayerNorm eps must be a positive number, not {eps!r}")
        # x - mean is one bit wider than x and goes on the multiplier's wide port.
        if fmt.width + 1 > DSP_A_WIDTH:
            raise ValueError(f"LayerNorm input format {fmt} is too wide: x - mean must fit "
                             f"the multiplier's {DSP_A_WIDTH}-bit port, so at most "
                             f"{DSP_A_WIDTH - 1} bits")
        if gamma_fmt.width > DSP_B_WIDTH:
            raise ValueError(f"LayerNorm gamma format {gamma_fmt} is too wide for the "
                             f"multiplier's {DSP_B_WIDTH}-bit port")
        if beta_fmt.frac > out_fmt.frac:
            raise ValueError(f"LayerNorm beta format {beta_fmt} has more fraction bits than "
                             f"the output format {out_fmt}")
        self._dim, self._lanes, self._eps = dim, lanes, eps
        self._fmt, self._gamma_fmt, self._beta_fmt, self._out_fmt = (
            fmt, gamma_fmt, beta_fmt, out_fmt)
        self.parameter_layout = data.StructLayout({
            "gamma": signed(gamma_fmt.width), "beta": signed(beta_fmt.width)})
        super().__init__({
            "p": In(stream.Signature(data.ArrayLayout(self.parameter_layout, lanes))),
            "i": In(stream.Signature(data.ArrayLayout(signed(fmt.width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), lanes))),
        })

    dim = property(lambda self: self._dim)
    lanes = property(lambda self: self._lanes)
    eps = property(lambda self: self._eps)
    fmt = property(lambda self: self._fmt)
    gamma_fmt = property(lambda self: self._gamma_fmt)
    beta_fmt = property(lambda self: self._beta_fmt)
    out_fmt = property(lambda self: self._out_fmt)

    @property
    def beats(self):
        """Beats per row (and per parameter set): ``dim / lanes``."""
        return self._dim // self._lanes

    @property
    def eps_int(self):
        """``eps * dim`` in the squares' units, exactly as the twin rounds it."""
        return int(np.int64(round(self._eps * self._dim * 2.0 ** (2 * self._fmt.frac))))

    @property
    def s_width(self):
        """Bits of ``S``: ``dim`` squares of ``SQUARE_BITS``-bit values plus the eps term."""
        return (self._dim * (1 << (SQUARE_BITS - 1)) ** 2 + self.eps_int).bit_length()

    #: Cycles of the normaliser per row beyond its two passes over the beats, when nothing
    #: stalls: draining the squares (``x - mean``, products, partial sums, ``S``, then the
    #: cycle that offers ``S`` to the rsqrt unit), waiting for it, and waiting for ``c``'s
    #: product (the first pass-3 beat issues a cycle before ``c`` is latched, which stage 2
    #: reads). The next row is taken with the last beat of a row, without a cycle of its own.
    #: ``MULTIPLIER_LATENCY`` must be at least 2.
    ROW_OVERHEAD = (MULTIPLIER_LATENCY + 4) + Rsqrt.LATENCY + (MULTIPLIER_LATENCY - 2)

    @property
    def stats_stages(self):
        """Register stages of the loader's sum, minimum and maximum of a beat: a registered
        tree over the lanes, ``ceil(log2(lanes))``."""
        return tree_stages(self._lanes)

    @property
    def load_overhead(self):
        """Cycles of the loader per row beyond its ``beats``: ``stats_stages +
        MULTIPLIER_LATENCY + LOAD_EXTRA``."""
        return self.stats_stages + self.MULTIPLIER_LATENCY + self.LOAD_EXTRA

    @property
    def row_cycles(self):
        """Cycles per row at full rate: ``2 * beats + ROW_OVERHEAD``, the normaliser's work (or
        the loader's, ``beats + load_overhead``, should it be longer: only for rows of very few
        beats of very many lanes)."""
        return max(2 * self.beats + self.ROW_OVERHEAD, self.beats + self.load_overhead)

    @property
    def latency(self):
        """Cycles from taking the first beat of a row that finds the unit idle to delivering its
        first result: ``2 * beats + load_overhead + ROW_OVERHEAD + PIPELINE``."""
        return 2 * self.beats + self.load_overhead + self.ROW_OVERHEAD + self.PIPELINE

    def elaborate(self, platform):
        m = Module()
        L, B = self._lanes, self.beats
        fmt, out_fmt = self._fmt, self._out_fmt
        Db, mean_mult, j, sqrt_mant = _row_constants(self._dim)
        d_width = fmt.width + 1
        a_width = max(d_width, SQUARE_BITS)
        lat = self.MULTIPLIER_LATENCY
        stats = self.stats_stages

        # --- Storage: two rows (one loading, one normalising) and the parameters --------------
        row_layout = data.ArrayLayout(signed(fmt.width), L)
        par_layout = data.ArrayLayout(self.parameter_layout, L)
        m.submodules.rows = rows = Memory(shape=row_layout, depth=2 * B, init=[])
        m.submodules.parameters = parameters = Memory(shape=par_layout, depth=B, init=[])
        row_wr, row_rd = rows.write_port(), rows.read_port()
        par_wr, par_rd = parameters.write_port(), parameters.read_port()

        # --- Arithmetic units -----------------------------------------------------------------
        m.submodules.rsqrt = rsqrt = Rsqrt(width=self.s_width)
        # One per-row product for each FSM, which work on different rows at the same time.
        m.submodules.mean_multiplier = mean_multiplier = Multiplier(
            a_width=d_width, b_width=DSP_B_WIDTH, latency=lat)
        m.submodules.scale_multiplier = scale_multiplier = Multiplier(
            a_width=d_width, b_width=DSP_B_WIDTH, latency=lat)
        m.d.comb += [mean_multiplier.en.eq(1), scale_multiplier.en.eq(1)]
        first = [Multiplier(a_width=a_width, b_width=SQUARE_BITS, latency=lat)
                 for _ in range(L)]
        second = [Multiplier(a_width=XHAT_FORMAT.width, b_width=self._gamma_fmt.width,
                             latency=lat) for _ in range(L)]
        for lane in range(L):
            m.submodules[f"first_{lane}"] = first[lane]
            m.submodules[f"second_{lane}"] = second[lane]

        # --- Registers of the loader (pass 1 and the row's statistics) -------------------------
        load_count = Signal(range(B + 1))
        load_timer = Signal(range(stats + lat + 4))
        load_bank = Signal()
        total = Signal(signed(fmt.width + Db))
        low, high = Signal(signed(fmt.width)), Signal(signed(fmt.width))
        sh_max = max(0, d_width - SQUARE_BITS)
        load_mean = Signal(signed(d_width))
        load_sh = Signal(range(sh_max + 1))
        load_eps = Signal(unsigned(self.s_width))

        # --- Registers of the normaliser (passes 2 and 3) ------------------------------------
        count = Signal(range(B + 1))
        timer = Signal(range(lat + 1))
        bank = Signal()
        mean = Signal(signed(d_width))
        sh = Signal(range(sh_max + 1))
        eps = Signal(unsigned(self.s_width))
        S = Signal(unsigned(self.s_width))
        e = Signal(rsqrt.e_width)
        c = Signal(unsigned(MANT_FRAC + 1))
        # The pass-3 shift sh + e + CONST_FRAC - j - XHAT_FORMAT.frac, plus `left` so that it
        # is never negative.
        shift_base = CONST_FRAC - j - XHAT_FORMAT.frac
        left = max(0, -shift_base)
        xhat_shift = Signal(range(sh_max + (1 << rsqrt.e_width) + shift_base + left + 1))

        # --- The buffer pipeline of passes 2 and 3 --------------------------------------------
        # Each beat carries its pass along (tag): pass-2 beats of a row follow the previous
        # row's pass-3 beats without a gap. mean and sh are copied into the pipeline with each
        # beat, so the next row may be taken as the last beat of a row issues. c and the shift
        # are read in stages 2 to P + 1 and change only after the next row's pass 2 has
        # drained, when every older beat has moved past them.
        P = 2 + lat                                     # stage of the first product
        advance = ~self.o.valid | self.o.ready
        issue, issue_pass3, issue_first = Signal(), Signal(), Signal()
        valid = [issue] + [Signal(name=f"valid_{stage}") for stage in range(1, self.PIPELINE)]
        tag = [issue_pass3] + [Signal(name=f"tag_{stage}") for stage in range(1, self.PIPELINE)]
        m.d.comb += [row_rd.addr.eq(Mux(bank, B, 0) + count), par_rd.addr.eq(count),
                     row_rd.en.eq(advance), par_rd.en.eq(advance)]
        for stage in range(1, self.PIPELINE):
            with m.If(advance):
                m.d.sync += [valid[stage].eq(valid[stage - 1]), tag[stage].eq(tag[stage - 1])]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid[-1] & tag[-1])
        # The first pass-2 beat of a row starts S from the eps term (stage P + 1).
        first_sq = delay(m, issue_first, P + 1, en=advance, name="first_sq")
        # Stage 1's copy of mean; stage 2's of the shifts: sh_a is 0 on pass 3, so that one
        # shifter serves both passes, sh_b is a spare code that makes b's shifter give c.
        mean_1 = delay(m, mean, 1, en=advance, name="mean")
        sh_a = delay(m, Mux(issue_pass3, 0, sh), 2, en=advance, name="sh_a")
        sh_b = delay(m, Mux(issue_pass3, sh_max + 1, sh), 2, en=advance, name="sh_b")

        # Stage 1 to stage P + 3 for gamma, to stage P + 3 + lat for beta.
        gamma_at = [delay(m, par_rd.data[lane].gamma, P + 2, en=advance, name=f"gamma{lane}")
                    for lane in range(L)]
        beta_at = [delay(m, par_rd.data[lane].beta, P + 2 + lat, en=advance,
                         name=f"beta{lane}") for lane in range(L)]

        # round(dc / 2**shift) saturated to XHAT_FORMAT, in stage P + 2: the shifted value
        # fits `fit` bits or is far out of range, where only its sign matters.
        fit = XHAT_FORMAT.width + 2
        squares = []
        for lane in range(L):
            # Stage 1: x - mean (fits d_width bits, see MAX_DIM). Stage 2: shifted right by sh
            # on pass 2, which then fits SQUARE_BITS bits (sh is chosen so), so both ports take
            # it. A stage of its own: Yosys's LUT mapping lets logic after a carry grow deeper
            # than it need be.
            d = Signal(signed(d_width), name=f"d{lane}")
            with m.If(advance):
                m.d.sync += d.eq(row_rd.data[lane] - mean_1)
            ds = Signal(signed(d_width), name=f"ds{lane}")
            db = Signal(signed(SQUARE_BITS), name=f"db{lane}")
            m.d.comb += [ds.eq(_shift_right(d, sh_a, sh_max)),
                         db.eq(_shift_right(d, sh_b, sh_max, alt=c[:MANT_FRAC]))]
            mul = first[lane]
            m.d.comb += mul.en.eq(advance)
            m.d.comb += [mul.a.eq(ds), mul.b.eq(db)]
            squares.append(mul.p[:2 * SQUARE_BITS - 1])

            # Stage P: d * c, the top bit of c added beside the DSP's product. (Taken along as
            # d or 0, a register unlike the operand's, which the DSP absorbs.)
            d_top = Signal(signed(d_width), name=f"d_top{lane}")
            m.d.comb += d_top.eq(Mux(c[MANT_FRAC], d, 0))
            top_bit = delay(m, d_top, lat, en=advance, name=f"d_top{lane}") << MANT_FRAC
            dc = Signal(signed(d_width + MANT_FRAC + 2), name=f"dc{lane}")
            # Stage P + 1: round(dc / 2**shift) for shift >= -left: shifted left by left + 1
            # first, right by shift + left (a barrel shifter, its own stage) ...
            halves = Signal(signed(len(dc) + left + 1), name=f"dc_halves{lane}")
            with m.If(advance):
                m.d.sync += [dc.eq(mul.p + top_bit),
                             halves.eq((dc << (left + 1)) >> xhat_shift)]
            # ... stage P + 2: then the half added as a carry into the last bit, and the
            # result saturated. Out of `fit` bits, halves is beyond XHAT_FORMAT's range, and so
            # is rounded; checking the top bits rather than comparing keeps the carry short.
            in_fit = Signal(name=f"dc_fit{lane}")
            m.d.comb += in_fit.eq(halves[fit - 1:].all() | ~halves[fit - 1:].any())
            h = halves[:fit]
            rounded = Signal(signed(fit), name=f"xhat_round{lane}")
            m.d.comb += rounded.eq((h.as_signed() + 1) >> 1)
            # Whether rounded fits XHAT_FORMAT, decided from h rather than from the sum, so
            # that the adder is not on the saturation's path: (h + 1) >> 1 fits iff h is in
            # [2 min - 1, 2 max], that is iff h >> 1 fits (its top two bits agree), except
            # h = 2 max + 1, and also h = 2 min - 1: both have the low bits all ones and bit
            # `w` clear, and differ in the sign.
            w = XHAT_FORMAT.width
            edge = h[:w].all() & ~h[w]
            in_range = Signal(name=f"xhat_fit{lane}")
            m.d.comb += in_range.eq(in_fit & Mux(h[w + 1] == h[w], ~(edge & ~h[w + 1]),
                                                 edge & h[w + 1]))
            xhat_next = Signal(signed(XHAT_FORMAT.width), name=f"xhat_next{lane}")
            m.d.comb += xhat_next.eq(Mux(in_range, rounded,
                                         Mux(halves[-1], XHAT_FORMAT.min_int,
                                             XHAT_FORMAT.max_int)))
            xhat = Signal(signed(XHAT_FORMAT.width), name=f"xhat{lane}")
            with m.If(advance):
                m.d.sync += xhat.eq(xhat_next)

            # Stage P + 3: xhat * gamma; stage P + 3 + lat: rounded, plus beta; then saturated.
            mul2 = second[lane]
            m.d.comb += [mul2.en.eq(advance), mul2.a.eq(xhat), mul2.b.eq(gamma_at[lane])]
            out_shift = XHAT_FORMAT.frac + self._gamma_fmt.frac - out_fmt.frac
            if out_shift > 0:
                scaled = (mul2.p + (1 << (out_shift - 1))) >> out_shift
            else:
                scaled = mul2.p << -out_shift
            # The sum is registered before it is saturated: the rounding add, the add of beta
            # and the comparisons in one cycle were the unit's deepest path.
            y = Signal(signed(len(mul2.p) + max(0, -out_shift) + 2), name=f"y{lane}")
            beta_shifted = beta_at[lane] << (out_fmt.frac - self._beta_fmt.frac)
            with m.If(advance):
                m.d.sync += [y.eq(scaled + beta_shifted),
                             self.o.payload[lane].eq(_clamp(y, out_fmt))]

        # Stage P: the squares of a beat in partial sums of four; stage P + 1: into S.
        # Each square is at most 2**(2 * SQUARE_BITS - 2): its low bits carry it whole. Yosys
        # adds several operands in carry-save form, so four take about as long as two.
        parts = []
        for k in range(0, L, 4):
            part = Signal(unsigned(2 * SQUARE_BITS + 1), name=f"squares_{k // 4}")
            with m.If(advance):
                m.d.sync += part.eq(sum(squares[k:k + 4]))
            parts.append(part)
        with m.If(valid[P + 1] & ~tag[P + 1] & advance):
            m.d.sync += S.eq(Mux(first_sq, eps, S) + sum(parts))
        # Pass 2 has drained into S: S goes to the rsqrt unit in this cycle.
        drained = Signal()
        m.d.comb += drained.eq((count == B) & ~Cat(valid[1:P + 2]).any())

        # --- Pass 1: sum, min and max of each beat, in registered trees, then of the row -------
        beat = [self.i.payload[lane] for lane in range(L)]
        beat_sum = tree(m, beat, lambda a, b: a + b, name="beat_sum")
        beat_low = tree(m, beat, lambda a, b: Mux(b < a, b, a), name="beat_low")
        beat_high = tree(m, beat, lambda a, b: Mux(b > a, b, a), name="beat_high")
        taken = Signal()
        beat_taken = delay(m, taken, stats, name="beat_taken")
        beat_first = delay(m, taken & (load_count == 0), stats, name="beat_first")
        with m.If(beat_taken):
            m.d.sync += [total.eq(Mux(beat_first, 0, total) + beat_sum),
                         low.eq(Mux(beat_first | (beat_low < low), beat_low, low)),
                         high.eq(Mux(beat_first | (beat_high > high), beat_high, high))]

        normaliser_idle = Signal()

        # mean's first rounding, then its product; then in four stages, registers that follow
        # load_mean, low and high (which hold still while the loader waits in SPREAD and FULL):
        # dmax's two candidates, dmax, sh and the eps term.
        mean_sum = Signal(signed(d_width))
        m.d.comb += mean_sum.eq((total + (1 << (Db - 1) if Db else 0)) >> Db)
        above, below = Signal(signed(d_width + 1)), Signal(signed(d_width + 1))
        spread = Signal(signed(d_width + 1))
        # sh = max(0, bitlen(spread) - (SQUARE_BITS - 1)): only the bits above count.
        sh_next = 0
        for bit in range(SQUARE_BITS - 1, len(spread)):
            sh_next = Mux(spread[bit], bit + 2 - SQUARE_BITS, sh_next)
        eps_term = 0
        for shift in range(sh_max + 1):
            eps_term = Mux(load_sh == shift, int(shift_round(self.eps_int, 2 * shift)), eps_term)
        m.d.sync += [above.eq(high - load_mean), below.eq(load_mean - low),
                     spread.eq(Mux(below > above, below, above)),
                     load_sh.eq(sh_next), load_eps.eq(eps_term)]

        # Hand-over of a loaded row to the normaliser, when it is idle or issues the last beat
        # of its previous row.
        take = Signal()

        with m.FSM(name="loader") as loader:
            with m.State("LOAD"):
                # A parameter set waiting at a row boundary goes first, once every row loaded
                # before it has read its parameters.
                with m.If((load_count == 0) & self.p.valid):
                    with m.If(normaliser_idle):
                        m.next = "PARAMETERS"
                with m.Else():
                    m.d.comb += [self.i.ready.eq(1), taken.eq(self.i.valid),
                                 row_wr.addr.eq(Mux(load_bank, B, 0) + load_count),
                                 row_wr.data.eq(self.i.payload), row_wr.en.eq(self.i.valid)]
                    with m.If(self.i.valid):
                        m.d.sync += load_count.eq(load_count + 1)
                        with m.If(load_count == B - 1):
                            m.d.sync += [load_count.eq(0), load_timer.eq(0)]
                            m.next = "MEAN"

            with m.State("PARAMETERS"):
                m.d.comb += [self.p.ready.eq(1), par_wr.addr.eq(load_count),
                             par_wr.data.eq(self.p.payload), par_wr.en.eq(self.p.valid)]
                with m.If(self.p.valid):
                    m.d.sync += load_count.eq(load_count + 1)
                    with m.If(load_count == B - 1):
                        m.d.sync += load_count.eq(0)
                        m.next = "LOAD"

            with m.State("MEAN"):
                # b is zero elsewhere: a constant operand would be a shared register, which
                # the DSP could not absorb.
                m.d.comb += [mean_multiplier.a.eq(mean_sum), mean_multiplier.b.eq(mean_mult)]
                # The last beat's sums reach total after `stats` cycles, its product `lat` later.
                with m.If(load_timer != stats + lat):
                    m.d.sync += load_timer.eq(load_timer + 1)
                with m.Else():
                    m.d.sync += [
                        load_mean.eq((mean_multiplier.p + (1 << (CONST_FRAC - 1))) >> CONST_FRAC),
                        load_timer.eq(0)]
                    m.next = "SPREAD"

            with m.State("SPREAD"):
                # above and below, spread, load_sh, load_eps: one stage each.
                with m.If(load_timer != 3):
                    m.d.sync += load_timer.eq(load_timer + 1)
                with m.Else():
                    m.next = "FULL"

            with m.State("FULL"):
                with m.If(take):
                    # The normaliser has read every beat of the other bank.
                    m.d.sync += load_bank.eq(~load_bank)
                    m.next = "LOAD"

        with m.FSM(name="normaliser") as normaliser:
            with m.State("IDLE"):
                m.d.comb += take.eq(loader.ongoing("FULL"))
                with m.If(take):
                    m.next = "SQUARES"

            with m.State("SQUARES"):
                m.d.comb += [issue.eq((count != B) & advance), issue_first.eq(count == 0)]
                with m.If(issue):
                    m.d.sync += count.eq(count + 1)
                # S is offered to the rsqrt unit (below) once pass 2 has drained into it.
                with m.If(drained & rsqrt.i.ready):
                    m.d.sync += count.eq(0)
                    m.next = "RSQRT_WAIT"

            with m.State("RSQRT_WAIT"):
                # r goes straight into the scale multiplier's operand register (b as in MEAN).
                m.d.comb += [scale_multiplier.a.eq(rsqrt.o.payload.r),
                             scale_multiplier.b.eq(sqrt_mant)]
                with m.If(rsqrt.o.valid):
                    m.d.sync += [e.eq(rsqrt.o.payload.e), timer.eq(0)]
                    m.next = "SCALE" if lat > 2 else "NORMALISE"

            if lat > 2:
                with m.State("SCALE"):
                    with m.If(timer != lat - 3):
                        m.d.sync += timer.eq(timer + 1)
                    with m.Else():
                        m.next = "NORMALISE"

            with m.State("NORMALISE"):
                m.d.comb += [issue.eq(advance), issue_pass3.eq(1)]
                with m.If(advance):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == B - 1):
                        m.d.comb += take.eq(loader.ongoing("FULL"))
                        m.next = "IDLE"
                        with m.If(loader.ongoing("FULL")):
                            m.next = "SQUARES"

        with m.If(take):
            m.d.sync += [mean.eq(load_mean), sh.eq(load_sh), eps.eq(load_eps),
                         bank.eq(load_bank), count.eq(0)]

        # c = round(r * sqrt_mant / 2**MANT_FRAC) and the pass-3 shift, `lat` cycles after r
        # entered the scale multiplier: as the first pass-3 beat, issued a cycle earlier,
        # reaches stage 2, which reads c.
        got_r = Signal()
        c_load = delay(m, got_r, lat, name="c_load")
        with m.If(c_load):
            m.d.sync += [c.eq((scale_multiplier.p + (1 << (MANT_FRAC - 1))) >> MANT_FRAC),
                         xhat_shift.eq(sh + e + shift_base + left)]

        # Outside the FSMs' case statements, so that Icarus sees defined values from time zero:
        # it would not run those statements before the state first changes, and an unknown
        # o.ready would keep the rsqrt unit's valid bits unknown for good.
        m.d.comb += [rsqrt.i.valid.eq(normaliser.ongoing("SQUARES") & drained),
                     rsqrt.i.payload.eq(S),
                     rsqrt.o.ready.eq(normaliser.ongoing("RSQRT_WAIT")),
                     got_r.eq(normaliser.ongoing("RSQRT_WAIT") & rsqrt.o.valid),
                     normaliser_idle.eq(normaliser.ongoing("IDLE") & ~loader.ongoing("FULL"))]
        return m


def run_parameters(m, p, ln_p, beats, idle):
    """Pass a unit's parameter stream ``p`` to its :class:`LayerNorm`'s ``ln_p``, one set of
    ``beats`` transfers per run; returns a flag (a register) that is high once this run's set is
    in. A unit that feeds rows to the LayerNorm gates them on it, so no row is normalised before
    its run's parameters.

    ``idle`` is high between runs (the unit's ``cmd.ready``). The set passes only while a run is
    on and its set is not yet in: a set that comes early, while the previous run still
    normalises rows (a sequencer may issue the next run's read that soon), waits on ``p``,
    holding its reader back, instead of reaching the LayerNorm, which would take it for the
    previous run's remaining rows."""
    count = Signal(range(beats))
    loaded = Signal()
    was_idle = Signal(init=1)
    m.d.sync += was_idle.eq(idle)
    open_ = ~idle & ~loaded
    m.d.comb += [ln_p.valid.eq(p.valid & open_), ln_p.payload.eq(p.payload),
                 p.ready.eq(ln_p.ready & open_)]
    with m.If(idle & ~was_idle):
        m.d.sync += [count.eq(0), loaded.eq(0)]
    with m.Elif(p.valid & p.ready):
        m.d.sync += count.eq(count + 1)
        with m.If(count == beats - 1):
            m.d.sync += [count.eq(0), loaded.eq(1)]
    return loaded
