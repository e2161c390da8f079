"""``hardwire asic``: the ASIC hand-off of a design directory.

A gate-level netlist from yosys' generic synthesis, each ROM a black-box macro (one per ROM
image: a ROM compiler makes one macro per content), a LibreLane config naming the macros and
their instances, the macros' ports, sizes and images, and the clock-gating points, all checked
by reading the netlist back in yosys, linting it with Verilator and compiling it with Icarus.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from hdl.mask_rom import ROM_PRIMITIVE_NAME

from ..design import MANIFEST, Design, manifest_bytes
from ..errors import UserError
from ..output import atomic_directory, check_output_directory
from .gating import clock_gates, instance_paths
from .macros import PLACEHOLDER, check_macros, find_roms, macros_md, write_macros
from .modules import synth_layer
from .netlist import split_verilog
from .tools import SynthError, run, yosys_command
from .yosys import read_stats

__all__ = ["asic_handoff", "ICARUS_MAX_BYTES"]

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
    check_output_directory(out)
    if not clock_period_ns > 0:
        raise UserError(f"--clock-period must be positive, not {clock_period_ns:g}")
    src = Design.open(design, need_dir=False).require("top", "sources", quoted=True)
    m, top = src.manifest, src.top
    vmods = split_verilog(src.source_texts())
    changed, macros = find_roms(vmods)
    check_macros(design, m, macros)
    runner, _ = yosys_command(design / "x.ys", design)

    netlist_name = f"{top}_netlist.v"
    with atomic_directory(out) as d:
        rtl = "".join((changed.get(n) or vm.text).rstrip("\n") + "\n\n"
                      for n, vm in vmods.items())
        bb = "".join(r.blackbox() + "\n" for r in macros.values())
        (d / "macros_bb.v").write_text("// ROM macros as black boxes: a ROM compiler provides "
                                       "each one (see MACROS.md).\n\n" + bb)
        if log:
            log(f"asic: synthesising {top} per module (yosys generic, gates {gates}) ...")
        rep, netlist = _netlist(d, src, rtl, bool(macros), gates=gates, timeout=timeout,
                                jobs=jobs)
        (d / netlist_name).write_text(netlist)
        readback, net_json = _read_back(d, netlist, netlist_name, top, macros, timeout)
        inst = instance_paths(net_json, top, set(macros))
        gating = clock_gates(net_json, top)
        # The figures of synthesis (the read-back netlist has word-level cells again).
        cells = rep.data["cells"]
        ffs = sum(v for k, v in cells.items() if "DFF" in k or "DLATCH" in k)
        stats = {"cells": sum(cells.values()), "flip_flops": ffs,
                 "gates": sum(cells.values()) - ffs, "by_type": cells,
                 "macro_instances": sum(len(p) for p in inst.values())}
        version = rep.data["tools"]["yosys"]
        readback["yosys"] = version
        rows = write_macros(design, d, macros, inst)
        config = _librelane_config(top, netlist_name, m.get("clock", "clk"), clock_period_ns,
                                   macros, inst)
        (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        sim_srcs = [netlist_name] + (["rom_models.v", f"{ROM_PRIMITIVE_NAME}.v"]
                                     if macros else [])
        checks = {"yosys_readback": readback}
        if lint:
            checks |= _lint(d, top, netlist_name, sim_srcs, timeout)
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
            "to_be_provided": [f"{PLACEHOLDER}/{r.name}.{ext}" for r in macros.values()
                               for ext in ("lef", "gds")],
        }
        (d / MANIFEST).write_bytes(manifest_bytes(manifest, sort=False))
        (d / "MACROS.md").write_text(macros_md(top, rows, gating, stats, config))
    seconds = {"synth": rep.data["seconds"]["total"], "checks": check_seconds,
               "total": round(time.perf_counter() - t0, 1)}
    if log:
        log(_asic_summary(out, manifest, seconds))
    return manifest | {"seconds": seconds}


def _netlist(d: Path, src: Design, rtl: str, macros: bool, *, gates: str, timeout: float,
             jobs: int | None):
    """The design with each ROM a macro instance (``rtl``), synthesised per module in a work
    directory under ``d`` that is removed after; returns the synthesis report and the joined
    gate-level netlist."""
    work = d / "work"
    work.mkdir()
    top = src.top
    (work / f"{top}.v").write_text(rtl)
    # The per-module plan reads the roles of the design's own manifest.
    work_manifest = {"top": top, "sources": [f"{top}.v"],
                     "kind": src.manifest.get("kind", "design")}
    if "modules" in src.manifest:
        work_manifest["modules"] = src.manifest["modules"]
    (work / MANIFEST).write_text(json.dumps(work_manifest))
    rep = synth_layer(work, "generic", timeout=timeout, jobs=jobs, netlists=("verilog",),
                      lib=[d / "macros_bb.v"] if macros else (), gates=gates)
    bad = [e for e in rep.data["modules"] if e["status"] != "ok"]
    if bad:
        raise SynthError(f"synthesis of {bad[0]['module']} {bad[0]['status']}: "
                         f"{bad[0]['note']}")
    netlist = "".join((work / e["netlist"]["verilog"]).read_text() for e in rep.data["modules"])
    split_verilog([netlist])  # no module defined twice
    shutil.rmtree(work)
    return rep, netlist


def _read_back(d: Path, netlist: str, netlist_name: str, top: str, macros: Mapping,
               timeout: float) -> tuple[dict, dict]:
    """Read the netlist back in yosys: hierarchy complete, no driver conflicts or loops.
    The modules on the way from the top to the macros come back as JSON, for the instance
    paths and the gated clocks (the whole netlist as JSON is 25 times its Verilog). Returns
    the check's record and that JSON."""
    nmods = split_verilog([netlist])
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
    _, cmd = yosys_command(chk / "check.ys", chk)
    run(cmd, cwd=chk, log=chk / "check.log", timeout=timeout,
        what=f"yosys (reading back {netlist_name})")
    counts, _, _ = read_stats(chk / "stat.json", chk / "check.log", [top])
    cells = sum(n for t, n in counts[0].items() if t not in macros)
    net_json = json.loads((chk / "netlist.json").read_text())
    shutil.rmtree(chk)
    return {"status": "ok", "commands": [s for s in script if s], "yosys": None,
            "cells": cells, "note": "cells as read back: word-level $and/$or/$mux/"
                                    "$dff... again, one per gate or flip-flop"}, net_json


def _librelane_config(top: str, netlist_name: str, clock: str, period_ns: float,
                      macros: Mapping, inst: Mapping[str, list[str]]) -> dict:
    """LibreLane's ``config.json``: the netlist, the clock, and every macro with its
    instances (their LEF and GDS are placeholders for a ROM compiler's output)."""
    return {
        "meta": {"version": 2, "flow": "Classic"},
        "DESIGN_NAME": top,
        "VERILOG_FILES": [f"dir::{netlist_name}"],
        "CLOCK_PORT": clock,
        "CLOCK_PERIOD": period_ns,
        "MACROS": {r.name: {
            "gds": [f"dir::{PLACEHOLDER}/{r.name}.gds"],
            "lef": [f"dir::{PLACEHOLDER}/{r.name}.lef"],
            "vh": ["dir::macros_bb.v"],
            "instances": {p: {"location": None, "orientation": "N"}
                          for p in inst[r.name]}} for r in macros.values()},
        "EXTRA_LEFS": [f"dir::{PLACEHOLDER}/{r.name}.lef" for r in macros.values()],
        "EXTRA_GDS_FILES": [f"dir::{PLACEHOLDER}/{r.name}.gds" for r in macros.values()],
    }


def _lint(d: Path, top: str, netlist_name: str, sim_srcs: list[str], timeout: float) -> dict:
    """Verilator's lint of the netlist with the ROM models, and Icarus' compile when the
    netlist is small enough."""
    venv = Path(sys.executable).parent / "verilator"
    checks = {"verilator_lint": _tool_check(
        [str(venv) if venv.exists() else "verilator", "--lint-only", "-Wno-fatal",
         "-Wno-lint", "-Wno-style", "--top-module", top, *sim_srcs], d, timeout)}
    size = (d / netlist_name).stat().st_size
    if size <= ICARUS_MAX_BYTES:
        checks["icarus_compile"] = _tool_check(
            ["iverilog", "-o", "/dev/null", "-s", top, *sim_srcs], d, timeout)
    else:
        checks["icarus_compile"] = {
            "status": "skipped", "note": f"netlist of {size / 1e6:.1f} MB, above "
            f"{ICARUS_MAX_BYTES / 1e6:.0f} MB (Icarus took 21 min on the 21.6 MB one of "
            "the tiny chip); Verilator's lint covers it"}
    return checks


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
