"""``--quant``: how a float checkpoint's projections become exact block-affine integers."""

import numpy as np

from golden.blockquant import (
    BlockAffine,
    decode,
    encode,
    quantize_per_channel,
    quantize_per_group,
    quantize_ternary,
)

from ..errors import UserError

__all__ = ["QUANTS", "KEEP_FLOAT", "quantize", "check_quant", "short"]

#: ``--quant`` for float checkpoints: llama.cpp's Q4_0/Q4_1/Q8_0 blocks, OCP MXFP4, symmetric
#: intN per channel (``intN``) and per group of 32 columns (``intNg``), BitNet ternary (one
#: absmean scale per tensor). See :mod:`golden.blockquant`.
QUANTS = ("q4_0", "q4_1", "q8_0", "mxfp4", "int2", "int3", "int4", "int8",
          "int2g", "int3g", "int4g", "int8g", "ternary")

#: ``--quant none``: keep a checkpoint's float tensors as they are, for the float backend (the
#: float reference of the file itself); the integer model and the hardware refuse it.
KEEP_FLOAT = "none"


def check_quant(quant: str) -> None:
    if quant not in QUANTS + (KEEP_FLOAT,):
        raise UserError(f"unknown --quant {quant!r}; known: {', '.join(QUANTS)}, "
                        f"{KEEP_FLOAT}")


def short(e: Exception) -> str:
    """The first line of an exception's message, at most 160 characters."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


def quantize(a: np.ndarray, quant: str, where: str) -> BlockAffine | np.ndarray:
    """``a [rows, cols]`` in the ``--quant`` format ``quant``; ``where`` names it in errors."""
    if quant == KEEP_FLOAT:
        return np.asarray(a, np.float32)
    rows, cols = a.shape
    try:
        if quant == "ternary":
            return quantize_ternary(a)
        if quant.startswith("int") and quant.endswith("g"):
            return quantize_per_group(a, int(quant[3:-1]))
        if quant.startswith("int"):
            return quantize_per_channel(a, int(quant[3:]))
        fmt = quant.upper()
        return decode(fmt, encode(fmt, a), rows, cols)
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
