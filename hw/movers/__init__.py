"""Memory movers: AXI4 signatures, burst splitting, readers, writer, the ROM, the linear-record
fetch."""
