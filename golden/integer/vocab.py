"""The two ends of the integer model that face the vocabulary: the embedding row of a token
(:func:`embed_int`), the LM head's logits (:func:`head_matvec`, fast and exact with
:class:`ExactF32`), and the next token (:func:`argmax_int`)."""

import numpy as np

from golden.blockquant import BlockAffine, block_matvec

from .arith import rescale
from .format import IntFormat

__all__ = ["embed_int", "argmax_int", "ExactF32", "head_matvec"]


def embed_int(emb: BlockAffine, token: int, fmt: IntFormat) -> np.ndarray:
    """Row ``token`` of the embedding as the residual (int64 ``[dim]``, Q.res_frac): the exact
    block-affine value ``v = D*c + M`` (units ``2**emb.exp``) through
    ``rescale(v, -(emb.exp + res_frac), res_bits)``: one rounding (``half_away``), saturated.
    The same as :func:`golden.integer.to_residual` of the exactly dequantised row except that
    ties round away from zero instead of to even."""
    row = emb.rows_slice(token, token + 1)
    c = row.codes.astype(np.int64).reshape(row.nblocks, row.block)
    v = (c * row.scale[0][:, None] + row.offset[0][:, None]).reshape(-1)
    return rescale(v, -(emb.exp + fmt.res_frac), fmt.res_bits)


def argmax_int(logits) -> int:
    """Index of the largest integer logit; equal maxima go to the lowest index."""
    return int(np.argmax(np.asarray(logits)))  # np.argmax returns the first maximum


class ExactF32:
    """:func:`golden.blockquant.block_matvec` for a large constant matrix, fast and still exact.

    The block partial sums ``P[r, b] = sum_j c[r, b, j] * a[b, j]`` are integers with
    ``|P| <= block * 2**(bits-1) * 2**(abits-1)``; when that bound is at most ``2**24`` every
    product and every partial sum, in any order, is an integer float32 holds exactly, so one
    float32 BLAS product per block computes ``P`` exactly. ``D*P + M*S`` stays int64. Keeps a
    float32 copy of the codes (``4 * rows * cols`` bytes)."""

    def __init__(self, w: BlockAffine, abits: int):
        bound = w.block << (w.bits - 1 + abits - 1)
        if bound > 1 << 24:
            raise ValueError(f"float32 block sums are exact up to 2**24, not {bound}")
        rows, cols = w.shape
        self.w = w
        self.c = np.ascontiguousarray(
            w.codes.reshape(rows, w.nblocks, w.block).transpose(1, 0, 2), dtype=np.float32)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        w = self.w
        ab = np.asarray(a, np.int64).reshape(w.nblocks, w.block)
        p = np.matmul(self.c, ab.astype(np.float32)[:, :, None])[:, :, 0]  # [nblocks, rows]
        p = p.T.astype(np.int64)
        return (p * w.scale).sum(axis=1) + (w.offset * ab.sum(axis=1)).sum(axis=1)


def head_matvec(w: BlockAffine, a, e: int, fmt: IntFormat, mv=None) -> np.ndarray:
    """Logits ``W @ (a * 2**e)`` as int Q.logit_frac: the exact block product (units
    ``2**(w.exp + e)``), ``rescale(acc, -(w.exp + e) - logit_frac, logit_bits)``. ``mv``, if
    given, computes the exact block product (:class:`ExactF32`); the default is
    :func:`golden.blockquant.block_matvec`."""
    acc = mv(a) if mv is not None else block_matvec(w, a)
    return rescale(acc, -(w.exp + e) - fmt.logit_frac, fmt.logit_bits)
