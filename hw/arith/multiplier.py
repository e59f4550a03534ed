"""The one multiplier of the design: a registered product that maps to one DSP48E2.

Every multiply in ``hw/`` goes through :class:`Multiplier`, so that a platform's hard multipliers
can change its body without touching the units that use it: on the ECP5, whose MULT18X18D is
narrower than a DSP48E2, a wide product is two partial products between registers.
"""

from amaranth.hdl import Module, Signal, signed as signed_shape, unsigned as unsigned_shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import checks


__all__ = ["Multiplier", "MULTIPLY_LATENCY", "DSP_A_WIDTH", "DSP_B_WIDTH"]


#: Widths of the signed operands of a DSP48E2 multiplier (its A:B ports, 27 x 18 bits).
DSP_A_WIDTH = 27
DSP_B_WIDTH = 18

_LATENCIES = (1, 2, 3)

#: The latency of the design's wide products (operands 19 bits or more): operand, product and
#: output registers, which a DSP48E2 holds as AREG/BREG, MREG and PREG, and which let an ECP5
#: cut the product into two MULT18X18D between registers (``slice_widths``).
MULTIPLY_LATENCY = 3


class Multiplier(wiring.Component):
    """Product ``p = a * b``, registered, stalled by a clock enable.

    A plain pipelined datapath, without valid bits: the unit around it keeps track of which
    stages hold data, and holds ``en`` low to stall it (every register keeps its value).
    The operand widths are limited to what one DSP48E2 multiplies, so that synthesis maps the
    unit to exactly one: with ``latency=3`` (:data:`MULTIPLY_LATENCY`, the design's) the
    operand registers become AREG/BREG, the product register MREG and the output register
    PREG; with ``latency=2`` the operand registers and MREG (or PREG); with ``latency=1`` only
    the product is registered.

    **Hard multipliers narrower than the DSP48E2's** (the ECP5's MULT18X18D, 18 x 18 bits
    signed). A platform that has them says so with ``multiplier_slice = (a_bits, b_bits)``
    (signed bits of the hard multiplier's operands; ``boards.ulx3s``), or the constructor's
    ``slice_widths`` does. With ``latency=3`` an ``a`` wider than the slice is then cut into a
    low part of ``a_bits - 1`` bits and the rest: the second register holds the two partial
    products, the third their sum, so that no path runs through a hard multiplier and an adder
    (Yosys's ``synth_ecp5`` uses none of the MULT18X18D's own registers). The result and its
    timing are the same as the plain body's, cycle for cycle.

    Latency of ``latency`` cycles: the product of operands presented at a rising edge with
    ``en`` high appears on ``p`` after ``latency`` such edges (edges with ``en`` low do not
    count). Throughput of one product per cycle with ``en`` high.

    Parameters
    ----------
    a_width : int
        Bits of operand ``a``: at most 27 if ``signed``, 26 if not (the DSP48E2's A port is 27
        bits signed).
    b_width : int
        Bits of operand ``b``: at most 18 if ``signed``, 17 if not (B port, 18 bits signed).
    signed : bool
        Whether both operands, and so the product, are signed.
    latency : int
        Register stages, 1, 2 or 3.
    a_enable : bool
        With ``latency`` 2 or 3, give the register of ``a`` an enable of its own, ``a_en`` (it
        loads when ``en & a_en``). A caller that knows a product does not matter (its ``b`` is
        zero) may hold ``a``; more to the point, copies of one operand that feed several
        multipliers under different enables stay separate registers in synthesis, one per
        DSP48E2 (its AREG), instead of being merged into one register that fans out to every
        slice.
    slice_widths : (int, int) or None
        Signed operand bits of the platform's hard multiplier, if narrower than the DSP48E2's
        (see above); None takes the platform's ``multiplier_slice``, if any.

    Members
    -------
    a : ``In(signed(a_width))`` or ``In(unsigned(a_width))``
        First operand.
    b : ``In(signed(b_width))`` or ``In(unsigned(b_width))``
        Second operand.
    en : ``In(1)``
        Clock enable of every register of the unit.
    a_en : ``In(1)``, with ``a_enable`` only
        Second clock enable of the register of ``a``.
    p : ``Out(signed(a_width + b_width))`` or ``Out(unsigned(a_width + b_width))``
        The product, exact.

    Raises
    ------
    ValueError
        If a width is not a positive integer or does not fit the DSP48E2, ``latency`` is not
        1, 2 or 3, ``a_enable`` is asked with ``latency=1``, or ``b`` does not fit the slice.
    TypeError
        If ``signed`` or ``a_enable`` is not a bool.
    """

    def __init__(self, *, a_width, b_width, signed=True, latency=2, a_enable=False,
                 slice_widths=None):
        for name, value in (("signed", signed), ("a_enable", a_enable)):
            if not isinstance(value, bool):
                raise TypeError(f"Multiplier {name} must be a bool, not {value!r}")
        for name, width, limit in (("a_width", a_width, DSP_A_WIDTH),
                                   ("b_width", b_width, DSP_B_WIDTH)):
            checks.positive("Multiplier", name, width)
            # The DSP48E2 multiplies signed numbers only: an unsigned operand needs a zero bit
            # on top.
            usable = limit if signed else limit - 1
            if width > usable:
                raise ValueError(
                    f"Multiplier {name} must be at most {usable} bits "
                    f"{'signed' if signed else 'unsigned'} to fit one DSP48E2 "
                    f"({DSP_A_WIDTH} x {DSP_B_WIDTH} bits signed), not {width}")
        if not checks.is_int(latency) or latency not in _LATENCIES:
            raise ValueError(f"Multiplier latency must be 1, 2 or 3 cycles, not {latency!r}")
        if a_enable and latency == 1:
            raise ValueError("Multiplier a_enable needs latency 2 or 3 (a register of a)")
        self._a_width = a_width
        self._b_width = b_width
        self._signed = signed
        self._latency = latency
        self._a_enable = a_enable
        self._slice_widths = slice_widths
        shape = signed_shape if signed else unsigned_shape
        super().__init__({
            "a": In(shape(a_width)),
            "b": In(shape(b_width)),
            "en": In(1),
            **({"a_en": In(1)} if a_enable else {}),
            "p": Out(shape(a_width + b_width)),
        })

    a_width = property(lambda self: self._a_width)
    b_width = property(lambda self: self._b_width)
    signed = property(lambda self: self._signed)

    @property
    def latency(self):
        """Cycles with ``en`` high from operands to product."""
        return self._latency

    def elaborate(self, platform):
        low_bits = self._low_bits(platform)
        m = Module()
        if self._latency == 1:
            with m.If(self.en):
                m.d.sync += self.p.eq(self.a * self.b)
            return m
        a = Signal.like(self.a)
        b = Signal.like(self.b)
        with m.If(self.en):
            m.d.sync += b.eq(self.b)
        with m.If(self.en & (self.a_en if self._a_enable else 1)):
            m.d.sync += a.eq(self.a)
        if self._latency == 2:
            with m.If(self.en):
                m.d.sync += self.p.eq(a * b)
        elif low_bits is None:
            product = Signal.like(self.p)
            with m.If(self.en):
                m.d.sync += [product.eq(a * b), self.p.eq(product)]
        else:
            # a = high * 2**low_bits + low, low unsigned: each part times b is one slice.
            low = a[:low_bits]
            high = a[low_bits:].as_signed() if self._signed else a[low_bits:]
            low_product, high_product = Signal.like(low * b), Signal.like(high * b)
            with m.If(self.en):
                m.d.sync += [low_product.eq(low * b), high_product.eq(high * b),
                             self.p.eq((high_product << low_bits) + low_product)]
        return m

    def _low_bits(self, platform):
        """Bits of the low part of ``a`` when its product is cut in two, or None."""
        slice_widths = self._slice_widths or getattr(platform, "multiplier_slice", None)
        if self._latency < 3 or slice_widths is None:
            return None
        # A signed slice multiplies an unsigned operand of one bit less.
        a_bits, b_bits = (w if self._signed else w - 1 for w in slice_widths)
        if self._a_width <= a_bits:
            return None
        if self._b_width > b_bits:
            raise ValueError(f"Multiplier b_width {self._b_width} does not fit the platform's "
                             f"{slice_widths[0]} x {slice_widths[1]} multiplier")
        return slice_widths[0] - 1
