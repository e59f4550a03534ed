"""The accelerator as a Vivado IP (``python -m hw.build --board zcu102 --ip``): its Verilog and an
IP-XACT ``component.xml`` (IEEE 1685-2009, the dialect Vivado's IP packager writes), so that an
integrator adds it to any block design from the IP catalog.

Everything in the XML comes from the component's signature, so a change to the top shows up in
the package: each AXI member (a member whose signals are all AXI signals of
:mod:`hw.movers.axi`) is an ``aximm`` interface, a slave with a memory map for the register block
and masters with an address space for the memory ports, with a port map of every signal it has;
``irq`` is the interrupt; the clock and the reset are Amaranth's ``clk`` and ``rst`` (synchronous,
active high); every other member is a plain port. After writing the Verilog the packager reads
the module header back and stops with a message if a port of the XML is missing there or differs
in direction or width: no Vivado reads these files here, so that check and the tests
(well-formed XML, interfaces, ports) are what stands between a change and a broken package.
"""

import os
import re
from xml.sax.saxutils import escape

from amaranth.back import verilog
from amaranth.lib import wiring

from hw.movers.axi import axi4_lite, axi4_read, axi4_write

__all__ = ["IP_VENDOR", "IP_LIBRARY", "IP_NAME", "IP_FAMILIES", "ports", "verilog_ports",
           "component_xml", "package_ip", "write_verilog"]

#: The IP's VLNV: vendor, library, name (the version is the project's).
IP_VENDOR, IP_LIBRARY, IP_NAME = "edgemoe", "user", "edgemoe_accelerator"
#: Device families the IP catalog offers it for (Vivado's names): the ZCU102's Zynq
#: UltraScale+, the part it is made for. ``set_property supported_families`` in Vivado widens it.
IP_FAMILIES = ("zynquplus",)
_SPIRIT = "http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009"
#: The Verilog file, relative to the package directory (the file sets name it).
_SOURCE = f"src/{IP_NAME}.v"
#: Names of the AXI4 and AXI4-Lite signals as :mod:`hw.movers.axi` declares them: upper-cased,
#: the logical ports of Vivado's ``aximm_rtl`` abstraction.
_AXI_SIGNALS = frozenset(name for signature in (axi4_read(addr_width=1, data_width=8),
                                                axi4_write(addr_width=1, data_width=8),
                                                axi4_lite(addr_width=1))
                         for name in signature.members)


def write_verilog(component, path, name):
    """Plain Verilog of ``component`` as module ``name`` (Amaranth's back end, through Yosys),
    creating the file's directory if needed."""
    text = verilog.convert(component, name=name, emit_src=False)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return text


def ports(component):
    """The top's ports as Amaranth names them: ``[(name, direction, width, path)]``, ``clk`` and
    ``rst`` (the ``sync`` domain's, which Amaranth adds) first, then every signature member (a
    nested member's name joins its path with ``__``)."""
    found = [("clk", "in", 1, ("clk",)), ("rst", "in", 1, ("rst",))]
    for path, member, value in component.signature.flatten(component):
        direction = "in" if member.flow == wiring.In else "out"
        found.append(("__".join(str(p) for p in path), direction, len(value), path))
    return found


def verilog_ports(text, module):
    """``{name: (direction, width)}`` of the ports of ``module`` in Yosys's Verilog (the header's
    names, with the ``input``/``output`` declarations of its body); ValueError if the module is
    not there."""
    start = re.search(rf"^module {re.escape(module)}\(", text, re.M)
    if start is None:
        raise ValueError(f"the Verilog has no module {module!r}")
    body = text[start.start():text.index("endmodule", start.start())]
    header = set(re.findall(r"\w+", body[:body.index(");")]))
    found = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?"
                                           r"(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        if name in header:
            found[name] = ("out" if direction == "output" else "in", int(msb or 0) + 1)
    return found


def _axi_members(component):
    """The AXI members: ``{name: (is_slave, [(logical, port), ...])}`` in signature order; a
    member counts when it is an interface whose signals are all AXI signals."""
    buses = {}
    for name, member in component.signature.members.items():
        if not member.is_signature:
            continue
        signals = member.signature.members
        if signals and all(s in _AXI_SIGNALS and signals[s].is_port for s in signals):
            buses[name] = (member.flow == wiring.In,
                           [(s.upper(), f"{name}__{s}") for s in signals])
    return buses


def _vlnv(vendor, library, name, version):
    return (f'spirit:vendor="{vendor}" spirit:library="{library}" spirit:name="{name}" '
            f'spirit:version="{version}"')


def _parameter(name, value, attributes=""):
    return (f"<spirit:parameter><spirit:name>{name}</spirit:name>"
            f"<spirit:value{attributes}>{escape(str(value))}</spirit:value></spirit:parameter>")


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
        lines += ["<spirit:parameters>", *(_parameter(*p) for p in parameters),
                  "</spirit:parameters>"]
    lines.append("</spirit:busInterface>")
    return lines


def _header(version, made_from):
    """The XML comment that opens the file: what it is, what it was made from, how to use it.
    An XML comment may not hold ``--``, so none of it is a command line (that is in the
    description)."""
    made = ", ".join(f"{key} {value}" for key, value in made_from.items()) or "not recorded"
    text = "\n".join([
        f"  {IP_NAME} {version}: the Edge-MoE accelerator (edgemoe-amaranth) as a Vivado IP.",
        "  Written by flow/ip_package.py (python -m hw.build with the ip option), not by",
        "  Vivado's packager, from the component's signature; checked against the Verilog",
        "  module header, never read by Vivado where it was made.",
        f"  Made from: {made}.",
        "  Use: Vivado Settings, IP, Repository: add this directory; the IP catalog then lists",
        f"  {IP_NAME}. package_ip.tcl re-packages it in Vivado (docs/build.md).",
    ])
    return f"<!--\n{text.replace('--', '- -')}\n-->"


def component_xml(component, *, version, addr_width, data_width, clock_hz=None, command="",
                  made_from=None):
    """The IP-XACT description of ``component`` (an accelerator top) as text.

    Masters get an address space of ``2**addr_width`` bytes and ``data_width``-bit data. A
    slave's memory map is as large as its address decodes (the accelerator's register block: 4
    KB, of which :data:`model.system.registers.MAP_BYTES` hold registers), which is also the
    smallest segment Vivado's address editor assigns. ``clock_hz`` is the clock's ``FREQ_HZ``,
    user-resolvable so that the block design's propagation replaces it with the frequency the
    clock source really has (the PS gives 299.997 MHz for 300). ``made_from`` (``{what:
    value}``: commit, config, machine, ...) goes into the header comment, ``command`` into the
    description.
    """
    buses = _axi_members(component)
    widths = {name: width for name, _, width, _ in ports(component)}
    aximm, aximm_rtl = ("interface", "aximm", "1.0"), ("interface", "aximm_rtl", "1.0")
    xml = ['<?xml version="1.0" encoding="UTF-8"?>', _header(version, made_from or {}),
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
        clock_parameters.append(("FREQ_HZ", int(clock_hz),
                                 ' spirit:format="long" spirit:resolve="user"'))
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
    for name, (slave, maps) in buses.items():
        if slave:
            address = next(port for logical, port in maps if logical in ("ARADDR", "AWADDR"))
            data = next(port for logical, port in maps if logical in ("RDATA", "WDATA"))
            xml.append(f"<spirit:memoryMap><spirit:name>{name}</spirit:name><spirit:addressBlock>"
                       f"<spirit:name>registers</spirit:name>"
                       f"<spirit:baseAddress>0</spirit:baseAddress>"
                       f"<spirit:range>{1 << widths[address]}</spirit:range>"
                       f"<spirit:width>{widths[data]}</spirit:width>"
                       f"<spirit:usage>register</spirit:usage>"
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
                   f"<spirit:name>{_SOURCE}</spirit:name>"
                   f"<spirit:fileType>verilogSource</spirit:fileType></spirit:file>"
                   f"</spirit:fileSet>")
    xml += ["</spirit:fileSets>",
            "<spirit:description>The Edge-MoE accelerator for M3ViT (edgemoe-amaranth): AXI4-Lite "
            "registers, AXI4 memory ports, a level interrupt."
            + escape(f" Made by {command}.") * bool(command)
            + "</spirit:description>",
            # What Vivado's packager writes: the instance name's parameter, and where the IP
            # catalog shows the core.
            "<spirit:parameters>",
            _parameter("Component_Name", f"{IP_NAME}_v{version.replace('.', '_')}",
                       ' spirit:resolve="user" spirit:id="PARAM_VALUE.Component_Name" '
                       'spirit:order="1"'),
            "</spirit:parameters>",
            "<spirit:vendorExtensions><xilinx:coreExtensions><xilinx:supportedFamilies>",
            *(f'<xilinx:family xilinx:lifeCycle="Production">{family}</xilinx:family>'
              for family in IP_FAMILIES),
            "</xilinx:supportedFamilies>",
            "<xilinx:taxonomies><xilinx:taxonomy>/UserIP</xilinx:taxonomy></xilinx:taxonomies>",
            f"<xilinx:displayName>{IP_NAME}</xilinx:displayName>",
            "<xilinx:coreRevision>1</xilinx:coreRevision>",
            "</xilinx:coreExtensions></spirit:vendorExtensions>",
            "</spirit:component>"]
    return "\n".join(xml) + "\n"


_REPACKAGE_TCL = """# Re-package the IP in Vivado: vivado -mode batch -source package_ip.tcl
# Opens component.xml, adds the customisation GUI script (xgui/) Vivado's packager would have
# written, updates the checksums, checks the core and saves it in Vivado's own form.
# To offer the IP for other device families first (the XML lists zynquplus), e.g.:
#   set_property supported_families {zynquplus Production kintexuplus Production} $core
set here [file dirname [file normalize [info script]]]
set core [ipx::open_core [file join $here component.xml]]
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
"""


def _check_against_verilog(component, text):
    """ValueError unless every port of :func:`ports` is a port of the Verilog module, with the
    same direction and width, and the module has no other."""
    emitted = verilog_ports(text, IP_NAME)
    declared = {name: (direction, width) for name, direction, width, _ in ports(component)}
    wrong = [f"{name}: {declared.get(name, 'absent')} in the XML, "
             f"{emitted.get(name, 'absent')} in the Verilog"
             for name in sorted(set(declared) | set(emitted))
             if declared.get(name) != emitted.get(name)]
    if wrong:
        raise ValueError(f"the IP's ports disagree with its Verilog ({len(wrong)}): "
                         + "; ".join(wrong[:8]))


def package_ip(component, out, *, version, addr_width, data_width, clock_hz=None, command="",
               made_from=None):
    """Write ``out/src/<IP_NAME>.v``, ``out/component.xml`` and ``out/package_ip.tcl``; return
    their paths. The keywords are :func:`component_xml`'s. ValueError if the XML's ports would
    not be the Verilog module's."""
    source = os.path.join(out, _SOURCE)
    text = write_verilog(component, source, IP_NAME)
    _check_against_verilog(component, text)
    xml = os.path.join(out, "component.xml")
    with open(xml, "w") as f:
        f.write(component_xml(component, version=version, addr_width=addr_width,
                              data_width=data_width, clock_hz=clock_hz, command=command,
                              made_from=made_from))
    tcl = os.path.join(out, "package_ip.tcl")
    with open(tcl, "w") as f:
        f.write(_REPACKAGE_TCL)
    return [source, xml, tcl]
