# amaranth: UnusedElaboratable=no
"""The handshake rule (VALID kept, payload stable until READY) checked formally on the AXI DMAs,
the burst splitter and the skid buffer (sim/formal.py), and the checker itself caught on a unit
that breaks the rule."""

import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from sim.formal import HARNESSES, FormalError, _Harness, _stream, main, prove


@pytest.mark.parametrize("name", list(HARNESSES))
def test_handshake_rule(name):
    build, how, depth = HARNESSES[name]
    prove(build(), depth=depth, how=how, name=name)


class DropsValid(wiring.Component):
    """Offers a payload, then withdraws it after five cycles whether taken or not."""

    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        count = Signal(3)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [self.o.valid.eq(count != 5), self.o.payload.eq(count)]
        return m


@pytest.mark.parametrize("how", ["prove", "bounded"])
def test_a_breach_is_found(how):
    harness = _Harness(DropsValid(), asserted=lambda u: {"o": _stream(u.o)},
                       assumed=lambda u: {})
    with pytest.raises(FormalError, match="handshake check of drops_valid failed"):
        prove(harness, depth=10, how=how, name="drops_valid")


def test_cli(capsys):
    assert main(["skid_buffer"]) == 0
    assert "skid_buffer: proved by induction" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["no_such_unit"])
    assert "unknown harness no_such_unit" in capsys.readouterr().err
