"""``hardwire chip``: the whole model as one design directory.

The directory holds the Verilog (the chip top, every decoder layer and unit as its own
module, the lane modules, the ROM primitive), the mask-ROM images, a golden token sequence and
``manifest.json``. The golden sequence is the integer model's greedy generation from a seeded
prompt that starts with the extreme ids ``0`` and ``vocab - 1``, filling the KV caches to
``ctx``.
"""

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from golden.integer import IntFormat

from .design import (
    check_lane_stages,
    check_rom_images,
    header,
    lint_waivers,
    rom_files,
    table_rom_bits,
    write_design,
)
from .errors import UserError
from .layer import (
    check_lanes,
    convert_modules,
    default_beat,
    layer_tensors,
    module_roles,
    weight_bits,
    weights_block,
)
from .limits import check_memory, ctx_bytes
from .moe import chip_moe
from .output import check_output_directory

__all__ = ["generate_chip", "chip_digest", "TOP", "golden_sequence"]

TOP = "hardwire_chip"

#: ``--lane``: how a lane reads a weight block (:class:`hdl.lane_array.LaneArray`)
LANE_KINDS = ("serial", "parallel")


def chip_digest(m, **params) -> str:
    """A digest of every weight of model ``m`` and the generation parameters: the name of a
    cached design (``build/chip/``) that a changed model file never reuses."""
    w = m.weights()
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for lw in w.layers:
        for v in lw.vectors().values():
            h.update(np.ascontiguousarray(v).tobytes())
    for t in layer_tensors(w):
        for a in (t.codes, t.scale, t.offset):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr((t.exp, t.block, t.bits)).encode())
    h.update(np.ascontiguousarray(w.final_norm).tobytes())
    return h.hexdigest()[:12]


def golden_sequence(golden, prompt: list[int], steps: int) -> tuple[list, list, list]:
    """Feed ``prompt`` then the model's own greedy tokens, ``steps`` positions in all:
    ``(inputs, next ids, their integer logits)``."""
    golden.reset()
    ins, outs, logits = [], [], []
    tok = prompt[0]
    for pos in range(steps):
        ins.append(int(tok))
        lg, nxt = golden.step(int(tok), pos)
        outs.append(int(nxt))
        logits.append(int(lg[nxt]))
        tok = prompt[pos + 1] if pos + 1 < len(prompt) else nxt
    golden.reset()
    return ins, outs, logits


def check_chip_lanes(cfg, lanes: int, head_lanes: int) -> None:
    check_lanes(cfg, lanes)
    if head_lanes < 1:
        raise UserError(f"--head-lanes must be positive, not {head_lanes}")


def pipeline_figures(top, lane_stages: int) -> dict:
    """The chip's pipeline registers, for the manifest: the lanes' stages, the cycles a lane
    array's pass takes after its last ROM read (:func:`hdl.lane_array.pass_latency`), the
    attention unit's registers, and the latency in cycles of every unit that states one
    (layer 0's; every layer has the same units)."""
    from hdl.attention_sizes import CONV_STAGES, OUT_STAGES, QUERY_STAGES
    from hdl.lane_array import pass_latency

    units = top.layers[0].units()
    return {"lane_stages": lane_stages, "lane_pass_latency": pass_latency(lane_stages),
            "attention_registers": {"kv_conversion": CONV_STAGES, "query_load": QUERY_STAGES,
                                    "output": OUT_STAGES},
            "unit_latency": {a: int(u.latency) for a, u in sorted(units.items())
                             if isinstance(getattr(u, "latency", None), int)}}


def generate_chip(model, out: Path, *, lanes: int | None = None,
                  head_lanes: int | None = None, ctx: int | None = None,
                  beat: int | None = None, seed: int = 0, quant: str = "q4_1",
                  rom_images: str = "auto", gate_clocks: bool = True, lane: str = "serial",
                  lane_stages: int = 0, log=print, progress=None) -> dict:
    """Write the design directory and return its manifest. ``progress(total)`` may return a
    bar (``update``, ``close``) for the layers' construction. ``gate_clocks``: each layer and
    the head stage on its own gated clock (:class:`hdl.chip.Chip`; for ASICs), or every
    register on ``clk`` (for FPGAs, whose clock nets cannot be gated by logic cleanly).
    ``lane``: ``serial`` (one bit plane of a block per cycle) or ``parallel`` (a block's whole
    codes per cycle, a multiplier per column); ``lane_stages`` pipeline registers in every
    lane (:mod:`hdl.lanes`)."""
    from hdl.chip import Chip
    from hdl.decoder import default_lanes

    from .models import Model, load_model

    t0 = time.perf_counter()
    check_output_directory(out)  # before the work: a bad --out fails at once
    m = model if isinstance(model, Model) else load_model(model, quant)
    cfg = m.cfg
    w = m.weights()
    ctx = ctx or min(16, cfg.max_ctx)
    if not 1 <= ctx <= cfg.max_ctx:
        raise UserError(f"--ctx must be in 1..{cfg.max_ctx} for {m.name}, not {ctx}")
    check_memory(ctx_bytes(cfg, ctx), f"--ctx {ctx}")
    if lane not in LANE_KINDS:
        raise UserError(f"--lane must be {' or '.join(LANE_KINDS)}, not {lane!r}")
    check_lane_stages(lane_stages)
    lanes = lanes or default_lanes(cfg, parallel=lane == "parallel", block=weights_block(w))
    head_lanes = head_lanes or lanes  # the LM head is padded to whole lanes
    check_chip_lanes(cfg, lanes, head_lanes)
    beat = beat or math.gcd(default_beat(cfg, lanes, weights_block(w)), head_lanes)
    check_rom_images(rom_images)
    files = rom_files(rom_images, weight_bits(w))
    bar = progress(cfg.n_layers) if progress else None
    fmt = IntFormat()
    try:
        top = Chip(cfg, w, ctx=ctx, lanes=lanes, head_lanes=head_lanes, beat=beat, fmt=fmt,
                   rom_images=files, gate_clocks=gate_clocks, parallel=lane == "parallel",
                   lane_stages=lane_stages, progress=(lambda: bar.update(1)) if bar else None)
    except ValueError as e:
        raise UserError(f"cannot build the chip of {m.name}: {e}") from None
    finally:
        if bar:
            bar.close()
    t_build = time.perf_counter()
    text = convert_modules(top, TOP)
    t_verilog = time.perf_counter()

    rng = np.random.default_rng(seed)
    prompt = [0, cfg.vocab - 1, *rng.integers(0, cfg.vocab, max(0, min(4, ctx) - 2)).tolist()]
    ins, outs, logits = golden_sequence(top.golden, prompt[:ctx], ctx)
    t_golden = time.perf_counter()

    roms = [r.image for r in top.roms() if r.image is not None]
    unit_cycles = {k: int(v) for k, v in top.unit_cycles(ctx - 1).items()}
    id_bits = top.in_layout.size - top.pos_bits
    manifest = header("hardwire-chip/1", "chip", TOP, roms) | {
        "in": {"valid": "x__valid", "ready": "x__ready", "data": "x__payload",
               "id_bits": id_bits, "pos_lo": id_bits, "pos_bits": top.pos_bits},
        "out": {"valid": "y__valid", "ready": "y__ready", "data": "y__payload",
                "id_bits": top.argmax.id_bits, "logit_lo": top.argmax.id_bits,
                "logit_bits": fmt.logit_bits, "logit_frac": fmt.logit_frac},
        "packing": ("one payload per token. In: the token id in bits [0, id_bits), its "
                    "position in [pos_lo, pos_lo + pos_bits); positions go 0, 1, 2, ... "
                    "(a new sequence starts again at 0). Out: the next token id (greedy) in "
                    "[0, id_bits) and its logit, two's complement Q.logit_frac, in "
                    "[logit_lo, logit_lo + logit_bits)"),
        "model": m.name,
        "weights_digest": chip_digest(m),
        "config": asdict(cfg) | {"head_dim": cfg.head_dim},
        "format_int": asdict(fmt),
        "ctx": ctx, "lanes": lanes, "head_lanes": head_lanes, "beat": beat,
        "clock_gating": gate_clocks, "lane": lane, "lane_stages": lane_stages,
        "rom_bits": top.rom_bits, "table_rom_bits": table_rom_bits(top),
        "ram_bits": top.ram_bits,
        "pipeline": pipeline_figures(top, lane_stages),
        "rom_bits_by_part": {"embedding": top.embed.rom_bits,
                             "layers": sum(layer.rom_bits for layer in top.layers),
                             "lm_head": top.head.rom_bits},
        "weights": int(sum(t.codes.size for t in layer_tensors(w)) - w.embedding.codes.size),
        "cycles": {
            "ideal_at_last_pos": top.ideal_cycles(ctx - 1),
            "ideal_note": (("per lane array: all weights / (lanes * block weights per cycle)"
                            if lane == "parallel" else
                            "per lane array: all weight bits / (lanes * block bits per cycle)")
                           + "; plus each layer's attention (2 * (pos+1) * n_heads)"),
            "units_at_last_pos": unit_cycles,
            "units_sum_at_last_pos": sum(unit_cycles.values()),
        },
        "vectors": {"tokens": {"in": ins, "out": outs, "logit": logits}},
        "lint_waivers": lint_waivers(),
        "modules": module_roles(top, TOP),
    }
    moe = chip_moe(top)
    if moe is not None:
        manifest["moe"] = moe
    write_design(out, manifest, text, top.roms())
    t_end = time.perf_counter()
    if log:
        log(f"chip of {m.name}: {cfg.n_layers} layers, {manifest['weights']} weights, "
            f"{lanes} {lane} lanes per layer, {head_lanes} for the LM head, beat {beat}, "
            f"ctx {ctx}; "
            f"ROM {top.rom_bits} bits, RAM {top.ram_bits} bits -> {out} (build "
            f"{t_build - t0:.1f} s, Verilog {t_verilog - t_build:.1f} s, golden "
            f"{t_golden - t_verilog:.1f} s, write {t_end - t_golden:.1f} s)")
    return manifest
