"""``hardwire report``: what a chip (or layer) design costs and what it delivers.

``DIR/report.json`` (``hardwire-report/1``) has four parts:

- ``area`` (:mod:`.area`): ROM and RAM bits (from the manifest), lanes, and the logic of every
  separately emitted module. A module's figures come from yosys when ``hardwire synth`` (or
  ``hardwire report --synth``) has synthesised it (the estimate kept in the manifest), and
  are otherwise *calibrated* (:mod:`.calibration`): LUT4-equivalents per unit of the
  module's size driver (its beat, its lanes, ...), measured on synthesised modules of the same
  kind, this design's own when it has them, else the built-in :data:`CALIBRATION` from the
  tiny chip. Each figure says which.
- ``speed`` (:mod:`.speed`, :mod:`.fmax`): cycles per token (the units' formulas from the
  manifest, the ideal, and the testbench's measurement when ``hardwire sim`` has run), the
  Fmax nextpnr reports for one representative module placed alone (the whole chip is not
  placed), and tokens/s at it.
- ``weight_error`` (:mod:`.weights`): each ``--quant`` format's error against the float
  weights, for float checkpoints (:func:`gen.weight_error.weight_errors`); a GGUF file or
  ``tiny`` holds quantised weights only, and the report says so and lists their formats.
- ``sweep`` (``--sweep``, :mod:`.sweep`): lanes per layer x LM-head lanes x strategy, each
  point's cycles per token from the hardware classes' own formulas, calibrated area and
  tokens/s, the Pareto front, and ``DIR/pareto.png`` (:mod:`.plot`).

Determinism: report.json holds no wall times and no absolute paths, so the same design and
tools give the same bytes. Run times are printed, and kept in the tools' own files
(``synth_<target>/report.json``, ``synth_<target>/pnr_<module>/result.json``).
"""

import json
import time
from pathlib import Path

from ..design import MOE_PLOT, PARETO, REPORT, Design, synth_dir
from ..errors import UserError
from ..output import atomic_file
from .area import area as area_part
from .calibration import CALIBRATION, fit_calibration, lane_bits
from .fmax import choose_fmax
from .moe import moe_part
from .plot import moe_plot, plot
from .speed import speed as speed_part
from .sweep import STRATEGIES, design_lane_bits, pareto_front, sweep_points
from .table import table
from .weights import model_for, weight_error

__all__ = ["CALIBRATION", "FORMAT", "STRATEGIES", "fit_calibration", "lane_bits",
           "make_report", "pareto_front", "sweep_points"]

FORMAT = "hardwire-report/1"


def _load(design: Path) -> Design:
    d = Design.open(design, make="'hardwire chip' or 'hardwire layer'")
    if d.manifest.get("kind") not in ("chip", "layer"):
        kind = d.manifest.get("kind")
        raise UserError(f"{design} holds a {kind or 'matvec'} design; 'hardwire report' takes "
                        "a chip or layer design ('hardwire synth' reports a matvec design)")
    d.require("top", "sources", "config", "format_int", "lanes", "beat", "rom_bits",
              "ram_bits", "cycles", "ctx")
    for src in d.manifest["sources"]:
        if not (design / src).is_file():
            raise UserError(f"{design}: source {src} named in manifest.json is missing")
    return d


def _check(target: str, dsp: bool, timeout: float, model, quant) -> None:
    from ..synth import check_target, check_timeout

    check_target(target)
    if dsp and target == "generic":
        raise UserError("the generic target has no DSP blocks")
    check_timeout(timeout, "--timeout")
    if quant is not None and model is None:
        raise UserError("--quant goes with --model")


def _synthesise(d: Design, target: str, dsp: bool, timeout: float, jobs, log,
                times: dict) -> Design:
    """Per-module yosys when the manifest has no estimate for ``target`` yet."""
    from ..synth import synth_layer

    key = f"{target}{'_dsp' if dsp else ''}"
    if key in d.manifest.get("yosys", {}):
        return d
    log(f"report: synthesising {d.path} per module with yosys ({key}, at most "
        f"{timeout:g} s per module) ...")
    t = time.perf_counter()
    rep = synth_layer(d.path, target, timeout=timeout, jobs=jobs, dsp=dsp)
    times["yosys"] = time.perf_counter() - t
    bad = [e["module"] for e in rep.data["modules"] if e["status"] != "ok"]
    if bad:
        log(f"report: not synthesised (calibrated instead): {', '.join(bad)}")
    return _load(d.path)


def _lane_logic(area: dict) -> float | None:
    """One decoder-layer lane's logic (the largest lane module's, per instance)."""
    lanes = [r["per_instance"]["logic"] for r in area["modules"]
             if r["kind"] in ("BlockLane", "ParallelLane") and r["per_instance"]]
    return max(lanes) if lanes else None


def make_report(design, *, target: str = "ecp5", dsp: bool = False, synth: bool = False,
                timeout: float = 900.0, jobs: int | None = None, fmax_module: str | None = None,
                sweep: bool = False, model: str | None = None, quant: str | None = None,
                lanes: list[int] | None = None, head_lanes: list[int] | None = None,
                log=print) -> tuple[dict, str]:
    """Write ``DESIGN/report.json`` (and with ``sweep`` ``DESIGN/pareto.png``); return the
    report and its text table.

    ``synth``: synthesise with yosys per module (:func:`gen.synth.synth_layer`, ``timeout``
    seconds per module, ``jobs`` at once) when the manifest has no estimate for ``target``
    yet, and place and route the Fmax module when no result is cached. Without it, what
    earlier runs left is used, and the rest is calibrated.
    """
    from ..synth.modules import design_plan

    t0 = time.perf_counter()
    log = log or (lambda s: None)
    design = Path(design)
    _check(target, dsp, timeout, model, quant)
    d = _load(design)
    m = d.manifest
    if sweep and m["kind"] != "chip":
        raise UserError("--sweep needs a chip design ('hardwire chip')")
    if sweep and "moe" in m:
        raise UserError("--sweep takes a dense chip; a mixture of experts' report compares "
                        "its datapaths (per-expert lanes, dense of equal ROM) without it")
    times = {}
    if synth:
        d = _synthesise(d, target, dsp, timeout, jobs, log, times)
        m = d.manifest
    vmods, plan = design_plan(d)
    area = area_part(d, vmods, plan, target, dsp)
    fmax = choose_fmax(d, plan, fmax_module, target, dsp, synth, timeout, log, times)
    if "yosys" not in times and area["yosys"] is not None:
        earlier = d.read_json(f"{synth_dir(design, target).name}/{REPORT}")
        try:
            times["yosys (earlier run)"] = earlier["seconds"]["total"]
        except (KeyError, TypeError):
            pass
    mdl = model_for(m, model, quant) if (sweep or m["kind"] == "chip" or model) else None
    data = {
        "format": FORMAT,
        "kind": m["kind"],
        "design": design.resolve().name,
        "model": m.get("model"),
        "config": m["config"],
        "ctx": m["ctx"],
        "area": area,
        "speed": speed_part(design, m, fmax),
        "weight_error": weight_error(m, mdl, model),
        "sweep": None,
        "moe": moe_part(m, mdl, _lane_logic(area)),
    }
    if sweep:
        if mdl is None:
            raise UserError(f"--sweep needs the model: give --model FILE (the design was made "
                            f"from {m.get('model')})")
        t = time.perf_counter()
        data["sweep"] = sweep_points(m, mdl, area["calibration"], fmax["mhz"],
                                     design_lane_bits(area, plan), lanes=lanes,
                                     head_lanes=head_lanes)
        data["sweep"]["logic_unit"] = area["logic_unit"]
        times["sweep"] = time.perf_counter() - t
        plot(data["sweep"], m, design / PARETO)
    if data["moe"] is not None:
        moe_plot(data["moe"], m, design / MOE_PLOT)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    with atomic_file(design / REPORT, "report") as f:
        f.write(text.encode())
    times["total"] = time.perf_counter() - t0
    return data, table(data, design, times)
