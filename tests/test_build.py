"""python -m hw.build: arguments, the ZCU102 plan with its PS block design, the missing-Vivado
message, the ULX3S plan; the placeholder shells. Fast: the micro top, no Yosys estimate, no
vendor run. One ECP5 bitstream build runs only with EDGEMOE_SLOW=1."""

import json
import os
import re
import zipfile

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from boards.exerciser import Exerciser
from boards.ulx3s import PFD_MHZ, VCO_MHZ, pll_setting
from boards.zcu102 import ZCU102Board, ZCU102Platform, ZynqShell, ps_block_design_tcl
from flow import build
from hw.movers.axi import axi4_read


def run(capsys, *argv):
    code = build.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        build.main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_unknown_board_lists_boards(capsys):
    err = usage_error(capsys, "--board", "zcu104")
    assert "invalid choice: 'zcu104'" in err and "zcu102" in err and "ulx3s" in err


def test_unknown_config_lists_configs(capsys):
    err = usage_error(capsys, "--board", "zcu102", "--config", "m3vit-huge")
    assert "m3vit-huge" in err and "m3vit-tiny" in err and "micro" in err
    assert "Traceback" not in err


def test_unknown_top_lists_tops(capsys):
    err = usage_error(capsys, "--board", "zcu102", "--top", "accelerator9")
    assert "accelerator9" in err and "mlp_half" in err


def test_board_required(capsys):
    err = usage_error(capsys)
    assert "--board is required" in err and "zcu102" in err


def test_bad_clock(capsys):
    err = usage_error(capsys, "--board", "zcu102", "--clock-mhz", "900")
    assert "between 10 and 500 MHz" in err


def test_list_boards(capsys):
    code, out, _ = run(capsys, "--list-boards")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(build.BOARDS)


def test_list_tops(capsys):
    code, out, _ = run(capsys, "--list-tops")
    assert code == 0 and "mlp_half" in out and "(default)" in out


def test_zcu102_plan_without_vivado(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(ZCU102Board, "tool_available", lambda self: False)
    out_dir = tmp_path / "zcu102"
    code, out, _ = run(capsys, "--board", "zcu102", "--config", "micro", "--no-estimate",
                       "--out", str(out_dir))
    assert code == 0
    for f in ("build_top.sh", "top.tcl", "top.xdc", "top.v", "top.il", "zynq_ps.tcl",
              "plan.zip"):
        assert (out_dir / f).is_file(), f
    tcl = (out_dir / "top.tcl").read_text()
    assert "-part xczu9eg-ffvb1156-2-e" in tcl
    assert tcl.index("source zynq_ps.tcl") < tcl.index("synth_design")
    ps = (out_dir / "zynq_ps.tcl").read_text()
    for text in ("zynq_ultra_ps_e", "apply_board_preset", "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {300}",
                 "pl_clk0", "pl_resetn0", "pl_ps_irq0", "make_wrapper"):
        assert text in ps, text
    verilog = (out_dir / "top.v").read_text()
    assert "zynq_ps_wrapper" in verilog and "pl_clk0" in verilog
    # The accelerator's AXI ports on the PS: image reads and output writes share HP0, the
    # second expert port is on HPC0, the register block on HPM0 through the protocol
    # converter, the interrupt on pl_ps_irq0.
    # (The addresses come out of the burst splitters' payloads, which the Verilog names by
    # number; their valids and data keep the ports' names.)
    for port in ("image_bus_output_bus_arvalid(image_bus__arvalid)",
                 "image_bus_output_bus_rdata(image_bus__rdata)",
                 "image_bus_output_bus_awvalid(output_bus__awvalid)",
                 "image_bus_output_bus_wdata(output_bus__wdata)",
                 "image_bus_output_bus_araddr({ 9'h000, ", "image_bus_output_bus_awaddr({ 9'h000, ",
                 "params_bus_araddr(", "weights_bus_araddr(", "experts_bus_araddr(",
                 "experts_bus_1_araddr(", "control_rdata(", "pl_ps_irq0(irq)"):
        assert port in verilog, port
    for text in ("ps/S_AXI_HP3_FPD", "ps/S_AXI_HPC0_FPD", "PSU__USE__S_AXI_GP0 {1}",
                 "ps/M_AXI_HPM0_FPD", "axi_protocol_converter",
                 "CONFIG.MI_PROTOCOL {AXI4LITE}"):
        assert text in ps, text
    assert "set_property LOC AG14" in (out_dir / "top.xdc").read_text()
    with zipfile.ZipFile(out_dir / "plan.zip") as z:
        assert {"build_top.sh", "top.tcl", "zynq_ps.tcl"} <= set(z.namelist())
    # The message says what to run, and where.
    assert "vivado is not on PATH" in out
    assert f"cd {out_dir} && sh build_top.sh" in out
    assert "plan.zip" in out


def test_zcu102_json_summary(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(ZCU102Board, "tool_available", lambda self: False)
    code, out, err = run(capsys, "--board", "zcu102", "--config", "micro", "--no-estimate",
                         "--clock-mhz", "250", "--json", "--out", str(tmp_path))
    assert code == 0 and "[1/" in err
    summary = json.loads(out)
    assert summary["config"] == "micro" and summary["top"] == "accelerator"
    assert summary["tool"]["ran"] is False and "sh build_top.sh" in summary["tool"]["message"]
    assert "{250}" in (tmp_path / "zynq_ps.tcl").read_text()


def test_failed_tool_prints_its_last_lines(capsys, tmp_path, monkeypatch):
    # A stand-in "vivado" that fails: the build script calls it by name.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vivado").write_text("#!/bin/sh\necho 'ERROR: [Synth 8-439] module not found'\nexit 3\n")
    (fake / "vivado").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(capsys, "--board", "zcu102", "--config", "micro", "--no-estimate",
                         "--out", str(tmp_path / "out"))
    assert code == 1
    assert "vivado step failed" in err and "Synth 8-439" in err


def test_ulx3s_plan(capsys, tmp_path):
    code, out, _ = run(capsys, "--board", "ulx3s", "--config", "nano", "--no-run",
                       "--out", str(tmp_path))
    assert code == 0
    script = (tmp_path / "build_top.sh").read_text()
    assert "NEXTPNR_ECP5" in script
    assert "--report top.report.json" in script and "abc -lut 4" in (tmp_path / "top.ys").read_text()
    assert (tmp_path / "plan.zip").is_file() and (tmp_path / "top.il").is_file()
    # The accelerator's self-test: LEDs and the UART's tx pin are constrained.
    lpf = (tmp_path / "top.lpf").read_text()
    for pin in ("B2", "C2", "H3", "L4", "G2"):
        assert f'SITE "{pin}"' in lpf, pin


def test_ulx3s_pll(capsys, tmp_path):
    """--clock-mhz puts an EHXPLLL between the 25 MHz oscillator and the self-test, with the
    dividers of the nearest frequency, and sizes the UART's divisor for it."""
    code, out, _ = run(capsys, "--board", "ulx3s", "--config", "nano", "--no-run",
                       "--clock-mhz", "120", "--out", str(tmp_path))
    assert code == 0
    rtlil = (tmp_path / "top.il").read_text()
    assert "EHXPLLL" in rtlil
    for parameter, value in (("CLKI_DIV", 5), ("CLKFB_DIV", 24), ("CLKOP_DIV", 5)):
        assert re.search(rf"parameter \\{parameter} {value}\b", rtlil), parameter
    setting = pll_setting(120)
    assert setting.mhz == 120 and VCO_MHZ[0] <= setting.vco_mhz <= VCO_MHZ[1]


@pytest.mark.parametrize("mhz", [7.3, 31.73, 99.9, 133.33, 250])
def test_pll_setting_within_limits(mhz):
    s = pll_setting(mhz)
    # 25 MHz x feedback / reference, the reference at most 8 (the phase detector's 3.125 MHz).
    assert abs(s.mhz - mhz) / mhz < 0.03
    assert s.mhz == pytest.approx(25 * s.feedback / s.reference, rel=1e-5)
    assert VCO_MHZ[0] <= s.vco_mhz <= VCO_MHZ[1] and 25 / s.reference >= PFD_MHZ[0]


def test_ulx3s_bad_clock(capsys):
    err = usage_error(capsys, "--board", "ulx3s", "--config", "nano", "--clock-mhz", "900")
    assert "between 3.125 and 400 MHz" in err


def test_ulx3s_refuses_a_model_too_big_for_block_ram(capsys, tmp_path):
    code, out, err = run(capsys, "--board", "ulx3s", "--config", "m3vit-tiny", "--no-run",
                         "--out", str(tmp_path))
    assert code == 2 and "do not fit" in err and "--config nano" in err
    assert "Traceback" not in err


@pytest.mark.skipif(not os.environ.get("EDGEMOE_SLOW"),
                    reason="the ECP5 bitstream build of the nano self-test takes 14 to 18 "
                           "minutes on 2 cores; set EDGEMOE_SLOW=1")
def test_ulx3s_bitstream(capsys, tmp_path):
    code, out, err = run(capsys, "--board", "ulx3s", "--config", "nano", "--json",
                         "--out", str(tmp_path))
    assert code == 0, err
    summary = json.loads(out)
    assert (tmp_path / "top.bit").is_file()
    assert summary["tool"]["utilization"]
    # nextpnr is told not to stop at a missed constraint; the board clock must still be met.
    for clock, fmax in summary["tool"]["fmax"].items():
        assert fmax["achieved_mhz"] >= fmax["constraint_mhz"], (clock, fmax)


class _AxiTop(wiring.Component):
    """A stand-in for the accelerator top: a read master, an interrupt, a stream-ish port."""

    def __init__(self):
        super().__init__({"dma": Out(axi4_read(addr_width=49, data_width=128)),
                          "irq": Out(1), "x": In(8), "o": Out(3)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.dma.araddr.eq(self.dma.araddr + self.x), self.dma.arvalid.eq(1),
                     self.dma.rready.eq(1), self.o.eq(self.dma.rdata[:3]),
                     self.irq.eq(self.dma.rvalid)]
        return m


def test_zynq_shell_binds_hp_master_and_irq(tmp_path):
    platform = ZCU102Platform(hp_masters=["dma"])
    shell = ZynqShell(_AxiTop())
    plan = platform.build(shell, do_build=False)
    plan.extract(tmp_path)
    verilog = (tmp_path / "top.v").read_text()
    for port in ("dma_araddr(dma__araddr)", "dma_rdata(dma__rdata)", "dma_awvalid(1'h0)",
                 "dma_arid(6'h00)", "pl_ps_irq0(irq)"):
        assert port in verilog, port
    # Only the ports that are not AXI or irq go through the placeholder.
    assert shell.exerciser.input_bits == 8 and shell.exerciser.output_bits == 3
    ps = (tmp_path / "zynq_ps.tcl").read_text()
    assert "ps/S_AXI_HP0_FPD" in ps and "PSU__USE__S_AXI_GP2 {1}" in ps
    assert "ASSOCIATED_BUSIF {dma}" in ps


def test_zynq_shell_names_a_missing_axi_port():
    platform = ZCU102Platform(hp_masters=["mem"])
    top = _AxiTop()
    top._MustUse__silence = True
    with pytest.raises(ValueError, match="no AXI port 'mem'"):
        platform.build(ZynqShell(top), do_build=False)


def test_ps_tcl_register_port_and_limits():
    tcl = ps_block_design_tcl(hp_masters=["a", "b"], register_port="regs", clock_mhz=200)
    assert "ps/S_AXI_HP1_FPD" in tcl and "ps/M_AXI_HPM0_FPD" in tcl
    assert "PSU__USE__M_AXI_GP0 {1}" in tcl and "ASSOCIATED_BUSIF {a:b:regs}" in tcl
    with pytest.raises(ValueError, match="6 HP and HPC ports"):
        ps_block_design_tcl(hp_masters=list("abcdefg"))


def test_exerciser_rejects_unknown_port():
    top = _AxiTop()
    top._MustUse__silence = True
    with pytest.raises(ValueError, match="has no port 'y'"):
        Exerciser(top, ["y"])


# --- For integrators: the IP package and plain Verilog ------------------------------------

SPIRIT = "{http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009}"


def _verilog_ports(text, module):
    """``{name: width}`` of the ports of ``module`` in Yosys's Verilog."""
    body = text[text.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    header = set(re.findall(r"\w+", body[:body.index(");")]))
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?"
                                           r"(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        if name in header:
            ports[name] = int(msb or 0) + 1
    return ports


def test_the_accelerator_as_a_vivado_ip(capsys, tmp_path):
    import xml.etree.ElementTree as ET
    from hw.system.accelerator import read_ports
    from model.machine import ZCU102
    code, out, _ = run(capsys, "--board", "zcu102", "--ip", "--config", "micro",
                       "--out", str(tmp_path))
    assert code == 0 and "component.xml" in out
    ip = tmp_path / "ip"
    root = ET.parse(ip / "component.xml").getroot()
    assert root.find(f"{SPIRIT}name").text == "edgemoe_accelerator"
    interfaces = {i.find(f"{SPIRIT}name").text: i for i in root.iter(f"{SPIRIT}busInterface")}
    masters = set(read_ports(ZCU102.expert_ports)) | {"output_bus"}
    assert set(interfaces) == masters | {"control", "clk", "rst", "irq"}
    kinds = {name: i.find(f"{SPIRIT}busType").get(f"{SPIRIT}name")
             for name, i in interfaces.items()}
    assert {kinds[m] for m in masters | {"control"}} == {"aximm"}
    assert (kinds["clk"], kinds["rst"], kinds["irq"]) == ("clock", "reset", "interrupt")
    assert interfaces["control"].find(f"{SPIRIT}slave") is not None
    assert all(interfaces[m].find(f"{SPIRIT}master") is not None for m in masters)
    ranges = [int(r.text) for r in root.iter(f"{SPIRIT}range")]
    assert 4096 in ranges and 1 << ZCU102.addr_width in ranges
    # Every port of the XML is a port of the Verilog module, as wide; every port map names one.
    verilog = _verilog_ports((ip / "src/edgemoe_accelerator.v").read_text(),
                             "edgemoe_accelerator")
    declared = {}
    for port in root.iter(f"{SPIRIT}port"):
        left = port.find(f"{SPIRIT}wire/{SPIRIT}vector/{SPIRIT}left")
        declared[port.find(f"{SPIRIT}name").text] = 1 if left is None else int(left.text) + 1
    assert declared == verilog
    mapped = [p.find(f"{SPIRIT}physicalPort/{SPIRIT}name").text
              for p in root.iter(f"{SPIRIT}portMap")]
    assert set(mapped) <= set(declared) and "control__araddr" in mapped and "irq" in mapped
    assert "ipx::open_core" in (ip / "package_ip.tcl").read_text()


def test_plain_verilog_of_a_unit(capsys, tmp_path):
    path = tmp_path / "counters.v"
    code, _, _ = run(capsys, "--verilog", str(path), "--top", "stage_counters",
                     "--config", "micro")
    assert code == 0
    ports = _verilog_ports(path.read_text(), "stage_counters")
    assert ports["clk"] == 1 and ports["ready"] == 4


def test_plain_verilog_of_an_unknown_top_lists_the_known(capsys, tmp_path):
    err = usage_error(capsys, "--verilog", str(tmp_path / "x.v"), "--top", "teapot")
    assert "unknown top 'teapot'" in err and "accelerator" in err and "gelu" in err
