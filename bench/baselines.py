"""Peer and baseline Verilog for a constant integer matrix-vector product ``y = W x``.

* :func:`da4ml_verilog` writes what da4ml 0.6 emits for exactly this matrix, either the
  combinational design or the pipelined one.
* :func:`naive_verilog` writes one combinational module with
  ``y_i = w_i0*x_0 + w_i1*x_1 + ...``, where the weights are Verilog literals.

Both designs use the same ports, which are da4ml's names. ``model_inp`` holds element ``j``
(``x_j``, two's complement) at bits ``[ew*j +: ew]``. ``model_out`` holds ``y_i`` the same way.
The pipelined design also has ``clk``. Each returned dict describes the ports (see
:func:`_port`), so one testbench (:func:`verify_iverilog`) and one synthesis script can drive
every design.

Run ``python -m bench.baselines`` for the demo.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Widths and ranges come from golden, the single definition the generators use too.
from golden.linear import row_bounds
from golden.numerics import signed_range, signed_width

__all__ = ["da4ml_verilog", "naive_verilog", "verify_iverilog"]

Design = dict[str, Any]


def _check(w: np.ndarray, abits: int) -> np.ndarray:
    """Return ``w`` as a 2-D int64 array, or raise if it is not an integer matrix."""
    w = np.asarray(w)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"Weights must be a non-empty 2-D matrix, not shape {w.shape!r}")
    if not np.issubdtype(w.dtype, np.integer):
        if not np.array_equal(w, np.round(w)):
            raise ValueError(f"Weights must be integers, not dtype {w.dtype!r} with fractions")
    w = w.astype(np.int64)
    # da4ml solves in float32, which holds integers exactly only below 2**24.
    if np.abs(w).max(initial=0) >= 1 << 24:
        raise ValueError(f"Weights must have |w| < 2**24, not {np.abs(w).max()!r}")
    if not isinstance(abits, int) or abits < 2:
        raise ValueError(f"Input width must be an integer >= 2, not {abits!r}")
    return w


def _port(name: str, count: int, elem_width: int, *, signed: bool = True, lsb_exp: int = 0):
    """Describe a packed port: element ``k`` is at ``[elem_width*k +: elem_width]``.

    The element's value is its bits, read as two's complement when ``signed``, times
    ``2**lsb_exp``.
    """
    return {
        "name": name,
        "width": count * elem_width,
        "count": count,
        "elem_width": elem_width,
        "signed": signed,
        "lsb_exp": lsb_exp,
    }


def _write_manifest(design: Design) -> None:
    """Write ``design`` as ``manifest.json`` next to its sources."""
    path = Path(design["out_dir"]) / "manifest.json"
    path.write_text(json.dumps(design, indent=1) + "\n")


def da4ml_verilog(
    w: np.ndarray,
    abits: int,
    out_dir: Path,
    *,
    pipelined: bool,
    latency_cutoff: float = 5.0,
    hard_dc: int = -1,
    name: str | None = None,
) -> Design:
    """Write da4ml's Verilog for ``y = W x``, with x signed ``abits``-bit integers.

    Parameters
    ----------
    w : np.ndarray
        Integer weights, shape ``(rows, cols)``.
    abits : int
        Input width. Each ``x_j`` is a signed ``abits``-bit integer.
    out_dir : Path
        da4ml's project folder. The Verilog goes in ``src/`` and ``src/static/``.
    pipelined : bool
        If true, da4ml splits the adder graph into register stages of at most
        ``latency_cutoff`` (da4ml's own delay units). That is the ``latency_cutoff`` argument of
        da4ml's ``RTLModel``, and 5 is the default of ``da4ml convert``.
    hard_dc : int
        The ``hard_dc`` delay constraint of da4ml's CMVM solver. -1, no constraint, is the
        default of ``da4ml.cmvm.solve``.
    name : str, optional
        Core module name. The top is ``<name>_wrapper``.

    Returns
    -------
    dict
        ``top``, ``sources``, ``clock``, ``inputs``/``outputs`` (see :func:`_port`),
        ``latency_cycles``, ``adders`` (add/sub ops in da4ml's solution), ``gen_seconds``
        (solve + codegen), da4ml's own estimates and settings. It is also written to
        ``out_dir/manifest.json``.
    """
    # da4ml is a bench-only dependency, so import it here rather than at module import.
    from da4ml.codegen import VerilogModel
    from da4ml.codegen.rtl.verilog.io_wrapper import hetero_io_map
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace, to_pipeline
    from da4ml.trace.ops import quantize
    from da4ml.types import minimal_kif

    w = _check(w, abits)
    rows, cols = w.shape
    name = name or f"da4ml_{'pipe' if pipelined else 'comb'}_{rows}x{cols}"
    out_dir = Path(out_dir).resolve()
    # da4ml's default hardware model: cost counts adder bits, no carry-chain latency model.
    hwconf = HWConfig(1, -1, -1)

    t0 = time.perf_counter()
    inp = FixedVariableArrayInput((cols,), hwconf=hwconf, solver_options={"hard_dc": hard_dc})
    # (k, i, f) = (1, abits-1, 0): a signed abits-bit integer. The output gets no quantize,
    # so da4ml keeps every y_i at its exact interval and nothing wraps or saturates.
    x = quantize(inp, 1, abits - 1, 0)
    # da4ml computes vec @ kernel, so the kernel is W transposed.
    comb = comb_trace(inp, x @ w.T.astype(np.float64))
    t1 = time.perf_counter()
    # The same call RTLModel makes for latency_cutoff > 0; doing it here keeps the Pipeline
    # object in hand for its stage count.
    solution = to_pipeline(comb, latency_cutoff, verbose=False) if pipelined else comb
    VerilogModel(solution, name, out_dir).write()
    t2 = time.perf_counter()

    src = out_dir / "src"
    n_stages = len(solution.solutions) if pipelined else 0
    generated = [src / f"{name}_stage{i}.v" for i in range(n_stages)]
    generated += [src / f"{name}.v", src / f"{name}_wrapper.v"]
    text = "".join(p.read_text() for p in generated)
    # da4ml copies all its primitives; list only those instantiated, so that a reader of the
    # sources never parses unused ones (lookup_table.v needs $readmemh files).
    static = [
        p
        for p in sorted((src / "static").glob("*.v"))
        if re.search(rf"\b{re.escape(p.stem)}\s*#\(", text)
    ]

    # The wrapper pads every element to one width; that width and the LSB position follow
    # from da4ml's own map. An output whose range is all even drops its known-zero LSBs, and
    # the wrapper restores them unless every output drops some (then lsb_exp > 0).
    _, _, _, (in_width, _) = hetero_io_map(comb.inp_qint, merge=True)
    _, _, _, (out_width, _) = hetero_io_map(comb.out_qint, merge=True)
    kif_out = [minimal_kif(q) for q in comb.out_qint]
    f_in = max(minimal_kif(q).fractional for q in comb.inp_qint)

    design: Design = {
        "design": "da4ml-pipe" if pipelined else "da4ml-comb",
        "top": f"{name}_wrapper",
        "core": name,
        "sources": [str(p) for p in static + generated],
        "out_dir": str(out_dir),
        "clock": "clk" if pipelined else None,
        "inputs": [_port("model_inp", cols, in_width // cols, lsb_exp=-f_in)],
        "outputs": [
            _port(
                "model_out",
                rows,
                out_width // rows,
                signed=any(k.keep_negative for k in kif_out),
                lsb_exp=-max(k.fractional for k in kif_out),
            )
        ],
        # One register in front of every stage, plus the output register.
        "latency_cycles": n_stages + 1 if pipelined else 0,
        "rows": rows,
        "cols": cols,
        "abits": abits,
        "adders": sum(op.opcode in (0, 1) for op in comb.ops),
        "stages": n_stages,
        "reg_bits": solution.reg_bits if pipelined else 0,
        "da4ml_cost": float(comb.cost),
        "da4ml_delay": float(comb.latency[1]),
        "settings": {
            "hwconf": list(hwconf),
            "hard_dc": hard_dc,
            "latency_cutoff": latency_cutoff if pipelined else None,
            "input_kif": [1, abits - 1, 0],
        },
        "solve_seconds": t1 - t0,
        "codegen_seconds": t2 - t1,
        "gen_seconds": t2 - t0,
    }
    _write_manifest(design)
    return design


def _literal(v: int) -> str:
    """Return ``v`` as a signed sized Verilog literal.

    A negative weight is written as the negation of a positive literal one bit wider than
    its magnitude: ``-4'sd8`` would be wrong, since ``4'sd8`` is already -8.
    """
    mag = abs(v)
    return f"{'-' if v < 0 else ''}{mag.bit_length() + 1}'sd{mag}"


def naive_verilog(w: np.ndarray, abits: int, out_dir: Path, *, name: str | None = None) -> Design:
    """Write ``y_i = w_i0*x_0 + w_i1*x_1 + ...`` as one combinational module.

    Zero weights are left out. All outputs share one width, the widest exact row bound, so
    the port packing matches da4ml's wrapper.
    """
    t0 = time.perf_counter()
    w = _check(w, abits)
    rows, cols = w.shape
    name = name or f"naive_{rows}x{cols}"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = row_bounds(w, abits)
    ow = int(np.max(signed_width(lo, hi)))

    # Format each distinct weight once, then build all terms with array operations.
    values, inverse = np.unique(w, return_inverse=True)
    literals = np.array([_literal(int(v)) for v in values])
    cols_str = np.char.add("*x", np.arange(cols).astype(str))
    terms = np.char.add(literals[inverse.reshape(w.shape)], cols_str[None, :])
    terms[w == 0] = ""
    exprs = [" + ".join(filter(None, row)) or f"{ow}'sd0" for row in terms.tolist()]

    a = abits
    lines = [
        "`timescale 1ns / 1ps",
        "",
        f"// y = W x for a constant {rows}x{cols} W; x_j signed {a}-bit, y_i signed {ow}-bit.",
        f"module {name} (",
        f"    input [{cols * a - 1}:0] model_inp,",
        f"    output [{rows * ow - 1}:0] model_out",
        ");",
    ]
    lines += [f"    wire signed [{a - 1}:0] x{j} = model_inp[{a * j} +: {a}];" for j in range(cols)]
    # Every operand is signed, so Verilog evaluates each sum signed at the width of y_i.
    lines += [f"    wire signed [{ow - 1}:0] y{i} = {e};" for i, e in enumerate(exprs)]
    lines += [f"    assign model_out[{ow * i} +: {ow}] = y{i};" for i in range(rows)]
    lines += ["endmodule", ""]
    path = out_dir / f"{name}.v"
    path.write_text("\n".join(lines))

    design: Design = {
        "design": "naive",
        "top": name,
        "sources": [str(path)],
        "out_dir": str(out_dir),
        "clock": None,
        "inputs": [_port("model_inp", cols, a)],
        "outputs": [_port("model_out", rows, ow)],
        "latency_cycles": 0,
        "rows": rows,
        "cols": cols,
        "abits": abits,
        # No adder graph of its own: Yosys builds one from the products and sums.
        "adders": None,
        "products": int((w != 0).sum()),
        "sum_adds": int(np.maximum((w != 0).sum(axis=1) - 1, 0).sum()),
        "gen_seconds": time.perf_counter() - t0,
    }
    _write_manifest(design)
    return design


def _test_vectors(w: np.ndarray, abits: int, n_random: int, seed: int) -> np.ndarray:
    """Return inputs that reach every row's exact bound, the two corners, and random ones."""
    lo, hi = signed_range(abits)
    # x_j = hi where w_ij > 0 and lo elsewhere gives max y_i; the mirror image gives min y_i.
    y_max = np.where(w > 0, hi, lo)
    y_min = np.where(w > 0, lo, hi)
    corners = np.full((2, w.shape[1]), [[lo], [hi]])
    rand = np.random.default_rng(seed).integers(lo, hi + 1, (n_random, w.shape[1]))
    return np.concatenate([y_max, y_min, corners, rand]).astype(np.int64)


def _pack(vecs: np.ndarray, elem_width: int) -> list[int]:
    """Pack each row of ``vecs`` into one integer, element 0 in the LSBs."""
    mask = (1 << elem_width) - 1
    return [sum((v & mask) << (elem_width * j) for j, v in enumerate(row)) for row in vecs.tolist()]


def _unpack(word: int, port: dict[str, Any]) -> list[int]:
    """Split one port value into its element values."""
    ew, mask = port["elem_width"], (1 << port["elem_width"]) - 1
    out = []
    for k in range(port["count"]):
        v = (word >> (ew * k)) & mask
        if port["signed"] and v >> (ew - 1):
            v -= 1 << ew
        out.append(v * 2 ** port["lsb_exp"])
    return out


def verify_iverilog(
    design: Design,
    w: np.ndarray,
    *,
    n_random: int = 32,
    seed: int = 0,
    max_latency: int = 16,
) -> int:
    """Check ``design`` against ``W @ x`` in Icarus Verilog, one input per cycle.

    The vectors reach every row's exact bound. The latency is measured, not assumed: the
    check fails unless it equals ``design["latency_cycles"]``. Returns the number of vectors
    checked.
    """
    if shutil.which("iverilog") is None:
        raise RuntimeError("Icarus Verilog (iverilog) is not on PATH")
    w = _check(w, design["abits"])
    (pin,), (pout,) = design["inputs"], design["outputs"]
    if pin["lsb_exp"] != 0 or pin["elem_width"] != design["abits"]:
        raise ValueError(f"Input port {pin!r} is not plain signed {design['abits']}-bit integers")
    vecs = _test_vectors(w, design["abits"], n_random, seed)
    expected = (vecs @ w.T).tolist()
    n, clocked = len(vecs), design["clock"] is not None
    n_cycles = n + max_latency if clocked else n

    work = Path(design["out_dir"]) / "tb"
    work.mkdir(parents=True, exist_ok=True)
    hex_digits = (pin["width"] + 3) // 4
    words = _pack(vecs, pin["elem_width"])
    (work / "inputs.hex").write_text("".join(f"{v:0{hex_digits}x}\n" for v in words))
    clk_port = f".{design['clock']}(clk), " if clocked else ""
    # Outputs are sampled just before the next input is applied, one line per cycle.
    step = "#1 clk = 1; #1 clk = 0;" if clocked else "#2;"
    tb = f"""`timescale 1ns / 1ps
module tb;
    reg [{pin["width"] - 1}:0] vecs [0:{n - 1}];
    reg [{pin["width"] - 1}:0] inp;
    wire [{pout["width"] - 1}:0] out;
    reg clk = 0;
    integer k;
    {design["top"]} dut ({clk_port}.{pin["name"]}(inp), .{pout["name"]}(out));
    initial begin
        $readmemh("inputs.hex", vecs);
        for (k = 0; k < {n_cycles}; k = k + 1) begin
            inp = (k < {n}) ? vecs[k] : 0;
            {step}
            $display("OUT %h", out);
        end
        $finish;
    end
endmodule
"""
    (work / "tb.v").write_text(tb)
    with tempfile.TemporaryDirectory() as tmp:
        vvp = Path(tmp) / "sim.vvp"
        cmd = ["iverilog", "-g2012", "-s", "tb", "-o", str(vvp), *design["sources"], "tb.v"]
        build = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if build.returncode != 0:
            raise RuntimeError(f"iverilog failed on {design['top']}:\n{build.stderr}")
        run = subprocess.run(
            ["vvp", "-n", str(vvp)],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    words = [ln.split()[1] for ln in run.stdout.splitlines() if ln.startswith("OUT ")]
    if len(words) != n_cycles:
        raise RuntimeError(f"Expected {n_cycles} output lines, got {len(words)}:\n{run.stdout}")
    # A word with x or z bits decodes to None, which matches no expected value.
    hex_word = re.compile(r"[0-9a-fA-F]+")
    got = [_unpack(int(v, 16), pout) if hex_word.fullmatch(v) else None for v in words]

    # Line k holds the output after cycle k: the result for input k - (latency - 1).
    shifts = range(max_latency) if clocked else range(1)
    for d in shifts:
        if got[d : d + n] == expected:
            latency = d + 1 if clocked else 0
            break
    else:
        bad = next(k for k in range(n) if got[k] != expected[k])
        raise AssertionError(f"{design['top']}: vector {bad}: got {got[bad]}, want {expected[bad]}")
    if latency != design["latency_cycles"]:
        raise AssertionError(
            f"{design['top']}: latency {latency}, manifest says {design['latency_cycles']}"
        )
    return n


def _summary(d: Design) -> str:
    """Return a one-line summary of a design."""
    out = d["outputs"][0]
    keys = ("adders", "stages", "reg_bits", "latency_cycles", "da4ml_cost")
    extra = ", ".join(f"{k}={d[k]}" for k in keys if k in d)
    return (
        f"{d['top']}: {d['rows']}x{d['cols']} -> {out['count']}x{out['elem_width']}b "
        f"(lsb_exp {out['lsb_exp']}), {extra}, gen {d['gen_seconds']:.3f} s"
    )


def _demo(root: Path) -> None:
    """Generate, check and time the baselines; see the module docstring."""
    int4 = np.random.default_rng(0).integers(-8, 8, (16, 16))
    designs = {
        "naive_16x16": naive_verilog(int4, 8, root / "naive_16x16"),
        "da4ml_comb_16x16": da4ml_verilog(int4, 8, root / "da4ml_comb_16x16", pipelined=False),
        "da4ml_pipe_16x16": da4ml_verilog(int4, 8, root / "da4ml_pipe_16x16", pipelined=True),
    }
    for key, d in designs.items():
        print(f"{key} = {json.dumps(d, indent=1)}")
        print(f"  iverilog: {verify_iverilog(d, int4)} vectors match W @ x")

    # Edge cases: a zero row, a zero column, an all-even row, weights of +-1, and a
    # matrix whose every row is even (the wrapper's output LSB then has weight 2).
    rng = np.random.default_rng(1)
    edge = rng.integers(-8, 8, (8, 8))
    edge[1], edge[:, 2], edge[3] = 0, 0, 2 * rng.integers(-4, 4, 8)
    edge[5] = rng.integers(-1, 2, 8)
    cases = {
        "edge_8x8": (edge, 8),
        "even_4x4": (2 * rng.integers(-1, 2, (4, 4)), 8),
        "int6_8x8": (edge, 6),
    }
    for case, (w, a) in cases.items():
        for d in (
            naive_verilog(w, a, root / case / "naive"),
            da4ml_verilog(w, a, root / case / "comb", pipelined=False),
            da4ml_verilog(w, a, root / case / "pipe", pipelined=True),
        ):
            print(f"{case}: {_summary(d)}; iverilog {verify_iverilog(d, w)} vectors ok")

    print("da4ml generation time (solve + codegen), int4 weights, int8 inputs:")
    for n in (16, 64):
        w = np.random.default_rng(0).integers(-8, 8, (n, n))
        for pipe in (False, True):
            kind = "pipe" if pipe else "comb"
            d = da4ml_verilog(w, 8, root / f"da4ml_{kind}_{n}x{n}", pipelined=pipe)
            print(
                f"  {n}x{n} {kind}: solve {d['solve_seconds']:.2f} s + codegen "
                f"{d['codegen_seconds']:.2f} s = {d['gen_seconds']:.2f} s, {d['adders']} adders"
            )
        d = naive_verilog(w, 8, root / f"naive_{n}x{n}")
        print(f"  {n}x{n} naive: {d['gen_seconds']:.3f} s")


if __name__ == "__main__":
    _demo(Path("build/baselines"))
