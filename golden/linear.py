"""Quantised linear layer ``y = W @ x`` with constant integer weights, and its exact widths.

Weights are signed ``wbits``-bit integers (2 <= wbits <= 8) or ternary ``{-1, 0, 1}``;
activations are signed ``abits``-bit integers (2 <= abits <= 8). The accumulator of row ``i``
is exactly as wide as the values that row can reach for *these* weights (:func:`dot_bounds`),
not a worst case over all weights.
"""

from dataclasses import dataclass

import numpy as np

from .numerics import ROUNDING_MODES, round_shift, saturate, signed_range, signed_width

__all__ = [
    "WBITS_RANGE",
    "ABITS_RANGE",
    "LinearSpec",
    "Requant",
    "check_weights",
    "dot_bounds",
    "row_bounds",
    "acc_widths",
    "matvec",
    "worst_case_vectors",
    "random_vectors",
    "serial_digit_range",
]

WBITS_RANGE = (2, 8)
ABITS_RANGE = (2, 8)


@dataclass(frozen=True, kw_only=True)
class LinearSpec:
    """Number formats of one constant matrix-vector product.

    Parameters
    ----------
    wbits : int
        Weight width, 2..8. Ternary weights are stored in 2 bits.
    abits : int
        Activation width, 2..8.
    ternary : bool
        Weights restricted to ``{-1, 0, 1}``.
    """

    wbits: int
    abits: int = 8
    ternary: bool = False

    def __post_init__(self):
        for name, value, (lo, hi) in (
            ("wbits", self.wbits, WBITS_RANGE),
            ("abits", self.abits, ABITS_RANGE),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        if self.ternary and self.wbits != 2:
            raise ValueError(f"ternary weights are stored in 2 bits, not wbits={self.wbits}")

    @property
    def weight_range(self) -> tuple[int, int]:
        return (-1, 1) if self.ternary else signed_range(self.wbits)

    @property
    def act_range(self) -> tuple[int, int]:
        return signed_range(self.abits)


def check_weights(w, spec: LinearSpec) -> np.ndarray:
    """Validate a weight matrix and return it as ``int64``; raise ``ValueError`` naming the
    problem otherwise (wrong dtype, wrong rank, NaN, non-integer, out of range)."""
    w = np.asarray(w)
    if w.dtype.kind == "f":
        if not np.all(np.isfinite(w)):
            raise ValueError("weights contain NaN or infinity")
        if np.any(w != np.round(w)):
            raise ValueError("weights must be integers; found a fractional value")
    elif w.dtype.kind not in "iu":
        raise ValueError(f"weights must be an integer array, not dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D rows x cols matrix, not shape {w.shape}")
    if w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"weights must have at least one row and column, not shape {w.shape}")
    lo, hi = spec.weight_range
    if w.dtype.kind == "f" and (np.max(np.abs(w)) > 2**62):
        raise ValueError(f"weights are outside {lo}..{hi}")
    # compared before the cast: an unsigned 2**63 would wrap to a negative int64
    bad = (w < lo) | (w > hi)
    if np.any(bad):
        r, c = np.argwhere(bad)[0]
        kind = "ternary" if spec.ternary else f"int{spec.wbits}"
        raise ValueError(
            f"weight [{r}, {c}] = {w[r, c]} is outside the {kind} range {lo}..{hi}"
        )
    return w.astype(np.int64)


def dot_bounds(coef, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(min, max)`` of ``coef @ x`` over all integer ``x`` with ``lo <= x_j <= hi``.

    ``coef`` has shape ``(..., n)``; the result has shape ``(...)``. Each term reaches its
    extreme independently, so the bounds are attained (they are not a worst case).
    """
    c = np.asarray(coef, dtype=np.int64)
    a, b = c * np.int64(lo), c * np.int64(hi)
    return np.minimum(a, b).sum(axis=-1), np.maximum(a, b).sum(axis=-1)


def row_bounds(w, abits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(min, max)`` of ``W @ x`` over all ``abits``-bit activation vectors."""
    return dot_bounds(w, *signed_range(abits))


def acc_widths(w, abits: int) -> np.ndarray:
    """Exact accumulator width of every row: the narrowest two's complement that holds every
    value that row can produce."""
    return signed_width(*row_bounds(w, abits))


def matvec(w, x) -> np.ndarray:
    """``W @ x`` in exact integer arithmetic. ``x`` is ``(cols,)`` or ``(n, cols)``."""
    w = np.asarray(w, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    # int64 matmul is exact here: |w| <= 128, |x| <= 128 and cols < 2**40.
    return x @ w.T


def worst_case_vectors(w, abits: int) -> np.ndarray:
    """Activation vectors that drive outputs to their extremes.

    Every activation at its minimum, every activation at its maximum, then for each row the
    vector that reaches that row's maximum and the one that reaches its minimum (so every
    accumulator hits both ends of its exact bound).
    """
    w = np.asarray(w, dtype=np.int64)
    lo, hi = signed_range(abits)
    cols = w.shape[1]
    to_max = np.where(w > 0, hi, lo)
    to_min = np.where(w > 0, lo, hi)
    rows = np.stack([to_max, to_min], axis=1).reshape(-1, cols)
    return np.concatenate([np.full((1, cols), lo), np.full((1, cols), hi), rows]).astype(np.int64)


def serial_digit_range(digit: int) -> tuple[int, int]:
    """Range of one activation digit in the serial schedule: the top digit of a sign-extended
    activation is signed (``-2**(digit-1) .. 2**(digit-1)-1``), the others unsigned
    (``0 .. 2**digit - 1``); one datapath serves both, so it takes their union."""
    return -(1 << (digit - 1)), (1 << digit) - 1


def random_vectors(n: int, cols: int, abits: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` activation vectors uniform over the ``abits``-bit range."""
    lo, hi = signed_range(abits)
    return rng.integers(lo, hi + 1, size=(n, cols), dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class Requant:
    """Requantise an accumulator to ``out_bits``: ``saturate(round_shift(acc * multiplier,
    shift, rounding), out_bits)``.

    The fixed-point multiplier is an unsigned integer of at most ``MULT_BITS`` bits, so the
    real scale applied is ``multiplier / 2**shift``.
    """

    MULT_BITS = 16

    multiplier: int
    shift: int
    rounding: str = "half_away"
    out_bits: int = 8

    def __post_init__(self):
        if not 0 < self.multiplier < (1 << self.MULT_BITS):
            raise ValueError(
                f"requant multiplier must be in 1..{(1 << self.MULT_BITS) - 1}, "
                f"not {self.multiplier!r}"
            )
        if not 0 <= self.shift <= 48:
            raise ValueError(f"requant shift must be in 0..48, not {self.shift!r}")
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(
                f"unknown rounding mode {self.rounding!r}; known: {', '.join(ROUNDING_MODES)}"
            )
        if not 2 <= self.out_bits <= 16:
            raise ValueError(f"requant out_bits must be in 2..16, not {self.out_bits!r}")

    @classmethod
    def from_scale(cls, scale: float, **kwargs) -> "Requant":
        """The multiplier/shift pair nearest to a real ``scale``, with the multiplier
        normalised into ``[2**(MULT_BITS-1), 2**MULT_BITS)`` for the most precision."""
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"requant scale must be a positive finite number, not {scale!r}")
        m, e = np.frexp(scale)  # scale = m * 2**e, 0.5 <= m < 1
        shift = cls.MULT_BITS - int(e)
        mult = int(np.floor(m * (1 << cls.MULT_BITS) + 0.5))
        if mult == 1 << cls.MULT_BITS:
            mult >>= 1
            shift -= 1
        if shift < 0:
            raise ValueError(f"requant scale {scale!r} is too large")
        if shift > 48:
            raise ValueError(f"requant scale {scale!r} is too small")
        return cls(multiplier=mult, shift=shift, **kwargs)

    @classmethod
    def for_weights(cls, w, abits: int, **kwargs) -> "Requant":
        """Default scale: map the largest reachable accumulator magnitude to the top of the
        output range."""
        lo, hi = row_bounds(w, abits)
        peak = max(int(np.max(np.abs(lo))), int(np.max(np.abs(hi))), 1)
        out_bits = kwargs.get("out_bits", 8)
        return cls.from_scale(((1 << (out_bits - 1)) - 1) / peak, **kwargs)

    def product_bounds(self, lo: int, hi: int) -> tuple[int, int]:
        return lo * self.multiplier, hi * self.multiplier

    def apply(self, acc) -> np.ndarray:
        acc = np.asarray(acc, dtype=np.int64)
        return saturate(round_shift(acc * np.int64(self.multiplier), self.shift, self.rounding),
                        self.out_bits)
