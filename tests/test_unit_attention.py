"""The attention unit (hdl/attention.py) against golden.integer.attention_int, bit for bit:
whole decode sequences from position 0 (the KV cache in RAM fills up), real q/k/v from the
tiny model's layer 0, random vectors and worst cases, with stalls on both sides
(sim/tb_stream.py), plus the cycle count measured in Amaranth's simulator."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from golden.integer import IntCache, IntFormat, attention_int, exp2_table, to_residual
from golden.llama_int import IntLayer, int_layer_step
from hdl.attention import AttentionUnit
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

from .pysim import full_rate

FMT = IntFormat()
FB = FMT.fx_bits
TOP, BOT = (1 << (FB - 1)) - 1, -(1 << (FB - 1))

TINY = dict(n_heads=4, n_kv_heads=2, head_dim=16, ctx=16, beat=16)
SMOL = dict(n_heads=9, n_kv_heads=3, head_dim=64, ctx=8, beat=32)


def score_const(head_dim: int, fmt: IntFormat = FMT) -> int:
    """As IntLayer computes it."""
    return round(math.log2(math.e) / math.sqrt(head_dim) * (1 << fmt.score_const_frac))


def golden_sequence(shape, const, table, qs, ks, vs, fmt=FMT):
    """Payloads of a decode sequence at positions 0..T-1 and golden's outputs; also the
    weights of every head of every step (to check that a case covers what it claims).
    ``shape`` may carry ``sinks`` and ``window``."""
    nh, nkv, hd, ctx, b = (shape[k] for k in ("n_heads", "n_kv_heads", "head_dim", "ctx",
                                              "beat"))
    sinks, window = shape.get("sinks"), shape.get("window")
    slots = ctx if window is None else min(ctx, window)
    cache = IntCache(SimpleNamespace(n_kv_heads=nkv, head_dim=hd), slots)
    ins, outs, probs = [], [], []
    for p in range(len(qs)):
        tr = {}
        att = attention_int(np.asarray(qs[p], np.int64), np.asarray(ks[p], np.int64),
                            np.asarray(vs[p], np.int64), p, cache, const, table, fmt,
                            nh // nkv, tr, sinks=sinks, window=window)
        vec = np.concatenate([np.ravel(qs[p]), np.ravel(ks[p]), np.ravel(vs[p])])
        ins += [x | (p << (b * fmt.fx_bits)) for x in beats(vec, b, fmt.fx_bits)]
        outs += beats(att.ravel(), b, fmt.fx_bits)
        probs.append(tr["probs"])
    return ins, outs, probs


def case(name, ins, outs):
    return {"name": name, "in": [f"{x:x}" for x in ins], "out": [f"{y:x}" for y in outs]}


def shapes_of(shape, steps):
    nh, nkv, hd = shape["n_heads"], shape["n_kv_heads"], shape["head_dim"]
    return (steps, nh, hd), (steps, nkv, hd)


def random_qkv(rng, shape, steps):
    """Normal vectors at a random magnitude per (step, head): every bfp shift from 0 up."""
    qsh, ksh = shapes_of(shape, steps)

    def draw(sh):
        mag = rng.integers(1, FB, size=sh[:2] + (1,))
        x = np.round(rng.standard_normal(sh) * np.exp2(mag - 3.0))
        return np.clip(x, BOT, TOP).astype(np.int64)

    return draw(qsh), draw(ksh), draw(ksh)


def extreme_qkv(rng, shape, steps):
    """Every element at +-2**(fx_bits-1): per (step, head) all top, all bottom, or random
    signs; dot products and scores saturate both ways."""
    qsh, ksh = shapes_of(shape, steps)

    def draw(sh):
        pick = rng.integers(0, 3, size=sh[:2] + (1,))
        signs = rng.integers(0, 2, size=sh).astype(bool)
        x = np.where(pick == 0, TOP, np.where(pick == 1, BOT, np.where(signs, TOP, BOT)))
        return np.broadcast_to(x, sh).astype(np.int64)

    return draw(qsh), draw(ksh), draw(ksh)


def outlier_qkv(rng, shape, steps, at=2):
    """One key aligned with every query at a huge magnitude (position ``at``): from then on
    every other weight underflows to 0. The values are random, mid-sized."""
    qsh, ksh = shapes_of(shape, steps)
    sign = rng.choice([-1, 1], size=ksh[1:])
    g = shape["n_heads"] // shape["n_kv_heads"]
    q = np.broadcast_to(np.repeat(sign, g, axis=0) * (1 << 14), qsh).astype(np.int64)
    k = rng.integers(-(1 << 8), 1 << 8, size=ksh)
    k[at] = sign * (1 << 28)
    v = rng.integers(-(1 << 20), 1 << 20, size=ksh)
    return q, k.astype(np.int64), v.astype(np.int64)


def tie_vector(rng, n, bits, s):
    """``n`` elements whose bfp to ``bits`` drops ``s`` bits and every element is an exact
    rounding tie (an odd multiple of ``2**(s-1)``)."""
    m = 2 * rng.integers(-(1 << (bits - 2)), (1 << (bits - 2)) - 1, size=n) + 1
    x = m * (1 << (s - 1))
    x[rng.integers(n)] = rng.choice([-1, 1]) * ((1 << (bits + s - 2)) + (1 << (s - 1)))
    return x.astype(np.int64)


def tie_qkv(rng, shape, steps):
    """Identical keys at every position (equal scores: tied maxima, equal weights), and q, k,
    v whose block-floating-point rounding is all ties."""
    qsh, ksh = shapes_of(shape, steps)
    (nh, hd), nkv = qsh[1:], ksh[1]
    smax_q, smax_k = FB - FMT.q_bits, FB - FMT.kv_bits
    q = np.stack([np.stack([tie_vector(rng, hd, FMT.q_bits, int(rng.integers(1, smax_q + 1)))
                            for _ in range(nh)]) for _ in range(steps)])
    # Values of the first two positions need no rounding (shift 0): at position 1 the
    # output is their mean, a tie for the final rounding wherever their sum is odd.
    k1 = np.stack([tie_vector(rng, hd, FMT.kv_bits, int(rng.integers(1, smax_k + 1)))
                   for _ in range(nkv)])
    k = np.broadcast_to(k1, ksh).copy()
    v = np.stack([np.stack([tie_vector(rng, hd, FMT.kv_bits, int(rng.integers(1, smax_k + 1)))
                            for _ in range(nkv)]) for _ in range(steps)])
    v[:2] = rng.integers(-(1 << (FMT.kv_bits - 2)), 1 << (FMT.kv_bits - 2), size=(2,) + ksh[1:])
    assert ((v[0] + v[1]) % 2).any()
    return q, k, v


def real_qkv(model, steps, ctx):
    """q, k (after RoPE) and v of the model's layer 0 on real token embeddings."""
    from gen.models import load_model

    m = load_model(model)
    L = IntLayer(m.cfg, m.layer(0), ctx)
    emb = m.embedding().dequantize()
    ids = np.random.default_rng(7).integers(0, m.cfg.vocab, size=steps)
    cache = IntCache(m.cfg, ctx)
    qs, ks, vs, atts = [], [], [], []
    for p in range(steps):
        tr = {}
        int_layer_step(L, to_residual(emb[ids[p]], L.fmt), p, cache, tr)
        qs.append(tr["q_rope"])
        ks.append(tr["k_rope"])
        vs.append(tr["v"])
        atts.append(tr["att"])
    return L, np.array(qs), np.array(ks), np.array(vs), atts


def build_cases(shape, const, table, rng, real=None):
    ctx = shape["ctx"]
    cases = []
    if real is not None:
        _, q, k, v, atts = real
        ins, outs, _ = golden_sequence(shape, const, table, q, k, v)
        want = []
        for a in atts:
            want += beats(a.ravel(), shape["beat"], FB)
        assert outs == want  # the unit's golden is the layer's attention
        cases.append(case("real", ins, outs))
    q, k, v = random_qkv(rng, shape, ctx)
    cases.append(case("random", *golden_sequence(shape, const, table, q, k, v)[:2]))
    steps = min(ctx, 8)
    q, k, v = extreme_qkv(rng, shape, steps)
    cases.append(case("extremes", *golden_sequence(shape, const, table, q, k, v)[:2]))
    qsh, ksh = shapes_of(shape, 3)
    z = golden_sequence(shape, const, table, np.zeros(qsh, np.int64), np.zeros(ksh, np.int64),
                        np.zeros(ksh, np.int64))
    assert not any(z[1])
    cases.append(case("zeros", *z[:2]))
    q, k, v = outlier_qkv(rng, shape, steps)
    ins, outs, probs = golden_sequence(shape, const, table, q, k, v)
    last = probs[-1]
    assert all(int(w[2]) == 1 << FMT.prob_frac and int(w.sum()) == w[2] for w in last)
    cases.append(case("outlier", ins, outs))
    q, k, v = tie_qkv(rng, shape, steps)
    ins, outs, probs = golden_sequence(shape, const, table, q, k, v)
    assert all((w == 1 << FMT.prob_frac).all() for w in probs[-1])
    cases.append(case("ties", ins, outs))
    return cases


def fields(beat):
    return [[f"att[{e}]", e * FB, FB, True] for e in range(beat)]


def run_unit(tmp_path, shape, cases, simulator, const, table, name="attention"):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    dut = AttentionUnit(**shape, fmt=FMT, score_const=const, exp_table=table)
    d = write_unit(dut, name, tmp_path / "design", {"cases": cases,
                                                    "fields": fields(shape["beat"])})
    res = run_stream(d, simulator=simulator, build_dir=tmp_path / "sim", seed=5)
    print(res.summary())
    print(f"{name}: KV cache {dut.ram_bits} bits; cycles per token "
          f"{[dut.cycles(p) for p in range(shape['ctx'])]}")
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()
    return dut


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_attention_tiny(tmp_path, simulator):
    """Tiny model shape with its real constants: real q/k/v for 16 positions (the whole
    context), random, extreme, zero, one-outlier and tie sequences."""
    real = real_qkv("tiny", TINY["ctx"], TINY["ctx"])
    L = real[0]
    assert L.fmt == FMT and L.cfg.head_dim == TINY["head_dim"]
    cases = build_cases(TINY, L.score_const, L.exp_table, np.random.default_rng(1), real)
    run_unit(tmp_path, TINY, cases, simulator, L.score_const, L.exp_table)


def test_attention_smollm2_shape(tmp_path):
    """SmolLM2 attention shape (9 heads, 3 KV heads, head_dim 64, beat 32), context 8: real
    q/k/v of SmolLM2's layer 0 when the model is installed, and the synthetic sequences."""
    from gen.errors import UserError

    const, table = score_const(SMOL["head_dim"]), exp2_table(FMT)
    try:
        real = real_qkv("smollm2", SMOL["ctx"], SMOL["ctx"])
        assert real[0].score_const == const
    except UserError as e:
        print(f"no real SmolLM2 case: {e}")
        real = None
    cases = build_cases(SMOL, const, table, np.random.default_rng(2), real)
    run_unit(tmp_path, SMOL, cases, "icarus", const, table)


ODD = [TINY,
       dict(n_heads=3, n_kv_heads=1, head_dim=8, ctx=5, beat=4),  # 2 beats a head, group 3
       dict(n_heads=2, n_kv_heads=2, head_dim=8, ctx=3, beat=2)]  # 4 beats a head, group 1


@pytest.mark.parametrize("shape", ODD, ids=["tiny", "bh2-g3", "bh4-g1"])
def test_attention_cycles_measured(shape):
    """Full-rate token period in Amaranth's simulator equals ``cycles(pos)`` (from a token's
    first input beat to the next token's, and for the last token to the cycle its last output
    beat is taken, when the next could start), and the outputs equal golden's, also on
    extreme sequences."""
    table = exp2_table(FMT)
    const = score_const(shape["head_dim"])
    steps = min(shape["ctx"], 4)
    rng = np.random.default_rng(3)
    dut = AttentionUnit(**shape, fmt=FMT, score_const=const, exp_table=table)
    ins, want, _ = golden_sequence(shape, const, table, *random_qkv(rng, shape, steps))
    outs, taken = full_rate(dut, ins, len(want))
    assert [p for _, p in outs] == want
    taken.append(outs[-1][0])  # the last token ends when its last output beat is taken
    firsts = taken[::dut.n_in]
    measured = [b - a for a, b in zip(firsts, firsts[1:], strict=False)]
    print(f"{shape}: measured cycles per token {measured}, formula "
          f"{[dut.cycles(p) for p in range(steps)]}")
    assert measured == [dut.cycles(p) for p in range(steps)]
    if shape is not TINY:
        ins, want, _ = golden_sequence(shape, const, table,
                                       *extreme_qkv(rng, shape, shape["ctx"]))
        assert [p for _, p in full_rate(dut, ins, len(want))[0]] == want


def _sink_window_cases(shape, const, table, rng):
    steps = shape["ctx"]
    cases = []
    for name, draw in (("random", random_qkv), ("extremes", extreme_qkv),
                       ("outlier", outlier_qkv)):
        q, k, v = draw(rng, shape, steps)
        cases.append(case(name, *golden_sequence(shape, const, table, q, k, v)[:2]))
    qsh, ksh = shapes_of(shape, 4)
    z = golden_sequence(shape, const, table, np.zeros(qsh, np.int64), np.zeros(ksh, np.int64),
                        np.zeros(ksh, np.int64))
    cases.append(case("zeros", *z[:2]))
    return cases


SINKS = [-(3 << 12), 0, 5 << 12, -(1 << 30)]  # Q.score_frac: small, zero, dominant, none


@pytest.mark.parametrize("window, simulator", [(4, "icarus"), (3, "verilator"),
                                               (None, "icarus"), (20, "icarus")])
def test_attention_sinks_and_window(tmp_path, window, simulator):
    """gpt-oss' attention: a sink per head (one dominating, one that vanishes) and a sliding
    window (a ring of 4 or 3 slots over 16 positions; none; one wider than the context),
    random, extreme, outlier and zero sequences over the whole context."""
    shape = dict(TINY, ctx=16) | {"sinks": SINKS, "window": window}
    const, table = score_const(shape["head_dim"]), exp2_table(FMT)
    cases = _sink_window_cases(shape, const, table, np.random.default_rng(7))
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    dut = AttentionUnit(**{k: v for k, v in shape.items()}, fmt=FMT, score_const=const,
                        exp_table=table)
    if window is not None and window < shape["ctx"]:
        assert dut.slots == window and dut.ram_bits == window * 2 * 2 * (16 * 16 + 5)
    d = write_unit(dut, "attention", tmp_path / "design", {"cases": cases,
                                                           "fields": fields(shape["beat"])})
    res = run_stream(d, simulator=simulator, build_dir=tmp_path / "sim", seed=5)
    assert res.tests == 3 and res.ok, res.summary()


@pytest.mark.parametrize("window", [3, None])
def test_attention_sinks_and_window_cycles(window):
    shape = dict(n_heads=2, n_kv_heads=1, head_dim=8, ctx=7, beat=4, sinks=[1 << 12, -4096],
                 window=window)
    table, const = exp2_table(FMT), score_const(8)
    dut = AttentionUnit(**shape, fmt=FMT, score_const=const, exp_table=table)
    ins, want, _ = golden_sequence(shape, const, table,
                                   *random_qkv(np.random.default_rng(4), shape, 7))
    outs, taken = full_rate(dut, ins, len(want))
    assert [p for _, p in outs] == want
    taken.append(outs[-1][0])
    firsts = taken[::dut.n_in]
    assert [b - a for a, b in zip(firsts, firsts[1:], strict=False)] == \
        [dut.cycles(p) for p in range(7)]
