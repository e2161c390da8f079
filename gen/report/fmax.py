"""The Fmax of ``hardwire report``: one module placed alone by nextpnr (cached), what
``hardwire synth`` placed, or the built-in figure of a like module."""

import json
import time
from pathlib import Path

from .. import design as _design
from ..errors import UserError
from .calibration import CALIBRATION_FMAX, builtin_fmax

__all__ = ["fmax_module", "choose_fmax"]


def fmax_module(m: dict, plan, choice: str | None) -> str:
    names = [p.name for p in plan]
    if choice is not None:
        if choice not in names:
            raise UserError(f"--fmax-module {choice!r} is not a module of the design; the "
                            f"modules are {', '.join(names)}")
        return choice
    # The datapath every weight goes through: a lane of the first decoder layer.
    first = next((p for p in plan if p.role == "lane array" and p.name != "chip_head_engine"),
                 None)
    if first is not None and first.boxes:
        return first.boxes[0]
    lanes = [p.name for p in plan if p.role == "lane"]
    if not lanes:
        raise UserError("the design has no lane module to place; choose one with --fmax-module")
    return lanes[0]


def _pnr_dir(design: Path, target: str, module: str, dsp: bool) -> Path:
    return _design.synth_dir(design, target) / f"pnr_{module}{'_dsp' if dsp else ''}"


def _run_pnr(design: Path, plan, module: str, target: str, dsp: bool, timeout: float,
             log) -> dict:
    """Place and route ``module`` alone in the shift-register harness; cache the result."""
    from ..synth import WrapPorts, module_ports, pnr_verilog, split_verilog

    design = design.resolve()  # the tools run in other directories
    part = next(p for p in plan if p.name == module)
    if part.boxes:
        raise UserError(f"module {module} instantiates other separately synthesised modules "
                        f"({', '.join(part.boxes)}); choose a leaf module to place")
    vmods = split_verilog(_design.Design.open(design).source_texts())
    wd = _pnr_dir(design, target, module, dsp)
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / f"{module}.v"
    src.write_text("".join(vmods[n].text.rstrip("\n") + "\n\n" for n in part.body))
    ports = module_ports([src], module, wd, cwd=design)
    clock = "clk" if "clk" in ports else None
    reset = "rst" if "rst" in ports else None
    wrap = WrapPorts.from_module_ports(ports, clock=clock, reset=reset)
    log(f"report: placing and routing {module} alone on {target} (nextpnr) ...")
    if dsp:
        raise UserError("place-and-route with DSPs is not supported by 'hardwire report'")
    res = pnr_verilog([src], module, wrap, target, wd, cwd=design, timeout=timeout)
    pnr = res["pnr"]
    out = {"module": module, "target": target, "dsp": dsp, "fmax_mhz": pnr["fmax_mhz"],
           "device": pnr["device"], "nextpnr": pnr["nextpnr"], "args": pnr["args"],
           "utilisation": pnr["utilisation"], "module_stats": res["synth"]["stats"],
           "seconds": {"synth": res["synth"]["seconds"], "pnr": pnr["seconds"]}}
    (wd / "result.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return out


def _flow_pnr(design: Path, target: str, dsp: bool) -> dict | None:
    """The place-and-route result ``hardwire synth`` (:func:`gen.flow.synth_chip`) left in
    ``synth_<target>/report.json``, when it placed something with these options."""
    try:
        r = json.loads((_design.synth_dir(design, target) / "report.json").read_text())
        p = r.get("pnr") or {}
        if p.get("placed") and p.get("fmax_mhz") and r["flow"]["dsp"] == dsp:
            return p | {"nextpnr": r["tools"]["nextpnr"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _cached_pnr(design: Path, target: str, module: str, dsp: bool) -> dict | None:
    path = _pnr_dir(design, target, module, dsp) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def choose_fmax(d: "_design.Design", plan, choice: str | None, target: str, dsp: bool,
                synth: bool, timeout: float, log, times: dict) -> dict:
    """The ``speed.fmax`` part of the report: ``hardwire synth``'s own placement of the chip
    (or of its largest module that fits), else the Fmax module placed alone (cached, or
    placed now with ``synth``), else the built-in figure for a lane of its kind. ``times``
    gains the place-and-route time."""
    design, m = d.path, d.manifest
    fmod = fmax_module(m, plan, choice)
    pnr_target = "ecp5" if target == "generic" else target
    res = _cached_pnr(design, pnr_target, fmod, dsp)
    if res is None and synth:
        t = time.perf_counter()
        try:
            res = _run_pnr(design, plan, fmod, pnr_target, dsp, timeout, log)
        except UserError as e:
            log(f"report: place-and-route failed: {e}")
        times["nextpnr"] = time.perf_counter() - t
    flow = _flow_pnr(design, pnr_target, dsp) if choice is None else None
    if flow is not None:
        # 'hardwire synth' (gen.synth.chip) placed the whole chip, or its largest module
        # that fits.
        whole = flow["whole_design"]
        fmax = {"mhz": flow["fmax_mhz"], "module": flow["placed"],
                "role": "whole chip" if whole else next(
                    (p.role for p in plan if p.name == flow["placed"]), "module"),
                "method": "nextpnr", "device": flow["device"], "nextpnr": flow["nextpnr"],
                "module_stats": flow.get("stats"),
                "note": ("the whole chip placed and routed by 'hardwire synth'" if whole else
                         "the largest module that fits, placed alone by 'hardwire synth'; the "
                         "whole chip is not placed, and its Fmax is at most this")}
    elif res is not None and res.get("fmax_mhz"):
        role = next(p.role for p in plan if p.name == fmod)
        fmax = {"mhz": res["fmax_mhz"], "module": fmod, "role": role, "method": "nextpnr",
                "device": res["device"], "nextpnr": res["nextpnr"],
                "module_stats": res.get("module_stats"),
                "note": "this module alone in a shift-register harness (every port on a "
                        "register), placed and routed with nextpnr; the whole chip is not "
                        "placed, and its Fmax is at most this"}
        times.setdefault("nextpnr (earlier run)", res.get("seconds", {}).get("pnr"))
    elif pnr_target == "ecp5" and not dsp and \
            (mhz := builtin_fmax(d.module(fmod).cls, m.get("lane_stages", 0))):
        # built in for lanes (per kind and pipeline depth)
        c = CALIBRATION_FMAX
        fmax = {"mhz": mhz, "module": fmod,
                "role": next(p.role for p in plan if p.name == fmod),
                "method": f"calibrated: built-in, {c['module']} placed alone",
                "device": c["device"],
                "note": "this design's module has not been placed ('hardwire report DIR "
                        "--synth' does it); the figure is the built-in one of a like module"}
    else:
        fmax = {"mhz": None, "module": fmod, "method": None,
                "note": "not placed yet: run 'hardwire report DIR --synth' (nextpnr)"}
    return fmax
