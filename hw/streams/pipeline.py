"""Pipeline plumbing shared by the units: delay lines and valid pipelines.

The stream units of ``hw/`` (GELU, exp, the interpolations, softmax, ...) are built one way: a
datapath whose registers all share one clock enable, ``advance = ~o.valid | o.ready``, so that the
whole pipeline moves unless its output holds a result nobody takes. Beside the arithmetic, two
kinds of registers recur in every one of them:

* a **delay line**, which carries a value (a flag, a shift, a row index) along the stages so that
  it reaches a later stage in step with the arithmetic it belongs to (:func:`delay`);
* a **valid pipeline**, one valid bit per stage, whose last bit is the output's ``valid``
  (:func:`valid_pipeline`).

Both are plain registers under the unit's enable: built here, a unit states only its stages and
names, and a change to how they are made (a reset, an attribute for synthesis) is made once.
The registers are the ones each unit wrote by hand before, with the same enable, initial values
and names, so the logic and the resources are unchanged.

The units stall as a whole, which makes ``i.ready`` follow ``o.ready`` combinationally; where a
chain of units makes that ready path too deep, :class:`hw.streams.skid.SkidBuffer` cuts it.
"""

from amaranth.hdl import Cat, Mux, Signal

from hw import checks


__all__ = ["delay", "valid_pipeline", "tree", "tree_stages", "countdown", "wide_counter", "select"]


def delay(m, value, stages, *, name, en=None, first=1):
    """``value`` delayed by ``stages`` registers, to be read ``stages`` enabled cycles later.

    Each register takes the shape of ``value`` (and, if ``value`` is a signal, its initial
    value), so a flag stays a flag and a view stays a view. With ``en``, every register keeps its
    value in a cycle with ``en`` low: a value carried along a stallable pipeline stays in step
    with the data around it.

    Parameters
    ----------
    m : amaranth.hdl.Module
        The module that gets the registers, in its ``sync`` domain.
    value : value-like or value-castable
        What to delay: a signal, an expression or a view.
    stages : int
        Registers, at least 0; 0 gives ``value`` back unchanged.
    name : str
        Stem of the registers' names, which are ``{name}_{first}``, ``{name}_{first + 1}``, and
        so on, so the generated Verilog reads ``shift_2``, ``shift_3``.
    en : value-like or None
        Clock enable of every register (a stallable pipeline's ``advance``); None for registers
        that load every cycle.
    first : int
        Number of the first register. Pass the pipeline stage it belongs to when the line
        starts in the middle of a pipeline, so that a name says its stage (``k_3`` holds the
        ``k`` of stage 3).

    Returns
    -------
    Signal or value-like
        The last register, ``value`` delayed by ``stages`` cycles (by ``stages`` cycles with
        ``en`` high), or ``value`` itself if ``stages`` is 0.

    Raises
    ------
    ValueError
        If ``stages`` is not an integer of at least 0, or ``first`` not an integer.
    """
    checks.at_least("delay", "stages", stages, 0)
    if not checks.is_int(first):
        raise ValueError(f"delay first must be an integer, not {first!r}")
    for stage in range(first, first + stages):
        register = Signal.like(value, name=f"{name}_{stage}")
        if en is None:
            m.d.sync += register.eq(value)
        else:
            with m.If(en):
                m.d.sync += register.eq(value)
        value = register
    return value


def valid_pipeline(m, valid, out, stages, *, en, name="valid"):
    """Drive ``out`` with ``valid`` delayed by ``stages`` enabled registers, one valid bit per
    stage of a pipeline of ``stages`` stages.

    The last register is ``out`` itself (typically the output stream's ``valid``, which the
    caller owns), so that ``out`` comes straight from a flip-flop; the ``stages - 1`` registers
    before it are named ``{name}_1`` to ``{name}_{stages - 1}``, after the stage whose data they
    mark valid. All of them share the enable of the datapath they accompany, so a bit stays with
    its data through every stall.

    Parameters
    ----------
    m : amaranth.hdl.Module
        The module that gets the registers, in its ``sync`` domain.
    valid : value-like
        One bit: the first stage takes data this cycle (the input's ``valid``).
    out : Signal
        The last register, driven here from the ``sync`` domain: nothing else may drive it.
    stages : int
        Register stages from ``valid`` to ``out``, at least 1: the pipeline's latency.
    en : value-like or None
        Clock enable of every register (the pipeline's ``advance``); None for a pipeline that
        never stalls.
    name : str
        Stem of the names of the registers before ``out``.

    Raises
    ------
    ValueError
        If ``stages`` is not a positive integer.
    """
    checks.positive("valid_pipeline", "stages", stages)
    last = delay(m, valid, stages - 1, name=name, en=en)
    if en is None:
        m.d.sync += out.eq(last)
    else:
        with m.If(en):
            m.d.sync += out.eq(last)


def tree_stages(count, per_stage=1):
    """Register stages of a :func:`tree` over ``count`` values with ``per_stage`` levels of
    ``combine`` between registers: ``ceil(ceil(log2(count)) / per_stage)``, 0 for one value."""
    checks.positive("tree_stages", "count", count)
    checks.positive("tree_stages", "per_stage", per_stage)
    levels = (count - 1).bit_length()
    return -(-levels // per_stage)


def tree(m, values, combine, *, name, en=None, per_stage=1):
    """Reduce ``values`` pairwise with ``combine``, a register after every ``per_stage`` levels:
    a balanced tree whose depth between registers is ``per_stage`` uses of ``combine``.

    ``combine(a, b)`` returns the value-like of one node (a sum, a maximum, a compare-select);
    a node left without a partner at a level passes through unchanged. Level ``n``'s values are
    registers named ``{name}_{n}_{i}`` where a register ends a stage. The result arrives after
    :func:`tree_stages` enabled cycles (none for one value, which is returned as is).

    Parameters
    ----------
    m : amaranth.hdl.Module
        The module that gets the registers, in its ``sync`` domain.
    values : list of value-like
        What to reduce, at least one.
    combine : callable
        ``combine(a, b) -> value-like``; associative, since the tree reorders nothing but groups
        the values left to right by pairs.
    name : str
        Stem of the registers' names.
    en : value-like or None
        Clock enable of every register (the pipeline's ``advance``).
    per_stage : int
        Levels of ``combine`` between registers.

    Returns
    -------
    value-like
        The last level's single value (a register unless ``values`` has one element).
    """
    values = list(values)
    stages = tree_stages(len(values), per_stage)
    level = 0
    while len(values) > 1:
        values = [combine(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
        level += 1
        if level % per_stage == 0 or len(values) == 1:
            registers = []
            for i, value in enumerate(values):
                register = Signal.like(value, name=f"{name}_{level}_{i}")
                if en is None:
                    m.d.sync += register.eq(value)
                else:
                    with m.If(en):
                        m.d.sync += register.eq(value)
                registers.append(register)
            values = registers
    assert stages == -(-level // per_stage)
    return values[0]


def countdown(m, *, name, load, total, step):
    """A count of steps to go whose end is known a cycle ahead, so that no comparison sits
    between a handshake and what it decides.

    On ``load`` (which wins over ``step``) the count is set to ``total``, a value that must
    have been stable since the cycle before (a register); on each ``step`` while ``active`` it
    falls by one. ``active`` (some steps remain) and ``last`` (the next step is the last) are
    registers.

    Parameters
    ----------
    m : amaranth.hdl.Module
    name : str
        Stem of the registers' names (``{name}_left``, ``{name}_active``, ``{name}_last``).
    load, step : value-like
        One bit each.
    total : Signal
        Steps from a load, at least 0.

    Returns
    -------
    (active, last) : (Signal, Signal)
    """
    left = Signal.like(total, name=f"{name}_left")
    active = Signal(name=f"{name}_active")
    last = Signal(name=f"{name}_last")
    with m.If(load):
        m.d.sync += [left.eq(total), active.eq(total != 0), last.eq(total == 1)]
    with m.Elif(step & active):
        m.d.sync += [left.eq(left - 1), last.eq(left == 2), active.eq(~last)]
    return active, last


def wide_counter(m, *, name, width, clear, step, part=32):
    """A ``width``-bit count of cycles with ``step`` high, cleared by ``clear``, built from
    ``part``-bit counters with a register on the carry between them, so that no carry chain
    is longer than ``part + 1`` bits whatever the width.

    Part ``k`` takes its carry ``k`` cycles late: the count reads exact ``ceil(width / part) - 1``
    cycles after its last step (a cycle counter read once a run has ended, not while it counts).

    Parameters
    ----------
    m : amaranth.hdl.Module
    name : str
        Stem of the registers' names (``{name}_0``, ``{name}_1``, ... low part first).
    width, part : int
        Bits of the count and of each part, both positive.
    clear, step : value-like
        One bit each; ``clear`` wins.

    Returns
    -------
    value-like
        The count, ``width`` bits.
    """
    checks.positive("wide_counter", "width", width)
    checks.positive("wide_counter", "part", part)
    parts = [Signal(min(part, width - low), name=f"{name}_{k}")
             for k, low in enumerate(range(0, width, part))]
    carries = [step] + [Signal(name=f"{name}_carry_{k}") for k in range(1, len(parts))]
    for k, count in enumerate(parts):
        if k + 1 < len(parts):
            m.d.sync += Cat(count, carries[k + 1]).eq(count + carries[k])
        else:
            m.d.sync += count.eq(count + carries[k])
    with m.If(clear):
        m.d.sync += [count.eq(0) for count in parts] + [carry.eq(0) for carry in carries[1:]]
    return Cat(*parts)


def select(index, values):
    """``values[index]`` as a chain of Mux expressions.

    Not an ``Array``: Amaranth's Verilog reads an ``Array`` in an ``always @*`` process, which
    Icarus does not run at time zero, so a value read before any of its inputs changes (just
    after reset) would be unknown; a Mux becomes a continuous assignment.
    """
    selected = values[0]
    for position, value in enumerate(values[1:], start=1):
        selected = Mux(index == position, value, selected)
    return selected
