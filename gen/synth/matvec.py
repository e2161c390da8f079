"""``hardwire synth`` of a matvec design: yosys on the whole engine, then nextpnr on it in the
pin harness for Fmax."""

import json
import shutil
import time
from pathlib import Path

from ..design import REPORT, Design, replace_file, synth_dir
from ..errors import UserError
from .devices import PLACERS
from .pnr import WrapPorts, place_and_route, synth_wrapped
from .tables import SynthReport
from .tools import SynthError, SynthTimeout, pkg_version
from .yosys import synth_verilog

__all__ = ["synth_matvec", "load_matvec"]


def load_matvec(design: Path) -> dict:
    """A matvec design's manifest, checked for what synthesis needs."""
    d = Design.open(design).require("top", "sources", *(f"{side}.{key}" for side in ("in", "out")
                                                          for key in ("data", "valid", "ready",
                                                                      "count", "bits")))
    for s in d.manifest["sources"]:
        if not (design / s).is_file():
            raise UserError(f"{design}: source {s} named in manifest.json is missing")
    return d.manifest


def synth_matvec(design: Path, target: str, pnr: bool, timeout: float, *, flatten: bool,
                 freq_mhz: float | None):
    """Synthesise (and place-and-route) a ``hardwire matvec`` design directory; see
    :func:`gen.synth.synth_design`."""
    t0 = time.perf_counter()
    m = load_matvec(design)
    workdir = synth_dir(design, target)
    # Start clean: a stale netlist or log from an earlier run must not be mistaken for
    # this run's output.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    top, sources = m["top"], list(m["sources"])

    do_pnr = pnr and target in PLACERS
    wrapped = pnr_res = None
    note = None
    if do_pnr:
        wrapped, netlist = synth_wrapped(sources, top, WrapPorts.from_manifest(m), target,
                                          workdir, cwd=design, timeout=timeout,
                                          flatten=flatten)
    if wrapped is not None and not flatten:
        # One yosys run serves both: with the hierarchy kept the DUT module is synthesised
        # exactly as alone (measured identical), and its subtree is counted apart from the
        # harness.
        syn = wrapped
    else:
        syn = synth_verilog(sources, top, target, workdir, cwd=design, timeout=timeout,
                            flatten=flatten)
    status = "ok"
    if not pnr:
        note, status = "place-and-route skipped (--no-pnr)", "skipped"
    elif not do_pnr:
        note, status = f"no place-and-route for the {target} target", "none"
    else:
        # The statistics stand without Fmax: a design too big for the device, or too slow
        # to route, still gets its report, with the reason in place of the figure.
        try:
            pnr_res = place_and_route(netlist, target, workdir, timeout=timeout,
                                      freq_mhz=freq_mhz)
            if pnr_res["fmax_mhz"] is None:
                note, status = "nextpnr reported no clock frequency", "no_clock"
        except SynthTimeout as e:
            note, status = f"place-and-route failed: {e}", "timeout"
        except SynthError as e:
            note, status = f"place-and-route failed: {e}", "failed"
    fmax = pnr_res["fmax_mhz"] if pnr_res else None
    cpv = m.get("cycles_per_vector")
    data = {
        "format": "hardwire-synth/1",
        "design": str(design),
        "top": top,
        "strategy": m.get("strategy"),
        "target": target,
        "flow": {"flatten": flatten, "yosys_script": syn["script"],
                 "stat_top": top,
                 "pnr_args": pnr_res["args"] if pnr_res else None,
                 "wrapper": ("shift-in/shift-out harness; DUT ports on registers, valid/ready "
                             "on registered pins") if wrapped else None},
        "tools": {"yosys": syn["yosys"], "yosys_runner": syn["runner"],
                  "nextpnr": (f"yowasp-{PLACERS[target].tool} "
                              f"{pkg_version('yowasp-' + PLACERS[target].tool)}")
                  if do_pnr else None},
        "stats": syn["stats"],
        "cells": syn["cells"],
        "fmax_mhz": fmax,
        "fmax_note": note,
        "pnr_status": status,
        "pnr": None if pnr_res is None else {
            "device": pnr_res["device"], "clocks": pnr_res["clocks"],
            "utilisation": pnr_res["utilisation"],
            "wrapped_stats": wrapped["stats"] if flatten else wrapped["total"]},
        "latency_cycles": m.get("latency_cycles"),
        "cycles_per_vector": cpv,
        "throughput_mvec_s": round(fmax / cpv, 3) if fmax and cpv else None,
        "seconds": {"synth": round(syn["seconds"] + (
                        wrapped["seconds"] if wrapped and wrapped is not syn else 0), 3),
                    "pnr": pnr_res["seconds"] if pnr_res else None,
                    "total": round(time.perf_counter() - t0, 3)},
    }
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    # A copy per target survives the next target's run; DESIGN/report.json is the latest.
    (workdir / "report.json").write_text(text)
    path = design / REPORT
    replace_file(path, text.encode())
    return SynthReport(data, path)
