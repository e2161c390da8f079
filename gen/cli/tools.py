"""The commands that take a design directory: ``sim``, ``synth``, ``asic``, ``report``."""

import argparse
import sys
from pathlib import Path

from .options import (
    at_least_one,
    count,
    doc,
    int_list,
)

__all__ = ['add_sim', 'add_synth', 'add_asic', 'add_report']


def add_sim(sub) -> argparse.ArgumentParser:
    sim = sub.add_parser("sim", help="prove a design bit-exact against golden with cocotb",
                         description=doc(run_sim))
    sim.add_argument("design", type=Path,
                     help="directory written by 'hardwire matvec', 'layer' or 'chip'")
    sim.add_argument("--simulator", choices=("icarus", "verilator"),
                     help="default: icarus for matvec designs, verilator for layers and chips")
    sim.add_argument("--vectors", type=at_least_one, default=100,
                     help="random vectors per test (default 100)")
    sim.add_argument("--seed", type=count, default=1)
    sim.add_argument("--waves", action="store_true", help="dump waveforms")
    return sim


def run_sim(a):
    """Run the cocotb testbench on a generated design: random vectors, worst-case vectors, and
    valid/ready stalls on both sides, compared exactly with the golden model.
    """
    import json

    from sim.runner import run_chip, run_layer, run_matvec

    from ..design import CYCLES, Design

    d = Design.read(a.design, lambda e: f"{a.design} is not a design directory "
                                        f"(manifest.json: {e})")
    kind = d.check_format().check_sources().check_rom_image_files().kind
    if kind in ("layer", "chip"):
        from ..cycles import cycle_report

        run = run_layer if kind == "layer" else run_chip
        res = run(a.design, simulator=a.simulator or "verilator", seed=a.seed, waves=a.waves)
        if res.ok:
            rep, table = cycle_report(a.design)
            (a.design / CYCLES).write_text(json.dumps(rep, indent=1) + "\n")
            print(table)
    else:
        res = run_matvec(a.design, simulator=a.simulator or "icarus", vectors=a.vectors,
                         seed=a.seed, waves=a.waves)
    print(res.summary())
    return 0 if res.ok else 1


def add_synth(sub) -> argparse.ArgumentParser:
    syn = sub.add_parser("synth", help="synthesise with yosys and place-and-route with nextpnr",
                         description=doc(run_synth))
    syn.add_argument("design", type=Path)
    syn.add_argument("--target", default="ecp5", choices=("generic", "ice40", "ecp5"))
    syn.add_argument("--no-pnr", action="store_true", help="skip place-and-route")
    syn.add_argument("--timeout", type=float, default=1800, help="seconds per tool run (for a "
                     "layer: per module)")
    syn.add_argument("--dsp", action="store_true", help="layer: map the units' multipliers to "
                     "DSP blocks (default: LUTs, as for matvec designs)")
    syn.add_argument("--jobs", type=at_least_one, help="layer: yosys runs at once (default: "
                     "the CPUs, at most 8)")
    syn.add_argument("--modules", metavar="GLOB[,GLOB...]", help="layer: synthesise only the "
                     "modules matching these patterns (e.g. 'layer_*,hw_Bfp*'); the others "
                     "are reported as skipped")
    return syn


def run_synth(a):
    """Synthesise a design: generic 2-input gates, or LUT4/carry/FF/BRAM for iCE40/ECP5 plus
    nextpnr Fmax. Writes report.json in the design directory and prints a table. A layer
    design (hardwire layer) is synthesised per module: each unit, the lane datapath once
    (counted once per lane), the lane array and the top's glue, each with the modules it
    instantiates as black boxes; it gets no place-and-route. A chip design (hardwire chip
    --no-clock-gating) is synthesised the same way, then its module netlists are joined and
    placed and routed on the smallest ECP5/iCE40 that holds it; if none does, the largest
    module that fits is placed alone (the report says which). Exit code 1 when a module
    timed out or failed (the report says which).
    """
    from ..synth import synth_design

    modules = None if a.modules is None else [m.strip() for m in a.modules.split(",")]
    report = synth_design(a.design, target=a.target, pnr=not a.no_pnr, timeout=a.timeout,
                          jobs=a.jobs, modules=modules, dsp=a.dsp)
    print(report.table())
    bad = [e for e in report.data.get("modules", ()) if e["status"] in ("timeout", "failed")]
    if bad:
        print(f"hardwire: warning: {len(bad)} module{'s' if len(bad) > 1 else ''} not "
              f"synthesised ({', '.join(e['module'] + ': ' + e['status'] for e in bad)}); "
              "the totals leave them out", file=sys.stderr)
        return 1
    return 0


def add_asic(sub) -> argparse.ArgumentParser:
    asc = sub.add_parser("asic", help="ASIC hand-off: gate-level netlist, ROM macros, LibreLane "
                         "config", description=doc(run_asic))
    asc.add_argument("design", type=Path)
    asc.add_argument("--out", type=Path, required=True, help="output directory")
    asc.add_argument("--clock-period", type=float, default=20.0, metavar="NS",
                     help="CLOCK_PERIOD of config.json, in ns (a target; default 20)")
    asc.add_argument("--gates", default="abc", choices=("abc", "techmap", "2-input"),
                     help="abc: yosys 'synth' (ABC to simple gates, the default); techmap: "
                     "'synth -noabc' (faster, slightly larger); 2-input: then 'abc -g' to the "
                     "2-input gate set (slowest)")
    asc.add_argument("--timeout", type=float, default=1800, help="seconds per yosys run")
    asc.add_argument("--jobs", type=at_least_one, help="yosys runs at once")
    asc.add_argument("--no-lint", action="store_true", help="skip Verilator lint and the "
                     "Icarus compile of the netlist")
    return asc


def run_asic(a):
    """Write the ASIC hand-off of a design directory (hardwire chip/layer/matvec with ROM image
    files): a gate-level netlist from yosys' generic synthesis (per module, write_verilog
    -noattr) with every ROM a black-box macro (one per image), the macros' black boxes and
    simulation models, a LibreLane config.json (MACROS with their instances; LEF/GDS to be
    provided by a ROM compiler), MACROS.md, the clock-gating points, and manifest.json. The
    netlist is read back by yosys (check -assert) and linted by Verilator and Icarus.
    """
    from ..synth import asic_handoff

    asic_handoff(a.design, a.out, clock_period_ns=a.clock_period, gates=a.gates,
                 timeout=a.timeout, jobs=a.jobs, lint=not a.no_lint)
    return 0


def add_report(sub) -> argparse.ArgumentParser:
    rep = sub.add_parser("report", help="area, cycles, tokens/s, weight error and a design-space "
                         "sweep of a chip (or layer) design",
                         description=doc(run_report))
    rep.add_argument("design", type=Path, help="directory written by 'hardwire chip' (or "
                     "'hardwire layer')")
    rep.add_argument("--sweep", action="store_true", help="chip: the design-space sweep and "
                     "its Pareto plot")
    rep.add_argument("--target", default="ecp5", choices=("generic", "ice40", "ecp5"))
    rep.add_argument("--dsp", action="store_true", help="figures with multipliers in DSP "
                     "blocks (yosys runs with --dsp)")
    rep.add_argument("--synth", action="store_true", help="run yosys per module (unless the "
                     "manifest has figures for this target) and nextpnr on the Fmax module "
                     "(unless cached); without it, earlier runs' results are used and the rest "
                     "is calibrated")
    rep.add_argument("--timeout", type=float, default=900, help="--synth: seconds per module "
                     "(default 900); a module that runs out is calibrated instead")
    rep.add_argument("--jobs", type=at_least_one, help="--synth: yosys runs at once")
    rep.add_argument("--fmax-module", metavar="MODULE", help="the module to place and route "
                     "for Fmax (default: a lane of the first decoder layer)")
    rep.add_argument("--model", help="the design's model file, when it is not 'tiny' or "
                     "'smollm2' (for the sweep and the weight error)")
    rep.add_argument("--quant", metavar="Q", help="the --quant the design was made with, "
                     "for a float checkpoint")
    rep.add_argument("--lanes", type=int_list, metavar="P,P,...", help="--sweep: lanes per "
                     "layer to try (default: the powers of two 8..256 that divide every "
                     "pass's rows, the largest such divisor and the design's own)")
    rep.add_argument("--head-lanes", type=int_list, metavar="P,P,...", help="--sweep: LM-head "
                     "lanes to try (default: likewise for the vocabulary, up to 1024)")
    return rep


def run_report(a):
    """Report a chip (or layer) design: ROM/RAM bits, lanes and the logic of every module
    (yosys figures where synthesised, else calibrated per module kind, each figure saying
    which), cycles per token (formula, ideal, measured by 'hardwire sim'), the Fmax of one
    module placed alone by nextpnr and tokens/s at it, the weight error per format, and with
    --sweep a lanes x LM-head lanes x strategy sweep with its Pareto front (DIR/pareto.png).
    Writes DIR/report.json (no wall times: the same design gives the same bytes).
    """
    from ..report import make_report

    _, table = make_report(a.design, target=a.target, dsp=a.dsp, synth=a.synth,
                           timeout=a.timeout, jobs=a.jobs, fmax_module=a.fmax_module,
                           sweep=a.sweep, model=a.model, quant=a.quant, lanes=a.lanes,
                           head_lanes=a.head_lanes,
                           log=lambda s: print(f"hardwire: {s}", file=sys.stderr))
    print(table)
    return 0
