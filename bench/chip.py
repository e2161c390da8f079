"""``make bench-chip``: the whole chip's generation time and memory, its Verilator build time,
and tokens per second in Verilator, as the issue measures them.

    python -m bench.chip [--model smollm2] [--lanes 192] [--head-lanes 192]
                         [--lane parallel] [--ctx 16] [--runs 3] [--design DIR]

Generation runs in a child process (``hardwire chip``) whose peak memory is read from
``getrusage`` of the children (the largest process is reported). The model is then compiled
as ``hardwire generate --backend rtl`` compiles it (:func:`sim.fast.build`) and fed the
manifest's golden sequence ``--runs`` times in one process: every position's id and logit must
equal golden's. The first step includes loading the ROM images; the figures per token are
over the other steps. ``--design`` measures an existing chip design instead of generating
one. Writes ``build/bench/chip.json`` and prints a table. On SmolLM2 this takes about 30-40
minutes on 2 cores, most of it compiling.
"""

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import OUT, parser
from gen.design import Design


def main(argv=None):
    p = parser("python -m bench.chip", __doc__, lanes=192, head_lanes=192, ctx=16)
    p.add_argument("--lane", default="parallel", choices=("serial", "parallel"))
    p.add_argument("--runs", type=int, default=3, help="passes over the golden sequence")
    p.add_argument("--design", type=Path, help="an existing chip design (no generation)")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    res = {}
    if a.design is None:
        design = OUT / f"chip_{a.model}_{a.lane}{a.lanes}_ctx{a.ctx}"
        hw = str(Path(sys.executable).parent / "hardwire")
        t0 = time.perf_counter()
        subprocess.run([hw, "chip", "--model", a.model, "--lanes", str(a.lanes),
                        "--head-lanes", str(a.head_lanes), "--lane", a.lane, "--ctx",
                        str(a.ctx), "--out", str(design)], check=True)
        res["generate_seconds"] = round(time.perf_counter() - t0, 1)
        res["generate_peak_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    else:
        design = a.design
    man = Design.open(design).manifest
    res = {"design": str(design), "model": man["model"], "lane": man.get("lane", "serial"),
           "lanes": man["lanes"], "head_lanes": man["head_lanes"], "ctx": man["ctx"],
           "weights": man["weights"], "rom_bits": man["rom_bits"]} | res

    from sim.fast import ChipProcess, build, sim_threads

    _, seconds = build(design)
    res |= {"threads": sim_threads(), "build_seconds": round(seconds, 1),
            "build_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                   / 1024, 1) if seconds else None}  # None: built before
    v = man["vectors"]["tokens"]
    times, match, total = [], 0, 0
    with ChipProcess(design) as chip:
        for _ in range(a.runs):
            for pos, tok in enumerate(v["in"]):
                t0 = time.perf_counter()
                ident, logit = chip.step(tok, pos)
                times.append(time.perf_counter() - t0)
                total += 1
                match += (ident, logit) == (v["out"][pos], v["logit"][pos])
        cycles = chip.cycles[len(v["in"]) - 1]
    steady = times[1:]
    res |= {"rtl_equals_golden": f"{match}/{total}", "first_step_seconds": round(times[0], 2),
            "seconds_per_token_mean": round(statistics.mean(steady), 3),
            "seconds_per_token_median": round(statistics.median(steady), 3),
            "seconds_per_token_best": round(min(steady), 3),
            "tokens_per_second_median": round(1 / statistics.median(steady), 2),
            "cycles_last_position": cycles}
    (OUT / "chip.json").write_text(json.dumps(res, indent=1) + "\n")
    for k, val in res.items():
        print(f"{k:<26} {val}")
    return 0 if match == total else 1


if __name__ == "__main__":
    sys.exit(main())
