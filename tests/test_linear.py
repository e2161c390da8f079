import itertools

import numpy as np
import pytest

from golden.linear import (
    LinearSpec,
    Requant,
    acc_widths,
    check_weights,
    matvec,
    row_bounds,
    worst_case_vectors,
)
from golden.numerics import signed_range


def test_spec_validation():
    with pytest.raises(ValueError, match="wbits"):
        LinearSpec(wbits=1)
    with pytest.raises(ValueError, match="wbits"):
        LinearSpec(wbits=9)
    with pytest.raises(ValueError, match="abits"):
        LinearSpec(wbits=4, abits=9)
    with pytest.raises(ValueError, match="ternary"):
        LinearSpec(wbits=4, ternary=True)
    assert LinearSpec(wbits=2, ternary=True).weight_range == (-1, 1)


@pytest.mark.parametrize("bad, msg", [
    (np.array([[8]]), "outside the int4 range"),
    (np.array([[np.nan]]), "NaN"),
    (np.array([[0.5]]), "integers"),
    (np.array([1, 2]), "2-D"),
    (np.array([["a"]]), "dtype"),
    (np.zeros((0, 3), np.int8), "at least one"),
])
def test_check_weights_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        check_weights(bad, LinearSpec(wbits=4))


def test_bounds_exact_by_brute_force():
    """The exact bound is attained, and no input exceeds it (3-bit activations, all inputs)."""
    rng = np.random.default_rng(3)
    w = rng.integers(-8, 8, size=(5, 4))
    xs = np.array(list(itertools.product(range(-4, 4), repeat=4)))
    ys = matvec(w, xs)
    lo, hi = row_bounds(w, 3)
    assert (ys.min(axis=0) == lo).all() and (ys.max(axis=0) == hi).all()
    for i, width in enumerate(acc_widths(w, 3)):
        rlo, rhi = signed_range(int(width))
        assert rlo <= lo[i] and hi[i] <= rhi
        plo, phi = signed_range(int(width) - 1)
        assert lo[i] < plo or hi[i] > phi


def test_worst_case_vectors_hit_both_ends():
    rng = np.random.default_rng(4)
    w = rng.integers(-4, 4, size=(6, 9))
    xs = worst_case_vectors(w, 8)
    ys = matvec(w, xs)
    lo, hi = row_bounds(w, 8)
    assert (ys.min(axis=0) == lo).all() and (ys.max(axis=0) == hi).all()


def test_requant():
    rq = Requant.from_scale(0.25)
    assert rq.multiplier / (1 << rq.shift) == 0.25
    assert rq.apply(np.array([2, 6, -2, -6, 1000, -1000])).tolist() == [1, 2, -1, -2, 127, -128]
    rq = Requant(multiplier=3, shift=2, rounding="half_even")
    assert rq.apply(np.array([2, -2, 6])).tolist() == [2, -2, 4]  # 1.5 -> 2, -1.5 -> -2, 4.5 -> 4
    with pytest.raises(ValueError):
        Requant.from_scale(-1.0)
    with pytest.raises(ValueError):
        Requant(multiplier=0, shift=1)
    w = np.array([[7, -8], [1, 1]])
    rq = Requant.for_weights(w, 8)
    lo, hi = row_bounds(w, 8)
    assert rq.apply(np.array([lo.min(), hi.max()])).tolist() in ([-127, 127], [-128, 127],
                                                                 [-127, 126], [-128, 126])
