"""Quantisers that make block-affine weights from float weights: intN per channel
(:func:`quantize_per_channel`), intN per group of 32 columns (:func:`quantize_per_group`)
and BitNet ternary (:func:`quantize_ternary`). MXFP4 has its own module
(:mod:`golden.blockquant.mxfp4`); llama.cpp's Q4_0/Q4_1/Q8_0 are written as bytes by
:func:`golden.blockquant.encode`.
"""

import numpy as np

from .affine import BlockAffine, common_exponent, f16_exact_parts, to_common

__all__ = [
    "quantize_per_channel",
    "quantize_per_group",
    "quantize_ternary",
    "TERNARY_SCALE_BITS",
    "float_matrix",
    "column_groups",
]


def quantize_per_channel(w: np.ndarray, bits: int, scale_bits: int = 16) -> BlockAffine:
    """Symmetric per-row intN: ``c = round(w / s)``, ``s = max|w_row| / (2**(bits-1) - 1)``.

    The scale is stored with ``scale_bits`` significant bits at one tensor-wide exponent, so
    that ``D`` is an integer like every other format."""
    if not 2 <= bits <= 8:
        raise ValueError(f"per-channel bits must be in 2..8, not {bits}")
    w = np.asarray(w, dtype=np.float64)
    rows, cols = w.shape
    qmax = (1 << (bits - 1)) - 1
    s = np.abs(w).max(axis=1) / qmax
    s = np.where(s > 0, s, 1.0)
    exp = int(np.floor(np.log2(s.max()))) - scale_bits + 2
    scale = np.maximum(np.round(np.ldexp(s, -exp)).astype(np.int64), 1)
    s_eff = np.ldexp(scale.astype(np.float64), exp)
    codes = np.clip(np.round(w / s_eff[:, None]), -qmax - 1, qmax).astype(np.int8)
    return BlockAffine(codes, scale[:, None], np.zeros((rows, 1), np.int64), exp, cols, bits,
                       f"int{bits}")


# --- quantisers for float checkpoints ---------------------------------------------------------
#
# These (per group, ternary and golden.blockquant.mxfp4's) take float weights ``[rows, cols]``,
# round them to float32 first (what the checkpoint loader hands over; :func:`float_matrix`),
# and compute in float64, where every step below is exact or rounds exactly once. A float32
# (24-bit significand) divided by a scale with an 11-bit significand is either exactly a
# rounding tie or at least ``2**-24`` of its magnitude away from one, far more than float64's
# rounding error (``2**-53`` of it), so ``np.rint`` (IEEE round half to even) of the float64
# quotient is the round half to even of the exact quotient.


def float_matrix(w, what: str) -> np.ndarray:
    """``w`` as float64 after rounding to float32; ``what`` names the quantiser in errors."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{what} needs a 2-D weight matrix, not shape {w.shape}")
    if w.dtype.kind not in "fiu":
        raise ValueError(f"{what} needs float weights, not dtype {w.dtype}")
    with np.errstate(over="ignore"):
        w = w.astype(np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: weights hold NaN or infinity (or exceed float32)")
    return w.astype(np.float64)


def column_groups(w: np.ndarray, block: int, what: str) -> np.ndarray:
    """``w [rows, cols]`` as ``[rows, cols / block, block]``."""
    rows, cols = w.shape
    if cols % block:
        raise ValueError(f"{what} needs columns in groups of {block}, not {cols}")
    return w.reshape(rows, cols // block, block)


def quantize_per_group(w: np.ndarray, bits: int, block: int = 32) -> BlockAffine:
    """Symmetric intN with one float16 scale per group of ``block`` columns (``M = 0``).

    As llama.cpp's Q4_0 does for 4 bits, the weight of largest magnitude in a group (the first
    one, on equal magnitudes) ``mx`` maps to the code ``-2**(N-1)``, so all ``2**N`` codes are
    used:

    - ``d = float16(mx / -2**(N-1))`` (round to nearest even; a scale beyond float16's range
      raises ``ValueError``, a tiny one becomes a float16 subnormal or zero);
    - ``c = clip(round_half_even(w / d), -2**(N-1), 2**(N-1) - 1)``, computed against the
      float16 ``d`` itself (llama.cpp divides by the unrounded scale); ``c = 0`` where
      ``d = 0``;
    - ``w ~ d * c``: ``D`` is ``d``'s exact float16 mantissa at the tensor's smallest float16
      exponent (:func:`golden.blockquant.f16_exact_parts`), like Q4_0/Q8_0.

    On SmolLM2's layer-0 projections this has about 0.6x the relative error of the symmetric
    grid ``amax / (2**(N-1) - 1)`` at 2 bits and 0.86x at 4 bits. ``source`` is ``int<N>g``.
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"per-group bits must be in 2..8, not {bits}")
    x = column_groups(float_matrix(w, "per-group intN"), block, "per-group intN")
    rows, nb, _ = x.shape
    top = 1 << (bits - 1)
    idx = np.abs(x).argmax(axis=2)[:, :, None]
    mx = np.take_along_axis(x, idx, axis=2)[:, :, 0]
    with np.errstate(over="ignore"):
        d16 = (mx / -top).astype(np.float16)  # mx / 2**k is exact; one rounding to float16
    if not np.all(np.isfinite(d16)):
        raise ValueError(f"a group's scale exceeds float16 (|w| up to {np.abs(mx).max():g})")
    dm, de = f16_exact_parts(d16)
    d = np.ldexp(dm.astype(np.float64), de)[:, :, None]
    q = np.divide(x, d, out=np.zeros_like(x), where=d != 0)
    codes = np.clip(np.rint(q), -top, top - 1).astype(np.int8).reshape(rows, nb * block)
    exp = common_exponent((dm, de))
    scale = to_common(dm, de, exp)
    return BlockAffine(codes, scale, np.zeros_like(scale), exp, block, bits, f"int{bits}g")


#: Significant bits of the ternary tensor scale: float16's precision, without its range.
TERNARY_SCALE_BITS = 11


def quantize_ternary(w: np.ndarray) -> BlockAffine:
    """BitNet b1.58's absmean ternary quantiser, with **one scale for the whole tensor**:

    - ``gamma = mean(|w|)`` over every weight of the tensor (float64), then rounded to
      ``TERNARY_SCALE_BITS`` = 11 significant bits (round half to even): ``gamma = D * 2**exp``
      exactly, ``D`` odd (trailing zeros move into ``exp``);
    - ``c = clip(round_half_even(w / gamma), -1, 1)`` against that rounded ``gamma`` (BitNet
      divides by ``gamma + eps``; an all-zero tensor here simply gets ``c = 0``, ``D = 0``).

    2-bit codes, ``M = 0``, one block per row (``block = cols``, ``D`` repeated per row, as
    per-channel tensors: the layer splits them into lane blocks). ``source`` is ``ternary``.
    """
    w = float_matrix(w, "ternary")
    rows, cols = w.shape
    gamma = float(np.abs(w).mean()) if w.size else 0.0
    if gamma > 0:
        m, e = np.frexp(gamma)  # gamma = m * 2**e, 0.5 <= m < 1
        D = int(np.rint(np.ldexp(m, TERNARY_SCALE_BITS)))
        exp = int(e) - TERNARY_SCALE_BITS
        while D % 2 == 0:
            D, exp = D // 2, exp + 1
        codes = np.clip(np.rint(w / np.ldexp(float(D), exp)), -1, 1).astype(np.int8)
    else:
        D, exp, codes = 0, 0, np.zeros((rows, cols), np.int8)
    scale = np.full((rows, 1), D, np.int64)
    return BlockAffine(codes, scale, np.zeros_like(scale), exp, cols, 2, "ternary")
