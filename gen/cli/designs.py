"""The commands that write a design directory: ``matvec``, ``layer``, ``chip``."""

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .options import (
    at_least_one,
    count,
    doc,
    model_option,
    output_options,
    shape_options,
)

__all__ = ['add_matvec', 'add_layer', 'add_chip']


def add_matvec(sub) -> argparse.ArgumentParser:
    mv = sub.add_parser("matvec", help="generate a constant matrix-vector engine y = W x",
                        description=doc(run_matvec))
    mv.add_argument("--rows", type=count, help="output count (default: from --weights)")
    mv.add_argument("--cols", type=count, help="input count (default: from --weights)")
    mv.add_argument("--wbits", type=count, required=True, help="weight bits, 2..8")
    mv.add_argument("--abits", type=count, default=8, help="activation bits, 2..8 "
                    "(default 8)")
    mv.add_argument("--ternary", action="store_true", help="weights in {-1, 0, 1} (--wbits 2)")
    mv.add_argument("--strategy", default="folded", help="serial: activation-bit-serial "
                    "distributed arithmetic; folded: lanes with mask ROMs, weight-bit-serial "
                    "(scales to real layers); parallel: unrolled pipelined shift-add, one "
                    "vector per cycle (default folded)")
    mv.add_argument("--lanes", type=count, help="folded: parallel lanes (default "
                    "min(rows, 8))")
    mv.add_argument("--word", type=count, help="folded: weight bits per lane per cycle, "
                    "1..64 (default min(cols, 32))")
    mv.add_argument("--digit", type=count, help="serial: activation bits per "
                    "cycle, 1, 2 or 4 (default 1)")
    mv.add_argument("--stage-levels", type=count, help="parallel: adder "
                    "levels between pipeline registers, 0 for none (default 2)")
    mv.add_argument("--requant", action="store_true", help="requantise outputs to int8")
    mv.add_argument("--requant-scale", type=float, help="real scale for --requant (default: "
                    "the largest reachable |W x| maps to 127)")
    mv.add_argument("--rounding", help="requant rounding: floor, "
                    "trunc_zero, half_up, half_down, half_away, half_even (default half_away)")
    src = mv.add_mutually_exclusive_group()
    src.add_argument("--seed", type=count, default=0, help="seed of the synthetic "
                     "weights and golden vectors (default 0)")
    src.add_argument("--weights", type=Path, help="integer weights, rows x cols, as .npy")
    mv.add_argument("--rom-images", default="auto", help="folded: 'inline' ROM contents in "
                    "the Verilog, 'files' for $readmemh images, 'auto' uses files above 1 Mbit")
    mv.add_argument("--vectors", type=count, default=64, help="random golden vectors to "
                    "store besides the worst-case ones (default 64)")
    mv.add_argument("--out", type=Path, required=True, help="output directory (replaced "
                    "atomically)")
    return mv


#: matvec options that only one strategy reads
_STRATEGY_OPTIONS = {"digit": "serial", "stage_levels": "parallel", "lanes": "folded",
                     "word": "folded"}


def _check_strategy_options(a) -> None:
    """An option the chosen strategy (or a missing --requant) would ignore is refused."""
    for opt, strategy in _STRATEGY_OPTIONS.items():
        if getattr(a, opt) is not None and a.strategy != strategy:
            raise UserError(f"--{opt.replace('_', '-')} applies to --strategy {strategy} "
                            f"only, not {a.strategy}")
    for opt in ("requant_scale", "rounding"):
        if getattr(a, opt) is not None and not a.requant:
            raise UserError(f"--{opt.replace('_', '-')} applies with --requant only")


def run_matvec(a):
    """Generate a matrix-vector engine whose weights are constants: Verilog, ROM images,
    weights.npy, golden vectors and manifest.json in --out.
    """
    from golden.linear import LinearSpec

    from ..matvec import MatVecConfig, generate, load_weights, synthetic_weights

    try:
        spec = LinearSpec(wbits=a.wbits, abits=a.abits, ternary=a.ternary)
    except ValueError as e:
        raise UserError(str(e).replace("wbits", "--wbits").replace("abits", "--abits")) from None
    if a.weights is not None:
        w = load_weights(a.weights, spec)
        rows, cols = w.shape
        if (a.rows or rows) != rows or (a.cols or cols) != cols:
            raise UserError(f"weights file {a.weights} has shape {rows}x{cols} but --rows/"
                            f"--cols say {a.rows or rows}x{a.cols or cols}")
    else:
        if a.rows is None or a.cols is None:
            raise UserError("give --rows and --cols, or --weights")
        rows, cols, w = a.rows, a.cols, None
    _check_strategy_options(a)
    given = {k: getattr(a, k) for k in ("digit", "stage_levels", "rounding")
             if getattr(a, k) is not None}
    config = MatVecConfig(rows=rows, cols=cols, wbits=a.wbits, abits=a.abits,
                          ternary=a.ternary, strategy=a.strategy, lanes=a.lanes, word=a.word,
                          requant=a.requant, requant_scale=a.requant_scale, seed=a.seed,
                          rom_images=a.rom_images, **given)
    if w is None:
        w = synthetic_weights(rows, cols, spec, a.seed)
    m = generate(config, w, a.out, vectors=a.vectors,
                 log=lambda s: print(s, file=sys.stderr))
    print(f"{a.out}: {m['strategy']} {rows}x{cols} int{a.wbits}, out {m['out']['bits']} bits, "
          f"latency {m['latency_cycles']}, {m['cycles_per_vector']} cycles/vector")
    return 0


def add_layer(sub) -> argparse.ArgumentParser:
    lay = sub.add_parser("layer", help="generate one decoder layer of a model as Verilog",
                         description=doc(run_layer))
    model_option(lay)
    lay.add_argument("--layer", type=count, required=True, help="layer index")
    shape_options(lay, "layer")
    output_options(lay, "layer")
    return lay


def run_layer(a):
    """Generate a decoder layer: one lane array whose mask ROMs hold every projection, RMSNorm,
    RoPE, attention with a KV cache in RAM, SwiGLU and the residual adds. Writes the
    Verilog, ROM images, golden test tokens and manifest.json to --out.
    """
    from ..layer import generate_layer

    generate_layer(a.model, a.layer, a.out, lanes=a.lanes, ctx=a.ctx, beat=a.beat,
                   seed=a.seed, quant=a.quant, rom_images=a.rom_images,
                   lane_stages=a.lane_stages)
    return 0


def add_chip(sub) -> argparse.ArgumentParser:
    chp = sub.add_parser("chip", help="generate the whole model as Verilog: token ids in, "
                         "next token ids out",
                         description=doc(run_chip))
    model_option(chp)
    shape_options(chp, "chip")
    chp.add_argument("--head-lanes", type=at_least_one,
                     help="lanes of the LM head (default: --lanes); a vocabulary they do "
                          "not divide is padded with zero rows to whole lanes")
    chp.add_argument("--lane", default="serial", choices=("serial", "parallel"),
                     help="serial: each lane reads one bit plane of a weight block per cycle "
                          "(an adder tree); parallel: a block's whole codes per cycle (a "
                          "multiplier per column), bits times fewer cycles for more area "
                          "(default serial)")
    chp.add_argument("--no-clock-gating", action="store_true", help="every register on clk "
                     "(for FPGAs); by default each layer and the head stage run on a gated "
                     "clock (enable latch + AND, where an ASIC puts clock-gating cells)")
    output_options(chp, "chip")
    return chp


def run_chip(a):
    """Generate the whole chip: the embedding ROM, every decoder layer (each with its own lane
    array, mask ROMs and KV-cache RAM), the final RMSNorm, the LM head (a lane array) and
    argmax. Token ids and positions stream in, the next (greedy) id and its logit stream
    out. Writes the Verilog, ROM images, a golden token sequence (the integer model's greedy
    run) and manifest.json to --out; 'hardwire sim DIR' proves it.
    """
    from ..chip import generate_chip
    from ..forward import tty_progress

    generate_chip(a.model, a.out, lanes=a.lanes, head_lanes=a.head_lanes, ctx=a.ctx,
                  beat=a.beat, seed=a.seed, quant=a.quant, rom_images=a.rom_images,
                  gate_clocks=not a.no_clock_gating, lane=a.lane, lane_stages=a.lane_stages,
                  progress=lambda n: tty_progress(n, "chip: layers", "layer"))
    return 0
