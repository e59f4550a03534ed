"""What the AXI read DMA (``hw/movers/axi_reader.py``) delivers: memory as little-endian beats."""

__all__ = ["read_beats"]


def read_beats(memory, addr, beats, data_bytes):
    """``beats`` words of ``data_bytes`` bytes from ``memory`` (bytes-like) at ``addr``."""
    if addr % data_bytes:
        raise ValueError(f"address {addr:#x} is not aligned to {data_bytes} bytes")
    return [int.from_bytes(memory[addr + i * data_bytes: addr + (i + 1) * data_bytes], "little")
            for i in range(beats)]
