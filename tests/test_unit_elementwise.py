"""RopeUnit, SwigluUnit and ResidualAdd (hdl/rope.py, hdl/swiglu.py, hdl/residual.py) bit-exact
against golden (rope_int, swiglu_int, residual_add) with cocotb (sim/tb_stream.py: full rate and
stalls on both sides), on the tiny model shape and the SmolLM2 shape; full-rate cycles per vector
measured with the Amaranth simulator against each unit's ``cycles``.

Vectors: real ones from the integer layer (tiny, and SmolLM2 when its package is installed),
seeded random ones, and worst cases (extremes, zeros, a single outlier, rounding ties, gates
at the sigmoid table edges, RoPE positions 0 and ctx - 1)."""

import gc
import warnings
from functools import lru_cache

import numpy as np
import pytest

from golden.integer import (
    IntCache,
    IntFormat,
    residual_add,
    rope_int,
    rope_table,
    sigmoid_table,
    silu_int,
    swiglu_int,
    to_residual,
)
from golden.llama_int import IntLayer, int_layer_step
from hdl.residual import ResidualAdd
from hdl.rope import RopeUnit
from hdl.swiglu import SwigluUnit
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

from .pysim import full_rate

FMT = IntFormat()
TINY = dict(dim=64, heads=4, kv=2, hd=16, ffn=128, beat=16, theta=10000.0, ctx=16)
SMOL = dict(dim=576, heads=9, kv=3, hd=64, ffn=1536, beat=32, theta=100000.0, ctx=256)


# --- helpers ---------------------------------------------------------------------------------

def _rng(tag: str) -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, tag)) * 7919)


def _lim(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _case(name, ins, outs):
    return {"name": name, "in": [format(v, "x") for v in ins],
            "out": [format(v, "x") for v in outs]}


def _simulate(unit, name, tmp_path, cases, fields, simulator="icarus"):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    design = write_unit(unit, name, tmp_path / name, {"cases": cases, "fields": fields})
    res = run_stream(design, simulator=simulator, seed=5, build_dir=tmp_path / "sim")
    print(res.summary())
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()


def _elem_fields(beat, bits, lo=0, name="y"):
    return [[f"{name}[{i}]", lo + i * bits, bits, True] for i in range(beat)]


@lru_cache(maxsize=2)
def _trace(model: str, ctx: int, tokens: int = 4):
    """Intermediates of layer 0 of ``model`` for ``tokens`` tokens (positions 0..), or None
    when the model is not installed."""
    from gen.errors import UserError
    from gen.models import load_model

    try:
        m = load_model(model)
    except (UserError, OSError) as e:
        print(f"no {model} trace: {e}")
        return None
    L = IntLayer(m.cfg, m.layer(0), ctx)
    emb = m.embedding()
    rows = _rng(model).choice(emb.shape[0], tokens, replace=False)
    h = to_residual(np.stack([emb.rows_slice(int(r), int(r) + 1).dequantize()[0]
                              for r in rows]), L.fmt)
    cache, out = IntCache(m.cfg, ctx), []
    for p in range(tokens):
        t = {}
        int_layer_step(L, h[p], p, cache, t)
        out.append(dict(t, h=h[p], pos=p))
    return L, out


def _check_cycles(unit, vecs_in, vecs_out, ref: int):
    """Feed vectors back to back at full rate; outputs must equal golden, the steady state
    must take ``unit.cycles`` per vector, and the first output must leave ``unit.latency``
    cycles after input beat ``ref`` was taken (into the idle unit)."""
    ins = [p for v in vecs_in for p in v]
    want = [p for v in vecs_out for p in v]
    got, taken = full_rate(unit, ins, len(want), limit=50 * (len(ins) + len(want)))
    assert [d for _, d in got] == want
    assert got[0][0] - taken[ref] == unit.latency, (got[0][0], taken[ref], unit.latency)
    ends = np.cumsum([len(v) for v in vecs_out]) - 1
    per = np.diff([got[k][0] for k in ends])
    print(f"{type(unit).__name__}: measured cycles per vector {per.tolist()}, "
          f"formula {unit.cycles}")
    assert (per[1:] == unit.cycles).all(), (per, unit.cycles)


# --- RoPE ------------------------------------------------------------------------------------

def _rope_beats(v, pos, beat, fmt, cos, sin, hd):
    v = np.asarray(v, np.int64).reshape(-1, hd)
    out = rope_int(v, cos[pos], sin[pos], fmt).ravel()
    top = beat * fmt.fx_bits
    ins = [b | (int(pos) << top) for b in beats(v.ravel(), beat, fmt.fx_bits)]
    return ins, beats(out, beat, fmt.fx_bits)


def _rope_cases(shape, beat, fmt, cos, sin, trace=None):
    hd, heads, kv, ctx = shape["hd"], shape["heads"], shape["kv"], shape["ctx"]
    rng = _rng(f"rope{hd}{beat}")
    lo, hi = _lim(fmt.fx_bits)
    tf = fmt.trig_frac

    def case(name, items):
        ins, outs = [], []
        for v, p in items:
            i, o = _rope_beats(v, p, beat, fmt, cos, sin, hd)
            ins += i
            outs += o
        return _case(name, ins, outs)

    cases = []
    if trace is not None:  # real q then k at each token's position, and at ctx - 1
        items = []
        for t in trace:
            assert (rope_int(t["q"], cos[t["pos"]], sin[t["pos"]], fmt) == t["q_rope"]).all()
            items += [(t["q"], t["pos"]), (t["k"], t["pos"]), (t["q"], ctx - 1)]
        cases.append(case("trace", items))
    # Realistic random magnitudes (q/k peak near 2**15 in Q.12), q then k, positions 0,
    # ctx - 1 and random ones, back to back.
    items = []
    for p in [0, ctx - 1, *rng.integers(0, ctx, 4).tolist()]:
        for nh in (heads, kv):
            items.append((np.round(rng.standard_normal(nh * hd) * 4000).astype(np.int64), p))
    cases.append(case("random", items))
    items = [(rng.integers(lo, hi, heads * hd, endpoint=True), p)
             for p in (0, ctx - 1, int(rng.integers(0, ctx)))]
    cases.append(case("full_range", items))
    # Extremes: every element at the limits; signs chosen so a*C - b*S (or b*C + a*S) is
    # as large as possible: saturation wherever |C| + |S| > 2**trig_frac.
    half = hd // 2
    items = [(np.full(heads * hd, hi), 0), (np.full(heads * hd, lo), ctx - 1),
             (np.full(heads * hd, lo), ctx // 2), (np.zeros(heads * hd, np.int64), ctx - 1),
             (np.tile(np.r_[np.full(half, lo), np.full(half, hi)], heads), ctx - 1)]
    for p in (ctx - 1, max(1, ctx // 3)):
        c, s = cos[p], sin[p]
        for which in ("lo", "hi"):
            sc, ss = np.where(c >= 0, 1, -1), np.where(s >= 0, 1, -1)
            if which == "lo":  # a*C - b*S
                a, b = np.where(sc > 0, hi, lo), np.where(ss > 0, lo, hi)
            else:  # b*C + a*S
                a, b = np.where(ss > 0, hi, lo), np.where(sc > 0, hi, lo)
            items.append((np.tile(np.r_[a, b], heads), p))
    cases.append(case("extremes", items))
    # Single outlier among small values.
    v = rng.integers(-50, 50, heads * hd)
    v[int(rng.integers(0, heads * hd))] = lo
    cases.append(case("outlier", [(v, ctx - 1)]))
    # Rounding ties: a = odd * 2**(tf-1-v2(C)), b = 0 makes a*C an odd multiple of
    # 2**(tf-1) (a tie of the lo half); the same with a and b swapped for the hi half.
    items, ties = [], 0
    for p in (ctx - 1, max(1, ctx // 2), 1):
        c, s = cos[p], sin[p]
        for swap in (False, True):
            odd = rng.integers(-2000, 2000, (heads, half)) * 2 + 1
            v2c = np.array([(int(x) & -int(x)).bit_length() - 1 if x else 0 for x in c])
            ok = (c != 0) & (v2c <= tf - 1)
            t = np.where(ok, odd << np.maximum(tf - 1 - v2c, 0), odd)
            z = np.zeros_like(t)
            a, b = (z, t) if swap else (t, z)
            v = np.concatenate([a, b], axis=1)
            prod = (b * c + a * s) if swap else (a * c - b * s)
            ties += int(np.sum(prod % (1 << tf) == 1 << (tf - 1)))
            items.append((v.ravel(), p))
    assert ties > heads * half, ties
    cases.append(case("ties", items))
    return cases


def _rope_fields(beat, fmt):
    return _elem_fields(beat, fmt.fx_bits)


def _rope_unit_cases(shape, beat, fmt=FMT, trace=None, nh=None):
    cos, sin = rope_table(shape["hd"], shape["theta"], shape["ctx"], fmt.trig_frac)
    unit = RopeUnit(nh or shape["heads"], shape["hd"], shape["ctx"], beat, fmt, cos, sin)
    return unit, _rope_cases(shape, beat, fmt, cos, sin, trace)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_rope_tiny(tmp_path, simulator):
    """Tiny shape: head_dim 16, beat 16 (one head per beat), the tiny model's tables and q/k."""
    L, trace = _trace("tiny", TINY["ctx"])
    unit, cases = _rope_unit_cases(TINY, TINY["beat"], trace=trace)
    assert (unit.cos == L.cos).all() and (unit.sin == L.sin).all()
    assert not unit.buffered
    _simulate(unit, "rope_tiny", tmp_path, cases, _rope_fields(unit.beat, FMT), simulator)


def test_rope_two_heads_per_beat(tmp_path):
    """head_dim 16, beat 32: two heads in every beat."""
    unit, cases = _rope_unit_cases(TINY, 32)
    _simulate(unit, "rope_hd16_b32", tmp_path, cases, _rope_fields(32, FMT))


def test_rope_smollm2(tmp_path):
    """SmolLM2 shape: head_dim 64, beat 32 (the halves of a head in different beats, buffered),
    theta 1e5, ctx 256; real q/k when the model is installed."""
    tr = _trace("smollm2", SMOL["ctx"])
    trace = None
    if tr is not None:
        L, trace = tr
    unit, cases = _rope_unit_cases(SMOL, SMOL["beat"], trace=trace)
    if tr is not None:
        assert (unit.cos == L.cos).all() and (unit.sin == L.sin).all()
    assert unit.buffered and unit.kh == 1
    _simulate(unit, "rope_smollm2", tmp_path, cases, _rope_fields(unit.beat, FMT))


def test_rope_three_beats_per_half(tmp_path):
    """head_dim 96, beat 16: three beats per half head (bank addresses not a power of two)."""
    shape = dict(TINY, hd=96, heads=2, kv=1, ctx=12)
    unit, cases = _rope_unit_cases(shape, 16)
    assert unit.kh == 3
    _simulate(unit, "rope_hd96_b16", tmp_path, cases, _rope_fields(16, FMT))


@pytest.mark.parametrize("shape, beat", [(TINY, 16), (TINY, 32), (SMOL, 32), (SMOL, 16)])
def test_rope_cycles(shape, beat):
    unit, cases = _rope_unit_cases(shape, beat)
    cos, sin = unit.cos, unit.sin
    rng = _rng("ropecyc")
    n = shape["heads"] * shape["hd"]
    vin, vout = [], []
    for p in (0, shape["ctx"] - 1, 3, 5):
        i, o = _rope_beats(rng.integers(-(1 << 20), 1 << 20, n), p, beat, FMT, cos, sin,
                           shape["hd"])
        vin.append(i)
        vout.append(o)
    _check_cycles(unit, vin, vout, 2 * unit.kh - 1 if unit.buffered else 0)


def test_rope_rejects_bad_shapes():
    cos, sin = rope_table(48, 1e4, 4, FMT.trig_frac)
    with warnings.catch_warnings():
        # The half-built components are never elaborated; collect them here, quietly.
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="divide"):
            RopeUnit(2, 48, 4, 16, FMT, cos, sin)  # half = 24 is not a multiple of 16
        with pytest.raises(ValueError, match="ctx"):
            RopeUnit(2, 48, 5, 8, FMT, cos, sin)  # table is not [ctx, hd/2]
        with pytest.raises(ValueError, match="entries"):
            SwigluUnit(128, 16, FMT, sigmoid_table(FMT)[:-1])
        with pytest.raises(ValueError, match="beats"):
            ResidualAdd(100, 16, FMT)
        gc.collect()


# --- SwiGLU ----------------------------------------------------------------------------------

def _swiglu_beats(gate, up, beat, fmt, table):
    gate, up = np.asarray(gate, np.int64), np.asarray(up, np.int64)
    a, e = swiglu_int(gate, up, table, fmt)
    top = beat * fmt.fx_bits
    ins = [g | (u << top) for g, u in zip(beats(gate, beat, fmt.fx_bits),
                                         beats(up, beat, fmt.fx_bits), strict=True)]
    return ins, beats(a, beat, fmt.abits, exp=e, exp_bits=fmt.exp_bits)


def _silu_ties(fmt, table):
    """Gates in the table range whose silu product is an odd multiple of 2**(prob_frac-1)."""
    r = fmt.sig_range << fmt.fx_frac
    g = np.arange(-r, r, dtype=np.int64)
    sl = silu_int(g, table, fmt)
    return g[(sl & ((1 << fmt.prob_frac) - 1)) == 1 << (fmt.prob_frac - 1)]


def _swiglu_cases(n, beat, fmt, table, trace=None):
    rng = _rng(f"swiglu{n}{beat}")
    lo, hi = _lim(fmt.fx_bits)
    r = fmt.sig_range << fmt.fx_frac
    sb = fmt.fx_frac - fmt.sig_step_bits

    def case(name, items):
        ins, outs = [], []
        for g, u in items:
            i, o = _swiglu_beats(g, u, beat, fmt, table)
            ins += i
            outs += o
        return _case(name, ins, outs)

    def normal(scale):
        return np.round(rng.standard_normal(n) * scale).astype(np.int64)

    cases = []
    if trace is not None:
        cases.append(case("trace", [(t["gate"], t["up"]) for t in trace]))
    cases.append(case("random", [(normal(3000), normal(1500)), (normal(40000), normal(8000)),
                                 (normal(300), normal(30000)), (normal(3000), normal(1500))]))
    cases.append(case("full_range", [(rng.integers(lo, hi, n, endpoint=True),
                                      rng.integers(lo, hi, n, endpoint=True)) for _ in range(2)]))
    # Gates at the sigmoid table edges: exactly -range and range (Q.fx), one LSB either side,
    # the last step inside, huge ones.
    edges = np.array([-r, -r - 1, -r + 1, r - 1, r, r + 1, r - (1 << sb), -r + (1 << sb) - 1,
                      hi, lo, lo + 1, hi - 1, 0, 1, -1, 1 << 20, -(1 << 20)], np.int64)
    g = np.resize(edges, n)
    near = np.resize(edges[:8], n)  # without the huge ones, which would dominate the bfp shift
    cases.append(case("sigmoid_edges", [(g, normal(4000)), (g, np.full(n, hi)),
                                        (np.roll(g, 3), np.full(n, lo)), (near, normal(4000)),
                                        (np.roll(near, 5), np.full(n, lo))]))
    # Extremes.
    items = [(np.full(n, hi), np.full(n, lo)), (np.full(n, hi), np.full(n, hi)),
             (np.full(n, lo), np.full(n, lo)), (np.full(n, hi), np.zeros(n, np.int64)),
             (np.zeros(n, np.int64), np.zeros(n, np.int64)),
             (np.full(n, r + 5), np.resize(np.array([lo, hi], np.int64), n))]
    cases.append(case("extremes", items))
    # A single outlier: everything else rounds to (near) zero.
    g, u = normal(2000), normal(2000)
    g[int(rng.integers(0, n))], u[int(rng.integers(0, n))] = hi, lo
    k = int(rng.integers(0, n))
    g[k], u[k] = hi, lo
    cases.append(case("outlier", [(g, u)]))
    # bfp rounding ties: s = gate for gate >= range, so p = 3 * 2**20 * up. The largest
    # |p| = 3 * 2**20 * (2**15 - 1) sets the shift sh (and rounds up, saturating);
    # up = odd * 2**(sh - 21) gives p = 3 * odd * 2**(sh - 1), a tie.
    a_bits = fmt.abits
    g = np.full(n, 3 << 20)
    sh = max(0, (3 * (1 << 20) * ((1 << 15) - 1)).bit_length() - (a_bits - 1))
    u = (rng.integers(-200, 200, n) * 2 + 1) << (sh - 21)
    u[0], u[1] = (1 << 15) - 1, -((1 << 15) - 1)
    p = g * u
    assert np.sum(p % (1 << sh) == 1 << (sh - 1)) > n // 2
    cases.append(case("bfp_ties", [(g, u), (g, -u)]))
    # Interpolation ties (rem = 2**(sb-1)) and silu rounding ties.
    k = rng.integers(0, 2 * fmt.sig_range << fmt.sig_step_bits, n)
    g_int = -r + (k << sb) + (1 << (sb - 1))
    st = _silu_ties(fmt, table)
    assert len(st) > 0
    g_silu = rng.choice(st, n)
    cases.append(case("interp_silu_ties", [(g_int, normal(3000)), (g_silu, np.ones(n, np.int64)),
                                           (g_silu, normal(100))]))
    return cases


def _swiglu_fields(beat, fmt):
    return _elem_fields(beat, fmt.abits, name="a") + [["e", beat * fmt.abits, fmt.exp_bits,
                                                       True]]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_swiglu_tiny(tmp_path, simulator):
    """Tiny shape: ffn 128, beat 16, the tiny model's sigmoid table and gate/up."""
    L, trace = _trace("tiny", TINY["ctx"])
    unit = SwigluUnit(TINY["ffn"], TINY["beat"], FMT, L.sig_table)
    cases = _swiglu_cases(TINY["ffn"], TINY["beat"], FMT, L.sig_table, trace)
    _simulate(unit, "swiglu_tiny", tmp_path, cases, _swiglu_fields(unit.beat, FMT), simulator)


def test_swiglu_smollm2(tmp_path):
    """SmolLM2 shape: ffn 1536, beat 32; real gate/up when the model is installed."""
    tr = _trace("smollm2", SMOL["ctx"])
    table = sigmoid_table(FMT)
    trace = None
    if tr is not None:
        L, trace = tr
        assert (L.sig_table == table).all()
    unit = SwigluUnit(SMOL["ffn"], SMOL["beat"], FMT, table)
    cases = _swiglu_cases(SMOL["ffn"], SMOL["beat"], FMT, table, trace)
    _simulate(unit, "swiglu_smollm2", tmp_path, cases, _swiglu_fields(unit.beat, FMT))


@pytest.mark.parametrize("shape", [TINY, SMOL])
def test_swiglu_cycles(shape):
    table = sigmoid_table(FMT)
    n, beat = shape["ffn"], shape["beat"]
    unit = SwigluUnit(n, beat, FMT, table)
    rng = _rng("swigcyc")
    vin, vout = [], []
    for k in range(4):
        i, o = _swiglu_beats(rng.integers(-(1 << 16), 1 << 16, n) << k,
                             rng.integers(-(1 << 14), 1 << 14, n), beat, FMT, table)
        vin.append(i)
        vout.append(o)
    _check_cycles(unit, vin, vout, unit.beats - 1)


# --- residual add ----------------------------------------------------------------------------

def _res_beats(h, y, beat, fmt):
    out = residual_add(h, y, fmt)
    top = beat * fmt.res_bits
    ins = [a | (b << top) for a, b in zip(beats(h, beat, fmt.res_bits),
                                         beats(y, beat, fmt.fx_bits), strict=True)]
    return ins, beats(out, beat, fmt.res_bits)


def _res_cases(n, beat, fmt, trace=None):
    rng = _rng(f"res{n}{beat}{fmt.res_frac}{fmt.res_bits}")
    hlo, hhi = _lim(fmt.res_bits)
    ylo, yhi = _lim(fmt.fx_bits)
    d = fmt.fx_frac - fmt.res_frac

    def case(name, items):
        ins, outs = [], []
        for h, y in items:
            i, o = _res_beats(np.asarray(h, np.int64), np.asarray(y, np.int64), beat, fmt)
            ins += i
            outs += o
        return _case(name, ins, outs)

    def full(v):
        return np.full(n, v, np.int64)

    cases = []
    if trace is not None:
        cases.append(case("trace", [it for t in trace for it in
                                    ((t["h"], t["o"]), (t["h1"], t["down"]))]))
    hr = 1 << min(24, fmt.res_bits - 2)
    cases.append(case("random", [(rng.integers(-hr, hr, n),
                                  rng.integers(-(1 << 26), 1 << 26, n)) for _ in range(3)]
                      + [(rng.integers(hlo, hhi, n, endpoint=True),
                          rng.integers(ylo, yhi, n, endpoint=True)) for _ in range(3)]))
    cases.append(case("extremes", [(full(hhi), full(yhi)), (full(hlo), full(ylo)),
                                   (full(hhi), full(ylo)), (full(hlo), full(yhi)),
                                   (full(0), full(0)), (full(hhi), full(0)),
                                   (full(0), full(ylo)), (full(-1), full(1)),
                                   (np.resize(np.array([hlo, hhi], np.int64), n),
                                    np.resize(np.array([ylo, yhi, yhi, ylo], np.int64), n))]))
    ties = rng.integers(-(1 << 20), 1 << 20, n)
    if d > 0:
        ties = (ties << d) + (1 << (d - 1))  # odd multiples of half an output LSB
    cases.append(case("ties", [(rng.integers(-1000, 1000, n), ties), (full(0), -ties),
                               (full(hhi), ties), (full(hlo), -ties)]))
    return cases


def _res_fields(beat, fmt):
    return _elem_fields(beat, fmt.res_bits)


RES_CONFIGS = {
    # name: (shape, format, simulators)
    "tiny": (TINY, FMT, ("icarus", "verilator")),
    "smollm2": (SMOL, FMT, ("icarus",)),
    "res_frac8": (TINY, IntFormat(res_frac=8), ("icarus",)),  # shift 4, half_away ties
    # 24-bit residual with shift 2: y saturates to res_bits before the add.
    "res24_frac10": (TINY, IntFormat(res_bits=24, res_frac=10), ("icarus",)),
    "res_frac14": (TINY, IntFormat(res_frac=14), ("icarus",)),  # shift -2: exact, saturating
}


@pytest.mark.parametrize("name, simulator", [
    pytest.param(name, sim, id=f"{name}-{sim}")
    for name, (_, _, sims) in RES_CONFIGS.items() for sim in sims])
def test_residual_add(tmp_path, name, simulator):
    shape, fmt, _ = RES_CONFIGS[name]
    trace = None
    if fmt == FMT:
        tr = _trace("tiny", TINY["ctx"]) if shape is TINY else _trace("smollm2", SMOL["ctx"])
        if tr is not None:
            trace = tr[1]
    unit = ResidualAdd(shape["dim"], shape["beat"], fmt)
    cases = _res_cases(shape["dim"], shape["beat"], fmt, trace)
    if fmt.fx_frac > fmt.res_frac:
        assert any(c["name"] == "ties" for c in cases)
    _simulate(unit, f"residual_{name}", tmp_path, cases, _res_fields(unit.beat, fmt), simulator)


@pytest.mark.parametrize("name", ["tiny", "smollm2", "res_frac8"])
def test_residual_cycles(name):
    shape, fmt, _ = RES_CONFIGS[name]
    n, beat = shape["dim"], shape["beat"]
    unit = ResidualAdd(n, beat, fmt)
    rng = _rng("rescyc")
    vin, vout = [], []
    for _ in range(3):
        i, o = _res_beats(rng.integers(-(1 << 30), 1 << 30, n),
                          rng.integers(-(1 << 30), 1 << 30, n), beat, fmt)
        vin.append(i)
        vout.append(o)
    _check_cycles(unit, vin, vout, 0)


def test_smollm2_tables_are_the_layer_tables():
    """The SmolLM2-shaped tests build their tables with the golden table functions; with the
    model installed, check they are IntLayer's."""
    from gen.errors import UserError
    from gen.models import smollm2_path

    try:
        smollm2_path()
    except UserError as e:
        pytest.skip(str(e))
    tr = _trace("smollm2", SMOL["ctx"])
    if tr is None:
        pytest.skip("smollm2 did not load")
    L, _ = tr
    cos, sin = rope_table(SMOL["hd"], SMOL["theta"], SMOL["ctx"], FMT.trig_frac)
    assert (L.cos == cos).all() and (L.sin == sin).all()
    assert (L.sig_table == sigmoid_table(FMT)).all()
    assert (L.cfg.dim, L.cfg.n_heads, L.cfg.n_kv_heads, L.cfg.head_dim, L.cfg.ffn) == (
        SMOL["dim"], SMOL["heads"], SMOL["kv"], SMOL["hd"], SMOL["ffn"])
