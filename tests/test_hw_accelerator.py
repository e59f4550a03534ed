# amaranth: UnusedElaboratable=no
"""The whole accelerator, DRAM to DRAM, against model.golden.forward: micro in the default suite
(both tasks back to back, under random AXI pauses, start checks, a memory error, a soft reset
mid-run); m3vit-tiny with the published weights is `python -m sim.bench --config m3vit-tiny`."""

from sim.benches.accelerator import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro")

test_micro = cocotb_tests("sim.benches.accelerator", lambda **c: make_design(c),
                          configs=[MICRO])
test_micro_memory_pauses = cocotb_tests(
    "sim.benches.accelerator", lambda **c: make_design(c),
    configs=[dict(MICRO, pause=0.3)], tests=["test_inference"])

#: A machine of another shape (model.machine.SMALL: 8 x 8 array, two attention slots, 64-bit
#: ports, one expert port), chosen by name: built and run end to end, bit-exact.
test_micro_small_machine = cocotb_tests(
    "sim.benches.accelerator", lambda **c: make_design(c),
    configs=[dict(MICRO, machine="small")], tests=["test_inference"])

#: The same machine behind the ZCU102's DDR4 timing (sim.ddr: latency, one bandwidth for every
#: port, outstanding bursts): bit-exact, nothing outside the buffers.
test_micro_ddr = cocotb_tests(
    "sim.benches.accelerator", lambda **c: make_design(c),
    configs=[dict(MICRO, memory="zcu102-ddr4")], tests=["test_inference"])

#: The 512-MAC machine (model.machine.ZCU102_512: a 16 x 32 array, results in beats of 16, six
#: attention slots, four expert ports), behind the DDR4 timing: bit-exact.
test_micro_512_machine = cocotb_tests(
    "sim.benches.accelerator", lambda **c: make_design(c),
    configs=[dict(MICRO, machine="zcu102-512", memory="zcu102-ddr4")], tests=["test_inference"])

#: A batch of three images in one run (model.machine.MachineConfig.batch) on the small machine,
#: under random memory pauses: every image bit-exact with the golden model run alone, both
#: tasks back to back, and each MoE layer's gate and routed experts read once for the batch
#: (test_inference checks the expert ports' bytes).
test_micro_batch = cocotb_tests(
    "sim.benches.accelerator", lambda **c: make_design(c),
    configs=[dict(MICRO, machine="small", batch=3, pause=0.3)], tests=["test_inference"])
