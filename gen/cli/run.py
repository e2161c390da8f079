"""The commands that run a model: ``forward`` and ``generate``."""

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..generate import BACKENDS as GEN_BACKENDS
from .options import (
    at_least_one,
    doc,
    lane_stages_option,
    quant_help,
)

__all__ = ['add_forward', 'add_generate']


def add_forward(sub) -> argparse.ArgumentParser:
    fw = sub.add_parser("forward", help="run hidden states through decoder layers (float "
                        "reference or integer golden)",
                        description=doc(run_forward),
                        epilog="example:\n  hardwire forward --model tiny --layers 0:2 "
                        "--input x.npy --backend golden --out y.npy",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fw.add_argument("--model", required=True, metavar="M", help="'tiny' or 'tiny-moe' (shipped "
                    "synthetic models), 'smollm2' (SmolLM2-135M Q4_1), or a .gguf file, or a "
                    ".safetensors/.npz Llama or gpt-oss checkpoint with config.json beside it")
    fw.add_argument("--layers", required=True, metavar="A:B", help="layers A..B-1 (half-open, "
                    "like a Python slice; A or B may be left out), or N for layer N alone")
    fw.add_argument("--input", required=True, type=Path, metavar="X.npy",
                    help="hidden states, float [T, dim] .npy (float16/32/64, cast to "
                    "float32): positions 0..T-1")
    fw.add_argument("--backend", required=True, choices=("float", "golden", "rtl"),
                    help="float: float32 reference; golden: integer golden model; rtl: the "
                    "generated layers in Verilator")
    fw.add_argument("--lanes", type=at_least_one, help="rtl backend: lanes per layer "
                    "(default as for 'hardwire layer')")
    fw.add_argument("--out", required=True, type=Path, metavar="Y.npy", help="result, "
                    "float32 [T, dim] .npy (written atomically; the directory must exist)")
    fw.add_argument("--ctx", type=at_least_one, metavar="L", help="context length (KV cache "
                    "size), at least T and at most the model's (default min(64, the model's))")
    fw.add_argument("--quant", metavar="Q", help=quant_help())
    return fw


def run_forward(a):
    """Run hidden states through a range of a model's decoder layers, one decode
    step per position (row t of --input is position t), and save the result.

      float   the float32 reference (golden/llama.py; gpt-oss: golden/gpt_oss.py)
      golden  the bit-exact integer model of the hardware (golden/llama_int.py;
              golden/gpt_oss_int.py): the input becomes the integer residual once,
              stays integer between layers, and is converted back to float at the end
      rtl     the generated Verilog of each layer (hardwire layer), run in Verilator;
              designs are kept in build/forward/, so a second run skips generation
    """
    from ..forward import forward, tty_progress

    res = forward(a.model, a.layers, a.input, a.backend, a.out, ctx=a.ctx, quant=a.quant,
                  progress=tty_progress, lanes=a.lanes,
                  warn=lambda s: print(f"hardwire: warning: {s}", file=sys.stderr),
                  info=lambda s: print(f"hardwire: {s}", file=sys.stderr))
    print(res.summary())
    return 0


def add_generate(sub) -> argparse.ArgumentParser:
    gn = sub.add_parser("generate", help="generate text greedily with the whole model (float "
                        "reference, integer golden, or the chip's RTL)",
                        description=doc(run_generate),
                        epilog="examples:\n  hardwire generate --model smollm2 --prompt \"The "
                        "capital of France is\" --tokens 8\n  hardwire generate --model tiny "
                        "--prompt-ids 1,2,3 --tokens 4 --backend golden --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gn.add_argument("--model", required=True, metavar="M", help="'tiny', 'tiny-moe', 'smollm2', a "
                    ".gguf "
                    "file, or a .safetensors/.npz checkpoint with config.json (and "
                    "tokenizer.json) beside it")
    src = gn.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", metavar="TEXT", help="prompt text")
    src.add_argument("--prompt-ids", metavar="ID[,ID...]", help="prompt as token ids")
    gn.add_argument("--tokens", type=at_least_one, required=True, metavar="N",
                    help="tokens to generate")
    gn.add_argument("--backend", default="float", choices=tuple(GEN_BACKENDS),
                    help="default float")
    gn.add_argument("--ctx", type=at_least_one, metavar="L", help="context length (KV "
                    "cache size), at least prompt + N and at most the model's (default "
                    "prompt + N)")
    gn.add_argument("--quant", metavar="Q", help=quant_help())
    gn.add_argument("--lanes", type=at_least_one, metavar="P", help="rtl: lanes per decoder "
                    "layer of the generated chip (default as for 'hardwire chip')")
    gn.add_argument("--lane", choices=("serial", "parallel"), help="rtl: the lanes of the "
                    "generated chip, as for 'hardwire chip' (default parallel: several times "
                    "faster to simulate)")
    lane_stages_option(gn, default=None, prefix="rtl: ")
    gn.add_argument("--chip", type=Path, metavar="DIR", help="rtl: use this design written by "
                    "'hardwire chip' (same model, enough --ctx) instead of build/chip/")
    gn.add_argument("--compare", metavar="BACKEND", choices=tuple(GEN_BACKENDS),
                    help="also run BACKEND on the same prompt ids and print the two token "
                    "lists side by side (exit 1 if they differ); with --json, adds "
                    '"compare": {"backend", "ids", "same"}')
    gn.add_argument("--json", action="store_true", help="print one JSON object "
                    '{"prompt_ids": [...], "ids": [...], "text": "..."} instead of the text')
    return gn


def run_generate(a):
    """Generate text greedily: the prompt's tokens are fed one decode step at a time
    (KV cache), then each new token (the largest logit, lowest id on ties) is fed back.
    No BOS is added. Prints the prompt and the new text as it is produced.

      float   the float32 reference (golden/llama.py; gpt-oss: golden/gpt_oss.py)
      golden  the bit-exact integer model of the hardware (golden/llama_int.py;
              golden/gpt_oss_int.py)
      rtl     the generated chip (hardwire chip) in Verilator; generated and built
              once per model, KV-cache size and --lanes (cached in build/chip/)

    Tokenizers come from the model: a GGUF's own vocabulary and merges, the tokenizer.json
    beside a checkpoint, bytes for tiny (token i is byte i).
    """
    import json

    from ..generate import generate, parse_prompt_ids

    def show(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    ids = None if a.prompt_ids is None else parse_prompt_ids(a.prompt_ids)
    if a.chip is not None and "rtl" not in (a.backend, a.compare):
        raise UserError("--chip names the design of the rtl backend; add --backend rtl or "
                        "--compare rtl")
    if (a.lanes, a.lane, a.lane_stages) != (None, None, None) and \
            "rtl" not in (a.backend, a.compare):
        raise UserError("--lanes, --lane and --lane-stages shape the rtl backend's chip; add "
                        "--backend rtl or --compare rtl")
    from ..forward import tty_progress

    res = generate(a.model, a.tokens, a.backend, prompt=a.prompt, prompt_ids=ids, ctx=a.ctx,
                   quant=a.quant, on_text=None if a.json else show, echo=True,
                   lanes=a.lanes if a.backend == "rtl" else None,
                   progress=lambda desc, n: tty_progress(n, desc, "file"),
                   chip=a.chip if a.backend == "rtl" else None,
                   lane=a.lane if a.backend == "rtl" else None,
                   lane_stages=a.lane_stages if a.backend == "rtl" else None)
    other = None
    if a.compare:
        other = generate(a.model, a.tokens, a.compare, prompt_ids=res.prompt_ids, ctx=a.ctx,
                         quant=a.quant, lanes=a.lanes if a.compare == "rtl" else None,
                         progress=lambda desc, n: tty_progress(n, desc, "file"),
                         chip=a.chip if a.compare == "rtl" else None,
                         lane=a.lane if a.compare == "rtl" else None,
                         lane_stages=a.lane_stages if a.compare == "rtl" else None)
    same = other is None or other.ids == res.ids
    if a.json:
        out = res.as_json()
        if other is not None:
            out["compare"] = {"backend": a.compare, "ids": other.ids, "same": same}
        print(json.dumps(out, ensure_ascii=False))
    else:
        show("\n")
        if other is not None:
            print(_side_by_side(res, other, a.model))
    print(f"hardwire: {res.summary()}", file=sys.stderr)
    if other is not None:
        print(f"hardwire: {other.summary()}", file=sys.stderr)
    return 0 if same else 1


def _side_by_side(a, b, model: str) -> str:
    """Two generations of the same prompt as a table: position, id and text per backend."""
    from ..models import load_model

    tok = load_model(model, "q4_1").tokenizer(ids_ok=True)
    w = max(len(a.backend), len(b.backend), 6)
    lines = [f"{'pos':>4}  {a.backend:>{w}} {'':<12}  {b.backend:>{w}} {'':<12}",
             "-" * (4 + 2 * (w + 15))]
    for k, (x, y) in enumerate(zip(a.ids, b.ids, strict=True)):
        mark = "" if x == y else "   <- differs"
        lines.append(f"{len(a.prompt_ids) + k:>4}  {x:>{w}} {tok.decode([x])!r:<12}  "
                     f"{y:>{w}} {tok.decode([y])!r:<12}{mark}")
    same = a.ids == b.ids
    lines.append(f"{a.backend} and {b.backend}: "
                 + ("the same tokens" if same else "DIFFERENT tokens"))
    return "\n".join(lines)
