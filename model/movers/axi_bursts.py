"""How the AXI DMAs (``hw/movers/axi_reader.py``, ``hw/movers/axi_writer.py``) cut a command into
bursts: twin of :class:`hw.movers.axi_bursts.BurstSplitter`."""

__all__ = ["bursts"]


def bursts(addr, beats, data_bytes, *, max_burst=256, boundary=4096):
    """The INCR bursts, in order, that read or write ``beats`` beats of ``data_bytes`` bytes from
    ``addr``: a list of ``(address, length)`` pairs, ``length`` in beats.

    Each burst is as long as it can be: at most ``max_burst`` beats, and ending at the next
    multiple of ``boundary`` bytes if the command goes on past it (AXI forbids a burst to cross
    4 KiB).

    Raises
    ------
    ValueError
        If ``addr`` is not a multiple of ``data_bytes`` or ``beats`` is not positive: the
        commands the hardware drops with ``error`` set.
    """
    if addr % data_bytes:
        raise ValueError(f"address {addr:#x} is not aligned to {data_bytes} bytes")
    if beats <= 0:
        raise ValueError(f"a command must have at least one beat, not {beats}")
    result = []
    while beats:
        to_boundary = (boundary - addr % boundary) // data_bytes
        length = min(beats, to_boundary, max_burst)
        result.append((addr, length))
        addr, beats = addr + length * data_bytes, beats - length
    return result
