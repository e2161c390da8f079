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

A *parallel* layout (``parallel=True``) reads every plane of a block at once: a lane takes the
block's whole two's complement codes in one cycle and forms ``P`` with a multiplier per column,
so ``cycles_per_vector = rows_per_lane * nblocks`` at ``bits`` times the ROM word. The words
are split over several ROMs of at most :data:`ROM_WIDTH` bits (:func:`parallel_code_images`).
"""

from dataclasses import dataclass

import numpy as np

from golden.blockquant import BlockAffine
from golden.lanes import LaneLayout
from golden.linear import dot_bounds
from golden.numerics import signed_range

__all__ = ["BlockFoldedLayout", "ROM_WIDTH", "code_images", "parallel_code_images", "piece_cols",
           "scale_images", "bounds", "evaluate"]

#: The widest ROM word (a lane's parallel code word is split into pieces of at most this).
ROM_WIDTH = 64


@dataclass(frozen=True)
class BlockFoldedLayout(LaneLayout):
    rows: int
    cols: int
    bits: int
    block: int
    lanes: int
    parallel: bool = False

    def __post_init__(self):
        if self.cols % self.block:
            raise ValueError(f"cols {self.cols} is not a multiple of the block {self.block}")
        if not 1 <= self.block <= 64:
            raise ValueError(f"block must be 1..64 columns, not {self.block}")
        if self.lanes < 1 or self.rows % self.lanes:
            raise ValueError(f"lanes ({self.lanes}) must divide rows ({self.rows})")

    @classmethod
    def of(cls, w: BlockAffine, lanes: int, parallel: bool = False) -> "BlockFoldedLayout":
        return cls(w.shape[0], w.shape[1], w.bits, w.block, lanes, parallel)

    @property
    def nblocks(self) -> int:
        return self.cols // self.block

    @property
    def cycles_per_block(self) -> int:
        """ROM words (cycles) per block of a row: one per plane, or one in a parallel layout."""
        return 1 if self.parallel else self.bits

    @property
    def word_cols(self) -> int:
        return self.block

    @property
    def words_per_group(self) -> int:
        return self.cycles_per_block

    def rom_bits(self, word_bits: int, const_bits: int) -> int:
        """Every lane's ROM bits: :attr:`depth` code words of ``word_bits`` (the block in a
        serial layout; a parallel one's pieces together) and a block constant of
        ``const_bits`` (``D`` and ``M`` together) per block of each local row."""
        return self.lanes * (self.depth * word_bits
                             + self.rows_per_lane * self.nblocks * const_bits)


def _lane_major(a: np.ndarray, L: BlockFoldedLayout) -> np.ndarray:
    """``[rows, ...]`` -> ``[lanes, rows_per_lane, ...]`` with row ``i * lanes + p``."""
    return a.reshape(L.rows_per_lane, L.lanes, *a.shape[1:]).swapaxes(0, 1)


def code_images(w: BlockAffine, L: BlockFoldedLayout) -> np.ndarray:
    """``uint64 [lanes, depth]``: bit ``k`` of a word is the plane bit of column
    ``b * block + k``; plane ``t`` is bit ``bits - 1 - t`` of the two's complement code."""
    if L.parallel:
        raise ValueError("a parallel layout's codes are parallel_code_images")
    c = w.codes.astype(np.int64).reshape(L.rows, L.nblocks, L.block)
    u = (c & ((1 << L.bits) - 1)).astype(np.uint64)
    shifts = np.arange(L.bits - 1, -1, -1, dtype=np.uint64)  # plane t -> bit bits-1-t
    planes = (u[:, :, None, :] >> shifts[None, None, :, None]) & np.uint64(1)
    words = (planes << np.arange(L.block, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)
    return _lane_major(words, L).reshape(L.lanes, L.depth)


def piece_cols(block: int, elem_bits: int) -> int:
    """Columns per ROM of a parallel lane: the most that divide ``block`` and fit
    :data:`ROM_WIDTH` bits at ``elem_bits`` each."""
    if not 1 <= elem_bits <= ROM_WIDTH:
        raise ValueError(f"a code of {elem_bits} bits does not fit a {ROM_WIDTH}-bit ROM")
    return max(c for c in range(1, block + 1) if block % c == 0 and c * elem_bits <= ROM_WIDTH)


def parallel_code_images(w: BlockAffine, L: BlockFoldedLayout, elem_bits: int) -> np.ndarray:
    """``uint64 [pieces, lanes, depth]`` of a parallel layout: word ``i * nblocks + b`` holds
    block ``b`` of local row ``i``; piece ``j`` holds its columns ``j * n .. j * n + n - 1``
    (``n = piece_cols(block, elem_bits)``), column ``j * n + k`` as the ``elem_bits``-bit two's
    complement code in bits ``k * elem_bits ...`` of the word."""
    if not L.parallel:
        raise ValueError("a bit-serial layout's codes are code_images")
    if elem_bits < L.bits:
        raise ValueError(f"{L.bits}-bit codes do not fit {elem_bits} bits")
    n = piece_cols(L.block, elem_bits)
    c = w.codes.astype(np.int64).reshape(L.rows, L.nblocks, L.block // n, n)
    u = (c & ((1 << elem_bits) - 1)).astype(np.uint64)
    shifts = (np.arange(n, dtype=np.uint64) * np.uint64(elem_bits))
    words = (u << shifts).sum(axis=-1, dtype=np.uint64)  # [rows, nblocks, pieces]
    return np.moveaxis(_lane_major(words, L).reshape(L.lanes, L.depth, -1), -1, 0)


def scale_images(w: BlockAffine, L: BlockFoldedLayout) -> tuple[np.ndarray, np.ndarray]:
    """``D`` and ``M`` as ``int64 [lanes, rows_per_lane * nblocks]`` (entry ``i * nb + b``)."""
    d = _lane_major(w.scale, L).reshape(L.lanes, -1)
    m = _lane_major(w.offset, L).reshape(L.lanes, -1)
    return d, m


def bounds(w: BlockAffine, abits: int) -> dict:
    """Exact ranges of every quantity the engine holds, over all ``abits`` activations:

    ``tree`` one cycle's selected sum, ``horner`` every Horner value, ``code`` a finished block
    sum ``P``, ``product`` one column's code times activation (a parallel lane's terms),
    ``act_sum`` a block sum ``S``, ``term`` ``D*P + M*S``, ``acc`` every prefix of
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
    # one column's product code * activation, for a parallel lane's adder tree
    corners = [int(cv) * a for cv in (int(c.min()), int(c.max())) for a in (lo, hi)]
    out["product"] = (min(0, *corners), max(0, *corners))
    coef = c * w.scale[:, :, None] + w.offset[:, :, None]  # per-column coefficient
    tl, th = dot_bounds(coef, lo, hi)  # [rows, nb]: the term of each block
    out["term"] = (int(tl.min()), int(th.max()))
    pl, ph = np.cumsum(tl, axis=1), np.cumsum(th, axis=1)
    out["acc"] = (min(0, int(pl.min())), max(0, int(ph.max())))
    return out


def evaluate(w: BlockAffine, a: np.ndarray, lanes: int, parallel: bool = False,
             elem_bits: int | None = None) -> np.ndarray:
    """The engine's schedule step by step from its ROM images (Horner over planes, or a
    parallel lane's products, then ``D*P + M*S``), vectorised over rows; equals
    :func:`golden.blockquant.block_matvec`."""
    L = BlockFoldedLayout.of(w, lanes, parallel)
    a = np.asarray(a, np.int64).reshape(L.nblocks, L.block)
    d, m = (x.reshape(L.lanes, L.rows_per_lane, L.nblocks) for x in scale_images(w, L))
    if parallel:
        eb = elem_bits or L.bits
        n = piece_cols(L.block, eb)
        pieces = parallel_code_images(w, L, eb)  # [pieces, lanes, depth]
        fields = (pieces[..., None] >> (np.arange(n, dtype=np.uint64) * np.uint64(eb))) \
            & np.uint64((1 << eb) - 1)
        codes = fields.astype(np.int64)
        codes = codes - ((codes >> (eb - 1)) << eb)  # two's complement
        codes = np.moveaxis(codes, 0, 2).reshape(L.lanes, L.rows_per_lane, L.nblocks, L.block)
        p = (codes * a[None, None]).sum(axis=-1)
        acc = (d * p + m * a.sum(axis=1)).sum(axis=-1)
        return acc.T.reshape(L.rows)
    words = code_images(w, L).reshape(L.lanes, L.rows_per_lane, L.nblocks, L.bits)
    bitsel = ((words[..., None] >> np.arange(L.block, dtype=np.uint64)) & np.uint64(1))
    trees = (bitsel.astype(np.int64) * a[None, None, :, None, :]).sum(axis=-1)
    p = -trees[..., 0]
    for t in range(1, L.bits):
        p = 2 * p + trees[..., t]
    acc = (d * p + m * a.sum(axis=1)).sum(axis=-1)  # [lanes, rpl]
    return acc.T.reshape(L.rows)
