"""Integer numerics: widths, rounding and saturation as named, executable functions.

The functions here *are* the definitions. Docstrings describe them, tests pin every tie, and the
hardware implements the same formulas (checked bit for bit by the cocotb testbenches).

All functions take and return ``np.int64`` arrays (or Python ints) and never go through floating
point, except :func:`roundf`, the one rounding of floats to integers that the quantisers and
fixed-point constants share.
"""

import numpy as np

__all__ = [
    "ROUNDING_MODES",
    "rounding_bias",
    "rounding_bias_terms",
    "round_shift",
    "saturate",
    "wrap",
    "signed_width",
    "signed_range",
    "csd_digits",
    "roundf",
]

#: Rounding modes for a right shift by ``s`` bits, i.e. for ``v / 2**s``. The name says what
#: happens: ``floor`` is the hardware "truncate" (toward minus infinity), ``trunc_zero`` rounds
#: toward zero, and the ``half_*`` modes round to nearest and differ only on exact ties.
ROUNDING_MODES = ("floor", "trunc_zero", "half_up", "half_down", "half_away", "half_even")


def roundf(x) -> np.ndarray:
    """C's ``roundf``/``round``, as llama.cpp's reference quantisers use it: the nearest
    integer, ties away from zero, as floats of ``x``'s type. Exact: ``floor(|x|)`` plus one
    when the fraction is at least a half (no ``|x| + 0.5``, which rounds 0.49999997f up)."""
    x = np.asarray(x)
    a = np.abs(x)
    f = np.floor(a)
    return np.sign(x) * (f + np.floor(2 * (a - f)))


def _as_int64(v):
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"integer array expected, not dtype {a.dtype}")
    return a.astype(np.int64)


def rounding_bias_terms(shift: int, mode: str) -> tuple[int, int, int]:
    """The rounding bias as ``(const, per_negative, per_bit)``: the bias for ``v`` is
    ``const + per_negative * (v < 0) + per_bit * (bit shift of v)``.

    ================ ====================================== =======================
    mode             bias                                   tie ``k + 1/2`` goes to
    ================ ====================================== =======================
    ``floor``        ``0``                                  ``k``
    ``trunc_zero``   ``2**s - 1`` if ``v < 0`` else ``0``   (no rounding to nearest)
    ``half_up``      ``2**(s-1)``                           ``k + 1``
    ``half_down``    ``2**(s-1) - 1``                       ``k``
    ``half_away``    ``2**(s-1) - (v < 0)``                 away from zero
    ``half_even``    ``2**(s-1) - 1 + bit s of v``          the even one of ``k, k+1``
    ================ ====================================== =======================

    This is the one table: :func:`rounding_bias` evaluates it, and the hardware requantiser
    builds exactly this sum. For ``shift == 0`` every mode has bias 0.
    """
    if mode not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding mode {mode!r}; known: {', '.join(ROUNDING_MODES)}")
    if not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be a non-negative integer, not {shift!r}")
    shift = int(shift)
    if shift == 0 or mode == "floor":
        return 0, 0, 0
    half = 1 << (shift - 1)
    return {
        "trunc_zero": (0, (1 << shift) - 1, 0),
        "half_up": (half, 0, 0),
        "half_down": (half - 1, 0, 0),
        "half_away": (half, -1, 0),
        "half_even": (half - 1, 0, 1),
    }[mode]


def rounding_bias(v, shift: int, mode: str):
    """Bias ``b`` such that ``(v + b) >> shift`` (arithmetic, i.e. floor) rounds ``v / 2**shift``
    by ``mode``; the table is :func:`rounding_bias_terms`."""
    const, per_neg, per_bit = rounding_bias_terms(shift, mode)
    v = _as_int64(v)
    neg = (v < 0).astype(np.int64)
    bit = (v >> np.int64(shift)) & 1
    return np.int64(const) + np.int64(per_neg) * neg + np.int64(per_bit) * bit


def round_shift(v, shift: int, mode: str):
    """``v / 2**shift`` rounded by ``mode`` (see :func:`rounding_bias`), exactly."""
    v = _as_int64(v)
    return (v + rounding_bias(v, shift, mode)) >> np.int64(shift)


def signed_range(bits: int) -> tuple[int, int]:
    """``(lo, hi)`` of a ``bits``-wide two's complement integer."""
    if bits < 1:
        raise ValueError(f"bit width must be at least 1, not {bits!r}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(v, bits: int):
    """Clamp ``v`` to the range of a signed ``bits``-wide integer (hls4ml's ``SAT``)."""
    lo, hi = signed_range(bits)
    return np.clip(_as_int64(v), lo, hi)


def wrap(v, bits: int):
    """Reduce ``v`` modulo ``2**bits`` into the signed range (two's complement overflow)."""
    v = _as_int64(v)
    m = np.int64(1) << np.int64(bits)
    return ((v + (m >> 1)) % m) - (m >> 1)


def signed_width(lo, hi):
    """Smallest two's complement width that holds every integer in ``[lo, hi]``.

    Elementwise on arrays. A range of just ``{0}`` still takes 1 bit.
    """
    lo = _as_int64(lo)
    hi = _as_int64(hi)
    # A value v >= 0 needs bit_length(v) + 1 bits, v < 0 needs bit_length(~v) + 1 bits.
    # bit_length via log2 is exact here: |v| < 2**62 and we round up with an integer check.
    def bit_length(u):
        u = np.asarray(u, dtype=np.int64)
        out = np.zeros(u.shape, dtype=np.int64)
        nz = u > 0
        if np.any(nz):
            e = np.floor(np.log2(u[nz].astype(np.float64))).astype(np.int64) + 1
            # Float log2 can be off by one next to powers of two; correct it exactly.
            e = np.where((np.int64(1) << (e - 1)) > u[nz], e - 1, e)
            e = np.where((np.int64(1) << e) <= u[nz], e + 1, e)
            out[nz] = e
        return out

    need_hi = bit_length(np.maximum(hi, 0)) + 1
    need_lo = bit_length(np.maximum(~lo, 0)) + 1
    return np.maximum(need_hi, need_lo)


def csd_digits(w, ndigits: int):
    """Canonical signed-digit form of integers ``w``.

    Returns an ``int8`` array of shape ``w.shape + (ndigits,)`` with digits in ``{-1, 0, 1}``,
    least significant first, such that ``sum(d[..., k] << k) == w`` and no two adjacent digits
    are nonzero. ``ndigits`` must be at least ``bit_length(|w|) + 1``.
    """
    w = _as_int64(w)
    digits = np.zeros(w.shape + (ndigits,), dtype=np.int8)
    r = w.copy()
    for k in range(ndigits):  # loop over digit positions, vectorised over all weights
        odd = (r & 1).astype(bool)
        # r mod 4 == 1 -> digit +1, r mod 4 == 3 -> digit -1 (non-adjacent form).
        d = np.where(odd, 2 - (r & 3), 0)
        digits[..., k] = d
        r = (r - d) >> 1
    if np.any(r != 0):
        raise ValueError(f"{ndigits} CSD digits are too few for these values")
    return digits
