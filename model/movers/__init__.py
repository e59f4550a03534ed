"""Golden twins of hw/movers/ (the same module names): memory movers: AXI4 signatures, burst
splitting, readers, writer, the ROM, the linear-record fetch."""
