"""cocotb benches, one module per unit; each is run from pytest through ``sim.runner``."""
