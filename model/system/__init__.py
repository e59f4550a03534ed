"""Golden twins of hw/system/ (the same module names): the machine: the half-blocks and their
skeleton, the sequencer, the register block, the accelerator, the board self-test and its UART."""
