"""What the subcommands share: the one-line-error parser, the argument types, and the options
of the commands that build a model's design."""

import argparse
import inspect
from pathlib import Path

from hdl import MAX_LANE_STAGES

from ..errors import UserError

__all__ = ["Parser", "doc", "count", "at_least_one", "int_list", "quant_help", "model_option",
           "shape_options", "output_options"]


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block, so that scripts can show it as is.
        raise UserError(f"{message} (see '{self.prog} --help')")


def doc(run) -> str:
    """A subcommand's description: the docstring of the function that runs it."""
    return inspect.cleandoc(run.__doc__)


def count(text):
    """A non-negative integer; ranges beyond that are checked where the meaning is known."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return v


def at_least_one(text):
    v = count(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, not {text!r}")
    return v


def int_list(text):
    """Comma-separated positive integers."""
    return [at_least_one(t.strip()) for t in text.split(",")]


def quant_help() -> str:
    from ..models import QUANTS

    return (f"quantiser of .safetensors/.npz checkpoint projections: {', '.join(QUANTS)} "
            "(default q4_1; intN per channel, intNg per group of 32, ternary one "
            "absmean scale per tensor, mxfp4 OCP MX; GGUF and tiny keep their own), or none "
            "(the file's floats, for the float backend only); a gpt-oss checkpoint's MXFP4 "
            "experts are always kept exactly as stored")


def model_option(p) -> None:
    p.add_argument("--model", required=True,
                   help="'tiny', 'tiny-moe', 'smollm2', or a .gguf / .safetensors / .npz file")


#: What ``--lanes``, ``--ctx``, ``--beat``, ``--rom-images`` and ``--seed`` mean for ``layer``
#: and for ``chip``.
_DESIGN_HELP = {
    "layer": ("lanes of the lane array", "KV cache positions", "that divides the vector "
              "lengths, the block and --lanes", "above 1 Mbit", "golden test tokens"),
    "chip": ("lanes per decoder layer", "KV cache positions per layer", "that fits",
             "above 1 Mbit of weights", "golden prompt"),
}


def shape_options(p, command: str) -> None:
    """``--lanes``, ``--ctx`` and ``--beat`` of ``layer`` and ``chip``."""
    lanes, ctx, beat, _, _ = _DESIGN_HELP[command]
    p.add_argument("--lanes", type=at_least_one, help=f"{lanes}; must divide every pass's "
                   "rows (default: gcd(64, dim, kv_dim, ffn))")
    p.add_argument("--ctx", type=at_least_one, help=f"context length: {ctx} (default 16)")
    p.add_argument("--beat", type=at_least_one, help="vector elements per cycle between "
                   f"units (default: the widest {beat})")
    lane_stages_option(p, default=0)


def lane_stages_option(p, default: int | None, prefix: str = "") -> None:
    """``--lane-stages`` (``prefix``: the backend it applies to, in the help)."""
    p.add_argument("--lane-stages", type=count, default=default, metavar="N",
                   help=f"{prefix}pipeline registers in every lane, 0..{MAX_LANE_STAGES}, "
                        "cutting in this order: after the block sum, after the block term "
                        "D*P + M*S, before it, between its multipliers and their sum, halfway "
                        "up the block sum's adder tree; each pass takes N cycles more, for a "
                        "shorter clock period (default 0)")


def output_options(p, command: str) -> None:
    """``--quant``, ``--rom-images``, ``--seed`` and ``--out`` of ``layer`` and ``chip``."""
    _, _, _, rom_images, seed = _DESIGN_HELP[command]
    p.add_argument("--quant", default="q4_1", metavar="Q", help=quant_help())
    p.add_argument("--rom-images", default="auto", choices=("auto", "inline", "files"),
                   help="ROM contents as $readmemh files or inside the Verilog (auto: files "
                        f"{rom_images})")
    p.add_argument("--seed", type=count, default=0, help=f"seed of the {seed}")
    p.add_argument("--out", type=Path, required=True, help="output directory")
