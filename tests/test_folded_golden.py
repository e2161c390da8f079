import numpy as np
import pytest

from golden.folded import FoldedLayout, acc_bounds, evaluate, rom_images, tree_bounds
from golden.linear import matvec, random_vectors, worst_case_vectors


@pytest.mark.parametrize("rows, cols, wbits, lanes, word", [
    (16, 16, 4, 4, 8), (13, 21, 3, 5, 7), (9, 70, 8, 3, 64), (5, 5, 2, 5, 2), (1, 1, 2, 1, 1),
])
def test_schedule_equals_matvec(rows, cols, wbits, lanes, word):
    rng = np.random.default_rng(rows * cols)
    w = rng.integers(-(1 << wbits - 1), 1 << wbits - 1, size=(rows, cols))
    L = FoldedLayout(rows=rows, cols=cols, wbits=wbits, lanes=lanes, word=word)
    x = np.concatenate([random_vectors(30, cols, 8, rng), worst_case_vectors(w, 8)])
    assert (evaluate(w, x, L) == matvec(w, x)).all()


def test_rom_layout_word_bits():
    w = np.array([[1, -2, 3], [-1, 0, 7]])
    L = FoldedLayout(rows=2, cols=3, wbits=4, lanes=1, word=2)
    img = rom_images(w, L)
    assert img.shape == (1, L.depth) and L.depth == 2 * 4 * 2
    # row 0, sign plane (bit 3): -2 = 0b1110 has it, 1 and 3 do not -> chunk 0 word 0b10
    assert int(img[0, 0]) == 0b10
    # row 0, plane 0 (last plane), chunk 1 holds weight 3 (bit 0 set)
    assert int(img[0, 3 * 2 + 1]) == 0b01


def test_acc_bounds_cover_every_intermediate():
    rng = np.random.default_rng(7)
    w = rng.integers(-8, 8, size=(6, 12))
    L = FoldedLayout(rows=6, cols=12, wbits=4, lanes=2, word=4)
    lo, hi = acc_bounds(w, L, 8)
    tlo, thi = tree_bounds(w, L, 8)
    xs = np.concatenate([worst_case_vectors(w, 8), random_vectors(200, 12, 8, rng)])
    # Replay the Horner steps and record every accumulator value.
    img = rom_images(w, L).reshape(L.lanes, L.rows_per_lane, L.wbits, L.chunks)
    xc = np.zeros((len(xs), L.chunks * L.word), np.int64)
    xc[:, :12] = xs
    xc = xc.reshape(len(xs), L.chunks, L.word)
    acc = np.zeros((len(xs), L.lanes, L.rows_per_lane), np.int64)
    seen_lo, seen_hi = 0, 0
    for t in range(L.wbits):
        acc = acc * 2
        for c in range(L.chunks):
            sel = (img[:, :, t, c, None] >> np.arange(L.word, dtype=np.uint64)) & np.uint64(1)
            tree = np.einsum("lik,nk->nli", sel.astype(np.int64), xc[:, c])
            assert tlo <= tree.min() and tree.max() <= thi
            acc = acc - tree if t == 0 else acc + tree
            seen_lo, seen_hi = min(seen_lo, acc.min()), max(seen_hi, acc.max())
    assert lo <= seen_lo and seen_hi <= hi


def test_layout_validation():
    with pytest.raises(ValueError, match="lanes"):
        FoldedLayout(rows=4, cols=4, wbits=4, lanes=5, word=4)
    with pytest.raises(ValueError, match="word"):
        FoldedLayout(rows=4, cols=4, wbits=4, lanes=1, word=65)
    L = FoldedLayout(rows=576, cols=1536, wbits=4, lanes=64, word=64)
    assert L.cycles_per_vector == L.ideal_cycles == 864
