"""``make synth``: the smallest chip of the tiny model through yosys and nextpnr on ECP5 (with
DSPs) and iCE40, side by side (``python -m gen.flow``)."""

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from .. import set_tool_environment
from ..errors import UserError
from .chip import synth_chip
from .tables import summary_md
from .tools import parallel_map

__all__ = ["BOARD_CHIP", "FPGA_RUNS", "fpga_flow", "main"]

#: The chip ``make synth`` places: the whole tiny model (2 layers, 90,112 weights, every ROM
#: and KV cache) with the fewest lanes and the narrowest beat, every register on ``clk``, and
#: every lane pipelined as deep as it goes (:data:`hdl.MAX_LANE_STAGES`).
BOARD_CHIP = {"model": "tiny", "lanes": 1, "head_lanes": 1, "beat": 1, "ctx": 16,
              "rom_images": "files", "gate_clocks": False, "lane_stages": 6}


#: ``make synth``: (target, DSPs, seconds per yosys run). Without DSPs (iCE40 HX8K has none)
#: yosys spends up to 15 minutes on the attention unit's multipliers, while the ECP5 chip is
#: placed and routed beside it; should it time out, the iCE40 totals are a lower bound, which
#: is still far beyond any iCE40.
FPGA_RUNS = (("ecp5", True, 1200.0), ("ice40", False, 900.0))

#: Seconds per nextpnr run: routing the whole chip at six lane stages took longer than 2,400 s
#: beside other jobs (2026-12-03).
PNR_TIMEOUT = 5400.0


def fpga_flow(out: str | Path, *, runs: Sequence[tuple[str, bool, float]] = FPGA_RUNS,
              pnr_timeout: float = PNR_TIMEOUT, jobs: int | None = None, log=print) -> dict:
    """Generate :data:`BOARD_CHIP` under ``out`` and run :func:`synth_chip` for each
    (target, DSPs, yosys timeout) of ``runs``, at the same time (nextpnr is single-threaded:
    one target's yosys runs beside the other's place-and-route); write ``out/summary.json``
    and ``out/summary.md``."""
    from ..chip import generate_chip

    t0 = time.perf_counter()
    out = Path(out)
    design = out / "tiny_chip"
    cfg = dict(BOARD_CHIP)
    model = cfg.pop("model")
    generate_chip(model, design, log=log, **cfg)
    t_gen = time.perf_counter() - t0

    def one(target: str, dsp: bool, timeout: float) -> dict:
        t1 = time.perf_counter()
        rep = synth_chip(design, target, dsp=dsp, timeout=timeout, pnr_timeout=pnr_timeout,
                         jobs=jobs, log=log)
        log(rep.table())
        key = f"{target}{'_dsp' if dsp else ''}"
        shutil.copyfile(rep.path, out / f"report_{key}.json")
        return {"report": f"report_{key}.json", "target": target, "dsp": dsp,
                "stats": rep.data["stats"], "complete": rep.data["complete"],
                "missing": rep.data["missing"], "pnr_status": rep.data["pnr_status"],
                "fmax_mhz": rep.data["fmax_mhz"], "fmax_note": rep.data["fmax_note"],
                "pnr": rep.data.get("pnr"), "seconds": round(time.perf_counter() - t1, 1),
                "tool_seconds": rep.data["seconds"]}

    results = {f"{r['target']}{'_dsp' if r['dsp'] else ''}": r
               for r in parallel_map(one, runs, len(runs))}
    summary = {"chip": BOARD_CHIP, "design": str(design), "results": results,
               "seconds": {"generate": round(t_gen, 1),
                           "total": round(time.perf_counter() - t0, 1)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = summary_md(summary)
    (out / "summary.md").write_text(md)
    log(md)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m gen.flow", description="make synth: the "
                                "smallest chip of the tiny model through yosys and nextpnr on "
                                "ECP5 (with DSPs) and iCE40")
    p.add_argument("--out", type=Path, default=Path("build/synth"))
    p.add_argument("--pnr-timeout", type=float, default=PNR_TIMEOUT,
                   help=f"seconds per nextpnr run (default {PNR_TIMEOUT:.0f})")
    p.add_argument("--jobs", type=int)
    a = p.parse_args(argv)
    set_tool_environment()
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        fpga_flow(a.out, pnr_timeout=a.pnr_timeout, jobs=a.jobs)
    except UserError as e:
        print(f"hardwire: error: {e}")
        return 2
    return 0
