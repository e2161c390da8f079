"""The readable table of ``hardwire report``."""

from pathlib import Path

from .calibration import CALIBRATION_FMAX, METRIC

__all__ = ["table"]


def fmt_n(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v < 1e4 else f"{v:,.0f}"
    return f"{v:,}"


def table(d: dict, design: Path, times: dict) -> str:
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
        rows.append([r["module"], r["kind"], f"{r['instances']}x", fmt_n(per.get("logic")),
                     fmt_n(per.get("FF")), fmt_n(tot.get("BRAM")), fmt_n(tot.get("logic")),
                     meth.split(":")[0]])
    t = a["totals"]
    rows.append(["total", "", "", "", "", fmt_n(t["BRAM"] if t["logic_yosys"] else None),
                 fmt_n(t["logic"]),
                 f"yosys {fmt_n(t['logic_yosys'])} + calibrated {fmt_n(t['logic_calibrated'])}"])
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
        out.append(f"  tokens/s at Fmax: formula {fmt_n(tp['units_formula'])}, ideal "
                   f"{fmt_n(tp['ideal'])}" + (f", measured {fmt_n(tp['measured_last'])}"
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
                   f"LM-head lanes x strategy, tokens/s at {fmt_n(sw['fmax_mhz'])} MHz, "
                   f"calibrated logic; ROM and RAM bits as above at every point")
        head = ["Pareto front", "lanes", "head", "beat", "cycles/token", "tokens/s", short]
        for title, idx in (("per-layer (built)", sw["pareto_by_strategy"]["per-layer"]),
                           ("overall", sw["pareto"])):
            rows = [[p["strategy"] + (" (this design)" if p["design"] else ""),
                     str(p["lanes"]), str(p["head_lanes"]), str(p["beat"]),
                     fmt_n(p["cycles_per_token"]), fmt_n(p["tokens_per_s"]), fmt_n(p["logic"])]
                    for p in (pts[i] for i in idx)]
            out += _grid([f"{head[0]}: {title}", *head[1:]], rows)
        dp = next((p for p in pts if p["design"]), None)
        if dp is not None and not dp["pareto_in_strategy"]:
            out.append(f"  this design ({dp['lanes']}/{dp['head_lanes']}): "
                       f"{fmt_n(dp['tokens_per_s'])} tokens/s, {fmt_n(dp['logic'])} {short}, "
                       "not on the per-layer front")
        out.append("  'shared' is an analytical estimate (one layer datapath time-multiplexed "
                   "over the layers), not a built design")
        if sw["design_point_matches_manifest"] is False:
            out.append("  WARNING: the sweep's cycles for this design differ from its manifest")
        out.append(f"  plot: {design / 'pareto.png'}")
    if d.get("moe") is not None:
        out += _moe(d["moe"], design)
    tm = ", ".join(f"{k} {v:.1f} s" for k, v in times.items() if v is not None)
    out.append("")
    out.append(f"time: {tm}")
    out.append(f"report: {design / 'report.json'}")
    return "\n".join(out)


def _pct(v) -> str:
    return f"{100 * v:.1f} %"


def _moe(x: dict, design: Path) -> list[str]:
    """The mixture-of-experts section: the design's ROM and read share, the variants of its
    weights, the reference shapes beside HNLPU."""
    dm = x["design"]
    rb = dm["rom_bits"]
    out = ["", f"mixture of experts: {dm['experts']} experts, top-{dm['top_k']}; ROM "
           f"{sum(rb.values()):,} bits (" + ", ".join(f"{k} {v:,}" for k, v in rb.items())
           + f"); a token reads {_pct(dm['read_share'])} of it"]
    head = ["variant", "G", "lanes", "cycles/token", "tokens/s", "ROM bits", "read",
            "lanes busy", "lane logic"]

    def row(p, first):
        return [first, fmt_n(p["group_lanes"]), fmt_n(p["lanes"]), fmt_n(p["cycles_per_token"]),
                fmt_n(p["tokens_per_s"]), fmt_n(p["rom_bits"]), _pct(p["read_share"]),
                _pct(p["lane_utilisation"])]

    if x["points"]:
        names = {"shared": "built: shared lanes", "per-expert": "per-expert lanes",
                 "dense": "dense, equal ROM"}
        out += _grid(head, [row(p, names[p["variant"]]) + [fmt_n(p["lane_logic"])]
                            for p in x["points"]])
        out.append(f"  the design's weights at its lanes and beat, tokens/s at "
                   f"{x['fmax_mhz']:.1f} MHz; G: lanes per expert group (top-k groups at "
                   "once); ROM bits the design's; lane logic = lanes x one lane's calibrated logic")
    else:
        out.append("  variants of the design's weights: give --model FILE")
    out.append(f"reference shapes (public configs, no weights; nominal ROM; 64 lanes per "
               f"layer, G = 64; tokens/s at {x['fmax_mhz']:.1f} MHz):")
    rows = []
    for name, ref in x["reference"].items():
        for p in ref["points"]:
            rows.append([f"{name} {p['variant']}", str(p["position"]), fmt_n(p["lanes"]),
                         f"{p['rom_bits'] / 1e9:,.1f} G", _pct(p["read_share"]),
                         fmt_n(p["cycles_per_token"]), fmt_n(p["tokens_per_s"])])
    out += _grid(["shape, variant", "pos", "lanes", "ROM bits", "read", "cycles/token",
                  "tokens/s"], rows)
    h = x["hnlpu"]
    out.append(f"  HNLPU ({h['source']}): {h['model']} on {h['chips']} chips at {h['process']}, "
               f"{h['tokens_per_s']:,} tokens/s, i.e. "
               f"{x['fmax_mhz'] * 1e6 / h['tokens_per_s']:,.0f} cycles per token at "
               f"{x['fmax_mhz']:.1f} MHz")
    out.append(f"  plot: {design / 'moe.png'}")
    return out


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    left = {0, 1, len(head) - 1} if head[-1] == "method" else {0}

    def line(r):
        return "  " + "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
    rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
    return [line(head), rule, *map(line, rows)]
