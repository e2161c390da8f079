"""The integer layer: its primitives, its worst cases, and its distance from the float layer."""

import math

import numpy as np
import pytest

from gen.models import load_model, smollm2_path
from golden.integer import (
    IntCache,
    IntFormat,
    bfp,
    exp2_neg,
    exp2_table,
    from_residual,
    norm_gain,
    recip,
    rescale,
    rms_norm_int,
    rope_int,
    rope_table,
    sigmoid_table,
    silu_int,
)
from golden.llama import layer_forward, rms_norm, rope_half, rope_tables, silu
from golden.llama_int import IntLayer, int_layer_forward, int_layer_step

FMT = IntFormat()


def test_bfp():
    a, e = bfp(np.array([3, -5, 100]), 12, 4)
    assert a.tolist() == [3, -5, 100] and e == -4  # fits: exact
    a, e = bfp(np.array([4095, -4095, 6, -6, 2]), 12, 0)  # 12 magnitude bits: shift 1
    assert a.tolist() == [2047, -2048, 3, -3, 1] and e == 1  # 2047.5 -> 2048 saturates
    a, e = bfp(np.array([4096, 1]), 12, 0)
    assert a.tolist() == [1024, 0] and e == 2
    a, e = bfp(np.zeros(4, np.int64), 8, 3)
    assert a.tolist() == [0] * 4 and e == -3


def test_recip_and_rescale():
    for x in (1, 2, 3, 1000, 2**40 + 12345):
        r, k = recip(x, 24)
        assert 1 << 23 <= r <= 1 << 24 and r == (1 << k) // x
    assert rescale(np.array([5, -5, 6]), 1, 8).tolist() == [3, -3, 3]  # half away
    assert rescale(np.array([3, -3]), -2, 8).tolist() == [12, -12]
    assert rescale(np.array([100, -100]), -2, 8).tolist() == [127, -128]  # saturates
    for s in (-7, -8, -40, -100):  # far left shifts saturate every nonzero value
        assert rescale(np.array([1, -1, 0, 2**40]), s, 8).tolist() == [127, -128, 0, 127]
    with pytest.raises(ValueError):
        recip(0, 24)


def test_exp2_and_sigmoid_tables_track_float():
    tab = exp2_table(FMT)
    assert tab[0] == 1 << 16 and tab[-1] == 1 << 15
    d = np.arange(0, 20 << FMT.score_frac, 7)
    got = exp2_neg(d, tab, FMT) / 2.0**16
    want = np.exp2(-d / 2.0**FMT.score_frac)
    # interpolation (step**2 / 8 * ln2**2 = 1.8e-5) plus the table rounding (2**-17)
    assert np.max(np.abs(got - want)) < 4e-5
    assert np.all(np.diff(got) <= 0)
    g = np.arange(-20 << 12, 20 << 12, 13)
    s = silu_int(g, sigmoid_table(FMT), FMT) / 2.0 ** (12 + 16)
    want = silu(g / 4096.0)
    assert np.max(np.abs(s - want)) < 1e-4 * np.maximum(1, np.abs(want)).max()


def test_rms_norm_int_tracks_float():
    rng = np.random.default_rng(0)
    dim = 576
    g = (1 + 0.5 * rng.standard_normal(dim)).astype(np.float32)
    gain, gf = norm_gain(g, dim, FMT)
    assert np.abs(gain).max() < 1 << FMT.gain_bits
    eps_term = round(dim * 1e-5 * 4.0**FMT.res_frac)
    for scale in (1e-3, 0.1, 30, 20000 / 40):
        x = (rng.standard_normal(dim) * scale).astype(np.float32)
        x[5] *= 40  # an outlier channel
        h = np.round(x * 4096).astype(np.int64)
        a, e = rms_norm_int(h, gain, gf, eps_term, FMT)
        assert np.abs(a).max() < 1 << (FMT.abits - 1)
        got = np.ldexp(a.astype(np.float64), e)
        # The input keeps norm_bits (floor) and the gain gain_bits; on those exact values,
        # all the error is the final rounding to the 2**e grid: step / sqrt(12) per element.
        sh = max(0, int(np.abs(h).max()).bit_length() - (FMT.norm_bits - 1))
        hq = (h >> sh) << sh
        gq = gain / (math.sqrt(dim) * 2.0**gf)
        want = rms_norm(hq / 4096.0, gq, 1e-5)
        step = 2.0**e
        assert np.linalg.norm(got - want) <= 1.2 * step * math.sqrt(dim / 12)
        # Against the unquantised input and gain: within a relative 2**-10 (measured 6e-4;
        # the outlier sets the 16-bit input grid for every element).
        full = rms_norm(h / 4096.0, g, 1e-5)
        assert np.linalg.norm(got - full) <= 2.0**-10 * np.linalg.norm(full)


def test_rms_norm_int_worst_case_residual():
    dim = 64
    gain, gf = norm_gain(np.full(dim, 3.0), dim, FMT)
    for v in (-(1 << 31), (1 << 31) - 1, 0, 1):
        a, e = rms_norm_int(np.full(dim, v, np.int64), gain, gf, 655, FMT)
        assert np.abs(a).max() <= 1 << (FMT.abits - 1)
        if abs(v) > 1 << 20:
            np.testing.assert_allclose(np.ldexp(a.astype(float), e), 3.0 * np.sign(v), rtol=1e-3)


def test_rope_int_tracks_float():
    rng = np.random.default_rng(2)
    hd, ctx = 64, 64
    C, S = rope_table(hd, 100000.0, ctx, FMT.trig_frac)
    cos, sin = rope_tables(hd, 100000.0, range(ctx))
    v = rng.integers(-(1 << 20), 1 << 20, (3, hd))
    for p in (0, 1, 63):
        got = rope_int(v, C[p], S[p], FMT) / 4096.0
        want = rope_half(v / 4096.0, cos[p], sin[p])
        assert np.max(np.abs(got - want)) < 2**-12 * 3 + np.abs(want).max() * 2**-13


def _inputs(m, n, seed=0):
    rng = np.random.default_rng(seed)
    return m.embedding().dequantize()[rng.integers(0, m.cfg.vocab, n)]


def test_tiny_int_close_to_float_and_fills_context():
    m = load_model("tiny")
    x = _inputs(m, m.cfg.max_ctx)
    for li in range(m.cfg.n_layers):
        L = IntLayer(m.cfg, m.layer(li), m.cfg.max_ctx)
        ref = layer_forward(m.cfg, m.layer(li), x)
        got = from_residual(int_layer_forward(L, x), L.fmt)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.01
        x = ref


def test_int_layer_is_deterministic_and_rejects_position():
    m = load_model("tiny")
    L = IntLayer(m.cfg, m.layer(0), 4)
    x = _inputs(m, 4)
    np.testing.assert_array_equal(int_layer_forward(L, x), int_layer_forward(L, x))
    with pytest.raises(ValueError, match="outside the context"):
        int_layer_step(L, np.zeros(m.cfg.dim, np.int64), 4, IntCache(m.cfg, 4))


def test_int_layer_extreme_residual_saturates_cleanly():
    m = load_model("tiny")
    L = IntLayer(m.cfg, m.layer(0), 2)
    cache = IntCache(m.cfg, 2)
    lim = 1 << 31
    h = np.where(np.arange(m.cfg.dim) % 2, lim - 1, -lim)
    for p in range(2):
        out = int_layer_step(L, h, p, cache)
        assert out.min() >= -lim and out.max() < lim


def test_smollm2_layer0_int_within_one_percent_of_float():
    try:
        m = load_model(str(smollm2_path()))
    except Exception as e:
        pytest.skip(str(e))
    x = _inputs(m, 16, seed=1)
    L = IntLayer(m.cfg, m.layer(0), 16)
    ref = layer_forward(m.cfg, m.layer(0), x)
    got = from_residual(int_layer_forward(L, x), L.fmt)
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err <= 0.01, err
    assert not math.isnan(err)
