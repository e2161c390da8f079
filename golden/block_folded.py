"""Schedule, ROM contents and exact bounds of the block-affine folded engine.

The engine computes ``sum_b D[r,b] * P[r,b] + M[r,b] * S[b]`` (see
:mod:`golden.blockquant`) on ``lanes`` lanes. Row ``r`` runs on lane ``r % lanes`` as local row
``i = r // lanes``, so every ``lanes`` consecutive rows finish together (a *batch*). A lane
reads one ``block``-bit ROM word per cycle: one bit plane of one block of one row. Word
``(i * nblocks + b) * bits + t`` holds plane ``t`` of block ``b`` of local row ``i``, the sign
plane (``t = 0``) first. Each block's code sum ``P`` comes out of a Horner accumulation over
its planes, is scaled by the block's constants (a second ROM, one entry per (row, block)),
and is added to the row's accumulator.

``cycles_per_vector = rows_per_lane * nblocks * bits``: the ideal
``rows * cols * bits / (lanes * block)`` whenever ``lanes`` divides ``rows``.
"""

from dataclasses import dataclass

import numpy as np

from golden.blockquant import BlockAffine
from golden.linear import dot_bounds
from golden.numerics import signed_range

__all__ = ["BlockFoldedLayout", "code_images", "scale_images", "bounds", "evaluate"]


@dataclass(frozen=True)
class BlockFoldedLayout:
    rows: int
    cols: int
    bits: int
    block: int
    lanes: int

    def __post_init__(self):
        if self.cols % self.block:
            raise ValueError(f"cols {self.cols} is not a multiple of the block {self.block}")
        if not 1 <= self.block <= 64:
            raise ValueError(f"block must be 1..64 columns, not {self.block}")
        if self.lanes < 1 or self.rows % self.lanes:
            raise ValueError(f"lanes ({self.lanes}) must divide rows ({self.rows})")

    @classmethod
    def of(cls, w: BlockAffine, lanes: int) -> "BlockFoldedLayout":
        return cls(w.shape[0], w.shape[1], w.bits, w.block, lanes)

    @property
    def rows_per_lane(self) -> int:
        return self.rows // self.lanes

    @property
    def nblocks(self) -> int:
        return self.cols // self.block

    @property
    def depth(self) -> int:
        return self.rows_per_lane * self.nblocks * self.bits

    @property
    def cycles_per_vector(self) -> int:
        return self.depth

    @property
    def ideal_cycles(self) -> float:
        return self.rows * self.cols * self.bits / (self.lanes * self.block)


def _lane_major(a: np.ndarray, L: BlockFoldedLayout) -> np.ndarray:
    """``[rows, ...]`` -> ``[lanes, rows_per_lane, ...]`` with row ``i * lanes + p``."""
    return a.reshape(L.rows_per_lane, L.lanes, *a.shape[1:]).swapaxes(0, 1)


def code_images(w: BlockAffine, L: BlockFoldedLayout) -> np.ndarray:
    """``uint64 [lanes, depth]``: bit ``k`` of a word is the plane bit of column
    ``b * block + k``; plane ``t`` is bit ``bits - 1 - t`` of the two's complement code."""
    c = w.codes.astype(np.int64).reshape(L.rows, L.nblocks, L.block)
    u = (c & ((1 << L.bits) - 1)).astype(np.uint64)
    shifts = np.arange(L.bits - 1, -1, -1, dtype=np.uint64)  # plane t -> bit bits-1-t
    planes = (u[:, :, None, :] >> shifts[None, None, :, None]) & np.uint64(1)
    words = (planes << np.arange(L.block, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)
    return _lane_major(words, L).reshape(L.lanes, L.depth)


def scale_images(w: BlockAffine, L: BlockFoldedLayout) -> tuple[np.ndarray, np.ndarray]:
    """``D`` and ``M`` as ``int64 [lanes, rows_per_lane * nblocks]`` (entry ``i * nb + b``)."""
    d = _lane_major(w.scale, L).reshape(L.lanes, -1)
    m = _lane_major(w.offset, L).reshape(L.lanes, -1)
    return d, m


def bounds(w: BlockAffine, abits: int) -> dict:
    """Exact ranges of every quantity the engine holds, over all ``abits`` activations:

    ``tree`` one cycle's selected sum, ``horner`` every Horner value, ``code`` a finished block
    sum ``P``, ``act_sum`` a block sum ``S``, ``term`` ``D*P + M*S``, ``acc`` every prefix of
    the row sum (the finished row included). Each is ``(lo, hi)`` of Python ints."""
    lo, hi = signed_range(abits)
    rows, cols = w.shape
    nb, blk, bits = w.nblocks, w.block, w.bits
    c = w.codes.astype(np.int64).reshape(rows, nb, blk)
    pop = ((c & ((1 << bits) - 1))[..., None] >> np.arange(bits)) & 1
    most = int(pop.sum(axis=2).max())
    out = {"tree": (most * lo, most * hi), "act_sum": (blk * lo, blk * hi)}
    h_lo = h_hi = 0
    for t in range(bits):
        hl, hh = dot_bounds(c >> (bits - 1 - t), lo, hi)
        h_lo, h_hi = min(h_lo, int(hl.min())), max(h_hi, int(hh.max()))
    out["horner"] = (h_lo, h_hi)
    out["code"] = tuple(int(v) for v in (dot_bounds(c, lo, hi)[0].min(),
                                         dot_bounds(c, lo, hi)[1].max()))
    coef = c * w.scale[:, :, None] + w.offset[:, :, None]  # per-column coefficient
    tl, th = dot_bounds(coef, lo, hi)  # [rows, nb]: the term of each block
    out["term"] = (int(tl.min()), int(th.max()))
    pl, ph = np.cumsum(tl, axis=1), np.cumsum(th, axis=1)
    out["acc"] = (min(0, int(pl.min())), max(0, int(ph.max())))
    return out


def evaluate(w: BlockAffine, a: np.ndarray, lanes: int) -> np.ndarray:
    """The engine's schedule step by step (Horner over planes, then ``D*P + M*S``),
    vectorised over rows; equals :func:`golden.blockquant.block_matvec`."""
    L = BlockFoldedLayout.of(w, lanes)
    a = np.asarray(a, np.int64).reshape(L.nblocks, L.block)
    words = code_images(w, L).reshape(L.lanes, L.rows_per_lane, L.nblocks, L.bits)
    d, m = (x.reshape(L.lanes, L.rows_per_lane, L.nblocks) for x in scale_images(w, L))
    bitsel = ((words[..., None] >> np.arange(L.block, dtype=np.uint64)) & np.uint64(1))
    trees = (bitsel.astype(np.int64) * a[None, None, :, None, :]).sum(axis=-1)
    p = -trees[..., 0]
    for t in range(1, L.bits):
        p = 2 * p + trees[..., t]
    acc = (d * p + m * a.sum(axis=1)).sum(axis=-1)  # [lanes, rpl]
    return acc.T.reshape(L.rows)
