"""Block-quantised weights: exact decoding, llama.cpp's quantisers, the exact block product."""

import numpy as np
import pytest

from golden.blockquant import (
    FORMATS,
    K_FORMATS,
    block_matvec,
    decode,
    encode,
    f16_exact_parts,
    quantize_per_channel,
)

gguf = pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
from gguf import GGMLQuantizationType as QT  # noqa: E402


def test_f16_parts_exact_for_every_finite_half():
    bits = np.arange(1 << 16, dtype=np.uint16)
    h = bits.view(np.float16)
    h = h[np.isfinite(h)]
    m, e = f16_exact_parts(h)
    assert np.all(np.abs(m) < 1 << 11)
    np.testing.assert_array_equal(np.ldexp(m.astype(np.float64), e), h.astype(np.float64))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_encode_matches_gguf_and_decode_matches_dequantize(fmt):
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((24, 96)) * rng.uniform(0.01, 2, (24, 1))).astype(np.float32)
    w[3, :32] = 0  # an all-zero block
    raw = encode(fmt, w)
    ref_raw = gguf.quants.quantize(w, QT[fmt]).reshape(-1)
    np.testing.assert_array_equal(raw, ref_raw)
    wq = decode(fmt, raw, *w.shape)
    ref = gguf.quants.dequantize(raw.reshape(24, -1), QT[fmt])
    np.testing.assert_array_equal(wq.dequantize(), ref)
    assert wq.codes.min() >= -(1 << (wq.bits - 1)) and wq.codes.max() < 1 << (wq.bits - 1)


def test_block_matvec_is_exact():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    wq = decode("Q4_1", encode("Q4_1", w), 8, 64)
    a = rng.integers(-2048, 2048, 64)
    acc = block_matvec(wq, a)
    # The same sum in exact Python integers, element by element.
    c = wq.codes.astype(object)
    want = [sum(int(wq.scale[r, j // 32]) * int(c[r, j]) * int(a[j])
                + int(wq.offset[r, j // 32]) * int(a[j]) for j in range(64)) for r in range(8)]
    assert acc.tolist() == want
    # And it is the dequantised product, scaled by 2**exp.
    np.testing.assert_allclose(np.ldexp(acc.astype(np.float64), wq.exp),
                               wq.dequantize().astype(np.float64) @ a, rtol=1e-12)


@pytest.mark.parametrize("fmt,nbytes,cols,msg", [
    ("Q4_1", 39, 64, "needs 40 bytes"),
    ("Q8_0", 34, 33, "not a multiple of 32"),
    ("Q5_K", 34, 32, "unsupported tensor type Q5_K; supported: F32, F16, .*Q4_K, Q6_K"),
    ("Q4_K", 144, 128, "not a multiple of 256"),
    ("Q6_K", 200, 256, "needs 210 bytes"),
])
def test_decode_rejects_bad_sizes(fmt, nbytes, cols, msg):
    with pytest.raises(ValueError, match=msg):
        decode(fmt, np.zeros(nbytes, np.uint8), 1, cols)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_per_channel(bits):
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((16, 40))
    wq = quantize_per_channel(w, bits)
    qmax = (1 << (bits - 1)) - 1
    assert wq.codes.min() >= -qmax - 1 and wq.codes.max() <= qmax
    step = np.abs(w).max(axis=1) / qmax
    assert np.all(np.abs(wq.dequantize() - w) <= step[:, None] * 0.5001 + 1e-6)


def _k_blocks(fmt, rows, cols, seed):
    """Random k-quant super-blocks: every code, scale and min byte drawn at random, the float16
    scales finite (small, of both signs, one ``d`` zero, one ``d`` subnormal)."""
    _, nbytes, _, _ = K_FORMATS[fmt]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows, cols // 256, nbytes), dtype=np.uint8)
    halves = rng.uniform(-0.02, 0.02, (rows, cols // 256, 2)).astype(np.float16)
    halves[0, 0, 0] = 0
    halves[-1, -1, 0] = np.float16(3e-7)  # subnormal
    if fmt == "Q4_K":
        raw[:, :, 0:4] = halves.view(np.uint8).reshape(rows, -1, 4)
    else:
        raw[:, :, 208:210] = halves[:, :, :1].view(np.uint8).reshape(rows, -1, 2)
    return raw


@pytest.mark.parametrize("fmt", sorted(K_FORMATS))
def test_k_quants_decode_matches_dequantize(fmt):
    """Q4_K and Q6_K: the exact block-affine form, rounded once to float32, is gguf's own
    dequantisation bit for bit (its float32 products are exact, and its one rounding is
    ours)."""
    rows, cols = 12, 512
    raw = _k_blocks(fmt, rows, cols, 7)
    wq = decode(fmt, raw.reshape(-1), rows, cols)
    ref = gguf.quants.dequantize(raw.reshape(rows, -1), QT[fmt])
    np.testing.assert_array_equal(wq.dequantize(), ref)
    _, _, bits, block = K_FORMATS[fmt]
    assert (wq.bits, wq.block, wq.source) == (bits, block, fmt)
    assert wq.codes.min() == -(1 << (bits - 1)) and wq.codes.max() == (1 << (bits - 1)) - 1


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_0", "Q4_1", "MXFP4"])
def test_encode_equals_llama_cpp_on_ties(fmt):
    """The reference quantisers' bytes (gguf-py's ports of quantize_row_*_ref) on blocks
    where every element is a rounding tie, and on random ones."""
    import gguf.quants as gq
    from gguf import GGMLQuantizationType

    from golden.blockquant import encode

    rng = np.random.default_rng(7)
    if fmt == "Q8_0":  # x * (127 / amax) = k + 0.5
        x = rng.integers(-127, 127, (64, 32)) + 0.5
        x[:, 0] = 127
    elif fmt == "Q4_0":  # x / d + 8 = k + 0.5 with d = -max/8
        x = rng.integers(-8, 7, (64, 32)) + 0.5
        x[:, 0] = -8
    elif fmt == "Q4_1":  # (x - min) / d = k + 0.5 with d = (max - min) / 15
        x = rng.integers(0, 15, (64, 32)) + 0.5
        x[:, :2] = [0, 15]
    else:  # every midpoint of the E2M1 grid, signed, at a power-of-two block scale; the
        # block maxima 6 and just below 8, 16 and 2**-9 (where float32 log2 rounds up)
        mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0])
        x = rng.choice(mids, (64, 32)) * rng.choice([-1, 1], (64, 32))
        x[:, 0] = 6.0
        x[:4, 0] = [np.nextafter(np.float32(8), 0), np.nextafter(np.float32(16), 0),
                    np.nextafter(np.float32(2.0 ** -9), 0), 4.0]
        x *= np.ldexp(1.0, rng.integers(-20, 20, 64))[:, None]
    x = np.concatenate([x, rng.standard_normal((64, 32))]).astype(np.float32)
    want = gq.quantize(x, getattr(GGMLQuantizationType, fmt)).reshape(-1)
    np.testing.assert_array_equal(encode(fmt, x), want)
