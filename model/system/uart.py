"""What :class:`hw.system.uart.UartTx` puts on the line (its twin): 8N1 frames, LSB first."""

__all__ = ["frames"]


def frames(data):
    """The line's bit times for ``data``: per byte a start bit (0), eight data bits LSB first,
    a stop bit (1)."""
    bits = []
    for byte in bytes(data):
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return bits
