"""Argument checks of the units' constructors, with one wording for the whole of ``hw/``.

A unit checks its parameters before it builds its signature, so that a wrong value fails where it
is given, with a message that names the class, the argument and the value given (``"Gather rows
must be a positive integer, not 0"``), rather than later as a width error deep inside
elaboration. Each check raises ``ValueError``, or ``TypeError`` for a value of the wrong kind
where the tests and callers expect one; none returns anything.

``bool`` is a subclass of ``int`` in Python, but ``lanes=True`` is always a mistake: the integer
checks here reject it.
"""

from model.numerics import Fixed


__all__ = ["is_int", "positive", "multiple_of", "at_least", "in_range", "fixed"]


def is_int(value):
    """Whether ``value`` is an integer and not a bool, for checks with a wording of their own.

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(value, int) and not isinstance(value, bool)


def positive(owner, name, value):
    """Check that ``value`` is a positive integer: a count of lanes, rows, beats.

    Parameters
    ----------
    owner : str
        The class (or the unit's name as its documentation spells it, e.g. ``"GELU"``).
    name : str
        The argument.
    value : object
        What was given.

    Raises
    ------
    ValueError
        ``"{owner} {name} must be a positive integer, not {value!r}"``.
    """
    if not (is_int(value) and value > 0):
        raise ValueError(f"{owner} {name} must be a positive integer, not {value!r}")


def multiple_of(owner, name, value, step, what):
    """Check that ``value`` is a positive multiple of ``step``: a width that whole beats of
    ``step`` lanes must cover.

    Parameters
    ----------
    owner, name, value
        As for :func:`positive`.
    step : int
    what : str
        What ``step`` is, for the message (``"lanes"``).

    Raises
    ------
    ValueError
        ``"{owner} {name} must be a positive multiple of {what} ({step}), not {value!r}"``.
    """
    if not (is_int(value) and value > 0 and value % step == 0):
        raise ValueError(f"{owner} {name} must be a positive multiple of {what} ({step}), "
                         f"not {value!r}")


def at_least(owner, name, value, low):
    """Check that ``value`` is an integer of at least ``low``: a bound that the hardware sets,
    such as the rows a recurrence needs interleaved.

    Parameters
    ----------
    owner, name, value
        As :func:`positive`.
    low : int
        The smallest value allowed.

    Raises
    ------
    ValueError
        ``"{owner} {name} must be an integer of at least {low}, not {value!r}"``.
    """
    if not (is_int(value) and value >= low):
        raise ValueError(f"{owner} {name} must be an integer of at least {low}, not {value!r}")


def in_range(owner, name, value, low, high, *, reason=""):
    """Check that ``value`` is an integer in ``[low, high]``, both included.

    Parameters
    ----------
    owner, name, value
        As :func:`positive`.
    low, high : int
        The smallest and the largest value allowed.
    reason : str
        Why the range is what it is, appended after the range (``" to hold the 1024-byte
        map"``), for a bound that is not obvious from the argument's name.

    Raises
    ------
    ValueError
        ``"{owner} {name} must be an integer in [{low}, {high}]{reason}, not {value!r}"``.
    """
    if not (is_int(value) and low <= value <= high):
        raise ValueError(f"{owner} {name} must be an integer in [{low}, {high}]{reason}, "
                         f"not {value!r}")


def fixed(owner, name, value):
    """Check that ``value`` is a :class:`model.numerics.Fixed` format.

    Parameters
    ----------
    owner, name, value
        As :func:`positive`; ``name`` is often just ``"format"``.

    Raises
    ------
    TypeError
        ``"{owner} {name} must be a model.numerics.Fixed, not {value!r}"``.
    """
    if not isinstance(value, Fixed):
        raise TypeError(f"{owner} {name} must be a model.numerics.Fixed, not {value!r}")
