"""``hardwire layer``: one decoder layer of a model, as a design directory.

The directory holds the Verilog (the top, the lane module, the ROM primitive), the lanes'
mask-ROM images, golden test tokens and ``manifest.json``. The test tokens fill the KV cache:
real token embeddings at positions ``0..ctx-1`` through the integer golden layer.
"""

import gc
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from golden.integer import IntCache, IntFormat, to_residual
from hdl import not_elaborated
from hdl.decoder import default_beat

from .design import (
    check_lane_stages,
    check_rom_images,
    header,
    lint_waivers,
    module_infos,
    rom_files,
    table_rom_bits,
    write_design,
)
from .errors import UserError
from .limits import check_memory, ctx_bytes
from .models import load_model
from .output import check_output_directory
from .verilog import to_verilog
from .weight_error import layer_weight_error

__all__ = ["generate_layer", "default_beat", "convert_modules", "module_roles", "TOP"]

TOP = "decoder_layer"


def layer_tensors(w) -> list:
    """The weight matrices of a layer (``w.tensors()``) or of a whole model
    (:class:`golden.llama.ModelWeights`: the embedding, the LM head and every layer's)."""
    layers = getattr(w, "layers", None)
    if layers is None:
        return list(w.tensors().values())
    return [w.embedding, w.lm_head, *(t for lw in layers for t in lw.tensors().values())]


def weights_block(w) -> int:
    """The lane block (:func:`golden.blockquant.lane_block`) of a layer's or a whole model's
    weight matrices (:func:`layer_tensors`)."""
    from golden.blockquant import lane_block

    return lane_block(*layer_tensors(w))


def weight_bits(w) -> int:
    """The code bits of a layer's or a whole model's weight matrices."""
    return sum(t.codes.size * t.bits for t in layer_tensors(w))


def check_lanes(cfg, lanes: int) -> None:
    """``--lanes`` must divide every pass's rows (:func:`hdl.decoder.pass_rows`)."""
    from hdl.decoder import pass_rows

    rows = pass_rows(cfg)
    if lanes < 1 or any(r % lanes for r in rows):
        raise UserError(f"--lanes {lanes} must divide every pass's rows "
                        f"({', '.join(map(str, rows))})")


def _convert(job):
    comp, name = job
    return to_verilog(comp, name)


_JOBS: list = []


def _convert_index(i: int) -> str:
    return _convert(_JOBS[i])


def _worker_init() -> None:
    """A conversion worker: no garbage collection (it is short-lived: collection only slows
    Amaranth down there, about 30 % of a conversion) and no Ctrl-C of its own. The parent
    takes the interrupt and ends the pool; a worker's KeyboardInterrupt traceback would only
    bury the one-line message."""
    import signal

    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def convert_modules(top, name: str, workers: int | None = None) -> str:
    """Verilog of ``top``, of every separately emitted module (``top.modules``) and of every
    lane module (:func:`lane_jobs`), converted in parallel processes. The order is fixed, so
    the text is the same whatever the worker count."""
    import multiprocessing as mp

    everything = [(top, name)] + sorted(((c, n) for n, c in top.modules.items()),
                                        key=lambda j: j[1])
    everything += lane_jobs(top)
    # Modules whose text is another's with some names replaced (a chip's decoder layers:
    # the same glue around differently named units) are not converted again.
    derived = top.derived_modules() if hasattr(top, "derived_modules") else {}
    jobs = [j for j in everything if j[1] not in derived]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers > 1 and "fork" in mp.get_all_start_methods():
        _JOBS[:] = jobs  # forked workers inherit the components; only indices are sent
        with mp.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
            texts = pool.map(_convert_index, range(len(jobs)), chunksize=1)
        _JOBS.clear()
    else:
        texts = [_convert(j) for j in jobs]
    # Elaborated in a worker process (or derived); this copy is never used, as expected.
    not_elaborated(*(comp for comp, _ in everything))
    done = {n: t for (_, n), t in zip(jobs, texts, strict=True)}
    for n, (src, renames) in derived.items():
        done[n] = _rename(done[src], renames)
    return "".join(done[n] for _, n in everything)


def _rename(text: str, renames: dict) -> str:
    """``text`` with every whole identifier in ``renames`` replaced."""
    import re

    if not renames:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
    return pattern.sub(lambda mo: renames[mo.group(1)], text)


def _lane_arrays(top) -> dict:
    """Lane module name -> a lane array of ``top`` (``top.engine``, or ``top.engines()``)
    with lanes of that module."""
    engines = top.engines() if hasattr(top, "engines") else [top.engine]
    return {e.lane_name: e for e in engines}


def lane_jobs(top) -> list:
    """``(lane component, module name)`` for each distinct lane module of ``top``'s lane
    arrays, in name order."""
    lanes = _lane_arrays(top)
    return [(lanes[n].lane(), n) for n in sorted(lanes)]


def module_roles(top, name: str) -> dict:
    """The manifest's ``modules``: the role and class of every module that
    :func:`convert_modules` emits (:func:`gen.design.module_infos`)."""
    lanes = {n: e.lane_kind for n, e in _lane_arrays(top).items()}
    return module_infos({name: top, **top.modules}, name, lanes)


def generate_layer(model, layer: int, out: Path, *, lanes: int | None = None,
                   ctx: int | None = None, beat: int | None = None, seed: int = 0,
                   quant: str = "q4_1", rom_images: str = "auto", lane_stages: int = 0,
                   log=print) -> dict:
    """Write the design directory and return its manifest. ``lane_stages`` pipeline
    registers in every lane (:mod:`hdl.lanes`)."""
    from hdl.decoder import decoder_layer, default_lanes

    t0 = time.perf_counter()
    check_output_directory(out)  # before the work: a bad --out fails at once
    from .models import Model

    m = model if isinstance(model, Model) else load_model(model, quant)
    cfg = m.cfg
    w = m.layer(layer)
    ctx = ctx or min(16, cfg.max_ctx)
    if not 1 <= ctx <= cfg.max_ctx:
        raise UserError(f"--ctx must be in 1..{cfg.max_ctx} for {m.name}, not {ctx}")
    check_memory(ctx_bytes(cfg, ctx), f"--ctx {ctx}")
    lanes = lanes or default_lanes(cfg)
    check_lanes(cfg, lanes)
    check_lane_stages(lane_stages)
    beat = beat or default_beat(cfg, lanes, weights_block(w))
    fmt = IntFormat()
    check_rom_images(rom_images)
    files = rom_files(rom_images, weight_bits(w))
    try:
        top = decoder_layer(cfg, w, index=layer, ctx=ctx, lanes=lanes, beat=beat, fmt=fmt,
                            rom_images=files, lane_stages=lane_stages)
    except ValueError as e:
        raise UserError(f"cannot build layer {layer} of {m.name}: {e}") from None
    t_build = time.perf_counter()
    text = convert_modules(top, TOP)
    t_verilog = time.perf_counter()

    # Golden tokens: real embeddings at positions 0..ctx-1, plus a sequence at the extremes.
    rng = np.random.default_rng(seed)
    emb = m.embedding()
    ids = rng.integers(0, emb.shape[0], ctx)
    x_real = to_residual(emb.permute_rows(ids).dequantize(), fmt)
    lim = 1 << (fmt.res_bits - 1)
    x_worst = np.stack([np.where(rng.random(cfg.dim) < 0.5, -lim, lim - 1)
                        if p % 3 == 0 else np.zeros(cfg.dim, np.int64) if p % 3 == 1
                        else rng.integers(-lim, lim, cfg.dim) for p in range(ctx)])
    seqs = {}
    for name, xs in (("real", x_real), ("extreme", x_worst)):
        cache = IntCache(cfg, top.golden.slots)
        ys = np.stack([top.golden.step(xs[p], p, cache) for p in range(ctx)])
        seqs[name] = (xs.astype(np.int64), ys.astype(np.int64))
    t_golden = time.perf_counter()

    unit_cycles = {k: int(v) for k, v in top.unit_cycles(ctx - 1).items()}
    roms = [r.image for r in top.roms() if r.image is not None]
    manifest = header("hardwire-layer/1", "layer", TOP, roms) | {
        "in": {"valid": "x__valid", "ready": "x__ready", "data": "x__payload",
               "beats": top.beats, "beat": beat, "bits": fmt.res_bits, "signed": True,
               "frac": fmt.res_frac, "pos_lo": beat * fmt.res_bits, "pos_bits": top.pos_bits},
        "out": {"valid": "y__valid", "ready": "y__ready", "data": "y__payload",
                "beats": top.beats, "beat": beat, "bits": fmt.res_bits, "signed": True,
                "frac": fmt.res_frac},
        "packing": ("a token is `beats` payloads; element i of a beat occupies bits "
                    "[i*bits, (i+1)*bits), two's complement; input beats carry the position "
                    "in bits [pos_lo, pos_lo + pos_bits)"),
        "model": m.name, "layer": layer,
        "config": asdict(cfg) | {"head_dim": cfg.head_dim},
        "format_int": asdict(fmt),
        "ctx": ctx, "lanes": lanes, "beat": beat, "lane_stages": lane_stages,
        "rom_bits": top.rom_bits, "table_rom_bits": table_rom_bits(top),
        "ram_bits": top.ram_bits,
        "weights": int(sum(t.codes.size for t in layer_tensors(w))),
        "weight_error": layer_weight_error(m, layer),
        "cycles": {
            "ideal_at_last_pos": top.ideal_cycles(ctx - 1),
            "ideal_note": top.IDEAL_NOTE,
            "units_at_last_pos": unit_cycles,
            "units_sum_at_last_pos": sum(unit_cycles.values()),
        },
        "vectors": {name: {"in": f"tokens_{name}_in.npy", "out": f"tokens_{name}_out.npy"}
                    for name in seqs},
        "lint_waivers": lint_waivers(),
        "modules": module_roles(top, TOP),
    }
    if hasattr(top, "rom_parts"):
        from .moe import layer_moe

        manifest["moe"] = layer_moe(top)

    def tokens(d: Path):
        for name, (xs, ys) in seqs.items():
            np.save(d / f"tokens_{name}_in.npy", xs)
            np.save(d / f"tokens_{name}_out.npy", ys)
    write_design(out, manifest, text, top.roms(), extra=tokens)
    t_end = time.perf_counter()
    if log:
        log(f"layer {layer} of {m.name}: {manifest['weights']} weights, {lanes} lanes, beat "
            f"{beat}, ctx {ctx}; ROM {top.rom_bits} bits, RAM {top.ram_bits} bits -> {out} "
            f"(build {t_build - t0:.1f} s, Verilog {t_verilog - t_build:.1f} s, golden "
            f"{t_golden - t_verilog:.1f} s, write {t_end - t_golden:.1f} s)")
    return manifest
