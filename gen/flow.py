"""Flows to hardware: a chip on FPGAs through yosys and nextpnr, and the ASIC hand-off.

**FPGA** (:func:`synth_chip`, ``hardwire synth CHIP --target ecp5|ice40``): the chip is
synthesised per module (:func:`gen.synth.synth_layer`, each module's JSON netlist kept); the
netlists of the whole chip are joined with the shift-register harness
(:func:`gen.synth.wrapper_verilog`) and placed and routed by nextpnr on the smallest device
of the family that holds it. When no device of the family holds the whole chip, the largest
separately synthesised module (with everything under it) that fits is placed instead, and
the report says so, with the chip's figures against the largest device.

**ASIC** (:func:`asic_handoff`, ``hardwire asic DESIGN --out OUT``): a gate-level netlist
from yosys' generic synthesis, each ROM a black-box macro (one per ROM image: a ROM compiler
makes one macro per content), a LibreLane config naming the macros and their instances, the
macros' ports, sizes and images, and the clock-gating points, all checked by reading the
netlist back in yosys.

``python -m gen.flow --out build/synth`` (``make synth``) runs the FPGA flow on
:data:`BOARD_CHIP`, the tiny model with one lane, one LM-head lane and one element per beat:
the smallest chip this generator makes of the whole tiny model.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .output import atomic_directory
from .synth import (
    SynthError,
    SynthReport,
    SynthTimeout,
    VerilogModule,
    WrapPorts,
    _pkg_version,
    _read_stats,
    _run,
    _summarise,
    _yosys_command,
    place_and_route,
    split_verilog,
    synth_layer,
    synth_verilog,
    wrapper_verilog,
)

__all__ = ["Device", "DEVICES", "BOARD_CHIP", "synth_chip", "subtree", "fits",
           "join_netlists", "RomMacro", "find_roms", "asic_handoff", "fpga_flow"]


# --------------------------------------------------------------------------------------------
# FPGA

@dataclass(frozen=True)
class Device:
    """An FPGA as nextpnr knows it: its arguments and what it holds (synthesis summary keys:
    ECP5 ``lut4_equiv`` (LUT4 + 2 per CCU2C), iCE40 ``LUT4``; ``FF``, ``BRAM``, ``DSP``)."""
    label: str
    args: tuple[str, ...]
    capacity: Mapping[str, int]


# router2: on the whole tiny chip (LFE5U-85F, 207k arcs) router1 still had 132k arcs to route
# after 16 minutes; router2 routed it in 5 minutes (then router1 checks it, as nextpnr does).
_ROUTER2 = ("--router", "router2")

#: Devices per target, smallest first. Capacities from the data sheets: ECP5 LUTs (one FF per
#: LUT; a TRELLIS_DPR16X4 LUTRAM takes 4 of the quarter of the LUTs that can be RAM, as
#: nextpnr counts), 18 kbit EBR blocks, 18x18 multipliers; iCE40 logic cells (a LUT4 and a
#: FF each), 4 kbit EBR blocks, SB_MAC16.
DEVICES = {
    "ecp5": (
        Device("ECP5 LFE5U-25F CABGA381", ("--25k", "--package", "CABGA381", *_ROUTER2),
               {"lut4_equiv": 24288, "FF": 24288, "LUTRAM": 759, "BRAM": 56, "DSP": 28}),
        Device("ECP5 LFE5U-45F CABGA381", ("--45k", "--package", "CABGA381", *_ROUTER2),
               {"lut4_equiv": 43848, "FF": 43848, "LUTRAM": 1370, "BRAM": 108,
                "DSP": 72}),
        Device("ECP5 LFE5U-85F CABGA381", ("--85k", "--package", "CABGA381", *_ROUTER2),
               {"lut4_equiv": 83640, "FF": 83640, "LUTRAM": 2613, "BRAM": 208,
                "DSP": 156}),
    ),
    "ice40": (
        Device("iCE40 UP5K SG48", ("--up5k", "--package", "sg48"),
               {"LUT4": 5280, "FF": 5280, "BRAM": 30, "DSP": 8}),
        Device("iCE40 HX8K CT256", ("--hx8k", "--package", "ct256"),
               {"LUT4": 7680, "FF": 7680, "BRAM": 32, "DSP": 0}),
    ),
}

#: Logic and flip-flops are filled to at most this share before a device is tried: packing
#: needs slack (LUTs and FFs share slices), and a hopeless nextpnr run costs many minutes.
#: Block RAM and DSPs may be filled.
FILL = 0.95

#: The chip ``make synth`` places: the whole tiny model (2 layers, 90,112 weights, every ROM
#: and KV cache) with the fewest lanes and the narrowest beat, every register on ``clk``.
BOARD_CHIP = {"model": "tiny", "lanes": 1, "head_lanes": 1, "beat": 1, "ctx": 16,
              "rom_images": "files", "gate_clocks": False}


def subtree(entries: Mapping[str, Mapping], root: str) -> dict[str, int]:
    """The separately synthesised modules under ``root`` (itself included) and how often the
    subtree holds each, from a per-module report's entries (``blackboxes``: a module's
    instances of the others)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, depth: int = 0):
        if name in seen:
            return
        if depth > 100 or name not in entries:
            raise SynthError(f"module {name} is not in the synthesis report")
        seen.add(name)
        for child in entries[name].get("blackboxes") or {}:
            visit(child, depth + 1)
        order.append(name)

    visit(root)
    count = dict.fromkeys(order, 0)
    count[root] = 1
    for name in reversed(order):
        for child, n in (entries[name].get("blackboxes") or {}).items():
            count[child] += count[name] * int(n)
    return {name: count[name] for name in reversed(order)}


def _subtree_stats(entries: Mapping[str, Mapping], root: str, target: str,
                   partial: bool = False) -> dict | None:
    """The summary of ``root`` with everything under it, or None if a module of it was not
    synthesised; with ``partial``, the sum of those that were (a lower bound)."""
    cells: dict[str, int] = {}
    for name, n in subtree(entries, root).items():
        e = entries[name]
        if e.get("status") != "ok":
            if partial:
                continue
            return None
        for t, k in e["cells"].items():
            cells[t] = cells.get(t, 0) + n * k
    return _summarise(cells, target)


def fits(stats: Mapping[str, int], device: Device, fill: float = FILL) -> dict:
    """Whether a design with these synthesis figures should fit ``device``: each resource's
    use, capacity and share, and ``fits``."""
    out = {"device": device.label, "resources": {}, "fits": True}
    for key, cap in device.capacity.items():
        used = int(stats.get(key, 0))
        limit = cap * (fill if key in ("lut4_equiv", "LUT4", "FF") else 1.0)
        out["resources"][key] = {"used": used, "available": cap,
                                 "share": round(used / cap, 4) if cap else None}
        if used > limit:
            out["fits"] = False
    return out


def _is_blackbox(mod: Mapping) -> bool:
    value = str(mod.get("attributes", {}).get("blackbox", "0"))
    try:
        return int(value, 2) != 0
    except ValueError:
        return value not in ("", "0")


def join_netlists(paths: Sequence[Path], top: str) -> dict:
    """One yosys JSON netlist from several: every module defined anywhere (a real definition
    replaces a black box of the same name; the cell libraries are the same in all), with
    ``top`` the only module marked top."""
    modules: dict[str, dict] = {}
    creator = None
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SynthError(f"cannot read netlist {path}: {e}") from None
        creator = creator or data.get("creator")
        for name, mod in data.get("modules", {}).items():
            old = modules.get(name)
            if old is None or (_is_blackbox(old) and not _is_blackbox(mod)):
                modules[name] = mod
            elif not _is_blackbox(old) and not _is_blackbox(mod) and \
                    old.get("ports", {}).keys() != mod.get("ports", {}).keys():
                raise SynthError(f"module {name} is defined differently in two netlists")
    if top not in modules:
        raise SynthError(f"top module {top} is not in the netlists")
    for name, mod in modules.items():
        attrs = mod.setdefault("attributes", {})
        attrs.pop("top", None)
        if name == top:
            attrs["top"] = "00000000000000000000000000000001"
    return {"creator": creator or "yosys", "modules": modules}


def _harness_ports(netlist: Mapping, module: str) -> WrapPorts:
    """The harness of a module from its ports in a JSON netlist: the streams' valid/ready on
    registered pins, every other port through the shift registers."""
    try:
        ports = {n: (p["direction"], len(p["bits"]))
                 for n, p in netlist["modules"][module]["ports"].items()}
    except (KeyError, TypeError):
        raise SynthError(f"the netlist has no ports of {module}") from None
    ctl = [n for n, (_, w) in ports.items()
           if w == 1 and (n.endswith("__valid") or n.endswith("__ready"))]
    return WrapPorts.from_module_ports(
        ports, clock="clk" if "clk" in ports else None, reset="rst" if "rst" in ports else None,
        controls_in=[n for n in ctl if ports[n][0] == "input"],
        controls_out=[n for n in ctl if ports[n][0] == "output"])


def _place(design: Path, workdir: Path, entries: Mapping[str, Mapping], root: str,
           target: str, devices: Sequence[Device], *, dsp: bool, timeout: float,
           freq_mhz: float | None, vmods: Mapping[str, VerilogModule]) -> dict:
    """Place and route ``root`` and everything under it, in the harness, on the first of
    ``devices`` where nextpnr succeeds."""
    wd = workdir / f"pnr_{root}"
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    names = subtree(entries, root)
    paths = [design / entries[n]["netlist"]["json"] for n in names]
    root_net = json.loads(paths[0].read_text())
    wrap = _harness_ports(root_net, root)
    name, text = wrapper_verilog(root, wrap, name="hardwire_pnr_wrap")
    (wd / f"{name}.v").write_text(text)
    stub = wd / f"{root}_blackbox.v"
    stub.write_text(vmods[root].blackbox_text())
    syn = synth_verilog([wd / f"{name}.v"], name, target, wd, cwd=wd, timeout=timeout,
                        lib=[stub], netlist=wd / f"{name}.json", tag="wrap", dsp=dsp)
    joined = join_netlists([wd / f"{name}.json", *paths], name)
    net = wd / "joined.json"
    net.write_text(json.dumps(joined))
    tried = []
    for dev in devices:
        try:
            res = place_and_route(net, target, wd, timeout=timeout, freq_mhz=freq_mhz,
                                  device=(dev.args, dev.label))
        except SynthTimeout:
            raise
        except SynthError as e:
            tried.append(f"{dev.label}: {e}")
            continue
        res["tried"] = tried
        res["harness_stats"] = syn["stats"]
        return res
    raise SynthError("nextpnr failed on every device tried: " + "; ".join(tried))


def _pnr_note(d: Mapping) -> list[str]:
    """Lines for :func:`gen.synth._layer_table`: what was placed, Fmax, utilisation."""
    p = d.get("pnr") or {}
    lines = []
    for f in p.get("fit", []):
        res = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in f["resources"].items()
                        if v["used"] or k != "DSP")
        low = " (at least: " + ", ".join(f["missing"]) + " not synthesised)" \
            if f.get("lower_bound") else ""
        lines.append(f"  whole design on {f['device']}: {res}{low} -> "
                     f"{'fits' if f['fits'] else 'does not fit'}")
    if p.get("fmax_mhz") is not None:
        why = ("the whole design fits no device of the family" if p.get("fit") else
               "the whole design was not synthesised")
        what = ("the whole design" if p["whole_design"] else
                f"{p['placed']} and all under it alone, since {why}")
        lines.append(f"  Fmax: {p['fmax_mhz']:.1f} MHz, {what}, on {p['device']} "
                     f"(nextpnr {p['seconds']:.0f} s)")
        util = ", ".join(f"{k} {v['used']}/{v['available']}"
                         for k, v in p.get("utilisation", {}).items()
                         if not k.endswith("IO") and "IOB" not in k and "PIO" not in k)
        if util:
            lines.append(f"  nextpnr use: {util}")
    else:
        lines.append(f"  Fmax: - ({d.get('fmax_note')})")
    return lines


def synth_chip(design: str | Path, target: str = "ecp5", *, pnr: bool = True,
               timeout: float = 1800.0, jobs: int | None = None,
               modules: Sequence[str] | None = None, dsp: bool = False,
               freq_mhz: float | None = None, pnr_timeout: float | None = None,
               log=None) -> SynthReport:
    """Synthesise a ``hardwire chip`` directory per module and, for ECP5 and iCE40, place and
    route it (see the module docstring). The report is ``DESIGN/synth_<target>/report.json``
    (a layer report plus ``pnr``: the fit per device, what was placed and where, Fmax and
    nextpnr's utilisation); ``fmax_mhz`` is set only when the whole chip was placed.
    ``timeout`` is per yosys run, ``pnr_timeout`` (default ``timeout``) per nextpnr run.

    A chip generated with clock gating (the default of ``hardwire chip``) is not placed: the
    gated clocks would be logic-driven FPGA clocks, and Fmax across them meaningless. It
    says so; generate it with ``--no-clock-gating``.
    """
    design = Path(design).resolve()
    do_pnr = pnr and target in DEVICES
    rep = synth_layer(design, target, timeout=timeout, pnr=pnr, jobs=jobs, modules=modules,
                      dsp=dsp, netlists=("json",) if do_pnr else ())
    d = rep.data
    if not do_pnr:
        return rep
    t0 = time.perf_counter()
    m = json.loads((design / "manifest.json").read_text())
    top = d["top"]
    entries = {e["module"]: e for e in d["modules"]}
    workdir = design / f"synth_{target}"
    whole = _subtree_stats(entries, top, target)
    devices = DEVICES[target]
    fit = [fits(whole, dev) for dev in devices] if whole else []
    if whole is None and d["missing"]:
        # Not all synthesised (timeouts, --modules): what was is a lower bound, and enough
        # to tell when the chip fits no device of the family.
        low = _subtree_stats(entries, top, target, partial=True)
        fit = [fits(low, dev) | {"lower_bound": True, "missing": d["missing"]}
               for dev in devices]
        if any(f["fits"] for f in fit):
            fit = []  # a lower bound that fits says nothing
    pnr_data = {"fit": fit, "placed": None, "whole_design": False, "fmax_mhz": None,
                "device": None, "utilisation": None, "clocks": None, "seconds": None,
                "candidates": None}
    status, note = "ok", None
    if m.get("clock_gating", True):
        status = "skipped"
        note = ("not placed: the chip has gated clocks (logic-driven clocks on an FPGA); "
                "generate it with --no-clock-gating")
    else:
        texts = [(design / s).read_text() for s in m["sources"]]
        vmods = split_verilog(texts)
        root = top
        choices = [dev for dev, f in zip(devices, fit, strict=True) if f["fits"]] \
            if whole else []
        if not choices:
            # The largest separately synthesised subtree that fits the family's largest
            # device, by logic (with --modules: of those synthesised).
            key = "lut4_equiv" if target == "ecp5" else "LUT4"
            cands = []
            for name in entries:
                st = _subtree_stats(entries, name, target)
                if st and name != top and fits(st, devices[-1])["fits"]:
                    cands.append((st.get(key, 0), name, st))
            cands.sort(key=lambda c: (-c[0], c[1]))
            pnr_data["candidates"] = [{"module": n, key: k} for k, n, _ in cands[:5]]
            if cands:
                root = cands[0][1]
                choices = [dev for dev in devices if fits(cands[0][2], dev)["fits"]]
        if not choices:
            status, note = "none", ("nothing synthesised fits a device of the family"
                                    if whole is None else
                                    "nothing of the design fits a device of the family")
        else:
            if log:
                log(f"placing and routing {'the whole chip' if root == top else root} on "
                    f"{choices[0].label} (nextpnr) ...")
            try:
                res = _place(design, workdir, entries, root, target, choices, dsp=dsp,
                             timeout=pnr_timeout or timeout, freq_mhz=freq_mhz, vmods=vmods)
                pnr_data.update(placed=root, whole_design=root == top,
                                fmax_mhz=res["fmax_mhz"], device=res["device"],
                                utilisation=res["utilisation"], clocks=res["clocks"],
                                seconds=res["seconds"], args=res["args"], tried=res["tried"],
                                stats=_subtree_stats(entries, root, target),
                                harness_stats=res["harness_stats"])
                if res["fmax_mhz"] is None:
                    status, note = "no_clock", "nextpnr reported no clock frequency"
            except SynthTimeout as e:
                status, note = "timeout", f"place-and-route failed: {e}"
            except SynthError as e:
                status, note = "failed", f"place-and-route failed: {e}"
    d["pnr_status"] = status
    d["fmax_note"] = note
    d["fmax_mhz"] = pnr_data["fmax_mhz"] if pnr_data["whole_design"] else None
    d["pnr"] = pnr_data
    tool = {"ecp5": "nextpnr-ecp5", "ice40": "nextpnr-ice40"}[target]
    d["tools"]["nextpnr"] = f"yowasp-{tool} {_pkg_version('yowasp-' + tool)}"
    d["seconds"]["pnr"] = round(time.perf_counter() - t0, 3)
    d["seconds"]["total"] = round(d["seconds"]["total"] + d["seconds"]["pnr"], 3)
    text = json.dumps(d, indent=2, sort_keys=True) + "\n"
    tmp = rep.path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(rep.path)
    return rep


# --------------------------------------------------------------------------------------------
# ASIC

ROM_PRIMITIVE_NAME = "hardwire_rom"

# An instance of the $readmemh ROM primitive as Amaranth writes it:
#   hardwire_rom #(
#     .ABITS(32'd10), .DEPTH(32'd1024), .INIT("l0_code0.hex"), .WIDTH(32'd64)
#   ) rom (
_ROM_INSTANCE_RE = re.compile(
    r"\bhardwire_rom\s*#\((?P<params>(?:\s*\.\w+\s*\([^()]*\)\s*,?)*)\s*\)\s*"
    r"(?P<inst>\\\S+|[A-Za-z_][\w$]*)\s*\(")
_PARAM_RE = re.compile(r"\.(\w+)\s*\(([^()]*)\)")


@dataclass(frozen=True)
class RomMacro:
    """A ROM macro: one per ROM image (a mask ROM is made for its contents). Ports: ``clk``,
    ``en``, ``addr[abits-1:0]``, ``data[width-1:0]``; ``data`` shows word ``addr`` after a
    rising edge of ``clk`` with ``en`` high and holds while ``en`` is low."""
    name: str
    depth: int
    width: int
    abits: int
    image: str

    @property
    def bits(self) -> int:
        return self.depth * self.width

    def blackbox(self) -> str:
        return (f"(* blackbox *)\nmodule {self.name} (clk, en, addr, data);\n  input clk;\n"
                f"  input en;\n  input [{self.abits - 1}:0] addr;\n"
                f"  output [{self.width - 1}:0] data;\nendmodule\n")

    def model(self) -> str:
        """A behavioural model for simulation: the ROM primitive with the macro's image."""
        return (f"module {self.name} (clk, en, addr, data);\n  input clk;\n  input en;\n"
                f"  input [{self.abits - 1}:0] addr;\n  output [{self.width - 1}:0] data;\n"
                f"  {ROM_PRIMITIVE_NAME} #(.WIDTH({self.width}), .DEPTH({self.depth}), "
                f".ABITS({self.abits}), .INIT(\"{self.image}\")) rom (.clk(clk), .en(en), "
                f".addr(addr), .data(data));\nendmodule\n")


def _param(value: str):
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    m = re.fullmatch(r"(?:\d*'s?d)?(\d+)", value)
    if not m:
        raise UserError(f"cannot read ROM parameter value {value!r}")
    return int(m.group(1))


def find_roms(modules: Mapping[str, VerilogModule]) -> tuple[dict[str, str], dict[str, RomMacro]]:
    """Every instance of the ``$readmemh`` ROM primitive replaced by an instance of its macro:
    the modules' new texts (only those that change) and the macros by name."""
    macros: dict[str, RomMacro] = {}
    texts: dict[str, str] = {}
    for mod in modules.values():
        def repl(m: re.Match, mod: VerilogModule = mod) -> str:
            p = {k: _param(v) for k, v in _PARAM_RE.findall(m.group("params"))}
            try:
                image = str(p["INIT"])
                rom = RomMacro(name="hwrom_" + re.sub(r"\W", "_", image.removesuffix(".hex")),
                               depth=int(p["DEPTH"]), width=int(p["WIDTH"]),
                               abits=int(p["ABITS"]), image=image)
            except KeyError as e:
                raise UserError(f"ROM instance in {mod.name} lacks parameter {e}") from None
            if macros.setdefault(rom.name, rom) != rom:
                raise UserError(f"two different ROMs map to macro {rom.name}")
            return f"{rom.name} {m.group('inst')} ("
        new = _ROM_INSTANCE_RE.sub(repl, mod.text)
        if new != mod.text:
            texts[mod.name] = new
    return texts, dict(sorted(macros.items()))


def _instance_paths(netlist: Mapping, top: str, kinds: set[str]) -> dict[str, list[str]]:
    """Hierarchical instance names (dot-separated, as yosys flattens them) of every cell of a
    type in ``kinds``, from a yosys JSON netlist."""
    mods = netlist["modules"]
    out: dict[str, list[str]] = {k: [] for k in kinds}

    def walk(name: str, prefix: str, depth: int = 0):
        if depth > 100:
            raise SynthError(f"module hierarchy too deep at {name}")
        for cname, cell in sorted(mods[name].get("cells", {}).items()):
            t = cell["type"].lstrip("\\")
            path = prefix + cname.lstrip("\\")
            if t in kinds:
                out[t].append(path)
            elif t in mods and not _is_blackbox(mods[t]):
                walk(t, path + ".", depth + 1)

    walk(top, "")
    return out


def _clock_gates(netlist: Mapping, top: str) -> list[dict]:
    """The gated clocks of a chip (``<stage>_gclk = clk & <stage>_en_q``, the enable caught
    on the falling edge): the stages' in the top module, then the lanes' inside each lane
    array module (named ``<module>.<stage>``): the nets, the enable flop, and the instances
    each clocks."""
    mods = netlist["modules"]
    out = []
    for mname in [top] + sorted(n for n in mods if n != top):
        out += _module_clock_gates(mods[mname], "" if mname == top else f"{mname}.")
    return out


def _module_clock_gates(mod: Mapping, prefix: str) -> list[dict]:
    """A module's gated clocks; below the top, only those made there (with their enable flop),
    not a stage's clock passed in through a port."""
    nets = mod.get("netnames", {})
    out = []
    for name, net in sorted(nets.items()):
        if not name.endswith("_gclk"):
            continue
        stage = name.removesuffix("_gclk")
        if prefix and f"{stage}_en_q" not in nets:
            continue
        bits = net["bits"]
        clocked = sorted(c.lstrip("\\") for c, cell in mod.get("cells", {}).items()
                         if not cell["type"].startswith("$")  # the AND that makes it
                         and bits in cell.get("connections", {}).values())
        en = nets.get(f"{stage}_en_q", {}).get("bits")
        flop = next((cell for cell in mod.get("cells", {}).values()
                     if en and cell.get("connections", {}).get("Q") == en), None)
        edge = None
        if flop is not None and "CLK_POLARITY" in flop.get("parameters", {}):
            edge = "rising" if int(str(flop["parameters"]["CLK_POLARITY"]), 2) else "falling"
        out.append({"stage": prefix + stage, "gated_clock": prefix + name,
                    "enable_latch": f"{prefix}{stage}_en_q",
                    "enable_flop_edge": edge, "clocks_instances": clocked,
                    "icg": ("replace the negative-edge enable flop and the AND with the "
                            "PDK's integrated clock-gating cell (latch + AND, e.g. "
                            f"sky130_fd_sc_hd__dlclkp: CLK=clk, GATE=<D of {stage}_en_q>, "
                            f"GCLK={name})")})
    return out


def _tool_check(cmd: list[str], cwd: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return {"status": "missing", "tool": Path(cmd[0]).name}
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "tool": Path(cmd[0]).name, "seconds": round(timeout, 1)}
    tail = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()][-5:]
    return {"status": "ok" if p.returncode == 0 else "failed", "tool": Path(cmd[0]).name,
            "args": cmd[1:], "returncode": p.returncode,
            "seconds": round(time.perf_counter() - t0, 1),
            "output_tail": tail if p.returncode else []}


#: Icarus compiles the netlist only up to this size: it is slow on large netlists.
ICARUS_MAX_BYTES = 4_000_000


def asic_handoff(design: str | Path, out: str | Path, *, clock_period_ns: float = 20.0,
                 gates: str = "abc", timeout: float = 1800.0, jobs: int | None = None,
                 lint: bool = True, log=print) -> dict:
    """Write the ASIC hand-off of a design directory (``hardwire chip``, ``layer`` or
    ``matvec`` with ``$readmemh`` ROMs) to ``out``; return its manifest.

    ``out`` holds ``<top>_netlist.v`` (yosys generic synthesis per module, ``gates``: ``abc``
    yosys' simple gates after ``abc -fast``, ``techmap`` without ABC, ``2-input`` the
    2-input gate set; ``write_verilog -noattr``; the ROMs as macro instances),
    ``macros_bb.v`` (the macros as black boxes), ``rom_models.v`` + ``hardwire_rom.v`` + the
    ``.hex`` images (behavioural models, for simulating the netlist), ``config.json``
    (LibreLane), ``macros.json`` and ``MACROS.md`` (every macro: depth, width, bits, image,
    instances), ``manifest.json`` (the design's manifest with the netlist as its sources,
    plus ``asic``: statistics, macros, clock-gating points, checks). The netlist is read back
    by yosys (``hierarchy -check``, ``check -assert``, ``stat``) and, with ``lint``, linted
    by Verilator and (up to :data:`ICARUS_MAX_BYTES`) compiled by Icarus with the models,
    when they are installed.

    RAMs (KV caches) are synthesised to flip-flops: there is no RAM macro yet.
    """
    t0 = time.perf_counter()
    design = Path(design).resolve()
    out = Path(out)
    if not clock_period_ns > 0:
        raise UserError(f"--clock-period must be positive, not {clock_period_ns:g}")
    path = design / "manifest.json"
    try:
        m = json.loads(path.read_text())
        top, sources = m["top"], list(m["sources"])
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} lacks key {e}") from None
    try:
        texts = [(design / s).read_text() for s in sources]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the sources of {design}: {e}") from None
    vmods = split_verilog(texts)
    changed, macros = find_roms(vmods)
    rom_bits = int(m.get("rom_bits") or 0)
    if rom_bits and not macros:
        raise UserError(f"{design}: the ROMs are inside the Verilog (Memory init), so they "
                        "cannot become macros; generate the design with --rom-images files")
    missing = [img for img in m.get("rom_images", [])
               if img not in {r.image for r in macros.values()}]
    if missing:
        raise UserError(f"{design}: ROM image {missing[0]} has no ROM instance")
    if rom_bits and sum(r.bits for r in macros.values()) != rom_bits:
        raise UserError(f"{design}: the ROM instances hold {sum(r.bits for r in macros.values())}"
                        f" bits, the manifest {rom_bits}; some ROMs are inline")
    for r in macros.values():
        if not (design / r.image).is_file():
            raise UserError(f"{design}: ROM image {r.image} is missing")
    runner, _ = _yosys_command(design / "x.ys", design)

    netlist_name = f"{top}_netlist.v"
    with atomic_directory(out) as d:
        # The design with each ROM a macro instance, synthesised per module in a work
        # directory; only the results stay.
        work = d / "work"
        work.mkdir()
        rtl = "".join((changed.get(n) or vm.text).rstrip("\n") + "\n\n"
                      for n, vm in vmods.items())
        (work / f"{top}.v").write_text(rtl)
        bb = "".join(r.blackbox() + "\n" for r in macros.values())
        (d / "macros_bb.v").write_text("// ROM macros as black boxes: a ROM compiler provides "
                                       "each one (see MACROS.md).\n\n" + bb)
        (work / "manifest.json").write_text(json.dumps({"top": top, "sources": [f"{top}.v"],
                                                        "kind": m.get("kind", "design")}))
        if log:
            log(f"asic: synthesising {top} per module (yosys generic, gates {gates}) ...")
        rep = synth_layer(work, "generic", timeout=timeout, jobs=jobs, netlists=("verilog",),
                          lib=[d / "macros_bb.v"] if macros else (), gates=gates)
        bad = [e for e in rep.data["modules"] if e["status"] != "ok"]
        if bad:
            raise SynthError(f"synthesis of {bad[0]['module']} {bad[0]['status']}: "
                             f"{bad[0]['note']}")
        parts = []
        for e in rep.data["modules"]:
            parts.append((work / e["netlist"]["verilog"]).read_text())
        netlist = "".join(parts)
        nmods = split_verilog([netlist])  # no module defined twice
        (d / netlist_name).write_text(netlist)

        # Read it back: hierarchy complete, no driver conflicts or loops. The modules on the
        # way from the top to the macros come back as JSON, for the instance paths and the
        # gated clocks (the whole netlist as JSON is 25 times its Verilog).
        on_path = {n for n, vm in nmods.items()
                   if any(re.search(rf"^\s*{r}\s", vm.text, re.M) for r in macros)} | {top}
        grew = True
        while grew:
            more = {n for n, vm in nmods.items() if on_path & set(vm.children)} - on_path
            grew, on_path = bool(more), on_path | more
        chk = d / "check"
        chk.mkdir()
        script = ["read_verilog -lib ../macros_bb.v" if macros else "",
                  f"read_verilog ../{netlist_name}", f"hierarchy -check -top {top}", "proc",
                  "check -assert", "tee -q -o stat.json stat -json",
                  "select " + " ".join(sorted(on_path)), "write_json -selected netlist.json"]
        (chk / "check.ys").write_text("\n".join(s for s in script if s) + "\n")
        _, cmd = _yosys_command(chk / "check.ys", chk)
        _run(cmd, cwd=chk, log=chk / "check.log", timeout=timeout,
             what=f"yosys (reading back {netlist_name})")
        counts, _, _ = _read_stats(chk / "stat.json", chk / "check.log", [top])
        readback_cells = sum(n for t, n in counts[0].items() if t not in macros)
        net_json = json.loads((chk / "netlist.json").read_text())
        inst = _instance_paths(net_json, top, set(macros))
        gating = _clock_gates(net_json, top)
        # The figures of synthesis (the read-back netlist has word-level cells again).
        cells = rep.data["cells"]
        ffs = sum(v for k, v in cells.items() if "DFF" in k or "DLATCH" in k)
        stats = {"cells": sum(cells.values()), "flip_flops": ffs,
                 "gates": sum(cells.values()) - ffs, "by_type": cells,
                 "macro_instances": sum(len(p) for p in inst.values())}
        version = rep.data["tools"]["yosys"]

        # Macros: black boxes, behavioural models and their images, the list.
        rows = []
        for r in macros.values():
            shutil.copyfile(design / r.image, d / r.image)
            rows.append({"name": r.name, "depth": r.depth, "width": r.width,
                         "address_bits": r.abits, "bits": r.bits, "image": r.image,
                         "instances": inst[r.name]})
        for f in sorted(design.glob("*.npy")):  # golden vectors: 'hardwire sim OUT' runs
            shutil.copyfile(f, d / f.name)
        if macros:
            (d / "rom_models.v").write_text(
                "// Behavioural models of the ROM macros, for simulating the netlist.\n\n"
                + "".join(r.model() + "\n" for r in macros.values()))
            from hdl.mask_rom import ROM_PRIMITIVE

            (d / f"{ROM_PRIMITIVE_NAME}.v").write_text(ROM_PRIMITIVE)
        (d / "macros.json").write_text(json.dumps(rows, indent=1) + "\n")
        placeholder = "rom_compiler_output"
        config = {
            "meta": {"version": 2, "flow": "Classic"},
            "DESIGN_NAME": top,
            "VERILOG_FILES": [f"dir::{netlist_name}"],
            "CLOCK_PORT": m.get("clock", "clk"),
            "CLOCK_PERIOD": clock_period_ns,
            "MACROS": {r.name: {
                "gds": [f"dir::{placeholder}/{r.name}.gds"],
                "lef": [f"dir::{placeholder}/{r.name}.lef"],
                "vh": ["dir::macros_bb.v"],
                "instances": {p: {"location": None, "orientation": "N"}
                              for p in inst[r.name]}} for r in macros.values()},
            "EXTRA_LEFS": [f"dir::{placeholder}/{r.name}.lef" for r in macros.values()],
            "EXTRA_GDS_FILES": [f"dir::{placeholder}/{r.name}.gds" for r in macros.values()],
        }
        (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if macros:
            (d / placeholder).mkdir()
            (d / placeholder / "README.md").write_text(
                "# To be provided by a ROM compiler\n\nThis directory is a placeholder. "
                "config.json names, for every ROM macro listed in ../MACROS.md, "
                "`<macro>.lef` and `<macro>.gds` here: the macro's abstract and layout, "
                "made by a ROM compiler of the target PDK from its `.hex` image. None of "
                "them exist yet.\n")

        checks = {"yosys_readback": {"status": "ok", "commands": [s for s in script if s],
                                     "yosys": version, "cells": readback_cells,
                                     "note": "cells as read back: word-level $and/$or/$mux/"
                                             "$dff... again, one per gate or flip-flop"}}
        sim_srcs = [netlist_name] + (["rom_models.v", f"{ROM_PRIMITIVE_NAME}.v"]
                                     if macros else [])
        if lint:
            venv = Path(sys.executable).parent / "verilator"
            checks["verilator_lint"] = _tool_check(
                [str(venv) if venv.exists() else "verilator", "--lint-only", "-Wno-fatal",
                 "-Wno-lint", "-Wno-style", "--top-module", top,
                 *sim_srcs], d, timeout)
            size = (d / netlist_name).stat().st_size
            if size <= ICARUS_MAX_BYTES:
                checks["icarus_compile"] = _tool_check(
                    ["iverilog", "-o", "/dev/null", "-s", top, *sim_srcs], d, timeout)
            else:
                checks["icarus_compile"] = {
                    "status": "skipped", "note": f"netlist of {size / 1e6:.1f} MB, above "
                    f"{ICARUS_MAX_BYTES / 1e6:.0f} MB (Icarus took 21 min on the 21.6 MB one of "
                    "the tiny chip); Verilator's lint covers it"}
        check_seconds = {k: v.pop("seconds", None) for k, v in checks.items()}
        manifest = dict(m)
        manifest["sources"] = sim_srcs
        manifest["asic"] = {
            "netlist": netlist_name,
            "synthesis": {"yosys": version, "runner": runner, "gates": gates,
                          "per_module": True, "flatten": False,
                          "script": rep.data["flow"]["yosys_script"]},
            "stats": stats,
            "ram": {"bits": m.get("ram_bits"), "mapped_to": "flip-flops (no RAM macro)"},
            "macros": rows,
            "rom_bits": sum(r.bits for r in macros.values()),
            "clock_gating": gating,
            "clock_period_ns": clock_period_ns,
            "clock_period_note": "a target for LibreLane, not a measured figure",
            "checks": checks,
            "config": "config.json",
            "to_be_provided": [f"{placeholder}/{r.name}.{ext}" for r in macros.values()
                               for ext in ("lef", "gds")],
        }
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (d / "MACROS.md").write_text(_macros_md(top, rows, gating, stats, config))
        shutil.rmtree(work)
        shutil.rmtree(chk)
    seconds = {"synth": rep.data["seconds"]["total"], "checks": check_seconds,
               "total": round(time.perf_counter() - t0, 1)}
    if log:
        log(_asic_summary(out, manifest, seconds))
    return manifest | {"seconds": seconds}


def _macros_md(top: str, rows: list[dict], gating: list[dict], stats: dict,
               config: dict) -> str:
    lines = [f"# ROM macros of {top}", "",
             "Each ROM is a synchronous mask ROM: `data` shows word `addr` after a rising "
             "edge of `clk` with `en` high, and holds while `en` is low. A ROM compiler of the "
             "target PDK makes one macro per image (the `.hex` file: one word per line, "
             "`ceil(width/4)` hex digits, word 0 first) and provides its LEF and GDS under "
             "`rom_compiler_output/` (named in config.json; not provided here).", "",
             "| macro | depth | width | bits | image | instances |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['depth']} | {r['width']} | {r['bits']} | "
                     f"{r['image']} | {', '.join(r['instances'])} |")
    lines += ["", f"{len(rows)} macros, {sum(r['bits'] for r in rows)} bits, "
              f"{sum(len(r['instances']) for r in rows)} instances.", ""]
    lines += ["## Clock gating", ""]
    if gating:
        lines.append("Each stage runs on a gated clock, and each lane array's lanes on one "
                     "gated again inside it: an enable caught on the falling edge of the "
                     "clock, ANDed with it. That is where integrated clock-gating cells go:")
        lines.append("")
        for g in gating:
            lines.append(f"- `{g['gated_clock']}` (enable `{g['enable_latch']}`) clocks "
                         f"{', '.join(g['clocks_instances']) or '-'}")
    else:
        lines.append("None: every register is on the clock port.")
    lines += ["", "## Netlist", "",
              f"{stats['cells']} cells ({stats['gates']} gates, {stats['flip_flops']} "
              f"flip-flops) and {stats['macro_instances']} macro instances; "
              f"clock `{config['CLOCK_PORT']}`, period {config['CLOCK_PERIOD']} ns (a target, "
              "not a measured figure).", ""]
    return "\n".join(lines)


def _asic_summary(out: Path, man: dict, seconds: dict) -> str:
    a = man["asic"]
    s = a["stats"]
    chk = ", ".join(f"{k} {v['status']}" + (f" ({seconds['checks'][k]:.0f} s)"
                                            if seconds["checks"].get(k) is not None else "")
                    for k, v in a["checks"].items())
    return (f"asic: {out}/{a['netlist']}: {s['cells']} cells ({s['gates']} gates, "
            f"{s['flip_flops']} flip-flops), {s['macro_instances']} ROM macro instances of "
            f"{len(a['macros'])} macros ({a['rom_bits']} bits), {len(a['clock_gating'])} "
            f"clock-gating points; checks: {chk}; synthesis {seconds['synth']:.0f} s, total "
            f"{seconds['total']:.0f} s")


# --------------------------------------------------------------------------------------------
# make synth

#: ``make synth``: (target, DSPs, seconds per yosys run). Without DSPs (iCE40 HX8K has none)
#: yosys spends up to 15 minutes on the attention unit's multipliers, while the ECP5 chip is
#: placed and routed beside it; should it time out, the iCE40 totals are a lower bound, which
#: is still far beyond any iCE40.
FPGA_RUNS = (("ecp5", True, 1200.0), ("ice40", False, 900.0))


def fpga_flow(out: str | Path, *, runs: Sequence[tuple[str, bool, float]] = FPGA_RUNS,
              pnr_timeout: float = 2400.0, jobs: int | None = None, log=print) -> dict:
    """Generate :data:`BOARD_CHIP` under ``out`` and run :func:`synth_chip` for each
    (target, DSPs, yosys timeout) of ``runs``, at the same time (nextpnr is single-threaded:
    one target's yosys runs beside the other's place-and-route); write ``out/summary.json``
    and ``out/summary.md``."""
    from concurrent.futures import ThreadPoolExecutor

    from .chip import generate_chip
    from .synth import _kill_live

    t0 = time.perf_counter()
    out = Path(out)
    design = out / "tiny_chip"
    cfg = dict(BOARD_CHIP)
    model = cfg.pop("model")
    generate_chip(model, design, log=log, **cfg)
    t_gen = time.perf_counter() - t0

    def one(target: str, dsp: bool, timeout: float) -> dict:
        t1 = time.perf_counter()
        rep = synth_chip(design, target, dsp=dsp, timeout=timeout, pnr_timeout=pnr_timeout,
                         jobs=jobs, log=log)
        log(rep.table())
        key = f"{target}{'_dsp' if dsp else ''}"
        shutil.copyfile(rep.path, out / f"report_{key}.json")
        return {"report": f"report_{key}.json", "target": target, "dsp": dsp,
                "stats": rep.data["stats"], "complete": rep.data["complete"],
                "missing": rep.data["missing"], "pnr_status": rep.data["pnr_status"],
                "fmax_mhz": rep.data["fmax_mhz"], "fmax_note": rep.data["fmax_note"],
                "pnr": rep.data.get("pnr"), "seconds": round(time.perf_counter() - t1, 1),
                "tool_seconds": rep.data["seconds"]}

    pool = ThreadPoolExecutor(max_workers=len(runs))
    try:
        futures = [pool.submit(one, *run) for run in runs]
        results = {f"{r['target']}{'_dsp' if r['dsp'] else ''}": r
                   for r in (f.result() for f in futures)}
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_live()
        raise
    finally:
        pool.shutdown(wait=True)
    summary = {"chip": BOARD_CHIP, "design": str(design), "results": results,
               "seconds": {"generate": round(t_gen, 1),
                           "total": round(time.perf_counter() - t0, 1)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = _summary_md(summary)
    (out / "summary.md").write_text(md)
    log(md)
    return summary


def _summary_md(s: dict) -> str:
    c = s["chip"]
    lines = [f"# {c['model']} chip on FPGAs", "",
             f"The whole {c['model']} model (every layer, ROM and KV cache) with {c['lanes']} "
             f"lane per layer, {c['head_lanes']} LM-head lane, beat {c['beat']}, ctx "
             f"{c['ctx']}, no clock gating; yosys per module, nextpnr on the joined netlist "
             "in a shift-register harness.", "",
             "| target | synthesis (whole chip) | placed | device | Fmax | nextpnr use | "
             "time |", "|---|---|---|---|---|---|---|"]
    for key, r in s["results"].items():
        st = r["stats"]
        logic = (f"{st.get('lut4_equiv')} LUT4-eq" if r["target"] == "ecp5"
                 else f"{st.get('LUT4')} LUT4")
        syn = f"{logic}, {st.get('FF')} FF, {st.get('BRAM')} BRAM, {st.get('DSP')} DSP"
        if not r["complete"]:
            syn = f"at least {syn} (not synthesised: {', '.join(r['missing'])})"
        p = r["pnr"] or {}
        placed = ("whole chip" if p.get("whole_design") else
                  (f"{p['placed']} (+ all under it)" if p.get("placed") else "-"))
        fmax = f"{p['fmax_mhz']:.1f} MHz" if p.get("fmax_mhz") else f"- ({r['fmax_note']})"
        util = ", ".join(f"{k} {v['used']}/{v['available']}"
                         for k, v in (p.get("utilisation") or {}).items()
                         if not k.endswith("IO") and "IOB" not in k and "PIO" not in k)
        lines.append(f"| {key} | {syn} | {placed} | {p.get('device') or '-'} | {fmax} | "
                     f"{util or '-'} | {r['seconds']:.0f} s |")
    lines.append("")
    for key, r in s["results"].items():
        for f in (r["pnr"] or {}).get("fit", []):
            res = ", ".join(f"{k} {v['used']}/{v['available']}"
                            for k, v in f["resources"].items())
            low = (" (a lower bound: " + ", ".join(f["missing"]) + " not synthesised)"
                   if f.get("lower_bound") else "")
            lines.append(f"- {key}: whole chip vs {f['device']}: {res}{low} -> "
                         f"{'fits' if f['fits'] else 'does not fit'}")
    lines += ["", f"Total {s['seconds']['total']:.0f} s (generation "
              f"{s['seconds']['generate']:.0f} s).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m gen.flow", description="make synth: the "
                                "smallest chip of the tiny model through yosys and nextpnr on "
                                "ECP5 (with DSPs) and iCE40")
    p.add_argument("--out", type=Path, default=Path("build/synth"))
    p.add_argument("--pnr-timeout", type=float, default=2400, help="seconds per nextpnr run")
    p.add_argument("--jobs", type=int)
    a = p.parse_args(argv)
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        fpga_flow(a.out, pnr_timeout=a.pnr_timeout, jobs=a.jobs)
    except UserError as e:
        print(f"hardwire: error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
