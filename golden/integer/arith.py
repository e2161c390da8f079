"""Integer primitives: the leading-one detector, rescaling by a power of two, block floating
point, the reciprocal, and the two conversions between float and the residual format."""

import numpy as np

from golden.numerics import round_shift, roundf, rounding_bias_terms, saturate

from .format import MODE, IntFormat

__all__ = ["bitlen", "rescale", "mul_rescale", "bfp", "recip", "to_residual", "from_residual",
           "to_fixed"]


def bitlen(v) -> int:
    """Bit length of ``max |v|`` (0 for all zeros): the leading-one detector."""
    return int(np.max(np.abs(np.asarray(v, dtype=np.int64)), initial=0)).bit_length()


def rescale(v, shift, bits: int):
    """``v * 2**-shift`` rounded (``half_away``) when ``shift > 0``, exact when ``shift <= 0``,
    then saturated to ``bits``. ``shift`` may be an array (one shift per element)."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim == 0:
        s = int(shift)
        if s > 0:
            return saturate(round_shift(v, min(s, 62), MODE), bits)
        # Any nonzero v shifted left by bits - 1 or more saturates, so capping the shift (and
        # the magnitude) there keeps int64 from overflowing without changing the result.
        k, lim = min(-s, bits - 1), 1 << (bits - 1)
        return saturate(np.clip(v, -lim, lim) << np.int64(k), bits)
    v, shift = np.broadcast_arrays(v, shift)
    out = np.empty(v.shape, np.int64)
    for s in np.unique(shift):
        sel = shift == s
        out[sel] = rescale(v[sel], int(s), bits)
    return out


def mul_rescale(v: np.ndarray, m: int, shift: int, bits: int) -> np.ndarray:
    """``rescale(v * m, shift, bits)`` with the product in exact Python integers (it may
    exceed 64 bits before the shift)."""
    out = []
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    const, per_neg, per_bit = rounding_bias_terms(max(shift, 0), MODE)
    for x in v.tolist():  # one head of elements per call: exact Python integers
        p = x * m
        if shift > 0:
            p = (p + const + per_neg * (p < 0) + per_bit * ((p >> shift) & 1)) >> shift
        else:
            p <<= -shift
        out.append(min(max(p, lo), hi))
    return np.array(out, np.int64)


def bfp(v, bits: int, frac: int) -> tuple[np.ndarray, int]:
    """Block floating point: ``v`` (value ``v * 2**-frac``) as ``bits``-bit mantissas ``a`` and
    one exponent ``e`` with value ``a * 2**e``.

    ``s = max(0, bitlen(max|v|) - (bits - 1))``, ``a = saturate(round_shift(v, s), bits)``,
    ``e = s - frac``. When nothing needs dropping, ``a == v`` exactly."""
    s = max(0, bitlen(v) - (bits - 1))
    return rescale(v, s, bits), s - frac


def recip(x: int, bits: int) -> tuple[int, int]:
    """Reciprocal of a positive integer as ``(r, k)`` with ``r = floor(2**k / x)`` and
    ``k = bitlen(x) - 1 + bits``, so ``2**(bits-1) <= r <= 2**bits``: a ``bits``-bit divider."""
    x = int(x)
    if x <= 0:
        raise ValueError("recip of a non-positive value")
    k = x.bit_length() - 1 + bits
    return (1 << k) // x, k


def to_residual(x, fmt: IntFormat) -> np.ndarray:
    """Float hidden states to the residual format: ``round(x * 2**res_frac)`` (float64
    round-half-even), saturated. The only float-to-integer step on the data path."""
    v = np.round(np.asarray(x, np.float64) * (1 << fmt.res_frac))
    lim = float(1 << (fmt.res_bits - 1))
    return np.clip(v, -lim, lim - 1).astype(np.int64)


def from_residual(h, fmt: IntFormat) -> np.ndarray:
    return np.ldexp(np.asarray(h, np.float64), -fmt.res_frac).astype(np.float32)


def to_fixed(x, frac: int, bits: int) -> np.ndarray:
    """Float constants (biases, sinks, limits) as fixed point with ``frac`` fraction bits:
    ``x * 2**frac`` rounded half away from zero (exactly, in float64: the scaling is a power
    of two), saturated to ``bits``. Done once, at generation time."""
    r = roundf(np.ldexp(np.asarray(x, np.float64), frac))
    lim = float(1 << (bits - 1))
    return np.clip(r, -lim, lim - 1).astype(np.int64)
