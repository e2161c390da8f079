"""Per-module synthesis of a layer or chip design: each separately emitted module in its own
yosys run, the modules it instantiates as black boxes, totals weighted by instances."""

import fnmatch
import json
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..design import Design, replace_file, synth_dir
from ..errors import UserError
from .devices import BRAM_BITS
from .netlist import LayerModule, VerilogModule, plan_layer, split_verilog
from .tables import SynthReport
from .tools import (
    SynthError,
    SynthTimeout,
    check_target,
    check_timeout,
    default_jobs,
    memory_limit,
    parallel_map,
    rel,
    yosys_command,
)
from .yosys import IGNORED, summarise, synth_verilog

__all__ = ["LAYER_MAX_READ_PORTS", "synth_layer", "manifest_estimate", "design_plan"]


_LAYER_PNR_NOTE = ("no place-and-route for layer designs: they are synthesised per module, "
                   "and a whole layer is far too large to place in reasonable time")


#: Memories with more read ports than this become logic before block-RAM mapping (see
#: :func:`yosys_script`); 7 still maps to 7 DP16KD in a second.
LAYER_MAX_READ_PORTS = 7

def _synth_one(part: LayerModule, modules: Mapping[str, VerilogModule], target: str,
               design: Path, workdir: Path, timeout: float, dsp: bool,
               memory_limit: int | None, netlists: Sequence[str] = (),
               lib: Sequence[Path] = (), gates: str = "2-input") -> dict:
    """Synthesise one module of a layer plan; never raises for a tool failure.
    ``netlists``: also write ``<module>.json`` and/or ``<module>.v`` (``json``,
    ``verilog``); ``lib``: more black boxes for every module (counted under ``macros``)."""
    wd = workdir / part.name
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / f"{part.name}.v"
    src.write_text("".join(modules[n].text.rstrip("\n") + "\n\n" for n in part.body))
    extra = list(lib)
    lib = []
    if part.boxes:
        lib = [wd / f"{part.name}_blackboxes.v"]
        lib[0].write_text("".join(modules[n].blackbox_text() + "\n" for n in part.boxes))
    out = {k: wd / f"{part.name}.{ext}" for k, ext in (("json", "json"), ("verilog", "v"))
           if k in netlists}
    if "verilog" in out:
        out["verilog"] = wd / f"{part.name}_netlist.v"  # not the source beside it
    entry = {"module": part.name, "role": part.role, "instances": part.instances,
             "blackboxes": {b: 0 for b in part.boxes}, "status": "ok", "note": None,
             "stats": None, "cells": None, "seconds": None,
             "log": rel(wd / "synth.log", design)}
    t0 = time.perf_counter()
    try:
        syn = synth_verilog([src], part.name, target, wd, cwd=design, timeout=timeout,
                            lib=lib + extra, dsp=dsp, max_read_ports=LAYER_MAX_READ_PORTS,
                            abc9_verify=False, memory_limit=memory_limit,
                            netlist=out.get("json"), verilog=out.get("verilog"), gates=gates)
    except SynthTimeout:
        entry.update(status="timeout", note=f"timed out after {timeout:g} s; not counted",
                     seconds=round(time.perf_counter() - t0, 3))
        return entry
    except SynthError as e:
        entry.update(status="failed", note=f"synthesis failed: {e}",
                     seconds=round(time.perf_counter() - t0, 3))
        return entry
    entry.update(stats=syn["stats"], cells=syn["cells"], seconds=syn["seconds"],
                 blackboxes={b: syn["blackboxes"].get(b, 0) for b in part.boxes},
                 yosys=syn["yosys"], runner=syn["runner"], script=syn["script"])
    if extra:
        entry["macros"] = {b: n for b, n in syn["blackboxes"].items() if b not in part.boxes}
    if out:
        entry["netlist"] = {k: rel(v, design) for k, v in out.items()}
    parts = _breakdown(syn["modules"], part.name, target,
                       exclude=[*part.boxes, *entry.get("macros", ())])
    if len(parts) > 1:
        entry["parts"] = parts
    return entry


def _breakdown(modules: Mapping[str, Mapping[str, int]], top: str, target: str,
               exclude: Sequence[str] = ()) -> dict:
    """Where a module's cells are: its own and its submodules' cells, submodules grouped by
    name with the numbers dropped (``layer_engine.code*``; every parameterisation of a
    module is one group), each with its instances under ``top``. ``exclude``: black-box
    cell types, not counted."""
    count = {top: 1}
    order, seen = [], set()

    def visit(name: str, depth: int = 0):
        if name in seen or depth > 100:
            return
        seen.add(name)
        for t in modules[name]:
            if t in modules:
                visit(t, depth + 1)
        order.append(name)

    visit(top)
    for name in reversed(order):
        for t, n in modules[name].items():
            if t in modules:
                count[t] = count.get(t, 0) + count[name] * n
    groups: dict[str, tuple[int, dict[str, int]]] = {}
    for name in order:
        base = name.rsplit("\\", 1)[-1] if name.startswith("$paramod") else name
        group = re.sub(r"\d+$", "*", base) if name != top else name
        n, cells = groups.get(group, (0, {}))
        for t, k in modules[name].items():
            if t not in modules and t not in IGNORED and t not in exclude:
                cells[t] = cells.get(t, 0) + count[name] * k
        groups[group] = (n + count[name], cells)
    return {g: {"instances": n, **summarise(cells, target)}
            for g, (n, cells) in sorted(groups.items())}


def manifest_estimate(report: Mapping) -> dict:
    """The part of a layer synthesis report that goes into the design's manifest: the
    instance-weighted totals, each module's figures times its instances, and whether every
    module was synthesised. Deterministic (no times, no paths)."""
    return {
        "target": report["target"],
        "dsp": report["flow"]["dsp"],
        "yosys": report["tools"]["yosys"],
        "method": "yosys per module, hierarchy kept, totals weighted by instances",
        "complete": report["complete"],
        "missing": report["missing"],
        "totals": report["stats"],
        "by_module": {  # summed over the module's instances; None when not synthesised
            e["module"]: ({k: e["instances"] * v for k, v in e["stats"].items()}
                          if e["status"] == "ok" else None)
            for e in report["modules"]},
    }


def design_plan(design: Design) -> tuple[dict[str, VerilogModule], list[LayerModule]]:
    """A design's Verilog modules and its per-module synthesis plan, the roles from the
    manifest."""
    vmods = split_verilog(design.source_texts())
    return vmods, plan_layer(vmods, design.top, role=lambda n: design.module(n).role)


def _choose(plan: list[LayerModule], modules: Sequence[str] | None) -> list[LayerModule]:
    if modules is None:
        return plan
    patterns = [p for p in modules if p]
    chosen = [p for p in plan if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]
    if not chosen:
        raise UserError(f"no module matches {', '.join(patterns) or 'nothing'}; the modules "
                        f"are {', '.join(p.name for p in plan)}")
    return chosen


def _skipped(p: LayerModule) -> dict:
    return {"module": p.name, "role": p.role, "instances": p.instances,
            "blackboxes": dict.fromkeys(p.boxes, 0), "status": "skipped",
            "note": "skipped: not chosen (--modules)", "stats": None,
            "cells": None, "seconds": None, "log": None}


def synth_layer(design: str | Path, target: str = "ecp5", *, timeout: float = 1800.0,
                pnr: bool = False, jobs: int | None = None,
                modules: Sequence[str] | None = None, dsp: bool = False,
                netlists: Sequence[str] = (), lib: Sequence[str | Path] = (),
                gates: str = "2-input"):
    """Synthesise a ``hardwire layer`` (or ``hardwire chip``) design directory per module.

    Each separately emitted module (see :func:`gen.synth.netlist.plan_layer`) is synthesised
    once, in its own yosys process with its own ``timeout``, with the hierarchy kept and the
    modules it instantiates as black boxes: the units, the lane datapath (counted once per
    lane), the lane array without its lanes, and the top's stream glue without the units. The
    whole layer is never flattened, so a big layer is as many moderate runs. yosys runs in the
    design directory, where the ``$readmemh`` images are; ROMs and RAMs map to block RAM
    where yosys infers it.

    The flow is :func:`gen.synth.yosys.yosys_script`'s, with ``-nodsp`` unless ``dsp`` (the
    units' multipliers then go to DSP blocks), memories of more than
    :data:`LAYER_MAX_READ_PORTS` read ports mapped to logic, and without ABC9's
    self-check (``abc9_verify``). Each yosys process may use
    80 % of the memory divided by ``jobs``; past that it fails with a note.

    ``jobs`` yosys processes run at once (default: the CPUs, at most 8). ``modules`` are
    ``fnmatch`` patterns; other modules are reported as skipped. A module that times out or
    fails is reported with a note, and the totals are then marked incomplete.

    There is no place-and-route (``pnr`` only changes the note). The report goes to
    ``DESIGN/report.json`` (not for a chip, where that name is ``hardwire report``'s) and
    ``DESIGN/synth_<target>/report.json``. The manifest gains the
    estimate under ``yosys`` (keyed by target and DSP use; see :func:`manifest_estimate`), so
    that it reports the area next to the cycles; it holds no times or paths, so it stays
    byte-identical for the same design and yosys.

    ``netlists`` (``json``, ``verilog``) keeps each module's synthesised netlist, named in
    its entry under ``netlist`` (:mod:`gen.synth.chip` joins them for place-and-route and for
    the ASIC hand-off). ``lib``: Verilog files of further black boxes (macros) for every
    module; each entry counts their instances under ``macros``. ``gates``: the generic
    target's mapping (:func:`gen.synth.yosys.yosys_script`).
    """
    t0 = time.perf_counter()
    design = Path(design).resolve()
    check_target(target)
    check_timeout(timeout)
    if jobs is not None and jobs < 1:
        raise UserError(f"jobs must be at least 1, not {jobs}")
    if dsp and target == "generic":
        raise UserError("the generic target has no DSP blocks")
    d = Design.open(design, need_dir=False).check_sources()
    vmods, plan = design_plan(d)
    lib_paths = [Path(p).resolve() for p in lib]
    chosen = _choose(plan, modules)
    runner, _ = yosys_command(design / "x.ys", design)  # fails early when there is no yosys
    workdir = synth_dir(design, target)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    # Largest first, so that the long runs start at once and the short ones fill in.
    queue = sorted(chosen, key=lambda p: sum(len(vmods[n].text) for n in p.body), reverse=True)
    jobs = jobs or default_jobs(len(queue))
    limit = memory_limit(jobs) if runner.startswith("pyosys") else None
    done = parallel_map(_synth_one, [(p, vmods, target, design, workdir, timeout, dsp, limit,
                                      netlists, lib_paths, gates) for p in queue], jobs)
    results = {p.name: r for p, r in zip(queue, done, strict=True)}
    entries = [results[p.name] if p.name in results else _skipped(p) for p in plan]
    flow = {"dsp": dsp, "memory_limit_bytes": limit,
            "gates": gates if target == "generic" else None}
    data = _report(d, entries, target, flow, runner, jobs, timeout, pnr, t0)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    (workdir / "report.json").write_text(text)
    # A chip's DESIGN/report.json is the whole-design report of 'hardwire report'.
    path = workdir / "report.json" if data["kind"] == "chip" else design / "report.json"
    if path != workdir / "report.json":
        replace_file(path, text.encode())
    # runs for other targets may be adding theirs (gen.synth.board)
    d.update(lambda m: _add_estimate(m, f"{target}{'_dsp' if dsp else ''}", data))
    return SynthReport(data, path)


def _add_estimate(m: dict, key: str, data: dict) -> None:
    m.setdefault("yosys", {})[key] = manifest_estimate(data)
    m["yosys"] = dict(sorted(m["yosys"].items()))


def _report(d: Design, entries: list[dict], target: str, flow: dict, runner: str, jobs: int,
            timeout: float, pnr: bool, t0: float) -> dict:
    """The per-module synthesis report (``hardwire-synth/1``) from the modules' entries."""
    m = d.manifest
    ok = [e for e in entries if e["status"] == "ok"]
    total_cells: dict[str, int] = {}
    for e in ok:
        for t, n in e["cells"].items():
            total_cells[t] = total_cells.get(t, 0) + e["instances"] * n
    totals = summarise(total_cells, target)
    missing = [e["module"] for e in entries if e["status"] != "ok"]
    for e in ok:  # the script is the same for every module but for the names
        script = [ln.replace(e["module"], "<module>") for ln in e.pop("script")]
    yosys = ok[0]["yosys"] if ok else None
    for e in ok:
        e.pop("yosys"), e.pop("runner")
    bram = totals.get("BRAM", 0)
    return {
        "format": "hardwire-synth/1",
        "kind": m.get("kind", "layer"),
        "design": str(d.path.resolve()),
        "top": d.top,
        "model": m.get("model"), "layer": m.get("layer"), "lanes": m.get("lanes"),
        "head_lanes": m.get("head_lanes"), "ctx": m.get("ctx"),
        "target": target,
        "flow": {"per_module": True, "flatten": False, "dsp": flow["dsp"],
                 "max_read_ports": LAYER_MAX_READ_PORTS, "abc9_verify": False,
                 "memory_limit_bytes": flow["memory_limit_bytes"],
                 "gates": flow["gates"],
                 "yosys_script": script if ok else None,
                 "note": ("each module synthesised alone with the hierarchy kept; the modules "
                          "it instantiates that are synthesised on their own are black boxes "
                          "(read_verilog -lib); totals weighted by instances")},
        "tools": {"yosys": yosys, "yosys_runner": runner, "nextpnr": None},
        "jobs": jobs,
        "timeout_s": timeout,
        "modules": entries,
        "stats": totals,
        "cells": dict(sorted(total_cells.items())),
        "complete": not missing,
        "missing": missing,
        "memory": {"rom_bits": m.get("rom_bits"), "ram_bits": m.get("ram_bits"),
                   "bram_blocks": bram if target in BRAM_BITS else None,
                   "bram_bits": bram * BRAM_BITS[target] if target in BRAM_BITS else None},
        "fmax_mhz": None,
        "fmax_note": "place-and-route skipped (--no-pnr)" if not pnr else _LAYER_PNR_NOTE,
        "pnr_status": "skipped" if not pnr else "none",
        "pnr": None,
        "cycles": m.get("cycles"),
        "seconds": {"synth": round(sum(e["seconds"] or 0 for e in entries), 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
