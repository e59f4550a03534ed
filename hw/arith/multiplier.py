"""The one multiplier of the design: a registered product that maps to one DSP48E2.

Every multiply in ``hw/`` goes through :class:`Multiplier`, so that a vendor primitive can
replace its body later without touching the units that use it.
"""

from amaranth.hdl import Module, Signal, signed as signed_shape, unsigned as unsigned_shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import checks


__all__ = ["Multiplier", "DSP_A_WIDTH", "DSP_B_WIDTH"]


#: Widths of the signed operands of a DSP48E2 multiplier (its A:B ports, 27 x 18 bits).
DSP_A_WIDTH = 27
DSP_B_WIDTH = 18

_LATENCIES = (1, 2)


class Multiplier(wiring.Component):
    """Product ``p = a * b``, registered, stalled by a clock enable.

    A plain pipelined datapath, without valid bits: the unit around it keeps track of which
    stages hold data, and holds ``en`` low to stall it (every register keeps its value).
    The operand widths are limited to what one DSP48E2 multiplies, so that synthesis maps the
    unit to exactly one: with ``latency=2`` the operand registers become AREG/BREG and the
    product register MREG (or PREG); with ``latency=1`` only the product is registered.

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
        Register stages, 1 or 2.
    a_enable : bool
        With ``latency=2``, give the register of ``a`` an enable of its own, ``a_en`` (it loads
        when ``en & a_en``). A caller that knows a product does not matter (its ``b`` is zero)
        may hold ``a``; more to the point, copies of one operand that feed several multipliers
        under different enables stay separate registers in synthesis, one per DSP48E2 (its
        AREG), instead of being merged into one register that fans out to every slice.

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
        If a width is not a positive integer or does not fit the DSP48E2, ``latency`` is
        neither 1 nor 2, or ``a_enable`` is asked with ``latency=1``.
    TypeError
        If ``signed`` or ``a_enable`` is not a bool.
    """

    def __init__(self, *, a_width, b_width, signed=True, latency=2, a_enable=False):
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
            raise ValueError(f"Multiplier latency must be 1 or 2 cycles, not {latency!r}")
        if a_enable and latency != 2:
            raise ValueError("Multiplier a_enable needs latency=2 (a register of a)")
        self._a_width = a_width
        self._b_width = b_width
        self._signed = signed
        self._latency = latency
        self._a_enable = a_enable
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
        m = Module()
        if self._latency == 2:
            a = Signal.like(self.a)
            b = Signal.like(self.b)
            if self._a_enable:
                with m.If(self.en):
                    m.d.sync += b.eq(self.b)
                with m.If(self.en & self.a_en):
                    m.d.sync += a.eq(self.a)
            else:
                with m.If(self.en):
                    m.d.sync += [a.eq(self.a), b.eq(self.b)]
        else:
            a, b = self.a, self.b
        with m.If(self.en):
            m.d.sync += self.p.eq(a * b)
        return m
