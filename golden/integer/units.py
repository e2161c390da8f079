"""The integer units of a decoder layer besides attention: RMSNorm, RoPE, the softmax
weights (exp2), SiLU and SwiGLU, the residual add, and a block-affine projection."""

import math

import numpy as np

from golden.blockquant import BlockAffine, block_matvec
from golden.numerics import saturate

from .arith import bfp, bitlen, recip, rescale
from .format import IntFormat
from .tables import interpolate

__all__ = [
    "rms_norm_int",
    "rope_int",
    "exp2_neg",
    "softmax_weights",
    "sigmoid_int",
    "silu_int",
    "swiglu_int",
    "residual_add",
    "project",
    "check_acc_bound",
]


def rms_norm_int(h, gain: np.ndarray, gf: int, eps_term: int, fmt: IntFormat):
    """RMSNorm of the residual ``h`` into matvec activations ``(a, e)``.

    1. ``s = max(0, bitlen(max|h|) - (norm_bits - 1))``; ``x = h >> s`` (floor).
    2. ``T = sum(x*x) + (eps_term >> 2s)`` with ``eps_term = round(dim * eps * 4**res_frac)``.
    3. ``r = isqrt(T << 2*isqrt_frac)`` (floor): ``sqrt(T)`` with ``isqrt_frac`` fraction bits.
    4. ``(q, k) = recip(r, recip_bits)``.
    5. ``y = x * G * q``; its value is ``y * 2**(isqrt_frac - gf - k)`` (``G`` has sqrt(dim)
       folded in, see :func:`golden.integer.norm_gain`), and :func:`golden.integer.bfp` makes
       it ``abits`` wide.
    """
    h = np.asarray(h, np.int64)
    s = max(0, bitlen(h) - (fmt.norm_bits - 1))
    x = h >> np.int64(s)
    t = int(np.dot(x, x)) + (eps_term >> (2 * s))
    r = math.isqrt(max(t, 1) << (2 * fmt.isqrt_frac))
    q, k = recip(r, fmt.recip_bits)
    y = x * gain * np.int64(q)
    return bfp(y, fmt.abits, k + gf - fmt.isqrt_frac)


def rope_int(v, cos: np.ndarray, sin: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """Half rotation on ``v [heads, hd]`` (int32 Q.fx): ``(a*C - b*S) >> trig_frac`` and
    ``(b*C + a*S) >> trig_frac``, rounded, saturated to fx_bits."""
    half = v.shape[-1] // 2
    a, b = v[..., :half], v[..., half:]
    lo = rescale(a * cos - b * sin, fmt.trig_frac, fmt.fx_bits)
    hi = rescale(b * cos + a * sin, fmt.trig_frac, fmt.fx_bits)
    return np.concatenate([lo, hi], axis=-1)


def exp2_neg(d, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``2**(-d / 2**score_frac)`` in Q.prob_frac for ``d >= 0``: integer part as a right
    shift (floor), fraction by the interpolated :func:`golden.integer.exp2_table`."""
    d = np.asarray(d, np.int64)
    ip = d >> np.int64(fmt.score_frac)
    fp = d & np.int64((1 << fmt.score_frac) - 1)
    rb = fmt.score_frac - fmt.exp_lut_bits
    val = interpolate(table, fp >> np.int64(rb), fp & np.int64((1 << rb) - 1), rb)
    return np.where(ip >= 62, 0, val >> np.minimum(ip, 62))


def softmax_weights(scores, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """Unnormalised softmax in log2 units: ``w = exp2_neg(max(s) - s)``; the largest is
    ``2**prob_frac``. Normalisation happens after the weighted sum (one divide per head)."""
    scores = np.asarray(scores, np.int64)
    return exp2_neg(scores.max(axis=-1, keepdims=True) - scores, table, fmt)


def sigmoid_int(x, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``sigmoid(x)`` for ``x`` in Q.fx, in Q.prob_frac: the interpolated
    :func:`golden.integer.sigmoid_table` on ``[-range, range)``, 0 below and
    ``2**prob_frac`` above."""
    x = np.asarray(x, np.int64)
    sb = fmt.fx_frac - fmt.sig_step_bits
    t = x + np.int64(fmt.sig_range << fmt.fx_frac)
    n = 2 * fmt.sig_range << fmt.sig_step_bits
    inside = (t >= 0) & (t < np.int64(n << sb))
    tc = np.clip(t, 0, (n << sb) - 1)
    sig = interpolate(table, tc >> np.int64(sb), tc & np.int64((1 << sb) - 1), sb)
    return np.where(inside, sig, np.where(t < 0, 0, np.int64(1 << fmt.prob_frac)))


def silu_int(g, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``g * sigmoid(g)`` for ``g`` in Q.fx, returned in Q.(fx + prob_frac) (exact product),
    the sigmoid by :func:`sigmoid_int`."""
    g = np.asarray(g, np.int64)
    return g * sigmoid_int(g, table, fmt)


def swiglu_int(gate, up, sig_table: np.ndarray, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """``silu(gate) * up`` as matvec activations ``(a, e)``: ``s = rescale(silu_int(gate),
    prob_frac)`` (Q.fx), then the exact product ``s * up`` (Q.2fx) through :func:`bfp`."""
    s = rescale(silu_int(gate, sig_table, fmt), fmt.prob_frac, fmt.fx_bits)
    return bfp(s * np.asarray(up, np.int64), fmt.abits, 2 * fmt.fx_frac)


def residual_add(h, y, fmt: IntFormat) -> np.ndarray:
    """``h + y``: ``y`` (Q.fx) rounded to Q.res_frac, the sum saturated to res_bits."""
    return saturate(np.asarray(h, np.int64) + rescale(y, fmt.fx_frac - fmt.res_frac,
                                                      fmt.res_bits), fmt.res_bits)


def project(w: BlockAffine, a, e: int, fmt: IntFormat) -> np.ndarray:
    """``W @ (a * 2**e)`` as int32 Q.fx: the exact block product
    (:func:`golden.blockquant.block_matvec`, units ``2**(w.exp + e)``), rescaled once."""
    return rescale(block_matvec(w, a), -(w.exp + e) - fmt.fx_frac, fmt.fx_bits)


def check_acc_bound(w: BlockAffine, abits: int, name: str) -> None:
    """Raise ``ValueError`` unless every row's exact block product with ``abits``-bit
    activations stays below ``2**62`` (the int64 accumulators' bound)."""
    amax = 1 << (abits - 1)
    per_block = (np.abs(w.scale) * (w.block * (1 << (w.bits - 1))) * amax
                 + np.abs(w.offset) * (w.block * amax))
    if int(per_block.sum(axis=1).max()) >= 1 << 62:
        raise ValueError(f"{name}: accumulator bound exceeds 62 bits")
