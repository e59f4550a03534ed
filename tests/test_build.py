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
from flow.ip_package import component_xml, package_ip, verilog_ports
from hw.movers.axi import axi4_lite, axi4_read


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
    for text in ("zynq_ultra_ps_e", "apply_board_preset",
                 "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {300}", "pl_clk0", "pl_resetn0",
                 "pl_ps_irq0", "make_wrapper"):
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


def test_accelerator_masters_fit_the_six_ps_ports():
    from flow.build import TOPS
    from model.machine import ZCU102, ZCU102_512
    top = TOPS["accelerator"]
    assert top.masters(ZCU102) == (("image_bus", "output_bus"), "params_bus", "weights_bus",
                                   "experts_bus", "experts_bus_1")
    assert top.masters(ZCU102_512) == (("image_bus", "params_bus", "output_bus"), "weights_bus",
                                       "experts_bus", "experts_bus_1", "experts_bus_2",
                                       "experts_bus_3")


def test_zcu102_512_plan_shares_hp0_between_two_readers(capsys, tmp_path, monkeypatch):
    # Seven read masters on six PS ports: the image and parameter reads take HP0 in turn
    # (AxiReadShare), with the output writes; the fourth expert port is on HPC1.
    monkeypatch.setattr(ZCU102Board, "tool_available", lambda self: False)
    out_dir = tmp_path / "zcu102-512"
    code, _, _ = run(capsys, "--board", "zcu102", "--machine", "zcu102-512", "--config",
                     "micro", "--no-estimate", "--out", str(out_dir))
    assert code == 0
    verilog = (out_dir / "top.v").read_text()
    assert "image_bus_params_bus_output_bus_share" in verilog
    for port in ("image_bus_params_bus_output_bus_arvalid(", "experts_bus_3_araddr(",
                 "image_bus_params_bus_output_bus_awvalid(output_bus__awvalid)"):
        assert port in verilog, port
    ps = (out_dir / "zynq_ps.tcl").read_text()
    assert "ps/S_AXI_HPC1_FPD" in ps and "experts_bus_3" in ps


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
    (fake / "vivado").write_text(
        "#!/bin/sh\necho 'ERROR: [Synth 8-439] module not found'\nexit 3\n")
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
    assert "--report top.report.json" in script
    assert "abc -lut 4" in (tmp_path / "top.ys").read_text()
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


def _spirit(element, path):
    """The text of ``path`` (``/``-separated IP-XACT names) below ``element``, or None."""
    found = element.find("/".join(f"{SPIRIT}{name}" for name in path.split("/")))
    return None if found is None else found.text


def _interfaces(root):
    return {_spirit(i, "name"): i for i in root.iter(f"{SPIRIT}busInterface")}


def _parameters(interface):
    return {_spirit(p, "name"): _spirit(p, "value")
            for p in interface.iter(f"{SPIRIT}parameter")}


def _declared_ports(root):
    """``{name: (direction, width)}`` of the component's ports."""
    return {_spirit(p, "name"): (_spirit(p, "wire/direction"),
                                 int(_spirit(p, "wire/vector/left") or 0) + 1)
            for p in root.iter(f"{SPIRIT}port")}


def _port_maps(interface):
    """``{logical: physical}`` of a bus interface."""
    return {_spirit(p, "logicalPort/name"): _spirit(p, "physicalPort/name")
            for p in interface.iter(f"{SPIRIT}portMap")}


def test_the_accelerator_as_a_vivado_ip(capsys, tmp_path):
    import xml.etree.ElementTree as ET
    from hw.system.accelerator import read_ports
    from model.machine import ZCU102
    from model.system.registers import MAP_BYTES
    code, out, _ = run(capsys, "--board", "zcu102", "--ip", "--config", "micro",
                       "--out", str(tmp_path))
    assert code == 0 and "component.xml" in out
    ip = tmp_path / "ip"
    text = (ip / "component.xml").read_text()
    root = ET.fromstring(text)
    assert [_spirit(root, f) for f in ("vendor", "library", "name")] == [
        "edgemoe", "user", "edgemoe_accelerator"]
    # The header says what it was made from.
    header = text[:text.index("<spirit:component")]
    assert "<!--" in header and "config micro" in header and "machine zcu102" in header
    assert "commit " in header and "--" not in header.replace("<!--", "").replace("-->", "")
    interfaces = _interfaces(root)
    reads = set(read_ports(ZCU102.expert_ports))
    masters = reads | {"output_bus"}
    assert set(interfaces) == masters | {"control", "clk", "rst", "irq"}
    kinds = {name: i.find(f"{SPIRIT}busType").get(f"{SPIRIT}name")
             for name, i in interfaces.items()}
    assert {kinds[m] for m in masters | {"control"}} == {"aximm"}
    assert (kinds["clk"], kinds["rst"], kinds["irq"]) == ("clock", "reset", "interrupt")
    # One slave, with the register block's memory map; a master with an address space per
    # memory port, its port map only its own channels.
    control = interfaces["control"].find(f"{SPIRIT}slave/{SPIRIT}memoryMapRef")
    assert control.get(f"{SPIRIT}memoryMapRef") == "control"
    (memory_map,) = root.iter(f"{SPIRIT}memoryMap")
    assert _spirit(memory_map, "name") == "control"
    assert int(_spirit(memory_map, "addressBlock/range")) == 4096 >= MAP_BYTES
    spaces = {_spirit(s, "name"): s for s in root.iter(f"{SPIRIT}addressSpace")}
    assert set(spaces) == masters
    for name in masters:
        ref = interfaces[name].find(f"{SPIRIT}master/{SPIRIT}addressSpaceRef")
        assert ref.get(f"{SPIRIT}addressSpaceRef") == name
        assert int(_spirit(spaces[name], "range")) == 1 << ZCU102.addr_width
        assert int(_spirit(spaces[name], "width")) == ZCU102.data_width
        maps = _port_maps(interfaces[name])
        assert all(port == f"{name}__{logical.lower()}" for logical, port in maps.items())
        channels = {logical[0] for logical in maps}
        assert channels == ({"A", "R"} if name in reads else {"A", "W", "B"}), name
    assert {"ARADDR", "RDATA", "AWADDR", "WSTRB", "BRESP"} <= set(_port_maps(interfaces["control"]))
    # Clock, reset, interrupt.
    clock = _parameters(interfaces["clk"])
    busifs = clock["ASSOCIATED_BUSIF"].split(":")
    assert sorted(busifs) == sorted(masters | {"control"}) and len(busifs) == len(set(busifs))
    assert clock["ASSOCIATED_RESET"] == "rst" and clock["FREQ_HZ"] == "300000000"
    assert _port_maps(interfaces["clk"]) == {"CLK": "clk"}
    assert _port_maps(interfaces["rst"]) == {"RST": "rst"}
    assert _parameters(interfaces["rst"])["POLARITY"] == "ACTIVE_HIGH"
    assert _port_maps(interfaces["irq"]) == {"INTERRUPT": "irq"}
    assert _parameters(interfaces["irq"])["SENSITIVITY"] == "LEVEL_HIGH"
    # Every port of the XML is a port of the Verilog module, as wide, the same way round, and
    # every port map names one.
    files = {_spirit(f, "name") for f in root.iter(f"{SPIRIT}file")}
    assert files == {"src/edgemoe_accelerator.v"}
    verilog = verilog_ports((ip / "src/edgemoe_accelerator.v").read_text(),
                            "edgemoe_accelerator")
    declared = _declared_ports(root)
    assert declared == verilog
    assert declared["control__araddr"] == ("in", 12) and declared["control__rdata"] == ("out", 32)
    assert declared["weights_bus__rdata"] == ("in", ZCU102.data_width)
    mapped = [port for i in interfaces.values() for port in _port_maps(i).values()]
    assert len(mapped) == len(set(mapped)) and set(mapped) <= set(declared)
    assert set(declared) - set(mapped) == {"progress", "stage"}
    tcl = (ip / "package_ip.tcl").read_text()
    assert "ipx::open_core" in tcl and "ipx::check_integrity" in tcl and "ipx::save_core" in tcl


class _IpTop(wiring.Component):
    """A stand-in top for the packager: a register slave, a read master, an interrupt, and
    members that are not buses (an array of outputs, an input)."""

    def __init__(self):
        super().__init__({"regs": In(axi4_lite(addr_width=12)),
                          "dma": Out(axi4_read(addr_width=40, data_width=64)),
                          "irq": Out(1), "lanes": Out(2).array(2), "x": In(3)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.dma.araddr.eq(self.dma.araddr + self.regs.wdata),
                     self.regs.rdata.eq(self.dma.rdata[:32] ^ self.x),
                     self.irq.eq(self.regs.wvalid), self.lanes[1].eq(self.x)]
        return m


def test_ip_xml_from_the_signature():
    """Only AXI members become aximm interfaces; directions follow the flows (a slave's
    address is an input); the other members are plain ports."""
    import xml.etree.ElementTree as ET
    top = _IpTop()
    top._MustUse__silence = True  # described, not elaborated
    root = ET.fromstring(component_xml(top, version="1.2.3", addr_width=40, data_width=64,
                                       made_from={"config": "nano"}))
    interfaces = _interfaces(root)
    assert set(interfaces) == {"regs", "dma", "clk", "rst", "irq"}
    assert interfaces["regs"].find(f"{SPIRIT}slave") is not None
    assert interfaces["dma"].find(f"{SPIRIT}master") is not None
    ports = _declared_ports(root)
    assert ports["regs__araddr"] == ("in", 12) and ports["regs__rdata"] == ("out", 32)
    assert ports["dma__araddr"] == ("out", 40) and ports["dma__rdata"] == ("in", 64)
    assert ports["lanes__0"] == ("out", 2) and ports["x"] == ("in", 3)
    assert ports["clk"] == ports["rst"] == ("in", 1)
    assert "FREQ_HZ" not in _parameters(interfaces["clk"])


def test_ip_package_checks_its_ports_against_the_verilog(tmp_path, monkeypatch):
    from flow import ip_package
    files = package_ip(_IpTop(), str(tmp_path), version="1.0", addr_width=40, data_width=64)
    assert [os.path.relpath(f, tmp_path) for f in files] == [
        "src/edgemoe_accelerator.v", "component.xml", "package_ip.tcl"]
    # A port the XML would declare that the Verilog does not have stops the packager.
    real = ip_package.ports
    monkeypatch.setattr(ip_package, "ports",
                        lambda c: real(c) + [("ghost", "out", 1, ("ghost",))])
    with pytest.raises(ValueError, match=r"disagree with its Verilog \(1\): ghost"):
        package_ip(_IpTop(), str(tmp_path / "again"), version="1.0", addr_width=40,
                   data_width=64)


def test_verilog_ports_reads_a_module_header():
    text = ("module other(a);\n  input a;\nendmodule\n"
            "module top(clk, data, \\x.y , done);\n  input clk;\n  wire clk;\n"
            "  input [7:0] data;\n  output reg [2:0] done;\n  input inner;\nendmodule\n")
    assert verilog_ports(text, "top") == {"clk": ("in", 1), "data": ("in", 8),
                                          "done": ("out", 3)}
    with pytest.raises(ValueError, match="no module 'missing'"):
        verilog_ports(text, "missing")


def test_plain_verilog_of_a_unit(capsys, tmp_path):
    path = tmp_path / "new_dir" / "counters.v"
    code, _, _ = run(capsys, "--verilog", str(path), "--top", "stage_counters",
                     "--config", "micro")
    assert code == 0
    ports = verilog_ports(path.read_text(), "stage_counters")
    assert ports["clk"] == ("in", 1) and ports["ready"] == ("in", 4)


def test_plain_verilog_of_an_unknown_top_lists_the_known(capsys, tmp_path):
    err = usage_error(capsys, "--verilog", str(tmp_path / "x.v"), "--top", "teapot")
    assert "unknown top 'teapot'" in err and "accelerator" in err and "gelu" in err
    assert "Traceback" not in err and not (tmp_path / "x.v").exists()
