"""The rounding, saturation and width functions are the definitions; pin them exactly."""

import math
from fractions import Fraction

import numpy as np
import pytest

from golden.numerics import (
    ROUNDING_MODES,
    csd_digits,
    round_shift,
    saturate,
    signed_range,
    signed_width,
    wrap,
)


def reference(v: int, s: int, mode: str) -> int:
    """Rounding of the exact rational v / 2**s, written from the mode's name."""
    q = Fraction(v, 1 << s)
    fl = math.floor(q)
    frac = q - fl
    if mode == "floor":
        return fl
    if mode == "trunc_zero":
        return math.trunc(q)
    if frac != Fraction(1, 2):
        return fl + (frac > Fraction(1, 2))
    return {"half_up": fl + 1, "half_down": fl, "half_away": fl + 1 if q > 0 else fl,
            "half_even": fl + (fl % 2)}[mode]


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("shift", [0, 1, 2, 5])
def test_round_shift_matches_exact_rational(mode, shift):
    v = np.arange(-200, 201)
    got = round_shift(v, shift, mode)
    assert got.tolist() == [reference(int(x), shift, mode) for x in v]


def test_ties_pinned():
    ties = np.array([-5, -3, -1, 1, 3, 5])  # v / 2 = -2.5, -1.5, -0.5, 0.5, 1.5, 2.5
    expect = {
        "floor": [-3, -2, -1, 0, 1, 2],
        "trunc_zero": [-2, -1, 0, 0, 1, 2],
        "half_up": [-2, -1, 0, 1, 2, 3],
        "half_down": [-3, -2, -1, 0, 1, 2],
        "half_away": [-3, -2, -1, 1, 2, 3],
        "half_even": [-2, -2, 0, 0, 2, 2],
    }
    for mode, want in expect.items():
        assert round_shift(ties, 1, mode).tolist() == want, mode


def test_unknown_mode_and_bad_shift():
    with pytest.raises(ValueError, match="unknown rounding mode"):
        round_shift(np.array([1]), 1, "nearest")
    with pytest.raises(ValueError, match="shift"):
        round_shift(np.array([1]), -1, "floor")
    with pytest.raises(TypeError):
        round_shift(np.array([1.5]), 1, "floor")


def test_saturate_and_wrap():
    v = np.array([-300, -129, -128, 0, 127, 128, 300])
    assert saturate(v, 8).tolist() == [-128, -128, -128, 0, 127, 127, 127]
    assert wrap(v, 8).tolist() == [-44, 127, -128, 0, 127, -128, 44]


def test_signed_width_brute_force():
    for lo in range(-70, 5):
        for hi in range(max(lo, -3), 70, 7):
            w = int(signed_width(np.array(lo), np.array(hi)))
            rlo, rhi = signed_range(w)
            assert rlo <= lo and hi <= rhi, (lo, hi, w)
            if w > 1:
                plo, phi = signed_range(w - 1)
                assert lo < plo or hi > phi, (lo, hi, w)


def test_signed_width_large_powers_of_two():
    for e in range(1, 60):
        assert int(signed_width(np.array(0), np.array(1 << e))) == e + 2
        assert int(signed_width(np.array(-(1 << e)), np.array(0))) == e + 1
        assert int(signed_width(np.array(0), np.array((1 << e) - 1))) == e + 1


def test_csd_digits():
    w = np.arange(-300, 301)
    d = csd_digits(w, 11).astype(np.int64)
    assert ((d * (1 << np.arange(11))).sum(axis=1) == w).all()
    assert not np.any((d[:, 1:] != 0) & (d[:, :-1] != 0)), "adjacent nonzero digits"
    with pytest.raises(ValueError):
        csd_digits(np.array([255]), 4)


def test_roundf_is_c_roundf():
    """llama.cpp's roundf: ties away from zero, exactly (0.49999997f stays 0, which
    ``floor(x + 0.5)`` in float32 gets wrong)."""
    from golden.numerics import roundf

    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 2.4999998,
                  126.5, -127.5, 0.0, 7.0], np.float32)
    want = [1, 2, 3, -1, -2, -3, 0, 0, 2, 127, -128, 0, 7]
    assert roundf(x).tolist() == want
    assert roundf(x).dtype == np.float32
    assert float(np.floor(np.float32(0.49999997) + np.float32(0.5))) == 1.0  # the trap
