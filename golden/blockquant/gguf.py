"""GGUF tensor bytes to and from the block-affine form: :func:`decode` (llama.cpp's Q4_0,
Q4_1, Q8_0, MXFP4 and the k-quants) and :func:`encode` (llama.cpp's reference quantisers,
MXFP4's included). :mod:`golden.blockquant` gives each format's layout and its block-affine
form; MXFP4 and the k-quants have their own modules
(:mod:`golden.blockquant.mxfp4`, :mod:`golden.blockquant.kquants`).
"""

import numpy as np

from golden.numerics import roundf

from .affine import BlockAffine, common_exponent, f16_exact_parts, to_common
from .kquants import K_FORMATS, decode_k
from .mxfp4 import decode_mxfp4, mxfp4_elements, pack_mxfp4

__all__ = ["FORMATS", "decode", "encode"]

#: Supported GGUF tensor formats: name -> (block elements, bytes per block, code bits).
FORMATS = {
    "Q4_0": (32, 18, 4),
    "Q4_1": (32, 20, 4),
    "Q8_0": (32, 34, 8),
    "MXFP4": (32, 17, 5),
}

# The block layouts, checked on import as ggml's static_asserts check them (for example
# sizeof(block_q4_0) == sizeof(ggml_half) + QK4_0 / 2): scale fields, then the codes.
_FIELDS = {
    "Q4_0": (2, 32 // 2),  # f16 d, nibbles
    "Q4_1": (2, 2, 32 // 2),  # f16 d, f16 m, nibbles
    "Q8_0": (2, 32),  # f16 d, int8 codes
    "MXFP4": (1, 32 // 2),  # E8M0 scale, nibbles
}
_BAD = [f for f, (block, nbytes, _) in FORMATS.items()
        if block != 32 or sum(_FIELDS[f]) != nbytes]
if _BAD:
    raise AssertionError(f"block sizes of {_BAD} do not add up to their fields")


def _raw_blocks(fmt: str, raw: np.ndarray, rows: int, cols: int, block: int,
                nbytes: int) -> np.ndarray:
    """Raw bytes as ``[rows, cols / block, nbytes]``, checking the sizes."""
    if cols % block:
        raise ValueError(f"{fmt} tensor has {cols} columns, not a multiple of {block}")
    nb = cols // block
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != rows * nb * nbytes:
        raise ValueError(f"{fmt} tensor of {rows}x{cols} needs {rows * nb * nbytes} bytes, "
                         f"has {raw.size}")
    return raw.reshape(rows, nb, nbytes)


def decode(fmt: str, raw: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """Decode raw GGUF bytes (``uint8``, ``rows * cols / block * bytes`` of them) exactly."""
    if fmt in K_FORMATS:
        sblock, nbytes, _, _ = K_FORMATS[fmt]
        return decode_k(fmt, _raw_blocks(fmt, raw, rows, cols, sblock, nbytes), rows, cols)
    if fmt not in FORMATS:
        raise ValueError(f"unsupported tensor type {fmt}; supported: F32, F16, "
                         + ", ".join([*FORMATS, *K_FORMATS]))
    block, nbytes, bits = FORMATS[fmt]
    blocks = _raw_blocks(fmt, raw, rows, cols, block, nbytes)
    if fmt == "MXFP4":
        return decode_mxfp4(blocks)
    d = blocks[:, :, 0:2].copy().view(np.float16)[:, :, 0]
    dm, de = f16_exact_parts(d)
    if fmt == "Q8_0":
        codes = blocks[:, :, 2:].copy().view(np.int8).reshape(rows, cols)
        exp = common_exponent((dm, de))
        scale = to_common(dm, de, exp)
        offset = np.zeros_like(scale)
    else:
        qstart = 2 if fmt == "Q4_0" else 4
        q = blocks[:, :, qstart:]
        nib = np.concatenate([q & 0x0F, q >> 4], axis=2)  # elements 0..15, then 16..31
        codes = (nib.astype(np.int8) - 8).reshape(rows, cols)
        if fmt == "Q4_0":
            exp = common_exponent((dm, de))
            scale = to_common(dm, de, exp)
            offset = np.zeros_like(scale)
        else:
            m = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0]
            mm, me = f16_exact_parts(m)
            exp = common_exponent((dm, de), (mm, me))
            scale = to_common(dm, de, exp)
            offset = to_common(mm, me, exp) + 8 * scale
    return BlockAffine(codes, scale, offset, exp, block, bits, fmt)


def encode(fmt: str, w: np.ndarray) -> np.ndarray:
    """Quantise float weights ``[rows, cols]`` to raw GGUF bytes the way llama.cpp's reference
    quantiser does (``quantize_row_*_ref``). Used to build the seeded ``tiny`` model and tests.
    MXFP4 too (:func:`golden.blockquant.mxfp4_elements`: ties to the smaller magnitude)."""
    if fmt == "MXFP4":
        return pack_mxfp4(*mxfp4_elements(w)).reshape(-1)
    block, nbytes, _ = FORMATS[fmt]
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    x = w.reshape(rows, cols // block, block)
    out = np.zeros((rows, cols // block, nbytes), dtype=np.uint8)
    if fmt == "Q8_0":
        amax = np.abs(x).max(axis=2)
        d = amax / 127.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = roundf(x * inv[:, :, None]).astype(np.int8)  # llama.cpp: roundf, ties away
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:] = q.view(np.uint8)
    elif fmt == "Q4_0":
        idx = np.abs(x).argmax(axis=2)
        mx = np.take_along_axis(x, idx[:, :, None], axis=2)[:, :, 0]
        d = mx / -8.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = np.clip(np.trunc(x * inv[:, :, None] + 8.5), 0, 15).astype(np.uint8)
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    elif fmt == "Q4_1":
        lo = x.min(axis=2)
        hi = x.max(axis=2)
        d = (hi - lo) / 15.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = np.clip(np.trunc((x - lo[:, :, None]) * inv[:, :, None] + 0.5), 0, 15).astype(np.uint8)
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:4] = lo.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 4:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    else:
        raise ValueError(f"unsupported tensor type {fmt}")
    return out.reshape(-1)
