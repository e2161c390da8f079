"""RmsNormUnit and BfpUnit (hdl/norm.py, hdl/bfp.py) against golden.llama_int, bit for bit.

On Icarus and Verilator with sim/tb_stream.py (every case at full rate and with valid/ready
stalls on both sides), and in Amaranth's simulator for the cycle counts the units state.
"""

import math
from functools import lru_cache

import numpy as np
import pytest

from gen.errors import UserError
from gen.models import load_model, smollm2_path
from golden.block_folded import ROM_WIDTH
from golden.integer import IntFormat, bfp, bitlen, recip, rms_norm_int, to_residual
from golden.llama_int import IntLayer
from hdl import not_elaborated
from hdl.bfp import BfpUnit
from hdl.mask_rom import ROM_PRIMITIVE
from hdl.norm import RmsNormUnit, gain_bounds
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

from .pysim import full_rate
from .tools import collect_refused

FMT = IntFormat()


@lru_cache(maxsize=2)
def _layer(name: str) -> IntLayer:
    if name == "smollm2":
        try:
            path = smollm2_path()
        except UserError as e:
            pytest.skip(str(e))
        if not path.is_file():
            pytest.skip(f"{path} is missing")
    m = load_model(name)
    return IntLayer(m.cfg, m.layer(0), 4, FMT)


def _hex(values) -> list[str]:
    return [format(v, "x") for v in values]


def _fields(beat: int, bits: int, exp_bits: int) -> list:
    return [[f"a{i}", i * bits, bits, True] for i in range(beat)] + [
        ["exp", beat * bits, exp_bits, True]]


# --- RMSNorm ---------------------------------------------------------------------------------

def _norm_products(h, gain, eps_term, fmt=FMT):
    """Golden's steps 1-5 up to ``y = x * G * q`` and its bfp shift (to find ties)."""
    h = np.asarray(h, np.int64)
    s = max(0, bitlen(h) - (fmt.norm_bits - 1))
    x = h >> np.int64(s)
    t = int(np.dot(x, x)) + (eps_term >> (2 * s))
    q, _ = recip(math.isqrt(max(t, 1) << (2 * fmt.isqrt_frac)), fmt.recip_bits)
    y = x * gain * np.int64(q)
    return y, max(0, bitlen(y) - (fmt.abits - 1))


def _ties(h, gain, eps_term) -> int:
    """How many elements of ``y`` lie exactly halfway between two mantissas."""
    y, sy = _norm_products(h, gain, eps_term)
    return int(np.sum((y & ((1 << sy) - 1)) == (1 << (sy - 1)))) if sy else 0


def _saturates(h, gain, eps_term) -> bool:
    """Does the largest ``y`` round up to ``2**(abits-1)`` (and saturate)?"""
    y, sy = _norm_products(h, gain, eps_term)
    return bool(sy and ((y + (1 << (sy - 1))) >> sy).max() > (1 << (FMT.abits - 1)) - 1)


def _tie_vectors(gain, eps_term, rng, want=4):
    """Elements ``x = p * 2**m`` with ``sum(p*p)`` a power of four (``p`` = ``1``, ``1 1 1 1``,
    ``7 3 2 1 1``, ``6 2 2 2 2 2 2 2``, ``5 5 3 1 1 1 1 1``) make ``sum(x*x)`` a power of four,
    so ``r`` is a power of two and ``q = 2**recip_bits``: ``y = x * G * 2**24`` keeps the low
    zero bits of ``x * G``, and with the odd factors of ``p`` some element lands exactly on a
    tie whatever ``abits``. ``h`` carries ``x`` shifted up by 12 (``s`` = 9..12, so the eps
    term vanishes) plus junk below the shift, which ``h >> s`` drops."""
    dim, out = len(gain), []
    patterns = [p for p in ([1], [1] * 4, [7, 3, 2, 1, 1], [6] + [2] * 7, [5, 5, 3] + [1] * 5)
                if len(p) <= dim]
    for _ in range(20000):
        pat = np.array(patterns[int(rng.integers(len(patterns)))], np.int64)
        # sum(pat**2) = 4**j; scale so that sum(x*x) = 2**(2*(norm_bits-2)).
        j = int(round(math.log(int((pat * pat).sum()), 4)))
        x = np.zeros(dim, np.int64)
        x[rng.choice(dim, len(pat), replace=False)] = rng.choice([-1, 1], len(pat)) * (
            pat << (FMT.norm_bits - 2 - j))
        h = (x << 12) + rng.integers(0, 1 << 8, dim)
        if _ties(h, gain, eps_term):
            out.append(h)
            if len(out) == want:
                return out
    raise AssertionError("no tie vectors found")


def _saturating_vector(gain, eps_term, rng):
    """The element with the largest ``|G|`` at full scale, the rest sized so that
    ``y_max = G * x / sqrt(T)`` (times a power of two) sits just below a power of two: it
    rounds up to ``2**(abits-1)`` and saturates. A small search on one element finishes it."""
    dim = len(gain)
    j = int(np.argmax(np.abs(gain)))
    g = abs(int(gain[j]))
    xj = int(np.sign(gain[j])) * ((1 << (FMT.norm_bits - 1)) - 1)
    c = (1 << (g.bit_length() - 1)) * (1 - 2.0 ** -(FMT.abits + 1)) / g
    rest = xj * xj * (1 / c ** 2 - 1)
    base = rng.standard_normal(dim)
    base[j] = 0
    base = np.round(base * math.sqrt(rest / np.sum(base ** 2))).astype(np.int64)
    base[j] = xj
    f = (j + 1) % dim
    for d in range(2000):
        for a in (d, -d):
            h = base.copy()
            h[f] += a
            if _saturates(h, gain, eps_term):
                return h
    raise AssertionError("no saturating vector found")


def _norm_vectors(gain, eps_term, rng) -> dict:
    """Named groups of residual vectors: realistic ones and every worst case."""
    dim, R, NB = len(gain), FMT.res_bits, FMT.norm_bits
    lo, hi = -(1 << (R - 1)), (1 << (R - 1)) - 1

    def realistic():
        v = rng.standard_normal(dim) * 10 ** rng.uniform(-3, 2.5)
        if rng.random() < 0.5:
            v[rng.integers(dim)] = rng.choice([-1, 1]) * 10 ** rng.uniform(2, 4.4)  # ~22,500
        return to_residual(v, FMT)

    def outlier(value, tiny):
        v = rng.integers(-tiny, tiny + 1, dim)
        v[rng.integers(dim)] = value
        return v

    alt = np.where(np.arange(dim) % 2, lo, hi)
    groups = {
        "random": [realistic() for _ in range(6)],
        "extremes": [np.full(dim, lo), np.full(dim, hi), alt, -alt - 1],
        "zeros": [np.zeros(dim, np.int64), np.eye(1, dim, dim // 2, np.int64)[0],
                  np.where(np.arange(dim) % 3, -1, 1)],
        "outlier": [outlier(lo, 3), outlier(hi, 3), outlier(hi, 0),
                    outlier(22500 << FMT.res_frac, 400)],
        # The shift s at its edges: max|h| = 2**(nb-1) - 1 (s = 0), 2**(nb-1), -2**(nb-1).
        "shift_edges": [outlier((1 << (NB - 1)) - 1, 1 << 10), outlier(1 << (NB - 1), 1 << 10),
                        outlier(-(1 << (NB - 1)), 1 << 12), outlier(-(1 << NB) + 1, 1 << 12)],
        "ties": _tie_vectors(gain, eps_term, rng),
    }
    sat = _saturating_vector(gain, eps_term, rng)
    groups["saturate"] = [sat, -sat, sat << 10]
    assert _saturates(sat, gain, eps_term)
    assert all(_ties(h, gain, eps_term) for h in groups["ties"])
    return groups


def _norm_case(name, vectors, gain, gf, eps_term, beat) -> dict:
    ins, outs = [], []
    for h in vectors:
        ins += beats(h, beat, FMT.res_bits)
        a, e = rms_norm_int(h, gain, gf, eps_term, FMT)
        outs += beats(a, beat, FMT.abits, exp=e, exp_bits=FMT.exp_bits)
    return {"name": name, "in": _hex(ins), "out": _hex(outs)}


NORM_CONFIGS = {"tiny": 16, "smollm2": 32}  # model: beat
NORM_PARAMS = [pytest.param("tiny", "icarus", id="tiny-icarus"),
               pytest.param("smollm2", "icarus", id="smollm2-icarus"),
               pytest.param("tiny", "verilator", id="tiny-verilator")]


@pytest.mark.parametrize("model, simulator", NORM_PARAMS)
def test_rms_norm_bit_exact(tmp_path, model, simulator):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    L = _layer(model)
    beat, dim = NORM_CONFIGS[model], L.cfg.dim
    dut = RmsNormUnit(dim, beat, FMT, L.g_attn, L.gf_attn, L.eps_term)
    rng = np.random.default_rng(11)
    cases = [_norm_case(name, vs, L.g_attn, L.gf_attn, L.eps_term, beat)
             for name, vs in _norm_vectors(L.g_attn, L.eps_term, rng).items()]
    design = write_unit(dut, "rms_norm", tmp_path / "rtl",
                        {"cases": cases, "fields": _fields(beat, FMT.abits, FMT.exp_bits)})
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    print(f"RmsNormUnit dim {dim} beat {beat}: {dut.cycles} cycles per vector, "
          f"latency {dut.latency}")
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()


@pytest.mark.parametrize("simulator", ["icarus"])  # Verilator runs the ROM primitive in test_shared
def test_rms_norm_from_rom_images_bit_exact(tmp_path, simulator):
    """A chip's norm: sized by bounds wider than its own table (as for every layer of a
    chip, :func:`hdl.norm.gain_bounds`), its gains and its ``gf`` in ROM images."""
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    L = _layer("tiny")
    beat, dim = 16, L.cfg.dim
    g, gf = L.g_attn, L.gf_attn
    bounds = gain_bounds((g, gf), (np.array([-(1 << 16)]), gf - 2), (g // 3, gf + 3))
    dut = RmsNormUnit(dim, beat, FMT, g, gf, L.eps_term, bounds=bounds, image="rn")
    own = RmsNormUnit(dim, beat, FMT, g, gf, L.eps_term)
    not_elaborated(own)
    assert dut.gw > own.gw
    assert dut.gf_rom is not None and len(dut.gain_roms) == -(-beat // (ROM_WIDTH // dut.gw))
    rng = np.random.default_rng(12)
    cases = [_norm_case(name, vs, g, gf, L.eps_term, beat)
             for name, vs in _norm_vectors(g, L.eps_term, rng).items()]
    design = write_unit(dut, "rms_norm", tmp_path / "rtl",
                        {"cases": cases, "fields": _fields(beat, FMT.abits, FMT.exp_bits)},
                        extra_verilog=ROM_PRIMITIVE)
    for spec in dut.roms():
        (design / spec.image).write_bytes(spec.image_text())
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()


def test_norm_bounds_must_hold_the_table():
    L = _layer("tiny")
    with pytest.raises(ValueError, match="outside its bounds"):
        RmsNormUnit(L.cfg.dim, 16, FMT, L.g_attn, L.gf_attn, L.eps_term,
                    bounds=gain_bounds((L.g_attn, L.gf_attn + 1)))
    collect_refused()


# --- block floating point --------------------------------------------------------------------

def _bfp_vectors(n, in_bits, out_bits, rng) -> dict:
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    smax = in_bits - out_bits  # the largest shift of a vector with a positive maximum

    def of_width(w):
        return rng.integers(-(1 << (w - 1)), 1 << (w - 1), n) if w > 1 else np.zeros(n, np.int64)

    def ties(s):
        k = rng.integers(-(1 << (out_bits - 1)) + 1, (1 << (out_bits - 1)) - 1, n)
        v = (k << s) + (1 << (s - 1))
        v[rng.integers(n)] = (((1 << (out_bits - 1)) - 1) << s) + (1 << (s - 1))  # to 2**(b-1)
        return np.where(rng.random(n) < 0.5, v, -v)

    alt = np.where(np.arange(n) % 2, lo, hi)
    one = np.zeros(n, np.int64)
    one[rng.integers(n)] = lo
    spike = rng.integers(-3, 4, n)
    spike[rng.integers(n)] = hi
    return {
        "random": [of_width(int(w)) for w in rng.integers(1, in_bits + 1, 12)],
        "no_shift": [of_width(out_bits - 1), of_width(out_bits - 2),
                     np.full(n, (1 << (out_bits - 1)) - 1), np.full(n, -(1 << (out_bits - 1)) + 1)],
        "shift_edges": [np.full(n, 1 << (out_bits - 1)), np.full(n, -(1 << (out_bits - 1)))],
        "extremes": [np.full(n, lo), np.full(n, hi), alt, one, spike, np.zeros(n, np.int64)],
        "ties": [ties(int(s)) for s in (1, 2, smax // 2, smax)],
        "saturate": [np.full(n, (1 << (out_bits - 1 + s)) - 1) for s in (1, 5, smax)] + [
            -np.full(n, (1 << (out_bits - 1 + s)) - 1) for s in (1, smax)],
    }


def _bfp_case(name, vectors, beat, in_bits, in_frac, out_bits, exp_bits) -> dict:
    ins, outs = [], []
    for v in vectors:
        assert -(1 << (in_bits - 1)) <= v.min() and v.max() < 1 << (in_bits - 1)
        ins += beats(v, beat, in_bits)
        a, e = bfp(v, out_bits, in_frac)
        outs += beats(a, beat, out_bits, exp=e, exp_bits=exp_bits)
    return {"name": name, "in": _hex(ins), "out": _hex(outs)}


BFP_PARAMS = [pytest.param(64, 16, "icarus", id="n64-icarus"),
              pytest.param(576, 32, "icarus", id="n576-icarus"),
              pytest.param(64, 16, "verilator", id="n64-verilator")]


@pytest.mark.parametrize("n, beat, simulator", BFP_PARAMS)
def test_bfp_bit_exact(tmp_path, n, beat, simulator):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    ib, frac, ob, eb = FMT.fx_bits, FMT.fx_frac, FMT.abits, FMT.exp_bits
    dut = BfpUnit(n, beat, ib, frac, ob, eb)
    rng = np.random.default_rng(n)
    cases = [_bfp_case(name, vs, beat, ib, frac, ob, eb)
             for name, vs in _bfp_vectors(n, ib, ob, rng).items()]
    design = write_unit(dut, "bfp_unit", tmp_path / "rtl",
                        {"cases": cases, "fields": _fields(beat, ob, eb)})
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    print(f"BfpUnit n {n} beat {beat}: {dut.cycles} cycles per vector, latency {dut.latency}")
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()


# --- cycles, in Amaranth's simulator ---------------------------------------------------------

def _check_timing(dut, ins, want, nb: int, vectors: int):
    got, _ = full_rate(dut, ins, len(want))
    assert [p for _, p in got] == want
    firsts = [got[v * nb][0] for v in range(vectors)]
    periods = set(np.diff(firsts).tolist())
    # The input is offered from cycle 0, one beat per cycle: the last beat of vector 0 goes in
    # at cycle nb - 1.
    print(f"{type(dut).__name__}: first output {firsts[0] - (nb - 1)} cycles after the last "
          f"input, then one vector every {sorted(periods)} cycles (stated {dut.cycles})")
    assert periods == {dut.cycles}
    assert firsts[0] - (nb - 1) == dut.latency
    # One beat per cycle within a vector.
    assert all(got[v * nb + i][0] == firsts[v] + i for v in range(vectors) for i in range(nb))


@pytest.mark.parametrize("dim, beat", [(64, 16), (576, 32)])
def test_rms_norm_cycles(dim, beat):
    rng = np.random.default_rng(dim)
    gain = rng.integers(-(1 << FMT.gain_bits) + 1, 1 << FMT.gain_bits, dim)
    gf, eps_term = 11, int(round(dim * 1e-5 * 4.0 ** FMT.res_frac))
    dut = RmsNormUnit(dim, beat, FMT, gain, gf, eps_term)
    vs = [to_residual(rng.standard_normal(dim) * 10 ** rng.uniform(-2, 2), FMT) for _ in range(4)]
    ins, want = [], []
    for h in vs:
        ins += beats(h, beat, FMT.res_bits)
        a, e = rms_norm_int(h, gain, gf, eps_term, FMT)
        want += beats(a, beat, FMT.abits, exp=e, exp_bits=FMT.exp_bits)
    _check_timing(dut, ins, want, dim // beat, len(vs))


@pytest.mark.parametrize("n, beat", [(64, 16), (576, 32)])
def test_bfp_cycles(n, beat):
    rng = np.random.default_rng(n)
    ib, frac, ob, eb = FMT.fx_bits, FMT.fx_frac, FMT.abits, FMT.exp_bits
    dut = BfpUnit(n, beat, ib, frac, ob, eb)
    vs = [rng.integers(-(1 << (w - 1)), 1 << (w - 1), n) for w in (4, 20, 32, 12, 13)]
    ins, want = [], []
    for v in vs:
        ins += beats(v, beat, ib)
        a, e = bfp(v, ob, frac)
        want += beats(a, beat, ob, exp=e, exp_bits=eb)
    _check_timing(dut, ins, want, n // beat, len(vs))


# Widths come from the format, not from the defaults: other formats in Amaranth's simulator
# (residual narrower than norm_bits, isqrt_frac 0, one-beat vectors, one-element beats).
OTHER_FORMATS = [
    (IntFormat(abits=8, res_bits=24, res_frac=10, norm_bits=12, gain_bits=10, isqrt_frac=8,
               recip_bits=16, exp_bits=6), 32, 8),
    (IntFormat(abits=16, res_bits=12, res_frac=4, isqrt_frac=4, recip_bits=30), 24, 3),
    (IntFormat(abits=4, norm_bits=8, isqrt_frac=0, recip_bits=4, gain_bits=6), 8, 1),
    (FMT, 16, 16),
]


@pytest.mark.parametrize("fmt, dim, beat", OTHER_FORMATS)
def test_rms_norm_other_formats(fmt, dim, beat):
    rng = np.random.default_rng(dim)
    gain = rng.integers(-(1 << fmt.gain_bits) + 1, 1 << fmt.gain_bits, dim)
    gf, eps_term = 9, int(round(dim * 1e-5 * 4.0 ** fmt.res_frac))
    lo, hi = -(1 << (fmt.res_bits - 1)), (1 << (fmt.res_bits - 1)) - 1
    vs = [rng.integers(lo, hi, dim) >> int(rng.integers(0, fmt.res_bits)) for _ in range(6)]
    vs += [np.full(dim, lo), np.full(dim, hi), np.zeros(dim, np.int64)]
    ins, want = [], []
    for h in vs:
        ins += beats(h, beat, fmt.res_bits)
        a, e = rms_norm_int(h, gain, gf, eps_term, fmt)
        want += beats(a, beat, fmt.abits, exp=e, exp_bits=fmt.exp_bits)
    _check_timing(RmsNormUnit(dim, beat, fmt, gain, gf, eps_term), ins, want, dim // beat,
                  len(vs))


@pytest.mark.parametrize("n, beat, in_bits, in_frac, out_bits, exp_bits",
                         [(8, 8, 32, 12, 12, 8), (6, 1, 8, 2, 12, 4), (12, 3, 16, 0, 2, 6),
                          (16, 4, 40, 20, 16, 8)])
def test_bfp_other_widths(n, beat, in_bits, in_frac, out_bits, exp_bits):
    rng = np.random.default_rng(n)
    vs = [rng.integers(-(1 << (w - 1)), 1 << (w - 1), n) for w in rng.integers(1, in_bits + 1, 8)]
    vs += [np.full(n, -(1 << (in_bits - 1))), np.full(n, (1 << (in_bits - 1)) - 1),
           np.zeros(n, np.int64)]
    ins, want = [], []
    for v in vs:
        ins += beats(v, beat, in_bits)
        a, e = bfp(v, out_bits, in_frac)
        want += beats(a, beat, out_bits, exp=e, exp_bits=exp_bits)
    _check_timing(BfpUnit(n, beat, in_bits, in_frac, out_bits, exp_bits), ins, want,
                  n // beat, len(vs))
