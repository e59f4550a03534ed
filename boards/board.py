"""What the build (:mod:`flow.build`) needs to know about a board: its platform, the shell its
top goes under, the machine preset it builds by default, its vendor tool and what that tool
reports. Each board file defines one :class:`Board`; :data:`boards.BOARDS` lists them."""

import shutil

__all__ = ["Board", "BuildError"]


class BuildError(Exception):
    """A configuration the board cannot build; the message says what to choose instead."""


class Board:
    """A board the build can target.

    Attributes
    ----------
    name, description : str
    tool : str
        The vendor tool's command, looked up on PATH.
    machine : str
        The :mod:`model.machine` preset built when ``--machine`` is not given.
    capacity : dict or None
        Device capacity for the open estimate (:mod:`flow.resources`), or None when the estimate
        does not apply.
    logs : tuple of str
        The tool's own logs in the plan directory (``{name}`` is the design's name).
    """
    name = description = tool = machine = None
    capacity = None
    logs = ()

    def platform(self, args, top):
        """The Amaranth platform for the build's arguments and ``top`` (a
        :class:`flow.build.Top`)."""
        raise NotImplementedError

    def shell(self, top):
        """``top`` under the board's shell: clocks, pins and whatever surrounds the design."""
        raise NotImplementedError

    def design(self, top, model, machine):
        """What the plan builds for ``top``, ``model`` and ``machine``: the top under the
        board's shell."""
        return self.shell(top.make(model, machine))

    def tool_available(self):
        return shutil.which(self.tool) is not None

    def env(self):
        """Environment variables the plan's script needs."""
        return {}

    def results(self, out, name):
        """Figures read from the tool's products after a successful run."""
        return {}

    def how_to_run(self, out, name):
        """What to run, and where, when the tool is not here."""
        raise NotImplementedError
