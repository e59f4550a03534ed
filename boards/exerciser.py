"""Keep a top with plain ports alive on a board: a placeholder until the AXI top exists.

Today's tops (e.g. :class:`hw.system.mlp_half.MlpHalf`) have stream ports, not AXI, so nothing on a
board drives or reads them. Left unconnected, a vendor tool optimises the whole design away. The
:class:`Exerciser` drives every input bit of the ports it is given from a pseudo-random pattern
(a 32-bit LFSR shifted through a register as wide as the inputs) and folds every output bit into
one registered XOR that a board routes to a LED. Its cost, besides the design, is one flip-flop
per input bit, 32 for the LFSR and an XOR tree over the outputs.

This measures area and timing of a unit in place; it does not run inferences. When the top has
an AXI master and a register block, the board shell connects those ports to the Zynq PS and only
the remaining ones (if any) go through the exerciser.
"""

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal, Value
from amaranth.lib import io, wiring

__all__ = ["Exerciser", "ExerciserShell", "leaf_ports", "LFSR_TAPS"]

#: Galois LFSR taps of x^32 + x^22 + x^2 + x + 1 (maximal length).
LFSR_TAPS = 0x80200003


def leaf_ports(component, names):
    """``(path, flow, value)`` of every leaf signal of ``component``'s members ``names``, with
    ``flow`` as seen from the component (``Out`` leaves it)."""
    leaves = []
    for path, member, value in component.signature.flatten(component):
        if path[0] in names:
            leaves.append((path, member.flow, Value.cast(value)))
    return leaves


class Exerciser(Elaboratable):
    """Drive the inputs of ``component``'s ports ``names`` pseudo-randomly, fold their outputs.

    Parameters
    ----------
    component : wiring.Component
    names : iterable of str
        Members of the component's signature to exercise (default: all).

    Attributes
    ----------
    fold : Signal(1)
        Registered XOR of every output bit of the exercised ports.
    input_bits, output_bits : int
    """

    def __init__(self, component, names=None):
        members = list(component.signature.members)
        names = members if names is None else list(names)
        unknown = [n for n in names if n not in members]
        if unknown:
            self._MustUse__silence = True
            raise ValueError(f"Exerciser: {component!r} has no port {unknown[0]!r}; "
                             f"its ports are {', '.join(members)}")
        self._leaves = leaf_ports(component, names)
        self._inputs = [v for _, flow, v in self._leaves if flow == wiring.In]
        self._outputs = [v for _, flow, v in self._leaves if flow == wiring.Out]
        self.input_bits = sum(len(v) for v in self._inputs)
        self.output_bits = sum(len(v) for v in self._outputs)
        self.fold = Signal()

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], Const(0, 1)) ^ Mux(lfsr[0], LFSR_TAPS, 0))
        if self.input_bits:
            pattern = Signal(max(self.input_bits, 32), init=1)
            m.d.sync += pattern.eq(Cat(lfsr, pattern[:-32]))
            offset = 0
            for value in self._inputs:
                m.d.comb += value.eq(pattern[offset:offset + len(value)])
                offset += len(value)
        if self.output_bits:
            m.d.sync += self.fold.eq(Cat(*self._outputs).xor())
        return m


class ExerciserShell(Elaboratable):
    """Top level for a board without a host interface: ``top`` in the platform's default
    ``sync`` domain, every port exercised, the fold on LED 0.

    Parameters
    ----------
    top : wiring.Component

    Attributes
    ----------
    exerciser : Exerciser
    """

    def __init__(self, top):
        self.top = top
        self.exerciser = Exerciser(top)

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = self.top
        m.submodules.exerciser = self.exerciser
        if platform is not None:
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(self.exerciser.fold)
        return m
