"""Host side of the accelerator: the driver (:mod:`host.driver`) and the memory-access
backends it talks to the hardware through (:mod:`host.memory`)."""
