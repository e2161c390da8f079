"""The readable tables of synthesis: a matvec design's, the per-module table of a layer or
chip, its place-and-route lines, and the ``make synth`` summary."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .devices import BRAM_BITS, largest

__all__ = ["SynthReport", "layer_table", "pnr_note", "summary_md"]


_TABLE_ROWS = {
    "ecp5": [("LUT4", "LUT4"), ("CCU2C", "CCU2C (carry, 2 LUT4 each)"),
             ("lut4_equiv", "LUT4-equivalents"), ("FF", "FF (TRELLIS_FF)"),
             ("BRAM", "BRAM (DP16KD)"), ("LUTRAM", "LUTRAM"), ("MUX", "PFUMX/L6MUX21"),
             ("DSP", "DSP"), ("other", "other cells")],
    "ice40": [("LUT4", "SB_LUT4"), ("CARRY", "SB_CARRY"), ("FF", "FF (SB_DFF*)"),
              ("BRAM", "BRAM (SB_RAM40_4K)"), ("SPRAM", "SPRAM"), ("DSP", "DSP"),
              ("other", "other cells")],
    "generic": [("gates", "2-input gates"), ("NOT", "inverters"), ("FF", "FF"),
                ("other", "other cells")],
}


@dataclass
class SynthReport:
    """The outcome of :func:`synth_design`; ``data`` is what ``report.json`` holds."""
    data: dict
    path: Path

    def table(self) -> str:
        """A readable text table."""
        d = self.data
        if d.get("kind") in ("layer", "chip"):
            return layer_table(d, self.path)
        rows = [(label, str(d["stats"][k])) for k, label in _TABLE_ROWS[d["target"]]
                if k in d["stats"] and (d["stats"][k] or k not in ("LUTRAM", "SPRAM", "DSP",
                                                                    "other", "MUX"))]
        if d["fmax_mhz"] is not None:
            rows.append(("Fmax", f"{d['fmax_mhz']:.1f} MHz ({d['pnr']['device']})"))
        else:
            rows.append(("Fmax", f"- ({d['fmax_note']})"))
        if d["pnr"] and d["pnr"].get("utilisation"):
            rows.append(("nextpnr use", ", ".join(
                f"{k} {v['used']}/{v['available']}" for k, v in d["pnr"]["utilisation"].items()
                if not k.endswith("IO") and "IOB" not in k)))
        rows.append(("latency", f"{d['latency_cycles']} cycles"))
        tp = (f" = {d['throughput_mvec_s']:.1f} M vectors/s" if d["throughput_mvec_s"]
              else "")
        cpv = d["cycles_per_vector"]
        rows.append(("throughput", f"{cpv} cycle{'' if cpv == 1 else 's'}/vector{tp}"))
        s = d["seconds"]
        rows.append(("time", f"synth {s['synth']:.1f} s" + (
            f", pnr {s['pnr']:.1f} s" if s["pnr"] is not None else "")
            + f", total {s['total']:.1f} s"))
        width = max(len(r[0]) for r in rows)
        head = (f"{d['design']}: {d['top']} ({d['strategy']}) on {d['target']}, "
                f"{'flattened' if d['flow']['flatten'] else 'hierarchy kept'}")
        return "\n".join([head] + [f"  {k:<{width}}  {v}" for k, v in rows]
                         + [f"  report: {self.path}"])



_LAYER_COLUMNS = {
    "ecp5": ([("LUT4", "LUT4"), ("CCU2C", "CCU2C"), ("lut4_equiv", "LUT4-eq"), ("FF", "FF"),
              ("BRAM", "DP16KD")],
             [("LUTRAM", "LUTRAM"), ("MUX", "PFUMX"), ("DSP", "DSP"), ("other", "other")]),
    "ice40": ([("LUT4", "SB_LUT4"), ("CARRY", "SB_CARRY"), ("FF", "FF"),
               ("BRAM", "RAM40_4K")],
              [("SPRAM", "SPRAM"), ("DSP", "DSP"), ("other", "other")]),
    "generic": ([("gates", "gates"), ("NOT", "NOT"), ("FF", "FF")], [("other", "other")]),
}

#: Bits one block RAM holds, for the capacity line of the report.


def layer_table(d: dict, path: Path) -> str:
    first, extra = _LAYER_COLUMNS[d["target"]]
    ok = [e for e in d["modules"] if e["status"] == "ok"]
    cols = first + [(k, h) for k, h in extra
                    if any(e["stats"].get(k) for e in ok) or d["stats"].get(k)]
    head = ["module", "role", "inst"] + [h for _, h in cols] + ["time"]
    rows = []
    for e in d["modules"]:
        if e["status"] == "ok":
            nums = [str(e["stats"].get(k, 0)) for k, _ in cols]
            rows.append([e["module"], e["role"], f"{e['instances']}x", *nums,
                         f"{e['seconds']:.1f} s"])
            # Inside a module with submodules: each group's cells, summed over its instances.
            for g, v in e.get("parts", {}).items():
                if not any(v.get(k) for k, _ in cols):
                    continue  # a wrapper holding only submodules
                label = "  (own logic)" if g == e["module"] else f"  {g}"
                rows.append([label, "", f"{v['instances']}x",
                             *[str(v.get(k, 0)) for k, _ in cols], ""])
        else:
            seconds = "" if e["seconds"] is None else f"{e['seconds']:.1f} s"
            rows.append([e["module"], e["role"], f"{e['instances']}x", e["status"].upper(),
                         *[""] * (len(cols) - 1), seconds])
    total = ["total" + ("" if d["complete"] else " (incomplete)"), "x instances", ""]
    rows.append(total + [str(d["stats"].get(k, 0)) for k, _ in cols]
                + [f"{d['seconds']['synth']:.1f} s"])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
    what = f"layer {d['layer']} of {d['model']}" if d.get("model") is not None else "layer"
    if d.get("kind") == "chip":
        what = f"chip of {d['model']}, {d.get('head_lanes')} LM-head lanes"
    dsp = ", DSPs for multipliers" if d["flow"].get("dsp") else ""
    out = [f"{d['design']}: {d['top']} ({what}, {d['lanes']} lanes) on {d['target']}{dsp}, "
           "per module, hierarchy kept",
           "  figures per instance of a module (indented: its parts, summed over their "
           "instances); total weighted by instances",
           line(head), rule, *map(line, rows[:-1]), rule, line(rows[-1])]
    mem = d["memory"]
    tail = [f"  memory (manifest): ROM {mem['rom_bits']} bits, RAM {mem['ram_bits']} bits"
            + (f"; block RAM {mem['bram_blocks']} x {BRAM_BITS[d['target']]} = "
               f"{mem['bram_bits']} bits" if mem["bram_blocks"] is not None else "")]
    if d["target"] in BRAM_BITS:
        dev, cap = largest(d["target"])
        tail.append(f"  largest {dev}: " + ", ".join(
            f"{d['stats'].get(k, 0) / v:.0%} of its {v} {dict(first + extra)[k]}"
            for k, v in cap.items() if k != "DSP" or d["stats"].get(k)))
    if d.get("pnr") is not None:  # a chip, placed and routed by gen.flow
        tail += pnr_note(d)
    else:
        tail.append(f"  Fmax: - ({d['fmax_note']})")
    for e in d["modules"]:
        if e["note"]:
            tail.append(f"  note: {e['module']}: {e['note']}")
    if not d["complete"]:
        tail.append(f"  totals leave out {', '.join(d['missing'])}")
    s = d["seconds"]
    tail.append(f"  time: synth {s['synth']:.1f} s over {d['jobs']} job"
                f"{'' if d['jobs'] == 1 else 's'}, total {s['total']:.1f} s "
                f"({d['tools']['yosys_runner']})")
    tail.append(f"  report: {path}")
    return "\n".join(out + tail)


def pnr_note(d: Mapping) -> list[str]:
    """Lines for :func:`layer_table`: what was placed, Fmax, utilisation."""
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



def summary_md(s: dict) -> str:
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
