"""The folded (lane-multiplexed, weight-bit-serial) matrix-vector schedule.

``lanes`` lanes each own a mask ROM. Row ``r`` belongs to lane ``r % lanes`` as its local row
``r // lanes``. Every cycle each lane reads one ROM word: one *bit plane* of ``word``
consecutive weights of one row, and adds the activations whose weight bit is set. Planes are
visited most significant first, so the accumulator works by Horner's rule:

    acc = (acc << 1 if first chunk of a plane else acc) +/- sum(bit_k * x_k)

with the sign plane (bit ``wbits - 1``, worth ``-2**(wbits-1)``) subtracted. The ROM address is
one linear counter; word ``(i * wbits + t) * chunks + c`` holds local row ``i``, plane
``wbits - 1 - t``, column chunk ``c``.

The ROM images and the accumulator bound are defined here; ``hdl`` only reads them.
"""

from dataclasses import dataclass

import numpy as np

from .lanes import LaneLayout
from .linear import dot_bounds
from .numerics import signed_range, signed_width

__all__ = ["MAX_WORD", "FoldedLayout", "rom_images", "acc_bounds", "tree_bounds", "evaluate"]

#: ROM words are packed into uint64.
MAX_WORD = 64


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, kw_only=True)
class FoldedLayout(LaneLayout):
    """Shape of the folded schedule.

    Parameters
    ----------
    rows, cols : int
        Matrix shape.
    wbits : int
        Weight bits, i.e. bit planes per weight.
    lanes : int
        Parallel lanes; at most ``rows``.
    word : int
        Weight bits each lane reads per cycle (the ROM word width), 1..64.
    """

    rows: int
    cols: int
    wbits: int
    lanes: int
    word: int

    def __post_init__(self):
        for name in ("rows", "cols", "wbits", "lanes", "word"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.lanes > self.rows:
            raise ValueError(f"lanes ({self.lanes}) cannot exceed rows ({self.rows})")
        if self.word > MAX_WORD:
            raise ValueError(f"word must be at most {MAX_WORD} bits, not {self.word}")

    @property
    def word_cols(self) -> int:
        return self.word

    @property
    def words_per_group(self) -> int:
        """One word per bit plane: ``depth = rows_per_lane * wbits * chunks`` and
        ``ideal_cycles = rows * cols * wbits / (lanes * word)``."""
        return self.wbits

    @property
    def chunks(self) -> int:
        return _ceil_div(self.cols, self.word)

    def padded(self, w) -> np.ndarray:
        """``w`` zero-padded to ``(rows_per_lane * lanes, chunks * word)``."""
        w = np.asarray(w, dtype=np.int64)
        if w.shape != (self.rows, self.cols):
            raise ValueError(f"weights have shape {w.shape}, layout is {(self.rows, self.cols)}")
        out = np.zeros((self.rows_per_lane * self.lanes, self.chunks * self.word), np.int64)
        out[: self.rows, : self.cols] = w
        return out


def _planes(w, layout: FoldedLayout) -> np.ndarray:
    """Bit planes as ``[lane, local_row, t, chunk, k]`` (``t = 0`` is the sign plane)."""
    L = layout
    wp = L.padded(w)
    u = wp & ((1 << L.wbits) - 1)  # two's complement code of each weight
    shifts = np.arange(L.wbits - 1, -1, -1, dtype=np.int64)  # MSB plane first
    bits = (u[..., None] >> shifts) & 1  # [R', C', t]
    bits = bits.reshape(L.rows_per_lane, L.lanes, L.chunks, L.word, L.wbits)
    return bits.transpose(1, 0, 4, 2, 3).astype(np.uint64)


def rom_images(w, layout: FoldedLayout) -> np.ndarray:
    """ROM contents: ``uint64`` array ``[lanes, depth]``; bit ``k`` of a word is the plane bit
    of weight ``chunk * word + k``."""
    planes = _planes(w, layout)
    weights = np.uint64(1) << np.arange(layout.word, dtype=np.uint64)
    words = (planes * weights).sum(axis=-1, dtype=np.uint64)  # [lane, i, t, c]
    return words.reshape(layout.lanes, layout.depth)


def tree_bounds(w, layout: FoldedLayout, abits: int) -> tuple[int, int]:
    """Exact range of one cycle's sum of selected activations, over every word of every lane
    (its width is set by the most bits set in any word)."""
    pop = _planes(w, layout).sum(axis=-1)
    most = int(pop.max())
    lo, hi = signed_range(abits)
    return most * lo, most * hi


def acc_bounds(w, layout: FoldedLayout, abits: int) -> tuple[int, int]:
    """Exact range of every value the accumulator passes through, over every row.

    After chunk ``c`` of plane ``b`` the accumulator holds
    ``sum_{j in chunks <= c} x_j * floor(w_j / 2**b) + sum_{j in chunks > c} x_j * 2 *
    floor(w_j / 2**(b+1))`` (the second term is 0 in the sign plane), a linear form in ``x``
    whose exact range :func:`dot_bounds` gives.
    """
    L = layout
    lo, hi = signed_range(abits)
    wp = L.padded(w).reshape(L.rows_per_lane * L.lanes, L.chunks, L.word)
    best_lo, best_hi = 0, 0
    for t in range(L.wbits):  # a handful of planes; everything inside is vectorised
        b = L.wbits - 1 - t
        done = wp >> b
        todo = (wp >> (b + 1)) << 1 if t > 0 else np.zeros_like(wp)
        dlo, dhi = dot_bounds(done, lo, hi)  # [R', chunks]
        tlo, thi = dot_bounds(todo, lo, hi)
        # prefix over finished chunks + suffix over the rest
        step_lo = np.cumsum(dlo, axis=1) + (tlo.sum(axis=1, keepdims=True) - np.cumsum(tlo, 1))
        step_hi = np.cumsum(dhi, axis=1) + (thi.sum(axis=1, keepdims=True) - np.cumsum(thi, 1))
        best_lo = min(best_lo, int(step_lo.min()))
        best_hi = max(best_hi, int(step_hi.max()))
    return best_lo, best_hi


def acc_width(w, layout: FoldedLayout, abits: int) -> int:
    return int(signed_width(*acc_bounds(w, layout, abits)))


def evaluate(w, x, layout: FoldedLayout) -> np.ndarray:
    """Run the folded schedule step by step on ``x`` (``[n, cols]``) from the ROM images, as
    the hardware does. Equal to :func:`golden.linear.matvec`; the tests check that it is."""
    L = layout
    x = np.asarray(x, dtype=np.int64).reshape(-1, L.cols)
    xp = np.zeros((x.shape[0], L.chunks * L.word), np.int64)
    xp[:, : L.cols] = x
    xc = xp.reshape(-1, L.chunks, L.word)
    images = rom_images(w, L).reshape(L.lanes, L.rows_per_lane, L.wbits, L.chunks)
    kbits = np.arange(L.word, dtype=np.uint64)
    acc = np.zeros((x.shape[0], L.lanes, L.rows_per_lane), np.int64)
    for t in range(L.wbits):
        acc = acc * 2
        for c in range(L.chunks):
            sel = ((images[:, :, t, c, None] >> kbits) & np.uint64(1)).astype(np.int64)
            tree = np.einsum("lik,nk->nli", sel, xc[:, c])
            acc = acc - tree if t == 0 else acc + tree
    # local row i of lane p is row i * lanes + p
    return acc.transpose(0, 2, 1).reshape(x.shape[0], -1)[:, : L.rows]
