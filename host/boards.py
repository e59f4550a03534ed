"""The board backends as ``python -m host.run`` offers them: their command-line options, and how
each is opened into a :class:`host.memory.Memory`, the buffers' places and an interrupt wait.

* ``pynq``: :class:`host.pynq.PynqBoard` (a PYNQ image: ``pynq.Overlay``, ``pynq.allocate``);
* ``linux``: :mod:`host.linux` (FPGA manager, UIO, u-dma-buf);
* ``devmem``: :class:`host.memory.DevMem` (``/dev/mem`` as root, a reserved DRAM window).

Without ``--backend``, ``pynq`` when it is importable, else ``linux``.
"""

import importlib.util

from host.driver import Buffers

__all__ = ["add_backend_arguments", "open_backend", "default_backend"]


def _int(text):
    return int(text, 0)


def add_backend_arguments(parser):
    """The options of the board backends, in their own group."""
    group = parser.add_argument_group("board backends")
    group.add_argument("--bitstream", help="load this bitstream first (pynq: the .bit with its "
                                           ".hwh beside it; linux: the .bin for the FPGA "
                                           "manager); default: use the one loaded")
    group.add_argument("--regs-base", type=_int, default=0xA000_0000,
                       help="physical address of the register block (devmem, pynq; default "
                            "0xA0000000, the ZCU102's HPM0_FPD)")
    group.add_argument("--dram-base", type=_int,
                       help="devmem: physical base of the DRAM window reserved from Linux")
    group.add_argument("--dram-size", type=_int,
                       help="devmem: bytes of that window")
    group.add_argument("--uio-name", default="edgemoe",
                       help="linux: the UIO device's name (default edgemoe)")
    group.add_argument("--udmabuf", default="udmabuf0",
                       help="linux: the u-dma-buf device (default udmabuf0)")
    group.add_argument("--interrupt-pin", default=None,
                       help="pynq: the overlay's name of the irq pin (default: poll)")


def default_backend():
    """``pynq`` where PYNQ is installed, else ``linux``."""
    return "pynq" if importlib.util.find_spec("pynq") is not None else "linux"


def open_backend(args, config, machine):
    """``(memory, buffers, interrupt)`` for ``args.backend``: the Memory to drive, where the
    buffers lie (:meth:`host.driver.Buffers.plan`) and the driver's interrupt wait (or None:
    polling)."""
    backend = args.backend or default_backend()
    if backend == "pynq":
        from host.pynq import PynqBoard
        board = PynqBoard(config, machine, bitstream=args.bitstream, regs_base=args.regs_base,
                          interrupt=args.interrupt_pin)
        return board, board.buffers, board.interrupt
    if backend == "linux":
        from host.linux import load_bitstream, open_board
        if args.bitstream:
            load_bitstream(args.bitstream)
        board, buffers = open_board(config, machine, uio_name=args.uio_name,
                                    udmabuf=args.udmabuf)
        return board, buffers, board.interrupt
    if backend == "devmem":
        from host.memory import DevMem
        if args.dram_base is None or args.dram_size is None:
            raise ValueError("--backend devmem needs --dram-base and --dram-size: a DRAM window "
                             "reserved from Linux (a reserved-memory node) that the HP ports "
                             "reach")
        memory = DevMem(regs_base=args.regs_base, dram_base=args.dram_base,
                        dram_size=args.dram_size)
        return memory, _plan(args.dram_base, args.dram_size, config, machine), None
    raise ValueError(f"unknown backend {backend!r}; choose from pynq, linux, devmem")


def _plan(base, size, config, machine):
    buffers = Buffers.plan(base, config, machine)
    if buffers.end > base + size:
        raise ValueError(f"the buffers of {config.name} need {buffers.end - base:#x} bytes "
                         f"from {base:#x}; the DRAM window has {size:#x}")
    return buffers
