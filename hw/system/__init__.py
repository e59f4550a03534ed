"""The machine: the half-blocks and their skeleton, the sequencer, the register block, the
accelerator, the board self-test and its UART."""
