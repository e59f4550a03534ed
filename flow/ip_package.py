"""The accelerator as a Vivado IP (``python -m hw.build --board zcu102 --ip``): its Verilog and an
IP-XACT ``component.xml`` (IEEE 1685-2009, the dialect Vivado's IP packager writes), so that an
integrator adds it to any block design from the IP catalog.

Everything in the XML comes from the component's signature, so a change to the top shows up in
the package: each AXI member is an ``aximm`` interface (a slave with a memory map for the
register block, masters with an address space for the memory ports), with a port map of every
signal it has; ``irq`` is the interrupt; the clock and the reset are Amaranth's ``clk`` and ``rst``
(synchronous, active high). No Vivado has read these files here: the tests check that the XML is
well-formed and agrees with the Verilog.
"""

import os
from xml.sax.saxutils import escape

from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = ["IP_NAME", "ports", "component_xml", "package_ip", "write_verilog"]

#: The IP's VLNV: vendor, library, name (the version is the project's).
IP_VENDOR, IP_LIBRARY, IP_NAME = "edgemoe", "user", "edgemoe_accelerator"
_SPIRIT = "http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009"


def write_verilog(component, path, name):
    """Plain Verilog of ``component`` as module ``name`` (Amaranth's back end, through Yosys)."""
    text = verilog.convert(component, name=name, emit_src=False)
    with open(path, "w") as f:
        f.write(text)
    return text


def ports(component):
    """The top's ports as Amaranth names them: ``[(name, direction, width, path)]``, ``clk`` and
    ``rst`` first, then every signature member (a nested member's name joins its path with
    ``__``)."""
    found = [("clk", "in", 1, ("clk",)), ("rst", "in", 1, ("rst",))]
    for path, flow, value in component.signature.flatten(component):
        direction = "in" if flow == wiring.In else "out"
        found.append(("__".join(str(p) for p in path), direction, len(value), path))
    return found


def _bus_members(component):
    """The AXI members: ``{name: (is_slave, [(logical, port), ...])}``."""
    buses = {}
    for name, direction, _, path in ports(component):
        if len(path) == 2:
            member = component.signature.members[path[0]]
            slave, maps = buses.setdefault(path[0], (member.flow == wiring.In, []))
            maps.append((path[1].upper(), name))
    return buses


def _vlnv(vendor, library, name, version):
    return (f'spirit:vendor="{vendor}" spirit:library="{library}" spirit:name="{name}" '
            f'spirit:version="{version}"')


def _parameter(name, value):
    return (f"<spirit:parameter><spirit:name>{name}</spirit:name>"
            f"<spirit:value>{escape(str(value))}</spirit:value></spirit:parameter>")


def _interface(name, bus, abstraction, role, maps, parameters=()):
    lines = [f"<spirit:busInterface><spirit:name>{name}</spirit:name>",
             f"<spirit:busType {_vlnv('xilinx.com', *bus)}/>",
             f"<spirit:abstractionType {_vlnv('xilinx.com', *abstraction)}/>", role,
             "<spirit:portMaps>"]
    lines += [f"<spirit:portMap><spirit:logicalPort><spirit:name>{logical}</spirit:name>"
              f"</spirit:logicalPort><spirit:physicalPort><spirit:name>{port}</spirit:name>"
              f"</spirit:physicalPort></spirit:portMap>" for logical, port in maps]
    lines.append("</spirit:portMaps>")
    if parameters:
        lines += ["<spirit:parameters>", *(_parameter(k, v) for k, v in parameters),
                  "</spirit:parameters>"]
    lines.append("</spirit:busInterface>")
    return lines


def component_xml(component, *, version, addr_width, data_width, clock_hz=None, comment=""):
    """The IP-XACT description of ``component`` (an accelerator top) as text: masters with an
    address space of ``2**addr_width`` bytes and ``data_width``-bit data; a slave's memory map
    as large as its address decodes; ``comment`` (how it was made) ends the description (an XML
    comment may not hold the ``--`` of a command line)."""
    buses = _bus_members(component)
    widths = {name: width for name, _, width, _ in ports(component)}
    aximm, aximm_rtl = ("interface", "aximm", "1.0"), ("interface", "aximm_rtl", "1.0")
    xml = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<spirit:component xmlns:spirit="{_SPIRIT}" '
           f'xmlns:xilinx="http://www.xilinx.com" '
           f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
           f"<spirit:vendor>{IP_VENDOR}</spirit:vendor>",
           f"<spirit:library>{IP_LIBRARY}</spirit:library>",
           f"<spirit:name>{IP_NAME}</spirit:name>",
           f"<spirit:version>{version}</spirit:version>", "<spirit:busInterfaces>"]
    for name, (slave, maps) in buses.items():
        role = (f'<spirit:slave><spirit:memoryMapRef spirit:memoryMapRef="{name}"/>'
                f"</spirit:slave>" if slave else
                f'<spirit:master><spirit:addressSpaceRef spirit:addressSpaceRef="{name}"/>'
                f"</spirit:master>")
        xml += _interface(name, aximm, aximm_rtl, role, maps)
    clock_parameters = [("ASSOCIATED_BUSIF", ":".join(buses)), ("ASSOCIATED_RESET", "rst")]
    if clock_hz:
        clock_parameters.append(("FREQ_HZ", int(clock_hz)))
    xml += _interface("clk", ("signal", "clock", "1.0"), ("signal", "clock_rtl", "1.0"),
                      "<spirit:slave/>", [("CLK", "clk")], clock_parameters)
    xml += _interface("rst", ("signal", "reset", "1.0"), ("signal", "reset_rtl", "1.0"),
                      "<spirit:slave/>", [("RST", "rst")], [("POLARITY", "ACTIVE_HIGH")])
    if "irq" in component.signature.members:
        xml += _interface("irq", ("signal", "interrupt", "1.0"),
                          ("signal", "interrupt_rtl", "1.0"), "<spirit:master/>",
                          [("INTERRUPT", "irq")], [("SENSITIVITY", "LEVEL_HIGH")])
    xml.append("</spirit:busInterfaces>")
    xml.append("<spirit:addressSpaces>")
    for name, (slave, _) in buses.items():
        if not slave:
            xml.append(f"<spirit:addressSpace><spirit:name>{name}</spirit:name>"
                       f"<spirit:range>{1 << addr_width}</spirit:range>"
                       f"<spirit:width>{data_width}</spirit:width></spirit:addressSpace>")
    xml.append("</spirit:addressSpaces>")
    xml.append("<spirit:memoryMaps>")
    for name, (slave, _) in buses.items():
        if slave:
            xml.append(f"<spirit:memoryMap><spirit:name>{name}</spirit:name><spirit:addressBlock>"
                       f"<spirit:name>registers</spirit:name>"
                       f"<spirit:baseAddress>0</spirit:baseAddress>"
                       f"<spirit:range>{1 << widths[f'{name}__araddr']}</spirit:range>"
                       f"<spirit:width>32</spirit:width><spirit:usage>register</spirit:usage>"
                       f"</spirit:addressBlock></spirit:memoryMap>")
    xml.append("</spirit:memoryMaps>")
    xml += ["<spirit:model>", "<spirit:views>"]
    for view, env in (("xilinx_anylanguagesynthesis", "synthesis"),
                      ("xilinx_anylanguagebehavioralsimulation", "simulation")):
        xml.append(f"<spirit:view><spirit:name>{view}</spirit:name>"
                   f"<spirit:envIdentifier>:vivado.xilinx.com:{env}</spirit:envIdentifier>"
                   f"<spirit:language>Verilog</spirit:language>"
                   f"<spirit:modelName>{IP_NAME}</spirit:modelName><spirit:fileSetRef>"
                   f"<spirit:localName>{view}_view_fileset</spirit:localName>"
                   f"</spirit:fileSetRef></spirit:view>")
    xml += ["</spirit:views>", "<spirit:ports>"]
    for name, direction, width, _ in ports(component):
        vector = (f'<spirit:vector><spirit:left spirit:format="long">{width - 1}</spirit:left>'
                  f'<spirit:right spirit:format="long">0</spirit:right></spirit:vector>'
                  if width > 1 else "")
        xml.append(f"<spirit:port><spirit:name>{name}</spirit:name><spirit:wire>"
                   f"<spirit:direction>{direction}</spirit:direction>{vector}</spirit:wire>"
                   f"</spirit:port>")
    xml += ["</spirit:ports>", "</spirit:model>", "<spirit:fileSets>"]
    for view in ("xilinx_anylanguagesynthesis", "xilinx_anylanguagebehavioralsimulation"):
        xml.append(f"<spirit:fileSet><spirit:name>{view}_view_fileset</spirit:name><spirit:file>"
                   f"<spirit:name>src/{IP_NAME}.v</spirit:name>"
                   f"<spirit:fileType>verilogSource</spirit:fileType></spirit:file>"
                   f"</spirit:fileSet>")
    xml += ["</spirit:fileSets>",
            "<spirit:description>The Edge-MoE accelerator for M3ViT (edgemoe-amaranth): AXI4-Lite "
            "registers, AXI4 memory ports, a level interrupt." + escape(f" Made by {comment}.")
            * bool(comment) + "</spirit:description>",
            "</spirit:component>"]
    return "\n".join(xml) + "\n"


_REPACKAGE_TCL = """# Open the packaged IP in Vivado, check it and save it again (Vivado rewrites
# component.xml in its own form): vivado -mode batch -source package_ip.tcl
set here [file dirname [file normalize [info script]]]
ipx::open_core [file join $here component.xml]
ipx::check_integrity [ipx::current_core]
ipx::save_core [ipx::current_core]
"""


def package_ip(component, out, *, version, addr_width, data_width, clock_hz=None, comment=""):
    """Write ``out/src/<IP_NAME>.v``, ``out/component.xml`` and ``out/package_ip.tcl``; return
    their paths."""
    os.makedirs(os.path.join(out, "src"), exist_ok=True)
    source = os.path.join(out, "src", f"{IP_NAME}.v")
    write_verilog(component, source, IP_NAME)
    xml = os.path.join(out, "component.xml")
    with open(xml, "w") as f:
        f.write(component_xml(component, version=version, addr_width=addr_width,
                              data_width=data_width, clock_hz=clock_hz, comment=comment))
    tcl = os.path.join(out, "package_ip.tcl")
    with open(tcl, "w") as f:
        f.write(_REPACKAGE_TCL)
    return [source, xml, tcl]
