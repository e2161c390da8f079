"""``make bench-layer``: a decoder layer's generation time and memory, its Verilator build
time, and its cycles per token against the ideal, as the issue measures them.

    python -m bench.layer [--model smollm2] [--layer 0] [--ctx 16] [--lanes 64]

Generation runs in a child process (``hardwire layer``) whose peak memory is read from
``getrusage`` of the children (each conversion worker is a fork, counted separately; the
largest is reported). Writes ``build/bench/layer.json`` and prints a table.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench import OUT, parser
from gen.design import Design


def main(argv=None):
    p = parser("python -m bench.layer", __doc__, layer=0, ctx=16, lanes=64)
    p.add_argument("--no-sim", action="store_true", help="generation figures only")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    design = OUT / f"layer_{a.model}_{a.layer}"
    hw = str(Path(sys.executable).parent / "hardwire")
    t0 = time.perf_counter()
    subprocess.run([hw, "layer", "--model", a.model, "--layer", str(a.layer), "--ctx",
                    str(a.ctx), "--lanes", str(a.lanes), "--out", str(design)], check=True)
    gen_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    man = Design.open(design).manifest
    res = {"model": a.model, "layer": a.layer, "ctx": a.ctx, "lanes": man["lanes"],
           "beat": man["beat"], "weights": man["weights"], "rom_bits": man["rom_bits"],
           "ram_bits": man["ram_bits"], "generate_seconds": round(gen_s, 2),
           "generate_peak_mb": round(peak_mb, 1)}
    if not a.no_sim:
        from gen.cycles import cycle_report
        from sim.runner import run_layer

        sim = run_layer(design, simulator="verilator", opt="-O2")
        if not sim.ok:
            print(sim.summary())
            return 1
        rep, table = cycle_report(design)
        res |= {"verilator_build_seconds": round(sim.build_seconds, 1),
                "simulation_seconds": round(sim.test_seconds, 1),
                "cycles_first_token": rep["measured_per_token"][0],
                "cycles_last_token": rep["measured_per_token"][-1],
                "ideal_last_token": rep["ideal_per_token"][-1],
                "ratio_max": round(rep["ratio_max"], 4)}
        print(table)
    (OUT / "layer.json").write_text(json.dumps(res, indent=1) + "\n")
    for k, v in res.items():
        print(f"{k:<26} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
