"""The boards the build targets (:mod:`flow.build`), one file each: pins, clocks, the shell
around the design, the vendor tool and its quirks (:class:`boards.board.Board`)."""

from .board import Board, BuildError
from .ulx3s import ULX3SBoard
from .zcu102 import ZCU102Board

__all__ = ["Board", "BuildError", "BOARDS"]

#: Boards by name.
BOARDS = {b.name: b for b in (ZCU102Board(), ULX3SBoard())}
