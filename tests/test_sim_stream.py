"""Tests of the stream drivers (sim/stream.py): the source obeys the stream rules, and the sink
catches a design that breaks them. The example bench (tests/test_sim_runner.py) covers payload
order, back-pressure and cycle timing against a real unit."""

import shutil

import pytest

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.runner import CocotbTestFailure, run


class StreamSelftest(wiring.Component):
    """``q`` is ``i`` passed through; ``o`` and ``p`` break stream rules 2 and 4."""

    i: In(stream.Signature(8))
    q: Out(stream.Signature(8))
    o: Out(stream.Signature(8))
    p: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.q))
        count = Signal(8)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [
            self.o.valid.eq(count[0]),  # regardless of o.ready
            self.o.payload.eq(count),
            self.p.valid.eq(1),
            self.p.payload.eq(count),   # regardless of p.ready
        ]
        return m


BENCH = "sim.benches.stream_selftest"
BOTH = ["verilator", pytest.param("icarus", marks=pytest.mark.skipif(
    shutil.which("iverilog") is None,
    reason="Icarus Verilog (iverilog) is not on PATH: apt-get install iverilog"))]


@pytest.mark.parametrize("simulator", BOTH)
def test_source_obeys_rules(simulator):
    run(StreamSelftest(), BENCH, testcase="test_source_obeys_rules", simulator=simulator)


@pytest.mark.parametrize("simulator", BOTH)
@pytest.mark.parametrize("testcase, message", [
    ("test_sink_catches_dropped_valid", r"o__valid fell at \d+(\.\d+)? ns before payload "
                                        r"0x[0-9a-f]+ was transferred \(stream rule 2\)"),
    ("test_sink_catches_changed_payload", r"p__payload changed from 0x[0-9a-f]+ to 0x[0-9a-f]+ "
                                          r"at .* before it was transferred \(stream rule 4\)"),
])
def test_sink_catches_broken_rules(simulator, testcase, message):
    with pytest.raises(CocotbTestFailure, match=message):
        run(StreamSelftest(), BENCH, testcase=testcase, simulator=simulator)
