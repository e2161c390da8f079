"""``make bench-units``: every unit of the board chip (:data:`gen.synth.board.BOARD_CHIP`,
the chip ``make synth`` places) placed and routed alone on ECP5, with DSPs, and its critical
path: which unit limits the whole chip's Fmax, and where inside it.

    python -m bench.units [--out build/bench/units] [--modules GLOB,...] [--stages N]

Each separately synthesised module (``hardwire synth``'s per-module flow, ``--dsp``) that
is a unit (the vector units, the lane arrays, the embedding, the argmax) is placed with
everything under it in the pin harness (every port on a register), as ``make synth`` places
the whole chip. Writes ``OUT/units.json`` and prints a table, slowest first. About 15
minutes on 2 cores.
"""

import fnmatch
import json
import sys
import time
from pathlib import Path

from bench import OUT

#: The modules placed: the units of a layer, the lane arrays and the chip's own units.
UNITS = ("hw_*", "*_engine", "chip_embedding", "chip_argmax", "chip_final_norm")


def _with_boxes(design, patterns) -> list[str]:
    """The per-module plan's modules that match ``patterns``, and every module they hold as a
    black box, down the hierarchy: what placing them needs synthesised."""
    from gen.design import Design
    from gen.synth.modules import design_plan

    plan = {p.name: p for p in design_plan(Design.open(design))[1]}
    todo = [n for n in plan if any(fnmatch.fnmatchcase(n, q) for q in patterns)]
    seen = set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += [b for b in plan[n].boxes if b in plan]
    return sorted(seen)


def main(argv=None) -> int:
    import argparse

    from gen import set_tool_environment
    from gen.chip import generate_chip
    from gen.design import Design
    from gen.synth import DEVICES, SynthError, place_module, split_verilog, synth_layer
    from gen.synth.board import BOARD_CHIP
    from gen.synth.tools import parallel_map

    p = argparse.ArgumentParser(prog="python -m bench.units", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT / "units")
    p.add_argument("--modules", default=",".join(UNITS),
                   help="fnmatch patterns of the modules to place")
    p.add_argument("--stages", type=int, default=BOARD_CHIP["lane_stages"],
                   help="--lane-stages of the chip (default: the board chip's)")
    p.add_argument("--timeout", type=float, default=1800)
    a = p.parse_args(argv)
    set_tool_environment()
    t0 = time.perf_counter()
    design = (a.out / "chip").resolve()
    cfg = dict(BOARD_CHIP) | {"lane_stages": a.stages}
    generate_chip(cfg.pop("model"), design, **cfg)
    pats = a.modules.split(",")
    rep = synth_layer(design, "ecp5", dsp=True, netlists=("json",), timeout=a.timeout,
                      modules=_with_boxes(design, pats))
    entries = {e["module"]: e for e in rep.data["modules"]}
    names = sorted(n for n in entries if any(fnmatch.fnmatch(n, q) for q in pats)
                   and entries[n].get("status") == "ok")
    vmods = split_verilog(Design.open(design).source_texts())
    print(f"placing {len(names)} modules ...", file=sys.stderr, flush=True)

    def one(name):
        wd = design / "units"
        try:
            r = place_module(design, wd, entries, name, "ecp5", DEVICES["ecp5"][-1:], dsp=True,
                             timeout=a.timeout, freq_mhz=None, vmods=vmods)
        except SynthError as e:  # one unit's failure is a row
            return {"module": name, "error": str(e)}
        row = {"module": name, "fmax_mhz": r["fmax_mhz"], "critical_path": r["critical_path"],
               "seconds": r["seconds"]}
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row

    rows = parallel_map(one, [(n,) for n in names], 2)
    rows.sort(key=lambda r: r.get("fmax_mhz") or 0)
    out = {"chip": BOARD_CHIP | {"lane_stages": a.stages}, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "units.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'module':<32} {'Fmax MHz':>9}  {'logic+route ns':>14}  critical path")
    for r in rows:
        if "error" in r:
            print(f"{r['module']:<32}  failed: {r['error']}")
            continue
        cp = r["critical_path"] or {}
        ns = f"{cp.get('logic_ns', 0):.1f}+{cp.get('routing_ns', 0):.1f}"
        print(f"{r['module']:<32} {r['fmax_mhz'] or 0:>9.2f}  {ns:>14}  "
              f"{cp.get('from', '?')} -> {cp.get('to', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
