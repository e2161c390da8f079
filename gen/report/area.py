"""The area part of ``hardwire report``: ROM and RAM bits, lanes, and each module's logic,
from yosys where it was synthesised, else calibrated (:mod:`.calibration`)."""

from .. import design as _design
from .calibration import CALIBRATION, CALIBRATION_SOURCE, METRIC, builtin, drivers

__all__ = ["area", "estimate"]


def _calibration(d: "_design.Design", plan, est: dict | None, values: dict, target: str,
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
            k = d.module(p.name).cls
            model = builtin(k, values.get(p.name))
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
                      "source": f"built-in ({CALIBRATION_SOURCE.get(k, 'tiny chip')}"
                                + (", -nodsp)" if dsp else ")")}
        out.get(k, {})["terms"] = {t: {"logic_per": c[0], "FF_per": c[1]}
                                   for t, c in CALIBRATION[k].items()}
    return out


def estimate(cal: dict, kind: str, values: dict | None) -> tuple[int, int] | None:
    """A module's calibrated (logic, FF), or None."""
    model = builtin(kind, values)
    c = cal.get(kind)
    if model is None or c is None:
        return None
    return round(c["logic_factor"] * model[0]), round(c["FF_factor"] * model[1])


def area(d: "_design.Design", vmods, plan, target: str, dsp: bool) -> dict:
    """The ``area`` part of the report."""
    m = d.manifest
    key, short, unit = METRIC[target]
    ykey = f"{target}{'_dsp' if dsp else ''}"
    est = m.get("yosys", {}).get(ykey)
    values = drivers(d, vmods, plan)
    cal = _calibration(d, plan, est, values, target, dsp)
    rows = []
    tot = {"logic": 0, "FF": 0, "logic_yosys": 0, "logic_calibrated": 0, "BRAM": 0, "DSP": 0}
    unknown = []
    for p in plan:
        k = d.module(p.name).cls
        dv = values.get(p.name)
        row = {"module": p.name, "role": p.role, "kind": k, "instances": p.instances,
               "drivers": dv, "method": None, "per_instance": None, "total": None}
        fig = est["by_module"].get(p.name) if est else None
        guess = estimate(cal, k, dv)
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
                               for t, v in dv.items())
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
        "drivers": {"lane_bits": {p.name: dv["lane_bits"] for p in plan
                                  if (dv := values.get(p.name)) and "lane_bits" in dv}},
    }
