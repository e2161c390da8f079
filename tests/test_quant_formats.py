"""Quantisers for float checkpoints: intN per group, ternary (absmean), OCP MXFP4.

Golden exactness against reference float math, MXFP4 against a hand-written decode of the
spec's tables, properties and bad input; the new formats through the lanes bit for bit
(Icarus, default set) and through whole layers (``hardwire layer --quant X`` + ``hardwire
sim``, slow set); the manifest's weight_error and :func:`gen.weight_error.weight_errors`.
"""

import json
import math

import numpy as np
import pytest

from gen.cli import main
from golden.blockquant import (
    block_matvec,
    decode,
    encode,
    mxfp4_elements,
    quantize_mxfp4,
    quantize_per_group,
    quantize_ternary,
    stack,
)
from hdl.lane_array import pass_latency

GROUP_BITS = (2, 3, 4, 8)
NEW_QUANTS = ("int2g", "int3g", "int4g", "int8g", "ternary", "mxfp4")


def _floats(rows, cols, seed, outliers=True):
    """Gaussian rows of different scales with a few large outliers, float32."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)) / np.sqrt(cols) * rng.uniform(0.2, 3, (rows, 1))
    if outliers:
        w[rng.random((rows, cols)) < 0.01] *= 10
    return w.astype(np.float32)


# --- intN per group ----------------------------------------------------------------------------

def _per_group_reference(w, bits):
    """Element by element, in Python floats: d = float16(mx / -2**(N-1)) with mx the first
    weight of largest magnitude in the group; c = clip(round half even(w / d))."""
    top = 2 ** (bits - 1)
    out = np.zeros(w.shape, np.float64)
    codes = np.zeros(w.shape, np.int64)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], 32):
            grp = [float(v) for v in w[r, g:g + 32]]
            mx = max(grp, key=abs)  # max() returns the first of equal keys
            d = float(np.float16(mx / -top))
            for j, v in enumerate(grp):
                c = 0 if d == 0 else min(max(round(v / d), -top), top - 1)  # round: half even
                codes[r, g + j], out[r, g + j] = c, c * d
    return codes, out


@pytest.mark.parametrize("bits", GROUP_BITS)
def test_per_group_equals_reference_float_math(bits):
    w = _floats(6, 96, bits)
    w[1, 32:64] = 0  # an all-zero group
    w[2, 0:32] = np.linspace(-1, 1, 32)  # equal magnitudes at both ends: the first one wins
    q = quantize_per_group(w, bits)
    codes, ref = _per_group_reference(w, bits)
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.dequantize(np.float64), ref)
    assert (q.block, q.bits, q.source, q.scale.shape) == (32, bits, f"int{bits}g", (6, 3))
    assert not np.any(q.offset)
    top = 1 << (bits - 1)
    assert q.codes.min() == -top and q.codes.max() <= top - 1
    # the weight of largest magnitude of each group gets the code -2**(N-1)
    x = w.reshape(6, 3, 32)
    idx = np.abs(x).argmax(axis=2)
    c = np.take_along_axis(q.codes.reshape(6, 3, 32), idx[:, :, None], axis=2)[:, :, 0]
    live = np.abs(x).max(axis=2) > 0
    assert np.all(c[live] == -top) and np.all(q.scale[~live] == 0)


def test_per_group_ties_round_half_even():
    # 3 bits, the group's largest weight -2: d = float16(-2 / -4) = 0.5, and w / d = 2.5,
    # 3.5 and -0.5 are ties.
    w = np.zeros((1, 32), np.float32)
    w[0, :4] = [-2.0, 1.25, 1.75, -0.25]
    q = quantize_per_group(w, 3)
    assert q.codes[0, :4].tolist() == [-4, 2, 3, 0]  # 2.5 -> 2, 3.5 -> 4 -> clipped 3, -0.5 -> 0


def test_per_group_error_falls_with_bits():
    w = _floats(64, 128, 1)
    errs = [np.linalg.norm(quantize_per_group(w, b).dequantize(np.float64) - w)
            / np.linalg.norm(w) for b in GROUP_BITS]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.01 and errs[0] < 0.6


# --- ternary -----------------------------------------------------------------------------------

def test_ternary_absmean():
    w = _floats(16, 64, 2)
    q = quantize_ternary(w)
    gamma = float(np.abs(w.astype(np.float64)).mean())
    g = float(np.float16(gamma))  # 11 significant bits, as float16 in its normal range
    assert math.ldexp(float(q.scale[0, 0]), q.exp) == g and q.scale[0, 0] % 2 == 1
    assert np.all(q.scale == q.scale[0, 0]) and q.scale.shape == (16, 1)
    want = np.clip(np.rint(w.astype(np.float64) / g), -1, 1)
    np.testing.assert_array_equal(q.codes, want)
    np.testing.assert_array_equal(q.dequantize(np.float64), want * g)
    assert (q.bits, q.block, q.source) == (2, 64, "ternary") and not np.any(q.offset)
    assert set(np.unique(q.codes)) == {-1, 0, 1}
    # one tensor scale: the same weights in a scaled copy get the same codes
    q2 = quantize_ternary(w * np.float32(4))
    np.testing.assert_array_equal(q2.codes, q.codes)
    assert q2.exp == q.exp + 2


def test_ternary_ties_and_zero():
    # mean |w| = 1: 0.5 -> 0 (tie to even), 1.5 -> 2 -> clipped 1, -1.5 -> -1
    w = np.array([[0.5, 1.5, -1.5, 0.5, 1.0, 1.0, -1.0, -1.0]], np.float32)
    q = quantize_ternary(w)
    assert math.ldexp(float(q.scale[0, 0]), q.exp) == 1.0
    assert q.codes[0].tolist() == [0, 1, -1, 0, 1, 1, -1, -1]
    z = quantize_ternary(np.zeros((2, 32), np.float32))
    assert not np.any(z.codes) and not np.any(z.scale)


# --- MXFP4 -------------------------------------------------------------------------------------

# OCP Microscaling Formats v1.0, FP4 E2M1 (sign, 2 exponent bits with bias 1, 1 mantissa
# bit; exponent 0 is subnormal: 0.m * 2**0), written out by hand.
E2M1 = {0b0000: 0.0, 0b0001: 0.5, 0b0010: 1.0, 0b0011: 1.5,
        0b0100: 2.0, 0b0101: 3.0, 0b0110: 4.0, 0b0111: 6.0,
        0b1000: -0.0, 0b1001: -0.5, 0b1010: -1.0, 0b1011: -1.5,
        0b1100: -2.0, 0b1101: -3.0, 0b1110: -4.0, 0b1111: -6.0}


def _e8m0(byte):
    """E8M0: an unbiased exponent of 2 (bias 127); 0xFF is NaN."""
    return math.nan if byte == 0xFF else math.ldexp(1.0, byte - 127)


def _spec_decode(raw, rows, cols):
    """The bytes, decoded from the tables above: per 32 elements, the E8M0 byte, then 16
    bytes holding element i in the low nibble of byte i and element i + 16 in the high."""
    raw = raw.reshape(rows, cols // 32, 17)
    out = np.zeros((rows, cols))
    for r in range(rows):
        for b in range(cols // 32):
            x = _e8m0(int(raw[r, b, 0]))
            for i in range(16):
                byte = int(raw[r, b, 1 + i])
                out[r, b * 32 + i] = E2M1[byte & 0xF] * x
                out[r, b * 32 + i + 16] = E2M1[byte >> 4] * x
    return out


def _spec_quantize(v):
    """One element ``v / X`` to E2M1 by brute force: nearest value, ties to the smaller
    magnitude (llama.cpp's first candidate), saturating at 6; zero written +0."""
    best = min(range(8), key=lambda k: (abs(abs(v) - E2M1[k]), k))
    return best | 8 if v < 0 and best else best


def test_mxfp4_bytes_decode_by_the_spec_table():
    w = _floats(8, 128, 4)
    w[0, :32] = 0  # all-zero block
    w[1, 32:64] *= np.float32(1e-3)  # a block 10 octaves down
    raw = encode("MXFP4", w)
    assert raw.dtype == np.uint8 and raw.size == 8 * 4 * 17
    q = decode("MXFP4", raw, 8, 128)
    spec = _spec_decode(raw, 8, 128)
    np.testing.assert_array_equal(q.dequantize(np.float64), spec)
    assert q.bits == 5 and q.block == 32 and not np.any(q.offset)
    assert set(np.abs(q.codes).ravel().tolist()) <= {0, 1, 2, 3, 4, 6, 8, 12}
    live = q.scale != 0
    d = q.scale[live]
    assert np.all(d & (d - 1) == 0) and d.min() == 1  # powers of two, the smallest is 1
    assert not np.any(q.codes.reshape(8, 4, 32)[~live])  # D = 0 only for all-zero blocks
    # the integer form's exponent: elements are halves times the block scale
    e = raw.reshape(8, 4, 17)[:, :, 0].astype(int) - 127
    assert q.exp == e[live].min() - 1
    np.testing.assert_array_equal(quantize_mxfp4(w).codes, q.codes)


def test_mxfp4_quantiser_follows_the_spec():
    w = _floats(4, 64, 5)
    e8m0, nib = mxfp4_elements(w)
    for r in range(4):
        for b in range(2):
            blk = [float(v) for v in w[r, b * 32:(b + 1) * 32]]
            amax = max(abs(v) for v in blk)
            shared = math.floor(np.float32(math.log2(amax))) - 2  # floorf(log2f) - emax(E2M1)
            assert int(e8m0[r, b]) == shared + 127
            want = [_spec_quantize(v / 2.0 ** shared) for v in blk]
            assert nib[r, b * 32:(b + 1) * 32].tolist() == want


def test_mxfp4_ties_to_the_smaller_magnitude_and_saturation():
    # amax 7.5 -> floor(log2) 2 -> shared exponent 0: elements are the values themselves
    vals = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 6.5, 7.5, 0.2, 0.3, 2.9, 5.1]
    want = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 6.0, 6.0, 0.0, 0.5, 3.0, 6.0]
    row = np.zeros(32, np.float32)
    row[:len(vals)] = vals
    row[16:16 + len(vals)] = [-v for v in vals]
    w = row[None, :]
    raw = encode("MXFP4", w)
    assert raw[0] == 127  # E8M0 of 2**0
    got = _spec_decode(raw, 1, 32)[0]
    assert got[:len(vals)].tolist() == want
    assert got[16:16 + len(vals)].tolist() == [-v for v in want]
    np.testing.assert_array_equal(decode("MXFP4", raw, 1, 32).dequantize(np.float64)[0], got)


def test_mxfp4_extreme_scales():
    w = np.zeros((4, 32), np.float32)
    w[1, 0] = 3e38  # floor(log2) = 127: shared exponent 125, no clamp
    w[2, 0] = np.float32(1e-40)  # a float32 subnormal: shared exponent clamps to -127
    w[3, :2] = [np.float32(2.0 ** -126), np.float32(2.0 ** -128)]  # -128 clamps to -127
    e8m0, nib = mxfp4_elements(w)
    assert e8m0[:, 0].tolist() == [0, 125 + 127, 0, 0]  # all-zero block: -127 (byte 0)
    assert nib[0].max() == 0 and nib[1, 0] == 0b0111  # 3e38 / 2**125 = 7.05: saturates to 6
    assert nib[2].max() == 0  # 1e-40 / 2**-127 = 0.017 -> 0
    assert nib[3, :2].tolist() == [0b0100, 0b0001]  # 2.0 and 0.5 times 2**-127
    spec = _spec_decode(encode("MXFP4", w), 4, 32)
    np.testing.assert_array_equal(spec[3, :2], [2.0 ** -126, 2.0 ** -128])
    # one exponent can't hold 2**125 beside tiny blocks: the span is refused
    with pytest.raises(ValueError, match="span 252 octaves"):
        quantize_mxfp4(w[1:4:2])


def test_mxfp4_matches_gguf():
    gguf = pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
    from gguf import GGMLQuantizationType as QT

    w = _floats(16, 96, 6)
    raw = encode("MXFP4", w)
    ref = gguf.quants.dequantize(raw.reshape(16, -1), QT.MXFP4)
    np.testing.assert_array_equal(decode("MXFP4", raw, 16, 96).dequantize(), ref)
    np.testing.assert_array_equal(raw, gguf.quants.quantize(w, QT.MXFP4).reshape(-1))


def test_block_product_is_exact_for_every_format():
    rng = np.random.default_rng(8)
    w = _floats(8, 64, 9)
    a = rng.integers(-2048, 2048, 64)
    for q in [quantize_per_group(w, b) for b in GROUP_BITS] + [quantize_ternary(w),
                                                               quantize_mxfp4(w)]:
        acc = block_matvec(q, a)
        c = q.codes.astype(object)
        want = [sum(int(q.scale[r, j // q.block]) * int(c[r, j]) * int(a[j])
                    for j in range(64)) for r in range(8)]
        assert acc.tolist() == want, q.source


@pytest.mark.parametrize("fn,args,msg", [
    (quantize_per_group, (np.zeros((2, 40)), 4), "groups of 32"),
    (quantize_per_group, (np.zeros((2, 32)), 9), "bits must be in 2..8"),
    (quantize_per_group, (np.zeros((2, 32)), 1), "bits must be in 2..8"),
    (quantize_per_group, (np.full((1, 32), 1e6), 2), "exceeds float16"),
    (quantize_per_group, (np.zeros(32), 4), "2-D"),
    (quantize_ternary, (np.full((2, 32), np.nan),), "NaN"),
    (quantize_ternary, (np.array([["a"] * 32]),), "float weights"),
    (quantize_mxfp4, (np.zeros((2, 48)),), "groups of 32"),
    (quantize_mxfp4, (np.full((2, 32), np.inf),), "NaN or infinity"),
    (quantize_mxfp4, (np.full((2, 32), 1e39),), "exceed float32"),
])
def test_bad_input(fn, args, msg):
    with pytest.raises(ValueError, match=msg):
        fn(*args)


def test_nan_scale_byte_is_refused():
    raw = encode("MXFP4", np.ones((1, 32), np.float32))
    raw[0] = 0xFF
    with pytest.raises(ValueError, match="NaN"):
        decode("MXFP4", raw, 1, 32)


# --- the lanes, bit for bit (Icarus) ------------------------------------------------------------

def _mxfp4_hard():
    """MXFP4 with everything at once: blocks 12 octaves apart, an all-zero block (D = 0),
    saturation (a block's amax just under the next power of two)."""
    w = _floats(32, 96, 12)
    w[3, 32:64] *= np.float32(2.0 ** -12)
    w[5, :32] = 0
    w[7, 64:96] = np.float32(7.99)
    return quantize_mxfp4(w)


LANE_CASES = {
    "int2g": lambda: quantize_per_group(_floats(32, 96, 10), 2),
    "int3g": lambda: quantize_per_group(_floats(32, 96, 10), 3),
    "int4g": lambda: quantize_per_group(_floats(32, 96, 10), 4),
    "int8g": lambda: quantize_per_group(_floats(32, 96, 10), 8),
    "ternary": lambda: quantize_ternary(_floats(32, 96, 11)).reblock(32),
    "mxfp4": _mxfp4_hard,
    # llama.cpp k-quants from random super-blocks: Q4_K (blocks of 32 with mins), Q6_K
    # (blocks of 16, 6-bit codes), and the two stacked as a Q4_K_M layer's q|k|v pass is.
    "q4_k": lambda: _k_quant("Q4_K", 1),
    "q6_k": lambda: _k_quant("Q6_K", 2),
    "q4_k+q6_k": lambda: stack([_k_quant("Q4_K", 3).reblock(16), _k_quant("Q6_K", 4)]),
}


def _k_quant(fmt, seed, rows=32, cols=256):
    from tests.test_blockquant import _k_blocks

    return decode(fmt, _k_blocks(fmt, rows, cols, seed).reshape(-1), rows, cols)


@pytest.mark.parametrize("fmt", sorted(LANE_CASES))
def test_lanes_bit_exact(tmp_path, fmt):
    from sim.runner import run_stream, simulator_available
    from tests.test_block_matvec import _vectors, _write

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    w = LANE_CASES[fmt]()
    d, dut = _write(tmp_path, w, 16, 16, 12, _vectors(w, 12, np.random.default_rng(13),
                                                       n_random=4))
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
    assert dut.cycles_per_vector - pass_latency(0) == dut.layout.ideal_cycles


@pytest.mark.parametrize("fmt", ["int2g", "int3g", "int8g", "ternary", "mxfp4"])
def test_parallel_lanes_bit_exact(tmp_path, fmt):
    """Parallel lanes (a block's whole codes per cycle): 2-bit codes fill one 64-bit ROM
    word, 3-bit codes leave a 48-bit one, 8-bit codes take four ROMs per lane."""
    from sim.runner import run_stream, simulator_available
    from tests.test_block_matvec import _vectors, _write

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    w = LANE_CASES[fmt]()
    d, dut = _write(tmp_path, w, 16, 16, 12, _vectors(w, 12, np.random.default_rng(13),
                                                       n_random=4), parallel=True)
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
    assert dut.cycles_per_vector - pass_latency(0) == dut.layout.ideal_cycles \
        == 32 * 96 // (16 * 32)


def test_parallel_lanes_widen_narrower_passes(tmp_path):
    """A Q4_K pass beside a Q6_K pass on one parallel lane array: the ROM words hold 6-bit
    codes, the Q4_K codes sign-extended into them."""
    from hdl.lane_array import LaneArray
    from sim.runner import run_stream, simulator_available
    from tests.test_block_matvec import FMT, _vectors, write_passes

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    passes = [_k_quant("Q4_K", 5).reblock(16), _k_quant("Q6_K", 6)]
    beat, lanes, abits = 16, 16, 12
    dut = LaneArray(passes, abits=abits, lanes=lanes, beat=beat, fmt=FMT, parallel=True)
    assert dut.elem_bits == 6 and passes[0].bits == 4
    rng = np.random.default_rng(7)
    vectors = [_vectors(w, abits, rng, n_random=2) for w in passes]
    steps = [(w, *vs[k]) for k in range(min(map(len, vectors)))  # alternating, as in a layer
             for w, vs in zip(passes, vectors, strict=True)]
    d = write_passes(tmp_path, dut, steps, "q4_k, q6_k")
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()


# --- checkpoints: --quant, weight errors, whole layers -----------------------------------------

DIM, HEADS, KV, FFN = 64, 4, 2, 128
_HF = {"self_attn.q_proj": (DIM, DIM), "self_attn.k_proj": (KV * DIM // HEADS, DIM),
       "self_attn.v_proj": (KV * DIM // HEADS, DIM), "self_attn.o_proj": (DIM, DIM),
       "mlp.gate_proj": (FFN, DIM), "mlp.up_proj": (FFN, DIM), "mlp.down_proj": (DIM, FFN)}


def write_checkpoint(d, seed=1, layers=1):
    """A small float Llama checkpoint (HF names, .npz + config.json) in ``d``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(layers):
        for k, (name, shape) in enumerate(_HF.items()):
            arrays[f"model.layers.{i}.{name}.weight"] = _floats(*shape, seed * 100 + i * 10 + k)
        for name in ("input_layernorm", "post_attention_layernorm"):
            arrays[f"model.layers.{i}.{name}.weight"] = \
                (1 + 0.3 * rng.standard_normal(DIM)).astype(np.float32)
    arrays["model.embed_tokens.weight"] = (rng.standard_normal((256, DIM)) * 0.5) \
        .astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "ckpt.npz", **arrays)
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": DIM, "intermediate_size": FFN,
        "num_attention_heads": HEADS, "num_key_value_heads": KV, "num_hidden_layers": layers,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 16,
        "vocab_size": 256}))
    return d / "ckpt.npz"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), layers=2)


def test_weight_errors(ckpt):
    from gen.models import QUANTS, load_model
    from gen.weight_error import weight_errors

    res = weight_errors(ckpt, QUANTS, layers=[1])
    assert res["layers"] == [1] and list(res["quants"]) == list(QUANTS)
    e = {q: v["relative_l2"] for q, v in res["quants"].items()}
    assert e["int8g"] < e["q8_0"] < e["int4g"] < e["int3g"] < e["int2g"] < e["ternary"]
    assert e["int4g"] <= e["q4_0"] and 0 < e["int8g"] < 0.01  # int4g is Q4_0's rule
    m = res["quants"]["mxfp4"]
    assert (m["code_bits"], m["storage_bits"], m["m_bits"]) == (5, 4.25, 0)
    assert res["quants"]["q4_1"]["m_bits"] > 0 and res["quants"]["ternary"]["code_bits"] == 2
    # per projection, as the loader quantises it
    mod = load_model(str(ckpt), "int3g")
    ref = mod.float_weights(1)["w_down"].astype(np.float64)
    got = mod.layer(1).w_down.dequantize(np.float64)
    want = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert res["quants"]["int3g"]["per_layer"][1]["w_down"] == pytest.approx(want, rel=1e-5)


def test_weight_errors_bad_input(ckpt):
    from gen.errors import UserError
    from gen.models import QUANTS
    from gen.weight_error import weight_errors

    with pytest.raises(UserError, match="unknown --quant 'int5g'; known: " + ", ".join(QUANTS)):
        weight_errors(ckpt, ["int4g", "int5g"])
    with pytest.raises(UserError, match="need a float checkpoint"):
        weight_errors("tiny", ["int4g"])


def test_unknown_quant_is_one_line(tmp_path, capsys, ckpt):
    from gen.models import QUANTS

    out = tmp_path / "x"
    assert main(["layer", "--model", str(ckpt), "--layer", "0", "--quant", "int4x",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown --quant 'int4x'" in err[0], err
    assert ", ".join(QUANTS) in err[0] and not out.exists()


def test_manifest_weight_error(tmp_path, ckpt):
    assert main(["layer", "--model", str(ckpt), "--layer", "0", "--ctx", "2", "--quant",
                 "int4g", "--out", str(tmp_path / "c")]) == 0
    we = json.loads((tmp_path / "c" / "manifest.json").read_text())["weight_error"]
    assert set(we["formats"].values()) == {"int4g"}
    assert all(0.05 < v < 0.2 for v in we["relative_l2"].values()), we
    assert main(["layer", "--model", "tiny", "--layer", "0", "--ctx", "2",
                 "--out", str(tmp_path / "t")]) == 0
    we = json.loads((tmp_path / "t" / "manifest.json").read_text())["weight_error"]
    assert set(we["formats"].values()) == {"Q4_1"} and we["relative_l2"] is None
    assert "cannot be computed" in we["note"]


def test_gguf_mxfp4_tensor_loads(tmp_path):
    """A GGUF whose w_down is MXFP4 (llama.cpp's block_mxfp4) loads exactly."""
    pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
    from gguf import GGMLQuantizationType as QT

    from gen.models import load_model, tiny_model
    from tests.test_forward import write_gguf

    tiny = tiny_model()
    w = _floats(*tiny.layer(0).w_down.shape, 14)
    raw = encode("MXFP4", w).reshape(w.shape[0], -1)
    path = write_gguf(tmp_path / "m.gguf", tiny,
                      override={"blk.0.ffn_down.weight": (raw, QT.MXFP4)})
    got = load_model(str(path)).layer(0).w_down
    want = quantize_mxfp4(w)
    assert got.source == "MXFP4"
    for k in ("codes", "scale"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k))


@pytest.mark.slow
@pytest.mark.parametrize("quant", NEW_QUANTS)
def test_layer_bit_exact(tmp_path, ckpt, quant):
    """``hardwire layer --quant X`` on a float checkpoint, then ``hardwire sim``: real,
    extreme and stalled tokens through the whole layer, 0 mismatches."""
    from sim.runner import run_layer, simulator_available

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    out = tmp_path / "layer"
    assert main(["layer", "--model", str(ckpt), "--layer", "1", "--ctx", "8", "--quant", quant,
                 "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["weight_error"]["formats"].values()) == {quant.upper()
                                                            if quant == "mxfp4" else quant}
    res = run_layer(out, simulator="icarus")
    assert res.ok, res.summary()


# --- llama.cpp k-quants (Q4_K, Q6_K) ---------------------------------------------------------

def _write_k_gguf(path, seed=5):
    """A one-layer llama GGUF (dim 256, the k-quants' super-block) laid out as llama.cpp's
    Q4_K_M mixes them: Q4_K projections, Q6_K for attn_v and ffn_down (blocks of 16 beside
    blocks of 32 in one layer), a Q6_K LM head, a Q8_0 embedding, F32 norms."""
    import gguf
    from gguf import GGMLQuantizationType as QT

    from golden.llama import LlamaConfig
    from tests.test_blockquant import _k_blocks
    from tests.test_forward import add_llama_keys, llama_keys

    dim, ffn, heads, kv, vocab = 256, 512, 4, 2, 256
    cfg = LlamaConfig(dim=dim, n_heads=heads, n_kv_heads=kv, ffn=ffn, eps=1e-5,
                      theta=10000.0, n_layers=1, max_ctx=16, vocab=vocab)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    add_llama_keys(w, llama_keys(cfg))
    emb = (rng.standard_normal((vocab, dim)) * 0.5).astype(np.float32)
    w.add_tensor("token_embd.weight", encode("Q8_0", emb).reshape(vocab, -1), raw_dtype=QT.Q8_0)
    kvd = kv * dim // heads
    shapes = {"attn_q": (dim, dim, "Q4_K"), "attn_k": (kvd, dim, "Q4_K"),
              "attn_v": (kvd, dim, "Q6_K"), "attn_output": (dim, dim, "Q4_K"),
              "ffn_gate": (ffn, dim, "Q4_K"), "ffn_up": (ffn, dim, "Q4_K"),
              "ffn_down": (dim, ffn, "Q6_K")}
    for g in ("attn_norm", "ffn_norm"):
        w.add_tensor(f"blk.0.{g}.weight", (1 + 0.2 * rng.standard_normal(dim)).astype(np.float32))
    for n, (name, (rows, cols, fmt)) in enumerate(shapes.items()):
        raw = _k_blocks(fmt, rows, cols, seed + n)
        w.add_tensor(f"blk.0.{name}.weight", raw.reshape(rows, -1), raw_dtype=QT[fmt])
    w.add_tensor("output_norm.weight", (1 + 0.2 * rng.standard_normal(dim)).astype(np.float32))
    w.add_tensor("output.weight", _k_blocks("Q6_K", vocab, dim, seed + 9).reshape(vocab, -1),
                 raw_dtype=QT.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_k_quants_load(tmp_path):
    pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
    from gen.layer import weights_block
    from gen.models import load_model

    m = load_model(str(_write_k_gguf(tmp_path / "k.gguf")))
    L = m.layer(0)
    assert {f: getattr(L, f).source for f in ("wq", "wv", "w_down")} == {
        "wq": "Q4_K", "wv": "Q6_K", "w_down": "Q6_K"}
    assert m.lm_head().source == "Q6_K" and weights_block(L) == 16
    assert weights_block(m.weights()) == 16


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus"])
def test_gguf_k_quant_layer_bit_exact(tmp_path, simulator):
    """A Q4_K_M-style layer (Q4_K and Q6_K, blocks of 32 and 16, on 16-column lanes) through
    ``hardwire layer`` + ``hardwire sim``: real, extreme and stalled tokens, 0 mismatches."""
    pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
    from sim.runner import run_layer, simulator_available

    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    out = tmp_path / "layer"
    assert main(["layer", "--model", str(_write_k_gguf(tmp_path / "k.gguf")), "--layer", "0",
                 "--ctx", "4", "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["weight_error"]["formats"].values()) == {"Q4_K", "Q6_K"}
    res = run_layer(out, simulator=simulator)
    assert res.ok, res.summary()


@pytest.mark.slow
def test_gguf_k_quant_chip_bit_exact(tmp_path):
    """The same GGUF as a whole chip (its LM head Q6_K on 16-column lanes): every position's
    next id and logit equal the integer golden's, at full rate and with stalls."""
    pytest.importorskip("gguf", reason="gguf package not installed (make setup)")
    from sim.runner import run_chip, simulator_available

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    out = tmp_path / "chip"
    assert main(["chip", "--model", str(_write_k_gguf(tmp_path / "k.gguf")), "--ctx", "4",
                 "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["beat"] == 16
    res = run_chip(out, simulator="icarus", stall_tokens=2)
    assert res.failed == 0 and res.tests == 3, res.summary()
