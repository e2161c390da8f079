"""The block-affine weight type, ``w = (D * c + M) * 2**exp`` per block of columns, and its
exact arithmetic: the product with integer activations (:func:`block_matvec`), stacking, and
the exact integer parts of float16 scales that every decoder builds ``D`` and ``M`` from.
"""

import math
import weakref
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BlockAffine",
    "lane_block",
    "f16_exact_parts",
    "common_exponent",
    "to_common",
    "block_matvec",
    "stack",
    "interleave_rows",
]


@dataclass(frozen=True, eq=False)
class BlockAffine:
    """``w = (D * c + M) * 2**exp`` per block of ``block`` columns (the forms are in
    :mod:`golden.blockquant`)."""

    codes: np.ndarray  # int8 [rows, cols]
    scale: np.ndarray  # int64 [rows, nblocks]  (D)
    offset: np.ndarray  # int64 [rows, nblocks]  (M)
    exp: int
    block: int
    bits: int
    source: str  # "Q4_0" | "Q4_1" | "Q8_0" | "MXFP4" | "int<N>" | "int<N>g" | "ternary"

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    @property
    def nblocks(self) -> int:
        return self.codes.shape[1] // self.block

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        """The weights as ``dtype``: the exact value, rounded once (exact in float64 first, as
        long as ``D * c + M`` stays below ``2**53``)."""
        rows, cols = self.codes.shape
        c = self.codes.astype(np.int64).reshape(rows, self.nblocks, self.block)
        v = c * self.scale[:, :, None] + self.offset[:, :, None]
        return np.ldexp(v.astype(np.float64), self.exp).reshape(rows, cols).astype(dtype)

    def permute_rows(self, order: np.ndarray) -> "BlockAffine":
        """The same tensor with its rows reordered (``new[i] = old[order[i]]``)."""
        return BlockAffine(self.codes[order], self.scale[order], self.offset[order], self.exp,
                           self.block, self.bits, self.source)

    def reblock(self, block: int) -> "BlockAffine":
        """The same tensor with blocks of ``block`` columns (``block`` divides the current
        block): each block's ``D`` and ``M`` repeat over its sub-blocks. Exact; per-channel
        tensors (one block per row) become lane-sized blocks this way."""
        if block == self.block:
            return self
        if self.block % block:
            raise ValueError(f"block {block} does not divide the tensor's block {self.block}")
        k = self.block // block
        return BlockAffine(self.codes, np.repeat(self.scale, k, axis=1),
                           np.repeat(self.offset, k, axis=1), self.exp, block, self.bits,
                           self.source)

    def rows_slice(self, lo: int, hi: int) -> "BlockAffine":
        return BlockAffine(self.codes[lo:hi], self.scale[lo:hi], self.offset[lo:hi], self.exp,
                           self.block, self.bits, self.source)


def lane_block(*tensors: "BlockAffine") -> int:
    """Columns per lane ROM word: the largest block that divides 32 and every tensor's
    block, so that each word has one ``D`` and ``M`` (:meth:`BlockAffine.reblock`)."""
    return math.gcd(32, *(t.block for t in tensors))


def f16_exact_parts(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float16 values as exact ``(mantissa, exponent)`` int64 pairs: ``h = m * 2**e``.

    Normal numbers have an 11-bit mantissa and ``e = E - 25``; subnormals ``e = -24``. Infinity
    and NaN raise ``ValueError``.
    """
    bits = np.asarray(h, dtype=np.float16).view(np.uint16).astype(np.int64)
    sign = np.where(bits >> 15, -1, 1)
    e_field = (bits >> 10) & 0x1F
    frac = bits & 0x3FF
    if np.any(e_field == 0x1F):
        raise ValueError("a float16 scale is infinite or NaN")
    mant = np.where(e_field == 0, frac, frac | 0x400)
    exp = np.where(e_field == 0, -24, e_field - 25)
    return sign * mant, exp


def common_exponent(*parts) -> int:
    """Smallest exponent over all nonzero mantissas of ``(mantissa, exponent)`` pairs (0 if
    every value is zero): the tensor's ``exp``."""
    lows = [e[m != 0].min() for m, e in parts if np.any(m != 0)]
    return int(min(lows)) if lows else 0


def to_common(m: np.ndarray, e: np.ndarray, exp: int) -> np.ndarray:
    """``m * 2**e`` as an exact integer in units of ``2**exp`` (``exp`` from
    :func:`common_exponent`)."""
    shift = np.where(m != 0, e - exp, 0)
    if np.any(shift > 40):
        raise ValueError("float16 scales span too many octaves for one fixed-point exponent")
    return m << shift


_FLOAT_CODES: "weakref.WeakKeyDictionary[BlockAffine, np.ndarray]" = weakref.WeakKeyDictionary()


def _block_partials(wq: BlockAffine, ab: np.ndarray) -> np.ndarray:
    """``P[..., r, b] = sum_j c[r, b, j] * ab[..., b, j]``, exactly.

    When ``block * max|c| * max|a| < 2**53`` every product and every partial sum, in any
    order, is an integer that float64 holds exactly, so one float64 BLAS product per block
    gives ``P`` exactly (the float64 codes ``[nblocks, rows, block]`` are kept per tensor);
    otherwise int64."""
    rows = wq.shape[0]
    nb, blk = wq.nblocks, wq.block
    amax = int(np.abs(ab).max(initial=0))
    cmax = int(np.abs(wq.codes).max(initial=0))
    if blk * cmax * amax < 1 << 53:
        c = _FLOAT_CODES.get(wq)
        if c is None:
            c = np.ascontiguousarray(
                wq.codes.reshape(rows, nb, blk).transpose(1, 0, 2), dtype=np.float64)
            _FLOAT_CODES[wq] = c
        p = np.matmul(c, ab.astype(np.float64)[..., None])[..., 0]  # [..., nb, rows]
        return np.swapaxes(p, -1, -2).astype(np.int64)
    c = wq.codes.astype(np.int64).reshape(rows, nb, blk)
    return np.einsum("rbj,...bj->...rb", c, ab)


def block_matvec(wq: BlockAffine, a: np.ndarray) -> np.ndarray:
    """Exact ``sum_b D*P + M*S`` for integer activations ``a`` (``[..., cols]``), in units of
    ``2**(wq.exp + e_a)``. Exact integers throughout (:func:`_block_partials`); callers keep
    the bound below 2**62."""
    a = np.asarray(a, dtype=np.int64)
    nb, blk = wq.nblocks, wq.block
    ab = a.reshape(*a.shape[:-1], nb, blk)
    partial = _block_partials(wq, ab)  # P[..., r, b]
    sums = ab.sum(axis=-1)  # S[..., b]
    return (partial * wq.scale).sum(axis=-1) + (sums[..., None, :] * wq.offset).sum(axis=-1)


def stack(ws: list[BlockAffine]) -> BlockAffine:
    """Row-concatenate tensors with the same columns and block, exactly: every ``D``/``M``
    moves to the smallest exponent (a left shift), and narrower codes take the widest code
    bits (a signed code fits any wider signed code: Q4_K's beside Q6_K's). The engine runs
    q, k and v as one pass this way (and gate with up)."""
    first = ws[0]
    for w in ws[1:]:
        if (w.shape[1], w.block) != (first.shape[1], first.block):
            raise ValueError("stacked tensors need the same columns and block")
    exp = min(w.exp for w in ws)
    scale = np.concatenate([w.scale << np.int64(w.exp - exp) for w in ws])
    offset = np.concatenate([w.offset << np.int64(w.exp - exp) for w in ws])
    codes = np.concatenate([w.codes for w in ws])
    src = "+".join(sorted({w.source for w in ws}))
    return BlockAffine(codes, scale, offset, exp, first.block, max(w.bits for w in ws), src)


def pad_rows(w: BlockAffine, rows: int) -> BlockAffine:
    """``w`` with zero rows below, to ``rows`` in all (a zero row's product is exactly 0)."""
    extra = rows - w.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad {w.shape[0]} rows to {rows}")
    if extra == 0:
        return w
    z = np.zeros((extra, w.nblocks), np.int64)
    return BlockAffine(np.concatenate([w.codes, np.zeros((extra, w.shape[1]), w.codes.dtype)]),
                       np.concatenate([w.scale, z]), np.concatenate([w.offset, z]), w.exp,
                       w.block, w.bits, w.source)


def interleave_rows(a: BlockAffine, b: BlockAffine, group: int) -> BlockAffine:
    """Rows ``a[0:g], b[0:g], a[g:2g], b[g:2g], ...`` (``g = group``), stacked exactly: a
    beat of ``a``'s outputs is followed by the same rows of ``b``."""
    rows = a.shape[0]
    if b.shape[0] != rows or rows % group:
        raise ValueError(f"interleaving needs equal row counts divisible by {group}")
    s = stack([a, b])
    order = np.arange(2 * rows).reshape(2, rows // group, group).swapaxes(0, 1).reshape(-1)
    return s.permute_rows(order)
