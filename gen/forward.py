"""``hardwire forward``: hidden states through a range of decoder layers, with the float
reference (:mod:`golden.llama`) or the integer golden (:mod:`golden.llama_int`).

The input is ``[T, dim]``: the hidden state at positions ``0..T-1``, fed one decode step at a
time. The float backend passes float32 from layer to layer; the golden backend converts the
input to the integer residual once and keeps it integer until the last layer, as the hardware
would. Every problem with the input raises :class:`gen.errors.UserError` with one line.
"""

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .limits import check_memory, ctx_bytes
from .output import atomic_file

__all__ = ["BACKENDS", "DEFAULT_CTX", "parse_layers", "load_input", "choose_ctx",
           "run_float", "run_golden", "forward"]

BACKENDS = ("float", "golden", "rtl")
#: Default KV cache length (capped at the model's own context length).
DEFAULT_CTX = 64


def parse_layers(text: str, n_layers: int, name: str) -> range:
    """``'A:B'`` (half-open, either end may be left out) or ``'N'`` (layer N alone)."""
    valid = (f"{name} has layers 0..{n_layers - 1}; give N or A:B with "
             f"0 <= A < B <= {n_layers}")
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if m:
        lo = int(m[1]) if m[1] else 0
        hi = int(m[2]) if m[2] else n_layers
    elif re.fullmatch(r"\s*\d+\s*", text):
        lo = int(text)
        hi = lo + 1
    else:
        raise UserError(f"--layers {text!r} is not N or A:B; {valid}")
    if not 0 <= lo < hi <= n_layers:
        what = "is empty" if lo >= hi and hi <= n_layers else "is out of range"
        raise UserError(f"--layers {text} {what}: {valid}")
    return range(lo, hi)


def load_input(path: Path, dim: int) -> np.ndarray:
    """A ``.npy`` of float hidden states ``[T, dim]`` (float16/32/64), as float32."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input file {path} does not exist")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"PK"):
            raise UserError(f"input file {path} is an .npz archive, not one .npy array")
        if magic != b"\x93NUMPY":
            raise UserError(f"input file {path} is not a .npy file (no NPY header)")
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"input file {path} is not a readable .npy array ({text[:160]})") \
            from None
    if not isinstance(x, np.ndarray):  # pragma: no cover - the magic check comes first
        raise UserError(f"input file {path} does not hold one array")
    if x.dtype.kind != "f":
        raise UserError(f"input file {path}: dtype {x.dtype} is not floating point "
                        "(float16, float32 or float64 hidden states expected)")
    if x.ndim != 2:
        raise UserError(f"input file {path} has shape {list(x.shape)}; expected 2-D "
                        f"[positions, {dim}]")
    if x.shape[1] != dim:
        raise UserError(f"input file {path} has shape {list(x.shape)}; the model's dim is "
                        f"{dim}, expected [positions, {dim}]")
    if x.shape[0] == 0:
        raise UserError(f"input file {path} has no positions (shape {list(x.shape)})")
    if not np.all(np.isfinite(x)):
        raise UserError(f"input file {path} contains NaN or infinity")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if not np.all(np.isfinite(x32)):
        raise UserError(f"input file {path} has values beyond the float32 range")
    return x32


def choose_ctx(ctx: int | None, positions: int, max_ctx: int, name: str) -> int:
    """The KV cache length: ``--ctx`` or ``min(DEFAULT_CTX, max_ctx)``; it must hold every
    position of the input and not exceed the model's context length."""
    if ctx is not None and ctx > max_ctx:
        raise UserError(f"--ctx {ctx} exceeds the context length of {name}, {max_ctx}")
    if positions > max_ctx:
        raise UserError(f"the input has {positions} positions, but {name} has a context "
                        f"length of {max_ctx}: position {positions - 1} is past it; "
                        "shorten the input")
    ctx = min(DEFAULT_CTX, max_ctx) if ctx is None else ctx
    if positions > ctx:
        raise UserError(f"position {positions - 1} of the input is at or past the context "
                        f"length {ctx}; raise --ctx, up to {max_ctx} for this model")
    return ctx


def run_float(cfg, layers, x: np.ndarray, ctx: int, step=lambda: None,
              indices=None) -> np.ndarray:
    """The float reference: each layer over all positions, a fresh KV cache per layer
    (``indices``: the layers' numbers, which set a gpt-oss layer's attention window)."""
    from golden import gpt_oss, llama

    h = np.array(x, np.float32)
    for i, w in zip(indices or range(len(layers)), layers, strict=True):
        cache = llama.KVCache(cfg, ctx)
        for t in range(len(h)):
            if gpt_oss.is_moe(cfg):
                h[t] = gpt_oss.layer_step(cfg, w, h[t], t, cache, cfg.window(i))
            else:
                h[t] = llama.layer_step(cfg, w, h[t], t, cache)
            step()
    return h


def run_golden(int_layers, x: np.ndarray, step=lambda: None) -> np.ndarray:
    """The integer golden: ``x`` to the residual once, integer between layers, back to float
    at the end. ``int_layers`` are :func:`golden.arch.int_layer` constants (one format)."""
    from golden.integer import IntCache, from_residual, to_residual

    fmt = int_layers[0].fmt
    h = to_residual(x, fmt)
    for L in int_layers:
        cache = IntCache(L.cfg, L.slots)
        for t in range(len(h)):
            h[t] = L.step(h[t], t, cache)
            step()
    return from_residual(h, fmt)


@dataclass
class ForwardResult:
    model: str
    layers: range
    positions: int
    ctx: int
    backend: str
    out: Path
    saturated: int = 0

    def summary(self) -> str:
        lr = self.layers
        which = f"layer {lr.start}" if len(lr) == 1 else f"layers {lr.start}:{lr.stop}"
        return (f"forward: {self.model} {which}, {self.positions} positions, "
                f"backend {self.backend} -> {self.out}")


def run_rtl(m, sel, x: np.ndarray, ctx: int, lanes: int | None = None,
            log=None) -> np.ndarray:
    """The generated RTL in Verilator, layer after layer: each layer's design is generated
    (once: ``build/forward/`` keeps it), built and driven with the residual tokens; its
    outputs feed the next layer. The result is dequantised like the golden backend's."""
    from golden.integer import IntFormat, from_residual, to_residual
    from sim.runner import drive_layer, simulator_available

    from .layer import generate_layer

    why = simulator_available("verilator")
    if why:
        raise UserError(why)
    fmt = IntFormat()
    h = to_residual(x, fmt)
    stem = "".join(c if c.isalnum() else "_" for c in m.name)
    for i in sel:
        # The directory name carries a digest of the layer's weights, so a changed model
        # file never reuses a stale design.
        w = m.layer(i)
        dig = hashlib.sha256()
        for t in w.tensors().values():
            for a in (t.codes, t.scale, t.offset):
                dig.update(np.ascontiguousarray(a).tobytes())
        for v in w.vectors().values():
            dig.update(np.ascontiguousarray(v).tobytes())
        d = (Path("build") / "forward"
             / f"{stem}_L{i}_ctx{ctx}_lanes{lanes or 'auto'}_{dig.hexdigest()[:10]}")
        if not (d / "manifest.json").exists():
            if log:
                log(f"layer {i}: generating RTL in {d}")
            generate_layer(m, i, d, lanes=lanes, ctx=ctx, log=None)
        if log:
            log(f"layer {i}: Verilator build and simulation of {len(h)} tokens")
        h = drive_layer(d, h)
    return from_residual(h, fmt)


def forward(model: str, layers: str, input_path: Path, backend: str, out: Path,
            ctx: int | None = None, quant: str | None = None, progress=None,
            warn=None, lanes: int | None = None, info=None) -> ForwardResult:
    """Run the hidden states in ``input_path`` through ``layers`` of ``model``; write the
    result to ``out`` atomically.

    ``progress(total)``, if given, returns an object with ``update(n)`` and ``close()`` (a tqdm
    bar); ``warn(text)`` receives warnings (input values the golden residual saturates)."""
    from .models import load_model

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    m = load_model(model, quant or "q4_1")
    m.check_quant_given(quant)
    cfg = m.cfg
    sel = parse_layers(layers, cfg.n_layers, m.name)
    x = load_input(input_path, cfg.dim)
    ctx = choose_ctx(ctx, len(x), cfg.max_ctx, m.name)
    check_memory(ctx_bytes(cfg, ctx), f"--ctx {ctx}")
    res = ForwardResult(m.name, sel, len(x), ctx, backend, Path(out))

    with atomic_file(out, "--out") as f:  # opened first: an unwritable path fails early
        weights = [m.layer(i) for i in sel]  # decode (and check) every layer before running
        if backend in ("golden", "rtl"):
            from golden.arch import int_layer
            from golden.integer import IntFormat

            fmt = IntFormat()
            lim = 2.0 ** (fmt.res_bits - 1 - fmt.res_frac)
            int_layers = []
            for i, w in zip(sel, weights, strict=True):
                try:
                    int_layers.append(int_layer(cfg, w, ctx, fmt, index=i))
                except ValueError as e:
                    raise UserError(f"{m.name} layer {i}: {e}") from None
            res.saturated = n = int(np.count_nonzero((x >= lim) | (x < -lim)))
            if n and warn is not None:
                warn(f"{n} input value{'s lie' if n > 1 else ' lies'} outside +-{lim:g}, the "
                     "range of the integer residual "
                     f"(Q{fmt.res_bits - fmt.res_frac - 1}.{fmt.res_frac}); saturated")
        total = len(sel) * len(x)
        bar = progress(total) if progress is not None else None
        step = (lambda: bar.update(1)) if bar is not None else (lambda: None)
        try:
            if backend == "float":
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    y = run_float(cfg, weights, x, ctx, step, indices=list(sel))
                if not np.all(np.isfinite(y)):
                    raise UserError("the float forward pass overflowed float32 (the input's "
                                    f"largest magnitude is {float(np.abs(x).max()):g})")
            elif backend == "golden":
                y = run_golden(int_layers, x, step)
            else:
                y = run_rtl(m, sel, x, ctx, lanes=lanes, log=info)
        finally:
            if bar is not None:
                bar.close()
        try:
            np.save(f, np.asarray(y, np.float32), allow_pickle=False)
            f.flush()
        except OSError as e:
            raise UserError(f"cannot write --out {out}: {e.strerror or e}") from None
    return res


def tty_progress(total: int, desc: str = "forward", unit: str = "step"):
    """A tqdm bar on stderr (by default over layers x positions), shown only when stderr is
    a TTY."""
    from tqdm import tqdm

    stream = sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not tty,
                leave=False, dynamic_ncols=True)
