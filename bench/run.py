"""``make bench``: area, Fmax, cycles and generation time of every strategy on the standard
problems, against da4ml 0.6 and a naive ``W*x`` baseline on the same yosys flow, plus the
576x1536 scale row. Prints a table and writes ``build/bench/results.{json,md}``.

Flow: yosys 0.70 ``synth_ecp5 -nodsp`` with the hierarchy kept; LUT4-equivalents =
LUT4 + 2 * CCU2C. Fmax from nextpnr-ecp5 on a shift-register harness (only where the design
fits a 25k part and routes in reasonable time). Generic 2-input gates (``abc -g``) only at
16x16, where ABC finishes.
"""

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from gen import set_tool_environment
from gen.design import Design
from gen.matvec import MatVecConfig, generate, synthetic_weights
from gen.synth import SynthError, WrapPorts, module_ports, pnr_verilog, synth_verilog

from .baselines import da4ml_verilog, naive_verilog

OUT = Path("build/bench")
PROBLEMS = [  # name, rows, cols, wbits, ternary
    ("16x16 int4", 16, 16, 4, False),
    ("64x64 int4", 64, 64, 4, False),
    ("64x64 int3", 64, 64, 3, False),
    ("64x64 ternary", 64, 64, 2, True),
    ("128x128 int4", 128, 128, 4, False),
]
STRATEGIES = [("parallel", {}), ("serial", {"digit": 4}), ("serial", {"digit": 1}),
              ("folded", {"lanes": 8})]
PNR_MAX_LUT4EQ = 12000
GENERIC_MAX_ROWS = 16


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _synth(sources, top, cwd, work, *, pnr_ports, gates, timeout):
    row = {}
    try:
        s = synth_verilog(sources, top, "ecp5", work / "ecp5", cwd=cwd, timeout=timeout)
        st = s["stats"]
        row.update(lut4=st["LUT4"], ccu2c=st["CCU2C"], ff=st["FF"], bram=st.get("BRAM", 0),
                   lut4_equiv=st["lut4_equiv"], synth_s=s["seconds"])
    except SynthError as e:
        row["error"] = str(e)
        return row
    if pnr_ports is not None and row["lut4_equiv"] <= PNR_MAX_LUT4EQ:
        try:
            r = pnr_verilog(sources, top, pnr_ports, "ecp5", work / "pnr", cwd=cwd,
                            timeout=timeout)
            row["fmax_mhz"] = r["pnr"]["fmax_mhz"]
        except SynthError as e:
            row["fmax_mhz"] = None
            row["fmax_note"] = str(e)[:120]
    else:
        row["fmax_mhz"] = None
        row["fmax_note"] = "not placed (too large for the 25k part / PnR time here)"
    if gates:
        try:
            g = synth_verilog(sources, top, "generic", work / "generic", cwd=cwd,
                              timeout=timeout)
            row["gates"] = g["stats"].get("gates")
        except SynthError as e:
            row["gates"] = None
            row["gates_note"] = str(e)[:120]
    return row


def bench_problem(name, rows, cols, wbits, ternary, timeout, designs=None):
    def wanted(label):
        return designs is None or any(d in label for d in designs)

    results = []
    for strategy, opts in STRATEGIES:
        if not wanted(strategy + "".join(f" {k}={v}" for k, v in opts.items())):
            continue
        cfg = MatVecConfig(rows=rows, cols=cols, wbits=wbits, ternary=ternary,
                           strategy=strategy, **opts)
        w = synthetic_weights(rows, cols, cfg.spec, 0)
        label = strategy + "".join(f" {k}={v}" for k, v in opts.items())
        d = OUT / name.replace(" ", "_") / label.replace(" ", "_").replace("=", "")
        t = time.perf_counter()
        m = generate(cfg, w, d, vectors=8)
        gen_s = time.perf_counter() - t
        _log(f"{name} {label}: generated in {gen_s:.2f} s; synthesising")
        row = {"problem": name, "design": label, "gen_s": round(gen_s, 3),
               "latency": m["latency_cycles"], "cycles_per_vector": m["cycles_per_vector"]}
        if "folded" in m:
            row["ideal_cycles"] = m["folded"]["ideal_cycles"]
        d = d.resolve()
        row |= _synth([str(d / s) for s in m["sources"]], m["top"], d, d / "synth",
                      pnr_ports=WrapPorts.from_manifest(m),
                      gates=rows <= GENERIC_MAX_ROWS, timeout=timeout)
        results.append(row)
        _log(f"  {row}")
    w = synthetic_weights(rows, cols, MatVecConfig(rows=rows, cols=cols, wbits=wbits,
                                                   ternary=ternary).spec, 0)
    for label, make in (("da4ml comb", lambda o: da4ml_verilog(w, 8, o, pipelined=False)),
                        ("da4ml pipe", lambda o: da4ml_verilog(w, 8, o, pipelined=True)),
                        ("naive W*x", lambda o: naive_verilog(w, 8, o))):
        if not wanted(label):
            continue
        d = OUT / name.replace(" ", "_") / label.replace(" ", "_").replace("*", "")
        t = time.perf_counter()
        des = make(d)
        gen_s = time.perf_counter() - t
        _log(f"{name} {label}: generated in {gen_s:.2f} s; synthesising")
        sources = [str(Path(s).resolve()) for s in des["sources"]]
        ports = module_ports(sources, des["top"], d / "ports")
        clock = "clk" if "clk" in ports else None
        wp = WrapPorts.from_module_ports(ports, clock=clock)
        row = {"problem": name, "design": label, "gen_s": round(gen_s, 3),
               "latency": des.get("latency_cycles", 0), "cycles_per_vector": 1,
               "adders": des.get("adders")}
        row |= _synth(sources, des["top"], d.resolve(), d.resolve() / "synth", pnr_ports=wp,
                      gates=rows <= GENERIC_MAX_ROWS, timeout=timeout)
        results.append(row)
        _log(f"  {row}")
    return results


def bench_scale(timeout, vectors=40):
    """576x1536 int4 folded on 64 lanes: generation time and peak memory (a fresh process),
    Verilator build time and simulated vectors per second."""
    from sim.runner import run_matvec

    d = OUT / "scale_576x1536"
    args = ["matvec", "--rows", "576", "--cols", "1536", "--wbits", "4", "--strategy",
            "folded", "--lanes", "64", "--word", "64", "--out", str(d)]
    # The peak of the generating process itself (RUSAGE_CHILDREN here would also count every
    # yosys run of this bench).
    probe = ("import resource, sys; from gen.cli import main; rc = main(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True,
                       text=True)
    gen_s = time.perf_counter() - t
    peak_kb = int(r.stdout.strip().splitlines()[-1])
    m = Design.open(d).manifest
    res = run_matvec(d, simulator="verilator", vectors=vectors, seed=1,
                     testcase="random_full_rate", opt="-O2")
    sim_s = None
    if res.results and res.results.exists():
        for tc in ET.parse(res.results).iter("testcase"):
            if tc.get("name") == "random_full_rate":
                sim_s = float(tc.get("time"))
    return {"problem": "576x1536 int4", "design": "folded lanes=64 word=64",
            "gen_s": round(gen_s, 2), "gen_peak_mb": round(peak_kb / 1024, 1),
            "cycles_per_vector": m["cycles_per_vector"],
            "ideal_cycles": m["folded"]["ideal_cycles"],
            "verilator_build_s": round(res.build_seconds, 1),
            "sim_vectors": vectors, "sim_ok": res.ok,
            "sim_vectors_per_s": round(vectors / sim_s, 1) if sim_s else None}


def markdown(rows, scale):
    best = {}
    for r in rows:
        if r["design"].startswith("da4ml") and r.get("lut4_equiv"):
            best[r["problem"]] = min(best.get(r["problem"], 1 << 60), r["lut4_equiv"])
    head = ("| problem | design | LUT4 | CCU2C | FF | BRAM | LUT4-eq | vs best da4ml | "
            "LUT4-eq x cycles | gates | Fmax MHz | latency | cycles/vec | gen s |")
    out = [head, "|" + "---|" * 14]
    for r in rows:
        le = r.get("lut4_equiv")
        ratio = f"{le / best[r['problem']]:.2f}" if le and r["problem"] in best else "-"
        at = le * r["cycles_per_vector"] if le else None
        fmax = r.get("fmax_mhz")
        out.append("| " + " | ".join(str(v) for v in [
            r["problem"], r["design"], r.get("lut4", "-"), r.get("ccu2c", "-"),
            r.get("ff", "-"), r.get("bram", "-"), le or r.get("error", "-")[:40], ratio,
            at or "-", r.get("gates") or "-", f"{fmax:.0f}" if fmax else "-",
            r["latency"], r["cycles_per_vector"], r["gen_s"]]) + " |")
    if scale:
        out += ["", "| scale | design | gen s | gen peak MB | cycles/vec (ideal) | "
                "Verilator build s | vectors/s simulated |", "|---|---|---|---|---|---|---|",
                f"| {scale['problem']} | {scale['design']} | {scale['gen_s']} | "
                f"{scale['gen_peak_mb']} | {scale['cycles_per_vector']} "
                f"({scale['ideal_cycles']:.0f}) | {scale['verilator_build_s']} | "
                f"{scale['sim_vectors_per_s']} |"]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    ap.add_argument("--problems", default="all", help="comma-separated problem names "
                    "(e.g. '16x16 int4'), or 'all', or 'none'")
    ap.add_argument("--no-scale", action="store_true", help="skip the 576x1536 scale row")
    ap.add_argument("--designs", help="comma-separated substrings of the design labels to run "
                    "(e.g. 'parallel,da4ml'); default all")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per tool run")
    ap.add_argument("--out", type=Path, default=Path("build/bench"),
                    help="output directory (default build/bench)")
    a = ap.parse_args(argv)
    set_tool_environment()
    global OUT
    OUT = a.out
    OUT.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in PROBLEMS if a.problems == "all" or p[0] in a.problems.split(",")]
    rows = []
    for p in chosen:
        rows += bench_problem(*p, timeout=a.timeout,
                              designs=a.designs.split(",") if a.designs else None)
        (OUT / "results.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    scale = None if a.no_scale else bench_scale(a.timeout)
    (OUT / "results.json").write_text(json.dumps({"rows": rows, "scale": scale}, indent=2,
                                                 sort_keys=True) + "\n")
    md = markdown(rows, scale)
    (OUT / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
