"""Table plus linear interpolation in hardware: the twin of :mod:`model.arith.interp`.

:class:`InterpDatapath` is the pipelined arithmetic, stalled by a clock enable, for units that
run several of them in lockstep (GELU has one per lane); :class:`Interp` wraps it in streams.
Both evaluate ``InterpTable.evaluate`` bit for bit::

    i, r = t >> b, t & (2**b - 1)
    y    = T[i] + (((T[i+1] - T[i]) * r + 2**(b-1)) >> b)    (round half up; no half if b = 0)

The ROM holds one word per node ``k``: ``T[k]`` and the step ``T[k+1] - T[k]`` (computed when
the ROM is built, so no subtractor), with a step of 0 after the last node, so that the end of
the table (``t = segments << b``, ``i = segments``, ``r = 0``) needs no clamp. One read per
evaluation, and the multiply goes through :class:`hw.arith.multiplier.Multiplier`.
"""

from dataclasses import dataclass

import numpy as np

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.arith.interp import InterpTable

from hw import checks
from hw.arith.multiplier import DSP_A_WIDTH, DSP_B_WIDTH, Multiplier
from hw.streams.pipeline import delay, valid_pipeline


__all__ = ["InterpWidths", "InterpDatapath", "Interp"]


def _signed_bits(values):
    """Bits of the narrowest signed shape holding every integer of ``values``."""
    low, high = int(np.min(values)), int(np.max(values))
    return max(high.bit_length(), (-low - 1).bit_length()) + 1


@dataclass(frozen=True)
class InterpWidths:
    """The widths of an interpolation datapath, worked out (and checked) before building one.

    Attributes
    ----------
    position_bits : int
        ``b = t_frac - table.step_log2``, the bits of ``t`` below the table step.
    t_width : int
        Bits of the unsigned input: enough for the end of the table, ``segments << b``.
    width : int
        Bits of the signed result, those of the table's entries.
    step_width : int
        Bits of a signed step ``T[k+1] - T[k]``.
    step_on_a : bool
        Whether the step goes on the multiplier's wide (27-bit) port and the position ``r``
        (``b`` bits, one more to make it signed) on the 18-bit one, or the other way round.
    """

    position_bits: int
    t_width: int
    width: int
    step_width: int
    step_on_a: bool

    @classmethod
    def of(cls, table, t_frac):
        """The widths for ``table`` at inputs with ``t_frac`` fraction bits.

        Raises
        ------
        TypeError
            If ``table`` is not an ``InterpTable``.
        ValueError
            If ``t_frac`` is too small for the table's step, or the steps and the position
            ``r`` cannot both fit one DSP48E2.
        """
        if not isinstance(table, InterpTable):
            raise TypeError(f"Interpolation table must be a model.arith.interp.InterpTable, "
                            f"not {table!r}")
        if not checks.is_int(t_frac) or t_frac < table.step_log2:
            raise ValueError(
                f"Interpolation input needs an integer of at least {table.step_log2} fraction "
                f"bits (the table step is 2**-{table.step_log2}), not t_frac={t_frac!r}")
        b = t_frac - table.step_log2
        step_width = _signed_bits(np.diff(table.entries))
        r_width = b + 1
        if step_width <= DSP_A_WIDTH and r_width <= DSP_B_WIDTH:
            step_on_a = True
        elif step_width <= DSP_B_WIDTH and r_width <= DSP_A_WIDTH:
            step_on_a = False
        else:
            raise ValueError(
                f"Interpolation needs a {step_width}-bit signed step times a {r_width}-bit "
                f"signed position (t_frac={t_frac} leaves {b} bits below the table step), which "
                f"no DSP48E2 ({DSP_A_WIDTH} x {DSP_B_WIDTH} bits signed) multiplies")
        return cls(position_bits=b, t_width=max((table.segments << b).bit_length(), 1),
                   width=table.width, step_width=step_width, step_on_a=step_on_a)


class InterpDatapath(wiring.Component):
    """Linear interpolation in ``table`` at unsigned offsets ``t`` with ``t_frac`` fraction bits.

    A plain pipelined datapath, without valid bits, stalled by ``en`` like
    :class:`hw.arith.multiplier.Multiplier`: stage 1 reads the ROM (and keeps ``r``), the
    multiplier's stages form the product, the last stage rounds and adds ``T[i]`` into ``y``.

    Latency of ``LATENCY = MULTIPLIER_LATENCY + 2`` = 4 cycles: the result for ``t`` presented
    at a rising edge with ``en`` high is on ``y`` after 4 such edges. Throughput of one
    evaluation per cycle with ``en`` high.

    Parameters
    ----------
    table : model.arith.interp.InterpTable
        The table; its entries fill the ROM.
    t_frac : int
        Fraction bits of ``t``, at least ``table.step_log2``.

    Members
    -------
    t : ``In(unsigned(t_width))``
        Offset from the table's first node, at most ``table.segments << (t_frac -
        table.step_log2)``; larger offsets give unspecified results (the twin raises).
    en : ``In(1)``
        Clock enable of every register of the unit.
    y : ``Out(signed(table.width))``
        Interpolated value, with ``table.frac`` fraction bits.

    Raises
    ------
    TypeError, ValueError
        As :meth:`InterpWidths.of`.
    """

    #: Register stages of the :class:`hw.arith.multiplier.Multiplier` inside.
    MULTIPLIER_LATENCY = 2
    #: Cycles with ``en`` high from ``t`` to ``y``: ROM read, multiplier, rounding and sum.
    LATENCY = MULTIPLIER_LATENCY + 2

    def __init__(self, *, table, t_frac):
        self._widths = InterpWidths.of(table, t_frac)
        self._table = table
        self._t_frac = t_frac
        super().__init__({
            "t": In(unsigned(self._widths.t_width)),
            "en": In(1),
            "y": Out(signed(self._widths.width)),
        })

    table = property(lambda self: self._table)
    t_frac = property(lambda self: self._t_frac)

    @property
    def t_width(self):
        """Bits of ``t``: enough for the end of the table."""
        return self._widths.t_width

    @property
    def width(self):
        """Bits of the signed result, those of the table's entries."""
        return self._widths.width

    def elaborate(self, platform):
        m = Module()
        widths = self._widths
        b = widths.position_bits
        # One word per node: T[k] and the step to the next node, 0 after the last one.
        entries = [int(entry) for entry in self._table.entries]
        steps = [high - low for low, high in zip(entries, entries[1:])] + [0]
        layout = data.StructLayout({"base": signed(widths.width),
                                    "step": signed(widths.step_width)})
        m.submodules.rom = rom = Memory(
            shape=layout, depth=len(entries),
            init=[{"base": base, "step": step} for base, step in zip(entries, steps)])
        read = rom.read_port()
        # r is unsigned; one zero bit on top makes it a signed operand.
        step_width, r_width = widths.step_width, b + 1
        m.submodules.multiplier = multiplier = Multiplier(
            a_width=step_width if widths.step_on_a else r_width,
            b_width=r_width if widths.step_on_a else step_width,
            latency=self.MULTIPLIER_LATENCY)

        # Stage 1: the ROM word of segment i, and r alongside it.
        r = Signal(unsigned(b))
        m.d.comb += [read.addr.eq(self.t >> b), read.en.eq(self.en)]
        with m.If(self.en):
            m.d.sync += r.eq(self.t[:b])

        # Multiplier stages: the product, and T[i] kept in step with it.
        step_operand, r_operand = ((multiplier.a, multiplier.b) if widths.step_on_a
                                   else (multiplier.b, multiplier.a))
        m.d.comb += [step_operand.eq(read.data.step), r_operand.eq(r),
                     multiplier.en.eq(self.en)]
        base = delay(m, read.data.base, self.MULTIPLIER_LATENCY, en=self.en, name="base",
                     first=2)

        # Last stage: round half up, then add T[i]. The result lies between T[i] and T[i+1],
        # so it fits the entries' width.
        half = 1 << (b - 1) if b > 0 else 0
        with m.If(self.en):
            m.d.sync += self.y.eq(base + ((multiplier.p + half) >> b))
        return m


class Interp(wiring.Component):
    """Linear interpolation in ``table``, as a stream: one :class:`InterpDatapath` with valid bits.

    The whole pipeline stalls while ``o`` holds a result nobody takes, so ``i.ready`` follows
    ``o.ready`` combinationally (and is high whenever ``o`` is empty).

    Latency of ``LATENCY = InterpDatapath.LATENCY`` = 4 cycles, from the clock edge that accepts
    ``t`` on ``i`` to the edge that delivers its result on ``o`` (with ``o.ready`` high);
    throughput of one evaluation per cycle.

    Parameters
    ----------
    table : model.arith.interp.InterpTable
        The table.
    t_frac : int
        Fraction bits of the input, at least ``table.step_log2``.

    Members
    -------
    i : ``In(stream.Signature(unsigned(t_width)))``
        Offsets ``t`` from the table's first node, in range (see :class:`InterpDatapath`).
    o : ``Out(stream.Signature(signed(table.width)))``
        Interpolated values, ``table.frac`` fraction bits, in the order the offsets arrived.

    Raises
    ------
    TypeError, ValueError
        As :meth:`InterpWidths.of`.
    """

    #: Cycles from accepting an offset to delivering its result.
    LATENCY = InterpDatapath.LATENCY

    def __init__(self, *, table, t_frac):
        self._widths = InterpWidths.of(table, t_frac)
        self._table = table
        self._t_frac = t_frac
        super().__init__({
            "i": In(stream.Signature(unsigned(self._widths.t_width))),
            "o": Out(stream.Signature(signed(self._widths.width))),
        })

    table = property(lambda self: self._table)
    t_frac = property(lambda self: self._t_frac)

    @property
    def t_width(self):
        return self._widths.t_width

    @property
    def width(self):
        return self._widths.width

    def elaborate(self, platform):
        m = Module()
        m.submodules.datapath = datapath = InterpDatapath(table=self._table,
                                                          t_frac=self._t_frac)

        advance = ~self.o.valid | self.o.ready
        m.d.comb += [
            self.i.ready.eq(advance),
            datapath.en.eq(advance),
            datapath.t.eq(self.i.payload),
            self.o.payload.eq(datapath.y),
        ]
        valid_pipeline(m, self.i.valid, self.o.valid, self.LATENCY, en=advance)
        return m
