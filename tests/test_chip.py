"""The chip's own units (hdl/chip.py) against golden, bit for bit: the embedding lookup and
the argmax, on Icarus and Verilator with sim/tb_stream.py (every case at full rate and with
valid/ready stalls on both sides)."""

from dataclasses import replace

import numpy as np
import pytest

from gen.models import load_model
from golden.blockquant import BlockAffine, decode, encode
from golden.llama_int import IntFormat, argmax_int, embed_int
from hdl.chip import ArgmaxUnit, EmbeddingUnit
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

FMT = IntFormat()
SIMS = ["icarus", "verilator"]


def _hex(values) -> list[str]:
    return [format(v, "x") for v in values]


def _need(simulator):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)


def _embeddings() -> dict[str, BlockAffine]:
    """Embedding tables that reach every path of the unit: the tiny model's Q8_0 table
    (right shift), a Q4_1 table (a min per block), and extreme ones: every code and scale at
    its limit with a left shift (saturates) and a long right shift (rounds ties)."""
    tiny = load_model("tiny").embedding().rows_slice(0, 24)
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((16, 64)) * 3).astype(np.float32)
    q41 = decode("Q4_1", encode("Q4_1", w), 16, 64)
    rows, cols, nb = 8, 64, 2
    codes = np.where(rng.random((rows, cols)) < 0.5, -128, 127).astype(np.int8)
    codes[1] = 0
    codes[2, :] = rng.integers(-128, 128, cols)
    scale = np.where(rng.random((rows, nb)) < 0.5, -(1 << 15), (1 << 15) - 1).astype(np.int64)
    offset = rng.integers(-(1 << 20), 1 << 20, (rows, nb)).astype(np.int64)
    codes[3] = 0
    offset[3] = [-(1 << 17), -(3 << 17)]  # exact negative halves at a shift of 18
    wide = BlockAffine(codes, scale, offset, exp=0, block=32, bits=8, source="test")
    return {"tiny_q8_0": tiny, "q4_1": q41,
            "extreme_left": wide,  # 2**(0+12) times 2**23 saturates
            "extreme_right": replace(wide, exp=-30)}  # shift 18: halves round away


@pytest.mark.parametrize("simulator", SIMS)
@pytest.mark.parametrize("name", ["tiny_q8_0", "q4_1", "extreme_left", "extreme_right"])
def test_embedding_bit_exact(tmp_path, simulator, name):
    _need(simulator)
    emb = _embeddings()[name]
    vocab, dim = emb.shape
    beat, pos_bits = 16, 4
    dut = EmbeddingUnit(emb, beat=beat, fmt=FMT, pos_bits=pos_bits)
    id_bits = max(1, (vocab - 1).bit_length())
    rng = np.random.default_rng(3)
    ids = [0, vocab - 1, *rng.integers(0, vocab, 6)] if vocab > 8 else list(range(vocab))
    ins, outs = [], []
    for k, t in enumerate(ids):
        pos = (k * 5) % (1 << pos_bits)
        ins.append(t | pos << id_bits)
        h = embed_int(emb, t, FMT)
        outs += [b | pos << (beat * FMT.res_bits) for b in beats(h, beat, FMT.res_bits)]
    if name.startswith("extreme"):
        lo, hi = -(1 << 31), (1 << 31) - 1
        hs = np.concatenate([embed_int(emb, t, FMT) for t in range(vocab)])
        assert (name == "extreme_left") == bool(np.any(hs == hi) and np.any(hs == lo))
    design = write_unit(dut, "embedding", tmp_path / "rtl",
                        {"cases": [{"name": name, "in": _hex(ins), "out": _hex(outs)}]})
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    assert res.tests == 3 and res.ok, res.summary()


def _argmax_vectors(n, rng) -> list[np.ndarray]:
    lo, hi = -(1 << 31), (1 << 31) - 1
    v = [rng.integers(lo, hi + 1, n) for _ in range(4)]
    v.append(np.full(n, lo))  # all equal at the minimum: index 0
    v.append(np.full(n, hi))
    t = rng.integers(-5, 5, n)
    t[[3, n // 2, n - 1]] = 9  # equal maxima in different beats: the first
    v.append(t)
    e = np.full(n, lo)
    e[-1] = hi  # the last element
    v.append(e)
    s = rng.integers(-1000, 1000, n)
    s[n // 2 + 1] = s[n // 2] = 5000  # a tie inside one beat
    v.append(s)
    return v


@pytest.mark.parametrize("simulator", SIMS)
def test_argmax_bit_exact(tmp_path, simulator):
    _need(simulator)
    n, beat, bits = 96, 8, 32
    dut = ArgmaxUnit(n, beat, bits)
    rng = np.random.default_rng(9)
    ins, outs = [], []
    for v in _argmax_vectors(n, rng):
        ins += beats(v, beat, bits)
        i = argmax_int(v)
        outs.append(i | (int(v[i]) & 0xFFFFFFFF) << dut.id_bits)
    design = write_unit(dut, "argmax", tmp_path / "rtl",
                        {"cases": [{"name": "vectors", "in": _hex(ins), "out": _hex(outs)}]})
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    assert res.tests == 3 and res.ok, res.summary()
