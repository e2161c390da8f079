"""``hardwire report``: what a chip (or layer) design costs and what it delivers.

``DIR/report.json`` (``hardwire-report/1``) has four parts:

- ``area``: ROM and RAM bits (from the manifest), lanes, and the logic of every separately
  emitted module. A module's figures come from yosys when ``hardwire synth`` (or
  ``hardwire report --synth``) has synthesised it (the estimate kept in the manifest), and
  are otherwise *calibrated*: LUT4-equivalents per unit of the module's size driver (its beat,
  its lanes, ...), measured on synthesised modules of the same kind, this design's own when it
  has them, else the built-in :data:`CALIBRATION` from the tiny chip. Each figure says which.
- ``speed``: cycles per token (the units' formulas from the manifest, the ideal, and the
  testbench's measurement when ``hardwire sim`` has run), the Fmax nextpnr reports for one
  representative module placed alone (the whole chip is not placed), and tokens/s at it.
- ``weight_error``: each ``--quant`` format's error against the float weights, for float
  checkpoints (:func:`gen.weight_error.weight_errors`); a GGUF file or ``tiny`` holds
  quantised weights only, and the report says so and lists their formats.
- ``sweep`` (``--sweep``): lanes per layer x LM-head lanes x strategy, each point's cycles
  per token from the hardware classes' own formulas, calibrated area and tokens/s, the
  Pareto front, and ``DIR/pareto.png``.

Determinism: report.json holds no wall times and no absolute paths, so the same design and
tools give the same bytes. Run times are printed, and kept in the tools' own files
(``synth_<target>/report.json``, ``synth_<target>/pnr_<module>/result.json``).
"""

import json
import math
import re
import time
from dataclasses import replace
from pathlib import Path

from .errors import UserError
from .output import atomic_file

__all__ = ["CALIBRATION", "FORMAT", "STRATEGIES", "fit_calibration", "lane_bits",
           "make_report", "module_kind", "pareto_front", "sweep_points"]

FORMAT = "hardwire-report/1"

#: The built-in calibration: each module kind's logic (ECP5 LUT4-equivalents, LUT4 + 2 x
#: CCU2C) and flip-flops as a sum of terms, a constant per unit of a size driver. Fitted by
#: :func:`fit_calibration` to ``hardwire synth build/report/tiny --target ecp5`` (yosys 0.70
#: via pyosys, synth_ecp5 -nodsp, per module, hierarchy kept; all 22 modules, 52 min on 2
#: busy cores) of the tiny chip (``hardwire chip --model tiny``: 32 lanes, 32 LM-head lanes,
#: beat 16, head_dim 16, ctx 16, 16-bit activations). Drivers:
#:
#: - ``lane_bits``: a lane's ``chunk`` input bits (block x activation bits) plus its two
#:   products' bits (``(D + M widths) x activation-sum width``), from its ports;
#: - ``beat``: elements per cycle (vector units, the lane array's rescalers, glue);
#: - ``lanes``: a lane array's lanes (their D/M ROMs, the array's own logic);
#: - ``head_dim``: the attention unit (its dot products are ``head_dim`` wide);
#: - ``1``: the chip's top glue.
#:
#: Checked against SmolLM2-135M layer 0 (16-bit activations, 64 lanes, beat 32, head_dim 64;
#: ``hardwire synth --modules`` on five of its modules): see the README's report section.
CALIBRATION: dict[str, dict[str, tuple[float, float]]] = {
    # kind: {driver: (LUT4-eq, FF) per driver unit}
    "ArgmaxUnit": {"beat": (125.9, 2.812)},
    "AttentionUnit": {"head_dim": (6498.0, 174.4)},
    "BfpUnit": {"beat": (287.5, 51.5)},
    "BlockLane": {"lane_bits": (3.693, 0.06135)},
    "Chip": {"1": (10.0, 9.0)},
    "DecoderLayer": {"beat": (90.44, 99.0)},
    "EmbeddingUnit": {"beat": (427.1, 1.75)},
    "LaneArray": {"beat": (1131.0, 0.0), "lanes": (114.2, 84.07)},
    "ResidualAdd": {"beat": (128.1, 96.12)},
    "RmsNormUnit": {"beat": (3861.0, 190.3)},
    "RopeUnit": {"beat": (3363.0, 74.19)},
    "SwigluUnit": {"beat": (8159.0, 243.9)},
}

#: The built-in Fmax, for a design whose own module has not been placed: nextpnr-ecp5 on the
#: tiny chip's layer-0 lane alone (see :func:`make_report`), LFE5U-25F, seed 1.
CALIBRATION_FMAX = {"mhz": 29.78, "module": "the tiny chip's layer-0 lane (hw_BlockLane)",
                    "device": "ECP5 LFE5U-25F CABGA381"}

#: What the sweep compares. ``per-layer``: every decoder layer has its own datapath (lane
#: array, units, KV cache), clock-gated while the token is elsewhere: what ``hardwire chip``
#: builds. ``shared``: one layer datapath time-multiplexed over the layers, its lanes' ROMs
#: ``n_layers`` times deeper and the norm gains in small ROMs: an analytical estimate only
#: (not built), with the per-layer cycle count (one token is in flight either way).
STRATEGIES = ("per-layer", "shared")

#: The driver terms of each kind (see :data:`CALIBRATION`).
_TERMS = {"BlockLane": ("lane_bits",), "LaneArray": ("beat", "lanes"),
          "AttentionUnit": ("head_dim",), "RmsNormUnit": ("beat",), "BfpUnit": ("beat",),
          "ResidualAdd": ("beat",), "RopeUnit": ("beat",), "SwigluUnit": ("beat",),
          "EmbeddingUnit": ("beat",), "ArgmaxUnit": ("beat",), "DecoderLayer": ("beat",),
          "Chip": ("1",)}


# --------------------------------------------------------------------------------------------
# The design

def _load(design: Path) -> dict:
    if not design.is_dir():
        raise UserError(f"{design} is not a directory")
    path = design / "manifest.json"
    if not path.is_file():
        raise UserError(f"{design} is not a design directory (no manifest.json); make one "
                        "with 'hardwire chip' or 'hardwire layer'")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(m, dict):
        raise UserError(f"cannot read {path}: not a JSON object")
    kind = m.get("kind")
    if kind not in ("chip", "layer"):
        raise UserError(f"{design} holds a {kind or 'matvec'} design; 'hardwire report' takes "
                        "a chip or layer design ('hardwire synth' reports a matvec design)")
    for key in ("top", "sources", "config", "format_int", "lanes", "beat", "rom_bits",
                "ram_bits", "cycles", "ctx"):
        if key not in m:
            raise UserError(f"{path} lacks key '{key}'")
    for src in m["sources"]:
        if not (design / src).is_file():
            raise UserError(f"{design}: source {src} named in manifest.json is missing")
    return m


def module_kind(name: str, top: str, kind: str) -> str:
    """The hardware class a separately emitted module is an instance of (for a top module:
    ``Chip`` or ``DecoderLayer``, its glue)."""
    if name == top:
        return "Chip" if kind == "chip" else "DecoderLayer"
    if name.startswith("hw_"):
        return name.split("_")[1]
    if name.endswith("_lane"):
        return "BlockLane"
    if name.endswith("_engine"):
        return "LaneArray"
    if name.endswith("_layer"):
        return "DecoderLayer"
    return {"chip_embedding": "EmbeddingUnit", "chip_final_norm": "RmsNormUnit",
            "chip_argmax": "ArgmaxUnit"}.get(name, "other")


def _plan(design: Path, m: dict):
    """The design's Verilog modules and its per-module synthesis plan
    (:func:`gen.synth.plan_layer`)."""
    from .synth import plan_layer, split_verilog

    try:
        texts = [(design / s).read_text() for s in m["sources"]]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the sources of {design}: {e}") from None
    vmods = split_verilog(texts)
    return vmods, plan_layer(vmods, m["top"])


_PORT_RE = re.compile(r"^\s*(?:input|output)\s+(?:\[(\d+):0\]\s+)?(\w+)\s*;", re.M)


def lane_bits(vmod, abits: int) -> int:
    """The ``lane_bits`` driver of a lane module: ``chunk`` bits plus ``(D + M widths) x
    activation-sum width`` (without an M input, the sum of 32 activations: abits + 5)."""
    w = {name: int(hi) + 1 if hi else 1 for hi, name in _PORT_RE.findall(vmod.blackbox_text())}
    s = w.get("act_sum", abits + 5)
    return w.get("chunk", 0) + (w.get("d", 0) + w.get("m", 0)) * s


def _drivers(m: dict, vmods, plan) -> dict:
    """Each module's driver values ``{term: value}`` (see :data:`CALIBRATION`); None for a
    module of no known kind."""
    out = {}
    for p in plan:
        k = module_kind(p.name, m["top"], m["kind"])
        if k not in _TERMS:
            out[p.name] = None
            continue
        v = {"beat": m["beat"], "head_dim": m["config"]["head_dim"], "1": 1,
             "lanes": m.get("head_lanes") if p.name == "chip_head_engine" else m["lanes"]}
        if k == "BlockLane":
            v["lane_bits"] = lane_bits(vmods[p.name], m["format_int"]["abits"])
        out[p.name] = {t: v[t] for t in _TERMS[k]}
    return out


def _model(kind: str, drivers: dict) -> tuple[float, float] | None:
    """The built-in (ECP5 LUT4-eq, FF) of a module of ``kind`` with these drivers."""
    terms = CALIBRATION.get(kind)
    if not terms or drivers is None:
        return None
    return (sum(c[0] * drivers[t] for t, c in terms.items()),
            sum(c[1] * drivers[t] for t, c in terms.items()))


def fit_calibration(synth_report: dict, m: dict, vmods, plan) -> dict:
    """The :data:`CALIBRATION` table from a per-module synthesis report
    (``synth_<target>/report.json``) of a chip: per kind, each term's figure per driver unit,
    summed over the kind's modules and instances. A lane array's rescalers (its parts named
    ``*.rescale*``) are its ``beat`` term, the rest its ``lanes`` term; every other kind has
    one term."""
    drivers = _drivers(m, vmods, plan)
    key = METRIC[synth_report["target"]][0]
    acc: dict = {}
    for e in synth_report["modules"]:
        k = module_kind(e["module"], m["top"], m["kind"])
        d = drivers.get(e["module"])
        if e["status"] != "ok" or d is None:
            continue
        n = e["instances"]
        if k == "LaneArray":
            parts = e.get("parts", {})
            resc = [v for g, v in parts.items() if ".rescale" in g]
            r = (sum(v[key] for v in resc), sum(v["FF"] for v in resc))
            split = {"beat": r, "lanes": (e["stats"][key] - r[0], e["stats"]["FF"] - r[1])}
        else:
            (t,) = _TERMS[k]
            split = {t: (e["stats"][key], e["stats"]["FF"])}
        for t, (logic, ff) in split.items():
            a = acc.setdefault(k, {}).setdefault(t, [0, 0, 0])
            a[0] += n * logic
            a[1] += n * ff
            a[2] += n * d[t]
    return {k: {t: (float(f"{lo / x:.4g}"), float(f"{ff / x:.4g}"))
                for t, (lo, ff, x) in sorted(terms.items())}
            for k, terms in sorted(acc.items())}


# --------------------------------------------------------------------------------------------
# Area

#: The logic figure of each target: what the area table, the calibration and the sweep count.
METRIC = {"ecp5": ("lut4_equiv", "LUT4-eq", "LUT4-eq = LUT4 + 2 x CCU2C (ECP5 carry cells)"),
          "ice40": ("LUT4", "SB_LUT4", "iCE40 SB_LUT4 (carry cells apart)"),
          "generic": ("gates", "gates", "2-input gates (yosys abc -g)")}


def _calibration(m: dict, plan, est: dict | None, drivers: dict, target: str,
                 dsp: bool) -> dict:
    """Per kind, the factor on the built-in model (:data:`CALIBRATION`, ECP5 -nodsp): this
    design's synthesised modules of the kind (their figure over the model's) where there
    are any, so that its other modules of the kind, and the sweep, scale from them; else 1
    (ECP5 -nodsp only: the built-in figures are in its units)."""
    key = METRIC[target][0]
    own: dict[str, list] = {}
    if est is not None:
        for p in plan:
            fig = est["by_module"].get(p.name)
            k = module_kind(p.name, m["top"], m["kind"])
            model = _model(k, drivers.get(p.name))
            if fig is None or model is None or not model[0]:
                continue
            a = own.setdefault(k, [0, 0, 0, 0])
            a[0] += fig.get(key, 0)
            a[1] += fig.get("FF", 0)
            a[2] += p.instances * model[0]
            a[3] += p.instances * model[1]
    out = {}
    for k in sorted(CALIBRATION):
        if k in own:
            logic, ff, ml, mf = own[k]
            out[k] = {"logic_factor": float(f"{logic / ml:.4g}"),
                      "FF_factor": float(f"{ff / mf:.4g}") if mf else 1.0,
                      "source": "this design (yosys)"}
        elif target == "ecp5":
            out[k] = {"logic_factor": 1.0, "FF_factor": 1.0,
                      "source": "built-in (tiny chip" + (", -nodsp)" if dsp else ")")}
        out.get(k, {})["terms"] = {t: {"logic_per": c[0], "FF_per": c[1]}
                                   for t, c in CALIBRATION[k].items()}
    return out


def _estimate(cal: dict, kind: str, drivers: dict | None) -> tuple[int, int] | None:
    """A module's calibrated (logic, FF), or None."""
    model = _model(kind, drivers)
    c = cal.get(kind)
    if model is None or c is None:
        return None
    return round(c["logic_factor"] * model[0]), round(c["FF_factor"] * model[1])


def _area(design: Path, m: dict, vmods, plan, target: str, dsp: bool) -> dict:
    key, short, unit = METRIC[target]
    ykey = f"{target}{'_dsp' if dsp else ''}"
    est = m.get("yosys", {}).get(ykey)
    drivers = _drivers(m, vmods, plan)
    cal = _calibration(m, plan, est, drivers, target, dsp)
    rows = []
    tot = {"logic": 0, "FF": 0, "logic_yosys": 0, "logic_calibrated": 0, "BRAM": 0, "DSP": 0}
    unknown = []
    for p in plan:
        k = module_kind(p.name, m["top"], m["kind"])
        d = drivers.get(p.name)
        row = {"module": p.name, "role": p.role, "kind": k, "instances": p.instances,
               "drivers": d, "method": None, "per_instance": None, "total": None}
        fig = est["by_module"].get(p.name) if est else None
        guess = _estimate(cal, k, d)
        if fig is not None:
            total = {"logic": fig.get(key, 0), "FF": fig.get("FF", 0),
                     "BRAM": fig.get("BRAM", 0), "DSP": fig.get("DSP", 0)}
            row.update(method="yosys", total=total,
                       per_instance={s_: v // p.instances for s_, v in total.items()})
            for s_ in ("logic", "FF", "BRAM", "DSP"):
                tot[s_] += total[s_]
            tot["logic_yosys"] += total["logic"]
        elif guess is not None:
            c = cal[k]
            terms = " + ".join(f"{c['terms'][t]['logic_per']:g} x {t} {v}"
                               for t, v in d.items())
            row.update(method=f"calibrated: {c['logic_factor']:g} x ({terms}) {short}, "
                              f"{c['source']}",
                       per_instance={"logic": guess[0], "FF": guess[1]},
                       total={"logic": guess[0] * p.instances, "FF": guess[1] * p.instances})
            tot["logic"] += row["total"]["logic"]
            tot["logic_calibrated"] += row["total"]["logic"]
            tot["FF"] += row["total"]["FF"]
        else:
            row["method"] = "none: not synthesised, and no calibration for this kind"
            unknown.append(p.name)
        rows.append(row)
    mem = {"rom_bits": m["rom_bits"], "ram_bits": m["ram_bits"],
           "rom_bits_by_part": m.get("rom_bits_by_part"),
           "note": "ROM: the lanes' mask ROMs (codes, D, M)"
                   + (" and the embedding table" if m["kind"] == "chip" else "")
                   + "; RAM: the KV caches. yosys maps both to block RAM where it can"}
    return {
        "target": target, "dsp": dsp, "logic_unit": unit, "logic_key": key,
        "yosys": None if est is None else {"key": ykey, "version": est.get("yosys"),
                                           "complete": est.get("complete"),
                                           "missing": est.get("missing")},
        "lanes": m["lanes"], "head_lanes": m.get("head_lanes"), "beat": m["beat"],
        "memory": mem,
        "modules": rows,
        "totals": tot,
        "not_estimated": unknown,
        "calibration": cal,
        "drivers": {"lane_bits": {p.name: d["lane_bits"] for p in plan
                                  if (d := drivers.get(p.name)) and "lane_bits" in d}},
    }


# --------------------------------------------------------------------------------------------
# Synthesis and place-and-route (optional, cached)

def _fmax_module(m: dict, plan, choice: str | None) -> str:
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
    return design / f"synth_{target}" / f"pnr_{module}{'_dsp' if dsp else ''}"


def _run_pnr(design: Path, plan, module: str, target: str, dsp: bool, timeout: float,
             log) -> dict:
    """Place and route ``module`` alone in the shift-register harness; cache the result."""
    from .synth import WrapPorts, module_ports, pnr_verilog, split_verilog

    design = design.resolve()  # the tools run in other directories
    part = next(p for p in plan if p.name == module)
    if part.boxes:
        raise UserError(f"module {module} instantiates other separately synthesised modules "
                        f"({', '.join(part.boxes)}); choose a leaf module to place")
    m = json.loads((design / "manifest.json").read_text())
    vmods = split_verilog([(design / s).read_text() for s in m["sources"]])
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
        d = json.loads((design / f"synth_{target}" / "report.json").read_text())
        p = d.get("pnr") or {}
        if p.get("placed") and p.get("fmax_mhz") and d["flow"]["dsp"] == dsp:
            return p | {"nextpnr": d["tools"]["nextpnr"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _cached_pnr(design: Path, target: str, module: str, dsp: bool) -> dict | None:
    path = _pnr_dir(design, target, module, dsp) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Speed

def _measured(design: Path, kind: str) -> list[int] | None:
    path = design / ("cycles_tokens.json" if kind == "chip" else "cycles_real_tokens.json")
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cycles = got.get("cycles") if isinstance(got, dict) else got
    if not isinstance(cycles, list) or not cycles:
        return None
    return [int(c) for c in cycles]


def _rate(mhz: float | None, cycles: float | None) -> float | None:
    if not mhz or not cycles:
        return None
    return float(f"{mhz * 1e6 / cycles:.6g}")


def _speed(design: Path, m: dict, fmax: dict) -> dict:
    c = m["cycles"]
    units = int(c.get("units_sum_at_last_pos", sum(c["units_at_last_pos"].values())))
    ideal = float(c["ideal_at_last_pos"])
    meas = _measured(design, m["kind"])
    mhz = fmax.get("mhz")
    what = "token" if m["kind"] == "chip" else "token through this layer"
    out = {
        "position": m["ctx"] - 1,
        "cycles_per_token": {
            "units_formula": units, "ideal": ideal,
            "units_at_last_pos": c["units_at_last_pos"],
            "measured": None if meas is None else {
                "per_position": meas, "first": meas[0], "last": meas[-1],
                "mean": float(f"{sum(meas) / len(meas):.6g}"),
                "source": "cycles_tokens.json" if m["kind"] == "chip"
                          else "cycles_real_tokens.json"},
            "note": f"cycles per {what} at the last position (ctx - 1): the sum of the units' "
                    "formulas, the ideal (weight bits over the lanes' throughput plus "
                    "attention), and what the testbench measured ('hardwire sim')",
        },
        "fmax": fmax,
        "tokens_per_s": {
            "units_formula": _rate(mhz, units), "ideal": _rate(mhz, ideal),
            "measured_last": _rate(mhz, meas[-1]) if meas else None,
            "measured_mean": _rate(mhz, sum(meas) / len(meas)) if meas else None,
        },
    }
    return out


# --------------------------------------------------------------------------------------------
# Weight error

def _model_for(m: dict, spec: str | None, quant: str | None):
    """The design's model, or None when it cannot be found (a file not named)."""
    from .models import load_model, smollm2_path

    name = m.get("model")
    if spec is None:
        if name == "tiny":
            spec = "tiny"
        else:
            try:
                if name == smollm2_path().name:
                    spec = "smollm2"
            except UserError:
                pass
    if spec is None:
        return None
    model = load_model(spec, quant or "q4_1")
    if name is not None and model.name != name:
        raise UserError(f"--model {spec} is {model.name}, but the design was made from {name}")
    digest = m.get("weights_digest")
    if digest is not None and m["kind"] == "chip":
        from .chip import chip_digest

        if chip_digest(model) != digest:
            raise UserError(f"--model {spec} (--quant {quant or 'q4_1'}) does not hold the "
                            "weights the design was made from (weights_digest differs)")
    return model


def _weight_error(m: dict, model, spec: str | None) -> dict:
    from .models import QUANTS
    from .weight_error import PROJECTIONS, weight_errors

    if m["kind"] == "layer" and m.get("weight_error") is not None:
        we = m["weight_error"]
        fm = we.get("formats") or {}
        rel = we.get("relative_l2")
        out = {"model": m.get("model"), "source": "manifest (hardwire layer)",
               "computable": rel is not None,
               "formats": {"layers": sorted(set(fm.values())), "per_projection": fm},
               "note": we.get("note")}
        if rel is not None:  # the layer's own format, per projection
            out["per_projection_relative_l2"] = rel
        return out
    if model is None:
        return {"model": m.get("model"), "computable": None, "formats": None,
                "note": "the model file is not known to the report: give --model FILE (and "
                        "--quant) to list its formats and, for a float checkpoint, their error"}
    layers = range(model.cfg.n_layers) if m["kind"] == "chip" else [m.get("layer", 0)]
    fmts = sorted({getattr(model.layer(i), p).source for i in layers for p in PROJECTIONS})
    formats = {"layers": fmts}
    if m["kind"] == "chip":
        formats |= {"embedding": model.embedding().source, "lm_head": model.lm_head().source}
    if model.float_weights(0) is None:
        return {"model": model.name, "computable": False, "formats": formats,
                "note": "the model file holds quantised weights: their error against the "
                        "unknown float original cannot be computed"}
    res = weight_errors(spec, QUANTS, layers=[0])
    return {"model": model.name, "computable": True, "formats": formats,
            "layers_compared": res["layers"],
            "quants": {q: {k: v for k, v in r.items() if k != "per_layer"}
                       for q, r in res["quants"].items()},
            "note": "relative L2 ||dequantised - float|| / ||float|| over layer 0's seven "
                    "projections, per --quant format, against the checkpoint's float32 weights"}


# --------------------------------------------------------------------------------------------
# Design-space sweep

def _chip_cycles(model, ctx: int, lanes: int, head_lanes: int, beat: int, fmt, cache: dict):
    """``(units at the last position, ideal)`` of the chip ``hardwire chip`` would build, from
    the hardware classes' own cycle formulas. Raises ``ValueError`` for an impossible point.

    A decoder layer's cycles are its units' (which depend on the beat) plus its lane array's
    passes (which depend on the lanes): a :class:`hdl.layer.DecoderLayer` is built once per
    beat and distinct layer (its lane ROMs laid out, not converted) for the first, and the
    passes' schedules (:class:`golden.block_folded.BlockFoldedLayout`, as the lane array uses
    them) give the second for any lane count. The LM head is one such schedule; the
    embedding, final norm and argmax units give their own."""
    from golden import block_folded as gbf
    from golden import blockquant as gbq
    from golden.llama_int import norm_gain
    from hdl.chip import ArgmaxUnit, EmbeddingUnit
    from hdl.layer import DecoderLayer
    from hdl.norm import RmsNormUnit

    from .weight_error import PROJECTIONS

    cfg, pos = model.cfg, ctx - 1
    w = cache.get("weights") or cache.setdefault("weights", model.weights())

    def passes(layouts, n):
        out = []
        for L in layouts:
            L = gbf.BlockFoldedLayout(L.rows, L.cols, L.bits, L.block, n)
            if n % beat or n // beat > L.nblocks * L.bits:
                raise ValueError(f"{n} lanes do not fit beat {beat}")
            out.append(L)
        return out

    layers = []
    for lw in w.layers:
        sig = (beat, tuple((getattr(lw, p).bits, getattr(lw, p).block) for p in PROJECTIONS))
        if sig not in cache:
            layer = DecoderLayer(cfg, lw, ctx=ctx, lanes=lanes, beat=beat, fmt=fmt)
            e = layer.engine
            cache[sig] = (sum(layer.unit_cycles(pos).values()) - sum(e.pass_cycles),
                          layer.ideal_cycles(pos) - e.ideal_cycles, e.layouts,
                          layer.golden.eps_term)
        units, ideal, layouts, eps_term = cache[sig]
        ls = passes(layouts, lanes)
        layers.append((units + sum(L.cycles_per_vector for L in ls),
                       ideal + sum(L.ideal_cycles for L in ls)))
    head = w.lm_head.reblock(gbq.lane_block(w.lm_head))
    (hl,) = passes([gbf.BlockFoldedLayout.of(head, head_lanes)], head_lanes)
    head_abits = fmt.head_abits or fmt.abits
    head_fmt = replace(fmt, abits=head_abits, fx_frac=fmt.logit_frac, fx_bits=fmt.logit_bits)
    g, gf = norm_gain(w.final_norm, cfg.dim, fmt)
    norm = RmsNormUnit(cfg.dim, beat, head_fmt, g, gf, eps_term)
    # One embedding row is enough for the unit's timing (it depends on dim and beat only).
    emb = EmbeddingUnit(w.embedding.rows_slice(0, 1), beat=beat, fmt=fmt,
                        pos_bits=max(1, (ctx - 1).bit_length()))
    units = {"embedding": emb.cycles}
    for i, (c, _) in enumerate(layers):
        units[f"layer {i}"] = c
    units |= {"final norm": norm.cycles, "LM head": hl.cycles_per_vector,
              "argmax": ArgmaxUnit(cfg.vocab, beat, fmt.logit_bits).cycles}
    ideal = sum(i for _, i in layers) + hl.ideal_cycles
    return units, ideal


def _sweep_area(cal: dict, cfg: dict, lane_bits: tuple[float, float], lanes: int,
                head_lanes: int, beat: int, strategy: str) -> tuple[int | None, dict]:
    """Calibrated logic of a chip: per layer its lanes, lane array, units and glue (once for
    ``shared``, ``n_layers`` times for ``per-layer``), then the LM head's lanes and lane
    array, the embedding, final norm, argmax and the top glue. ``lane_bits``: the design's
    layer and LM-head lanes' driver (their widths do not depend on the lane count)."""
    def k(kind, **drivers):
        e = _estimate(cal, kind, drivers)
        return math.nan if e is None else e[0]

    common = {"beat": beat, "head_dim": cfg["head_dim"]}
    layer = (lanes * k("BlockLane", lane_bits=lane_bits[0])
             + k("LaneArray", beat=beat, lanes=lanes)
             + 2 * k("RmsNormUnit", **common) + k("BfpUnit", **common)
             + 2 * k("ResidualAdd", **common) + k("RopeUnit", **common)
             + k("SwigluUnit", **common) + k("AttentionUnit", **common)
             + k("DecoderLayer", **common))
    n = 1 if strategy == "shared" else cfg["n_layers"]
    parts = {
        "layers": n * layer,
        "LM head lanes": head_lanes * k("BlockLane", lane_bits=lane_bits[1]),
        "LM head lane array": k("LaneArray", beat=beat, lanes=head_lanes),
        "embedding": k("EmbeddingUnit", **common),
        "final norm": k("RmsNormUnit", **common),
        "argmax": k("ArgmaxUnit", **common),
        "top glue": k("Chip", **{"1": 1}),
    }
    total = sum(parts.values())
    if math.isnan(total):
        return None, {}
    return round(total), {p: round(v) for p, v in parts.items()}


def _candidates(n_rows: list[int], design_value: int, lo: int = 8, hi: int = 256) -> list[int]:
    """Lane counts to try: the powers of two ``lo..hi`` that divide every row count, the
    largest such divisor up to ``hi`` (one that is not a power of two, like SmolLM2's 192),
    and the design's own."""
    g = 0
    for r in n_rows:
        g = math.gcd(g, r)
    divisors = [d for d in range(lo, min(g, hi) + 1) if g % d == 0]
    out = {d for d in divisors if d & (d - 1) == 0} | set(divisors[-1:])
    return sorted(out | {design_value})


def pareto_front(points: list[dict], x: str = "logic", y: str = "tokens_per_s") -> list[int]:
    """Indices of the points no other point beats: at most the area and at least the rate,
    one of them strictly. Points without both figures are left out."""
    ok = [i for i, p in enumerate(points) if p.get(x) is not None and p.get(y) is not None]
    front = []
    for i in ok:
        a, r = points[i][x], points[i][y]
        if not any((points[j][x] <= a and points[j][y] >= r)
                   and (points[j][x] < a or points[j][y] > r) for j in ok if j != i):
            front.append(i)
    return sorted(front, key=lambda i: (points[i][x], points[i][y]))


def sweep_points(m: dict, model, cal: dict, fmax_mhz: float | None,
                 lane_bits: tuple[float, float], *, lanes: list[int] | None = None,
                 head_lanes: list[int] | None = None) -> dict:
    """The design-space sweep of a chip manifest ``m`` (see :data:`STRATEGIES`): every
    valid (lanes, LM-head lanes) pair, its beat as ``hardwire chip`` would choose it, each
    strategy's cycles per token (:func:`_chip_cycles`), calibrated logic (``cal``, from
    :func:`_calibration`; ``lane_bits`` of the design's layer and LM-head lanes) and tokens/s
    at ``fmax_mhz``."""
    from golden.llama_int import IntFormat

    from .chip import check_lanes
    from .layer import default_beat, weights_block

    cfg = model.cfg
    block = weights_block(model.weights())
    fmt = IntFormat(**m["format_int"])
    rows = [cfg.dim + 2 * cfg.kv_dim, cfg.dim, 2 * cfg.ffn]
    lanes = lanes or _candidates(rows, m["lanes"])
    head_lanes = head_lanes or _candidates([cfg.vocab], m["head_lanes"], hi=1024)
    cache: dict = {}
    points, skipped = [], []
    design_key = (m["lanes"], m["head_lanes"], m["beat"])
    combos = [(p, h, math.gcd(default_beat(cfg, p, block), h)) for p in lanes for h in head_lanes]
    if design_key not in combos:
        combos.append(design_key)
    match = None
    for p, h, beat in sorted(combos):
        try:
            check_lanes(cfg, p, h)
            units, ideal = _chip_cycles(model, m["ctx"], p, h, beat, fmt, cache)
        except (UserError, ValueError) as e:
            skipped.append({"lanes": p, "head_lanes": h, "beat": beat, "reason": str(e)})
            continue
        cycles = sum(units.values())
        if (p, h, beat) == design_key:
            match = units == m["cycles"]["units_at_last_pos"]
        for s in STRATEGIES:
            area, parts = _sweep_area(cal, m["config"], lane_bits, p, h, beat, s)
            points.append({"strategy": s, "lanes": p, "head_lanes": h, "beat": beat,
                           "cycles_per_token": cycles, "ideal_cycles": ideal,
                           "tokens_per_s": _rate(fmax_mhz, cycles), "logic": area,
                           "area_parts": parts, "design": (p, h, beat) == design_key
                           and s == "per-layer"})
    front = pareto_front(points)
    by_strategy = {s: pareto_front([p if p["strategy"] == s else {} for p in points])
                   for s in STRATEGIES}
    for i, pt in enumerate(points):
        pt["pareto"] = i in front
        pt["pareto_in_strategy"] = i in by_strategy[pt["strategy"]]
    return {
        "fmax_mhz": fmax_mhz,
        "position": m["ctx"] - 1,
        "rom_bits": m["rom_bits"], "ram_bits": m["ram_bits"],
        "strategies": {
            "per-layer": "every decoder layer its own datapath (lane array, units, KV cache), "
                         "each clock-gated while the token is elsewhere: what 'hardwire chip' "
                         "builds",
            "shared": "ANALYTICAL ESTIMATE, not built: one layer datapath time-multiplexed "
                      "over the layers, its lanes' mask ROMs n_layers times deeper (the same "
                      "ROM bits), the same KV-cache RAM, the same cycles per token (one token "
                      "is in flight either way); the per-layer norm gains would need small "
                      "ROMs, not counted"},
        "method": "cycles: the hardware classes' formulas at the last position (the design's "
                  "own point reproduces its manifest); area: calibrated logic (see "
                  "area.calibration); tokens/s: at the Fmax of speed.fmax for every point; "
                  "ROM and RAM bits do not depend on the lanes",
        "design_point_matches_manifest": match,
        "points": points,
        "pareto": front,
        "pareto_by_strategy": by_strategy,
        "skipped": skipped,
    }


def _design_lane_bits(area: dict, plan) -> tuple[float, float]:
    """The ``lane_bits`` driver of the design's layer lanes (instance-weighted mean) and of
    its LM-head lane."""
    bits = area["drivers"]["lane_bits"]
    layer, head = [], []
    for p in plan:
        if p.role == "lane array":
            for b in p.boxes:
                (head if p.name == "chip_head_engine" else layer).append(bits[b])
    mean = sum(layer) / len(layer) if layer else math.nan
    return mean, (sum(head) / len(head) if head else mean)


def _plot(sweep: dict, m: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in sweep["points"] if p["logic"] is not None
           and p["tokens_per_s"] is not None]
    if not pts:
        raise UserError("the sweep has no point with both an area and a rate to plot "
                        "(no Fmax and no calibration)")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    styles = {"per-layer": ("o", "tab:blue"), "shared": ("s", "tab:orange")}
    for s, (marker, color) in styles.items():
        sel = [p for p in pts if p["strategy"] == s]
        label = s if s == "per-layer" else f"{s} (analytical estimate)"
        ax.scatter([p["logic"] for p in sel], [p["tokens_per_s"] for p in sel],
                   marker=marker, c=color, alpha=0.45, s=28, label=label)
    built = [sweep["points"][i] for i in sweep["pareto_by_strategy"]["per-layer"]]
    ax.plot([p["logic"] for p in built], [p["tokens_per_s"] for p in built], "--",
            c="tab:blue", lw=1.2, zorder=3, label="Pareto front of per-layer (built) designs")
    front = [sweep["points"][i] for i in sweep["pareto"]]
    ax.plot([p["logic"] for p in front], [p["tokens_per_s"] for p in front], "-",
            c="tab:red", lw=1.5, zorder=3, label="Pareto front, all points")
    ax.scatter([p["logic"] for p in front], [p["tokens_per_s"] for p in front],
               facecolors="none", edgecolors="tab:red", s=90, lw=1.5, zorder=4)
    for p in front:
        ax.annotate(f"{p['lanes']}/{p['head_lanes']}" + (" sh" if p["strategy"] == "shared"
                                                         else ""),
                    (p["logic"], p["tokens_per_s"]), textcoords="offset points",
                    xytext=(5, -10), fontsize=7)
    for p in pts:
        if p["design"]:
            ax.scatter([p["logic"]], [p["tokens_per_s"]], marker="*", s=200, c="k",
                       zorder=5, label="this design")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"logic area, calibrated: {sweep['logic_unit']} (log)")
    ax.set_ylabel(f"tokens/s at {sweep['fmax_mhz']:.1f} MHz, position {sweep['position']} (log)")
    ax.set_title(f"{m.get('model')}: lanes per layer / LM-head lanes; ROM {m['rom_bits']:,} bits "
                 f"and RAM {m['ram_bits']:,} bits at every point", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(out, "plot") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# The report

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
    from .synth import TARGETS, synth_layer

    t0 = time.perf_counter()
    log = log or (lambda s: None)
    design = Path(design)
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if dsp and target == "generic":
        raise UserError("the generic target has no DSP blocks")
    if not timeout > 0:
        raise UserError(f"--timeout must be positive, not {timeout:g}")
    if quant is not None and model is None:
        raise UserError("--quant goes with --model")
    m = _load(design)
    if sweep and m["kind"] != "chip":
        raise UserError("--sweep needs a chip design ('hardwire chip')")
    times = {}
    key = f"{target}{'_dsp' if dsp else ''}"
    if synth and key not in m.get("yosys", {}):
        log(f"report: synthesising {design} per module with yosys ({key}, at most "
            f"{timeout:g} s per module) ...")
        t = time.perf_counter()
        rep = synth_layer(design, target, timeout=timeout, jobs=jobs, dsp=dsp)
        times["yosys"] = time.perf_counter() - t
        bad = [e["module"] for e in rep.data["modules"] if e["status"] != "ok"]
        if bad:
            log(f"report: not synthesised (calibrated instead): {', '.join(bad)}")
        m = _load(design)
    vmods, plan = _plan(design, m)
    area = _area(design, m, vmods, plan, target, dsp)

    # Fmax: one module placed alone.
    fmod = _fmax_module(m, plan, fmax_module)
    pnr_target = "ecp5" if target == "generic" else target
    res = _cached_pnr(design, pnr_target, fmod, dsp)
    if res is None and synth:
        t = time.perf_counter()
        try:
            res = _run_pnr(design, plan, fmod, pnr_target, dsp, timeout, log)
        except UserError as e:
            log(f"report: place-and-route failed: {e}")
        times["nextpnr"] = time.perf_counter() - t
    flow = _flow_pnr(design, pnr_target, dsp) if fmax_module is None else None
    if flow is not None:
        # 'hardwire synth' (gen.flow) placed the whole chip, or its largest module that fits.
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
    elif pnr_target == "ecp5" and not dsp and CALIBRATION_FMAX["mhz"] and \
            module_kind(fmod, m["top"], m["kind"]) == "BlockLane":
        # built in for bit-serial lanes only: a parallel lane's multipliers are another path
        c = CALIBRATION_FMAX
        fmax = {"mhz": c["mhz"], "module": fmod,
                "role": next(p.role for p in plan if p.name == fmod),
                "method": f"calibrated: built-in, {c['module']} placed alone",
                "device": c["device"],
                "note": "this design's module has not been placed ('hardwire report DIR "
                        "--synth' does it); the figure is the built-in one of a like module"}
    else:
        fmax = {"mhz": None, "module": fmod, "method": None,
                "note": "not placed yet: run 'hardwire report DIR --synth' (nextpnr)"}
    if "yosys" not in times and area["yosys"] is not None:
        try:
            syn = json.loads((design / f"synth_{target}" / "report.json").read_text())
            times["yosys (earlier run)"] = syn["seconds"]["total"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    speed = _speed(design, m, fmax)

    mdl = _model_for(m, model, quant) if (sweep or m["kind"] == "chip" or model) else None
    werr = _weight_error(m, mdl, model)
    data = {
        "format": FORMAT,
        "kind": m["kind"],
        "design": design.resolve().name,
        "model": m.get("model"),
        "config": m["config"],
        "ctx": m["ctx"],
        "area": area,
        "speed": speed,
        "weight_error": werr,
        "sweep": None,
    }
    if sweep:
        if mdl is None:
            raise UserError(f"--sweep needs the model: give --model FILE (the design was made "
                            f"from {m.get('model')})")
        t = time.perf_counter()
        data["sweep"] = sweep_points(m, mdl, area["calibration"], fmax["mhz"],
                                     _design_lane_bits(area, plan), lanes=lanes,
                                     head_lanes=head_lanes)
        data["sweep"]["logic_unit"] = area["logic_unit"]
        times["sweep"] = time.perf_counter() - t
        _plot(data["sweep"], m, design / "pareto.png")
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    with atomic_file(design / "report.json", "report") as f:
        f.write(text.encode())
    times["total"] = time.perf_counter() - t0
    return data, _table(data, design, times)


# --------------------------------------------------------------------------------------------
# The table

def _n(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v < 1e4 else f"{v:,.0f}"
    return f"{v:,}"


def _table(d: dict, design: Path, times: dict) -> str:
    cfg, a, s = d["config"], d["area"], d["speed"]
    short = METRIC[a["target"]][1]
    out = [f"{design}: {d['kind']} of {d['model']} (dim {cfg['dim']}, {cfg['n_layers']} layers, "
           f"vocab {cfg['vocab']}), ctx {d['ctx']}; {a['lanes']} lanes per layer"
           + (f", {a['head_lanes']} LM-head lanes" if a.get("head_lanes") else "")
           + f", beat {a['beat']}"]
    y = a["yosys"]
    out.append("")
    out.append(f"area on {a['target']}{' with DSPs' if a['dsp'] else ''} ({a['logic_unit']}); "
               + (f"yosys per module ({(y['version'] or '?').split('(')[0].strip()})"
                  + (f", missing {', '.join(y['missing'])}" if y["missing"] else "")
                  if y else "no yosys run yet (hardwire report --synth): calibrated"))
    head = ["module", "kind", "inst", f"{short}/inst", "FF/inst", "BRAM", f"{short} total",
            "method"]
    rows = []
    for r in a["modules"]:
        per, tot = r["per_instance"] or {}, r["total"] or {}
        meth = r["method"] or ""
        if meth.startswith("calibrated"):
            meth = f"calibrated, {a['calibration'][r['kind']]['source']}"
        rows.append([r["module"], r["kind"], f"{r['instances']}x", _n(per.get("logic")),
                     _n(per.get("FF")), _n(tot.get("BRAM")), _n(tot.get("logic")),
                     meth.split(":")[0]])
    t = a["totals"]
    rows.append(["total", "", "", "", "", _n(t["BRAM"] if t["logic_yosys"] else None),
                 _n(t["logic"]),
                 f"yosys {_n(t['logic_yosys'])} + calibrated {_n(t['logic_calibrated'])}"])
    out += _grid(head, rows)
    mem = a["memory"]
    parts = mem.get("rom_bits_by_part") or {}
    out.append(f"  memory (manifest): ROM {mem['rom_bits']:,} bits"
               + (" (" + ", ".join(f"{k} {v:,}" for k, v in parts.items()) + ")" if parts
                  else "") + f"; RAM {mem['ram_bits']:,} bits (KV caches)")
    if a["not_estimated"]:
        out.append(f"  not estimated: {', '.join(a['not_estimated'])}")

    c = s["cycles_per_token"]
    f = s["fmax"]
    tp = s["tokens_per_s"]
    out.append("")
    out.append(f"speed at position {s['position']}")
    meas = c["measured"]
    out.append(f"  cycles/token: units' formulas {c['units_formula']:,}, ideal "
               f"{c['ideal']:,.0f}" + (f", measured {meas['last']:,} (first position "
                                       f"{meas['first']:,}; {meas['source']})" if meas
                                       else ", not measured (hardwire sim DIR)"))
    if f["mhz"] and f["method"].startswith("calibrated"):
        out.append(f"  Fmax {f['mhz']:.1f} MHz: built in ({CALIBRATION_FMAX['module']} placed "
                   f"alone on {f['device']}); {f['module']} itself is not placed")
    if f["mhz"] and not f["method"].startswith("calibrated"):
        out.append(f"  Fmax {f['mhz']:.1f} MHz: {f['module']} ({f['role']}) placed alone on "
                   f"{f['device']}; the whole {d['kind']} is not placed")
    if f["mhz"]:
        out.append(f"  tokens/s at Fmax: formula {_n(tp['units_formula'])}, ideal "
                   f"{_n(tp['ideal'])}" + (f", measured {_n(tp['measured_last'])}"
                                           if tp["measured_last"] else ""))
    else:
        out.append(f"  Fmax: - ({f['note']}); tokens/s: -")

    w = d["weight_error"]
    out.append("")
    if w.get("per_projection_relative_l2"):
        out.append(f"weight error of this layer's {', '.join(w['formats']['layers'])} "
                   "weights (relative L2 vs float): " + ", ".join(
                       f"{k} {v:.4g}" for k, v in w["per_projection_relative_l2"].items()))
    elif w.get("computable"):
        out.append(f"weight error of {w['model']} (relative L2 vs float, layer 0):")
        out.append("  " + ", ".join(f"{q} {r['relative_l2']:.4g}" for q, r in
                                    w["quants"].items()))
    elif w.get("formats"):
        fm = w["formats"]
        out.append(f"weight error: {w['note']}; formats: layers {', '.join(fm['layers'])}"
                   + (f", embedding {fm['embedding']}, LM head {fm['lm_head']}"
                      if "embedding" in fm else ""))
    else:
        out.append(f"weight error: {w['note']}")

    sw = d["sweep"]
    if sw is not None:
        out.append("")
        pts = sw["points"]
        out.append(f"sweep: {len(pts)} points ({len(sw['skipped'])} impossible), lanes x "
                   f"LM-head lanes x strategy, tokens/s at {_n(sw['fmax_mhz'])} MHz, "
                   f"calibrated logic; ROM and RAM bits as above at every point")
        head = ["Pareto front", "lanes", "head", "beat", "cycles/token", "tokens/s", short]
        for title, idx in (("per-layer (built)", sw["pareto_by_strategy"]["per-layer"]),
                           ("overall", sw["pareto"])):
            rows = [[p["strategy"] + (" (this design)" if p["design"] else ""),
                     str(p["lanes"]), str(p["head_lanes"]), str(p["beat"]),
                     _n(p["cycles_per_token"]), _n(p["tokens_per_s"]), _n(p["logic"])]
                    for p in (pts[i] for i in idx)]
            out += _grid([f"{head[0]}: {title}", *head[1:]], rows)
        dp = next((p for p in pts if p["design"]), None)
        if dp is not None and not dp["pareto_in_strategy"]:
            out.append(f"  this design ({dp['lanes']}/{dp['head_lanes']}): "
                       f"{_n(dp['tokens_per_s'])} tokens/s, {_n(dp['logic'])} {short}, "
                       "not on the per-layer front")
        out.append("  'shared' is an analytical estimate (one layer datapath time-multiplexed "
                   "over the layers), not a built design")
        if sw["design_point_matches_manifest"] is False:
            out.append("  WARNING: the sweep's cycles for this design differ from its manifest")
        out.append(f"  plot: {design / 'pareto.png'}")
    tm = ", ".join(f"{k} {v:.1f} s" for k, v in times.items() if v is not None)
    out.append("")
    out.append(f"time: {tm}")
    out.append(f"report: {design / 'report.json'}")
    return "\n".join(out)


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    left = {0, 1, len(head) - 1} if head[-1] == "method" else {0}

    def line(r):
        return "  " + "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
    rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
    return [line(head), rule, *map(line, rows)]
