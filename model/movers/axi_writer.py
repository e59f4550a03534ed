"""What the AXI write DMA (``hw/movers/axi_writer.py``) leaves in memory: beats stored
little-endian."""

__all__ = ["write_beats"]


def write_beats(memory, addr, beats, data_bytes):
    """``memory`` (bytes-like, left unchanged) after writing the words ``beats`` of
    ``data_bytes`` bytes each at ``addr``, as ``bytes``."""
    if addr % data_bytes:
        raise ValueError(f"address {addr:#x} is not aligned to {data_bytes} bytes")
    end = addr + len(beats) * data_bytes
    if end > len(memory):
        raise ValueError(f"write of {len(beats)} beats at {addr:#x} ends at {end:#x}, past the "
                         f"memory's {len(memory):#x} bytes")
    limit = 1 << (8 * data_bytes)
    result = bytearray(memory)
    for i, beat in enumerate(beats):
        if not 0 <= beat < limit:
            raise ValueError(f"beat {i} ({beat:#x}) does not fit {data_bytes} bytes")
        result[addr + i * data_bytes: addr + (i + 1) * data_bytes] = beat.to_bytes(
            data_bytes, "little")
    return bytes(result)
