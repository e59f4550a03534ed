"""The board self-test's memory and expected result (twin of :mod:`hw.system.selftest`).

A board without a host (the ULX3S) runs one inference of a small model from on-chip memory after
configuration and reports whether its output is the golden model's. This module defines, once:

- the memory the self-test's ROM holds (:func:`memory`): the weights image at
  :data:`WEIGHTS_ADDR` and the image buffer after it, with synthetic weights and image from a seed;
- the output checksum (:func:`checksum`), which the hardware computes over the words the
  accelerator writes, in the order it writes them (ascending addresses);
- the UART line the hardware sends (:func:`message`).
"""

from dataclasses import dataclass

import numpy as np

from model.numerics import DEFAULT

__all__ = ["WEIGHTS_ADDR", "OUTPUT_ADDR", "SelfTestMemory", "memory", "checksum", "message",
           "MESSAGE_PASS", "MESSAGE_FAIL"]

#: Where the ROM's weights image starts (a start check rejects address 0).
WEIGHTS_ADDR = 0x1_0000
#: Where the accelerator writes its output: not stored, only checksummed.
OUTPUT_ADDR = 0x100_0000

#: The line's text before the cycle count, by result; then ``0x`` and 8 hex digits, CR LF.
MESSAGE_PASS = b"edge-moe self-test PASS, cycles 0x"
MESSAGE_FAIL = b"edge-moe self-test FAIL, cycles 0x"


@dataclass(frozen=True)
class SelfTestMemory:
    """What the self-test ROM holds and what the run must produce.

    ``rom`` starts at :data:`WEIGHTS_ADDR`; ``image_addr`` is the image buffer's address;
    ``output_bytes`` the golden output buffer, ``output_checksum`` its :func:`checksum`.
    """
    rom: bytes
    image_addr: int
    output_bytes: bytes
    output_checksum: int
    task: int

    @property
    def weights_addr(self):
        return WEIGHTS_ADDR

    @property
    def output_addr(self):
        return OUTPUT_ADDR


def memory(config, machine, *, seed=0, task=0):
    """The self-test of ``config`` on ``machine`` (a :class:`model.machine.MachineConfig`):
    synthetic weights and image from ``seed``, golden output for ``task``."""
    from model.golden import forward
    from model.quantize import quantize
    from model.weight_image import input_bytes, pack, pack_output
    from model.weights import synthetic, synthetic_image
    if not 0 <= task < config.tasks:
        raise ValueError(f"task must be below {config.tasks}, not {task}")
    qm = quantize(synthetic(config, seed=seed), DEFAULT)
    image = synthetic_image(config, seed=seed)
    beat_bytes = machine.beat_bytes
    weights = pack(qm, **machine.image_shape)
    image_offset = -(-len(weights) // beat_bytes) * beat_bytes
    rom = weights + bytes(image_offset - len(weights)) + input_bytes(image, config, beat_bytes)
    output = pack_output(forward(qm, image, task, machine=machine), config, beat_bytes)
    return SelfTestMemory(rom=rom, image_addr=WEIGHTS_ADDR + image_offset, output_bytes=output,
                          output_checksum=checksum(output), task=task)


def checksum(data):
    """32-bit checksum of little-endian words: ``c = rotl(c, 1) ^ word`` from ``c = 0``."""
    words = np.frombuffer(bytes(data), dtype="<u4")
    c = 0
    for w in words:
        c = (((c << 1) | (c >> 31)) & 0xFFFF_FFFF) ^ int(w)
    return c


def message(passed, cycles):
    """The UART line of a finished self-test."""
    return (MESSAGE_PASS if passed else MESSAGE_FAIL) + b"%08X\r\n" % (cycles & 0xFFFF_FFFF)
