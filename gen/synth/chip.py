"""``hardwire synth`` of a chip on an FPGA: per-module synthesis, then the modules' netlists
joined in the pin harness and placed and routed by nextpnr on the smallest device of the family
that holds the chip. When no device of the family holds the whole chip, the largest
separately synthesised module (with everything under it) that fits is placed instead, and
the report says so, with the chip's figures against the largest device."""

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..design import Design, replace_file, synth_dir
from .devices import DEVICES, Device, fits
from .modules import synth_layer
from .netlist import VerilogModule, join_netlists, split_verilog, subtree
from .pnr import harness_ports, place_and_route, wrapper_verilog
from .tables import SynthReport
from .tools import SynthError, SynthTimeout, pkg_version
from .yosys import summarise, synth_verilog

__all__ = ["synth_chip", "subtree_stats", "place_module"]


def subtree_stats(entries: Mapping[str, Mapping], root: str, target: str,
                   partial: bool = False) -> dict | None:
    """The summary of ``root`` with everything under it, or None if a module of it was not
    synthesised; with ``partial``, the sum of those that were (a lower bound)."""
    cells: dict[str, int] = {}
    for name, n in subtree(entries, root).items():
        e = entries[name]
        if e.get("status") != "ok":
            if partial:
                continue
            return None
        for t, k in e["cells"].items():
            cells[t] = cells.get(t, 0) + n * k
    return summarise(cells, target)


def place_module(design: Path, workdir: Path, entries: Mapping[str, Mapping], root: str,
           target: str, devices: Sequence[Device], *, dsp: bool, timeout: float,
           freq_mhz: float | None, vmods: Mapping[str, VerilogModule]) -> dict:
    """Place and route ``root`` and everything under it (their JSON netlists from
    :func:`gen.synth.modules.synth_layer`'s ``entries``), in the harness, on the first of
    ``devices`` where nextpnr succeeds; :func:`gen.synth.pnr.place_and_route`'s result plus
    ``tried`` and ``harness_stats``."""
    wd = workdir / f"pnr_{root}"
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    names = subtree(entries, root)
    paths = [design / entries[n]["netlist"]["json"] for n in names]
    root_net = json.loads(paths[0].read_text())
    wrap = harness_ports(root_net, root)
    name, text = wrapper_verilog(root, wrap, name="hardwire_pnr_wrap")
    (wd / f"{name}.v").write_text(text)
    stub = wd / f"{root}_blackbox.v"
    stub.write_text(vmods[root].blackbox_text())
    syn = synth_verilog([wd / f"{name}.v"], name, target, wd, cwd=wd, timeout=timeout,
                        lib=[stub], netlist=wd / f"{name}.json", tag="wrap", dsp=dsp)
    joined = join_netlists([wd / f"{name}.json", *paths], name)
    net = wd / "joined.json"
    net.write_text(json.dumps(joined))
    tried = []
    for dev in devices:
        try:
            res = place_and_route(net, target, wd, timeout=timeout, freq_mhz=freq_mhz,
                                  device=(dev.args, dev.label))
        except SynthTimeout:
            raise
        except SynthError as e:
            tried.append(f"{dev.label}: {e}")
            continue
        res["tried"] = tried
        res["harness_stats"] = syn["stats"]
        return res
    raise SynthError("nextpnr failed on every device tried: " + "; ".join(tried))


def synth_chip(design: str | Path, target: str = "ecp5", *, pnr: bool = True,
               timeout: float = 1800.0, jobs: int | None = None,
               modules: Sequence[str] | None = None, dsp: bool = False,
               freq_mhz: float | None = None, pnr_timeout: float | None = None,
               log=None) -> SynthReport:
    """Synthesise a ``hardwire chip`` directory per module and, for ECP5 and iCE40, place and
    route it (see the module docstring). The report is ``DESIGN/synth_<target>/report.json``
    (a layer report plus ``pnr``: the fit per device, what was placed and where, Fmax and
    nextpnr's utilisation); ``fmax_mhz`` is set only when the whole chip was placed.
    ``timeout`` is per yosys run, ``pnr_timeout`` (default ``timeout``) per nextpnr run.

    A chip generated with clock gating (the default of ``hardwire chip``) is not placed: the
    gated clocks would be logic-driven FPGA clocks, and Fmax across them meaningless. It
    says so; generate it with ``--no-clock-gating``.
    """
    design = Path(design).resolve()
    do_pnr = pnr and target in DEVICES
    rep = synth_layer(design, target, timeout=timeout, pnr=pnr, jobs=jobs, modules=modules,
                      dsp=dsp, netlists=("json",) if do_pnr else ())
    d = rep.data
    if not do_pnr:
        return rep
    t0 = time.perf_counter()
    chip = Design.open(design)
    m = chip.manifest
    top = d["top"]
    entries = {e["module"]: e for e in d["modules"]}
    workdir = synth_dir(design, target)
    whole = subtree_stats(entries, top, target)
    devices = DEVICES[target]
    fit = [fits(whole, dev) for dev in devices] if whole else []
    if whole is None and d["missing"]:
        # Not all synthesised (timeouts, --modules): what was is a lower bound, and enough
        # to tell when the chip fits no device of the family.
        low = subtree_stats(entries, top, target, partial=True)
        fit = [fits(low, dev) | {"lower_bound": True, "missing": d["missing"]}
               for dev in devices]
        if any(f["fits"] for f in fit):
            fit = []  # a lower bound that fits says nothing
    pnr_data = {"fit": fit, "placed": None, "whole_design": False, "fmax_mhz": None,
                "device": None, "utilisation": None, "clocks": None, "critical_path": None,
                "seconds": None,
                "candidates": None}
    status, note = "ok", None
    if m.get("clock_gating", True):
        status = "skipped"
        note = ("not placed: the chip has gated clocks (logic-driven clocks on an FPGA); "
                "generate it with --no-clock-gating")
    else:
        vmods = split_verilog(chip.source_texts())
        root = top
        choices = [dev for dev, f in zip(devices, fit, strict=True) if f["fits"]] \
            if whole else []
        if not choices:
            # The largest separately synthesised subtree that fits the family's largest
            # device, by logic (with --modules: of those synthesised).
            key = "lut4_equiv" if target == "ecp5" else "LUT4"
            cands = []
            for name in entries:
                st = subtree_stats(entries, name, target)
                if st and name != top and fits(st, devices[-1])["fits"]:
                    cands.append((st.get(key, 0), name, st))
            cands.sort(key=lambda c: (-c[0], c[1]))
            pnr_data["candidates"] = [{"module": n, key: k} for k, n, _ in cands[:5]]
            if cands:
                root = cands[0][1]
                choices = [dev for dev in devices if fits(cands[0][2], dev)["fits"]]
        if not choices:
            status, note = "none", ("nothing synthesised fits a device of the family"
                                    if whole is None else
                                    "nothing of the design fits a device of the family")
        else:
            if log:
                log(f"placing and routing {'the whole chip' if root == top else root} on "
                    f"{choices[0].label} (nextpnr) ...")
            try:
                res = place_module(design, workdir, entries, root, target, choices, dsp=dsp,
                             timeout=pnr_timeout or timeout, freq_mhz=freq_mhz, vmods=vmods)
                pnr_data.update(placed=root, whole_design=root == top,
                                fmax_mhz=res["fmax_mhz"], device=res["device"],
                                utilisation=res["utilisation"], clocks=res["clocks"],
                                critical_path=res["critical_path"],
                                seconds=res["seconds"], args=res["args"], tried=res["tried"],
                                stats=subtree_stats(entries, root, target),
                                harness_stats=res["harness_stats"])
                if res["fmax_mhz"] is None:
                    status, note = "no_clock", "nextpnr reported no clock frequency"
            except SynthTimeout as e:
                status, note = "timeout", f"place-and-route failed: {e}"
            except SynthError as e:
                status, note = "failed", f"place-and-route failed: {e}"
    d["pnr_status"] = status
    d["fmax_note"] = note
    d["fmax_mhz"] = pnr_data["fmax_mhz"] if pnr_data["whole_design"] else None
    d["pnr"] = pnr_data
    tool = {"ecp5": "nextpnr-ecp5", "ice40": "nextpnr-ice40"}[target]
    d["tools"]["nextpnr"] = f"yowasp-{tool} {pkg_version('yowasp-' + tool)}"
    d["seconds"]["pnr"] = round(time.perf_counter() - t0, 3)
    d["seconds"]["total"] = round(d["seconds"]["total"] + d["seconds"]["pnr"], 3)
    replace_file(rep.path, (json.dumps(d, indent=2, sort_keys=True) + "\n").encode())
    return rep
