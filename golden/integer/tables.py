"""The constant tables of the integer model, computed once at generation time (the only place
besides :func:`golden.integer.to_residual` where float enters): RMSNorm gains, RoPE cos/sin,
and the exp2 and sigmoid tables with their linear interpolation (:func:`interpolate`)."""

import math

import numpy as np

from golden.numerics import round_shift

from .format import MODE, IntFormat

__all__ = ["norm_gain", "rope_table", "exp2_table", "sigmoid_table", "interpolate"]


def norm_gain(g: np.ndarray, dim: int, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """RMSNorm weights with ``sqrt(dim)`` folded in: ``G = round(g * sqrt(dim) * 2**gf)``
    (float64, half-even), with ``gf`` the largest that keeps ``|G| < 2**gain_bits``."""
    gs = np.asarray(g, np.float64) * math.sqrt(dim)
    top = float(np.max(np.abs(gs)))
    gf = fmt.gain_bits - 1 - (math.floor(math.log2(top)) if top > 0 else 0)
    gf = min(gf, 40)
    return np.round(np.ldexp(gs, gf)).astype(np.int64), gf


def rope_table(head_dim: int, theta: float, ctx: int, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """``C, S [ctx, head_dim/2]``: ``round(cos(p * theta**(-2i/hd)) * 2**frac)`` (float64)."""
    half = head_dim // 2
    inv_freq = np.float64(theta) ** (-np.arange(half, dtype=np.float64) * 2 / head_dim)
    ang = np.arange(ctx, dtype=np.float64)[:, None] * inv_freq[None, :]
    return (np.round(np.cos(ang) * (1 << frac)).astype(np.int64),
            np.round(np.sin(ang) * (1 << frac)).astype(np.int64))


def exp2_table(fmt: IntFormat) -> np.ndarray:
    """``E[i] = round(2**(-i / 2**exp_lut_bits) * 2**prob_frac)`` for ``i = 0..2**bits``."""
    n = 1 << fmt.exp_lut_bits
    return np.round(np.exp2(-np.arange(n + 1) / n) * (1 << fmt.prob_frac)).astype(np.int64)


def sigmoid_table(fmt: IntFormat) -> np.ndarray:
    """``T[i] = round(sigmoid(-range + i * 2**-step_bits) * 2**prob_frac)``,
    ``i = 0..2 * range * 2**step_bits``."""
    n = 2 * fmt.sig_range << fmt.sig_step_bits
    x = -fmt.sig_range + np.arange(n + 1, dtype=np.float64) / (1 << fmt.sig_step_bits)
    return np.round((1 << fmt.prob_frac) / (1 + np.exp(-x))).astype(np.int64)


def interpolate(table: np.ndarray, idx: np.ndarray, rem: np.ndarray,
                rem_bits: int) -> np.ndarray:
    """``T[idx] + round((T[idx+1] - T[idx]) * rem / 2**rem_bits)``: linear interpolation."""
    lo = table[idx]
    return lo + round_shift((table[idx + 1] - lo) * rem, rem_bits, MODE)


# The default tables, checked on import: the exp2 table falls from exactly 1.0 to exactly 0.5
# (its last entry is the next octave's first, so exp2_neg is continuous across octaves), and the
# sigmoid table rises within [0, 1] through exactly 0.5 at 0.
_E = exp2_table(IntFormat())
if not (_E[0] == 2 * _E[-1] == 1 << IntFormat().prob_frac and np.all(np.diff(_E) <= 0)):
    raise AssertionError("exp2_table must fall from 2**prob_frac to 2**(prob_frac - 1)")
_T = sigmoid_table(IntFormat())
if not (_T[len(_T) // 2] == 1 << (IntFormat().prob_frac - 1) and np.all(np.diff(_T) >= 0)
        and 0 <= _T[0] and _T[-1] <= 1 << IntFormat().prob_frac):
    raise AssertionError("sigmoid_table must rise within [0, 2**prob_frac] through 0.5 at 0")
del _E, _T
