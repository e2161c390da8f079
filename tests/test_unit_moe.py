"""The mixture-of-experts units against golden, bit for bit, with cocotb (random vectors,
extreme vectors, valid/ready stalls on both sides: :mod:`sim.tb_stream`)."""

import numpy as np
import pytest

from golden.gpt_oss_int import add_bias
from golden.integer import IntFormat
from hdl.bias import BiasAdd
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

FMT = IntFormat()
LIM = 1 << (FMT.fx_bits - 1)


def _cases(name, ins, outs):
    return {"name": name, "in": [f"{v:x}" for v in ins], "out": [f"{v:x}" for v in outs]}


def _run(tmp_path, dut, name, cases, fields, simulator="icarus", extra=""):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    d = write_unit(dut, name, tmp_path / name, {"fields": fields, "cases": cases},
                   extra_verilog=extra)
    res = run_stream(d, simulator=simulator)
    assert res.ok, res.summary()


def _fields(beat, bits=FMT.fx_bits):
    return [(f"element {j}", j * bits, bits, True) for j in range(beat)]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_bias_add(tmp_path, simulator):
    """Three passes of different lengths (one without biases) named in any order; random
    values and the saturating extremes."""
    rng = np.random.default_rng(1)
    beat, rows = 4, [16, 8, 12]
    biases = [rng.integers(-5000, 5000, 16), None, rng.integers(-(LIM >> 4), LIM >> 4, 12)]
    biases[2][:2] = [LIM - 1, -LIM]  # the widest biases
    dut = BiasAdd(biases, rows, beat, FMT)
    ins, outs = [], []
    sel_at = beat * FMT.fx_bits
    for k in [0, 1, 2, 2, 0, 1, 1, 2, 0]:
        r = rows[k]
        y = rng.integers(-LIM, LIM, r)
        if k == 2:
            y[:4] = [LIM - 1, -LIM, LIM - 1, -LIM]  # saturation both ways
        b = np.zeros(r, np.int64) if biases[k] is None else biases[k]
        ins += [v | (k << sel_at) for v in beats(y, beat, FMT.fx_bits)]
        outs += beats(add_bias(y, b, FMT), beat, FMT.fx_bits)
    _run(tmp_path, dut, "bias_add", [_cases("passes", ins, outs)], _fields(beat), simulator)


def _router_cases(n_experts, rows, rng):
    """Router logits per token: random, ties (equal logits: the lower expert first), the
    fx extremes, all equal, and padding rows that hold the largest values (never chosen)."""
    out = [rng.integers(-(8 << 12), 8 << 12, rows) for _ in range(4)]
    t = rng.integers(-(4 << 12), 4 << 12, rows)
    t[[1, 3, 6]] = 5 << 12
    out.append(t)
    out.append(np.where(np.arange(rows) % 2, LIM - 1, -LIM))
    out.append(np.full(rows, 77))
    pad = rng.integers(-(1 << 12), 1 << 12, rows)
    pad[n_experts:] = LIM - 1
    out.append(pad)
    big = rng.integers(-LIM, LIM, rows)  # differences far past the exp2 table
    out.append(big)
    return out


@pytest.mark.parametrize("n_experts, top_k, rows, beat, simulator", [
    (8, 2, 8, 4, "icarus"), (8, 3, 16, 8, "icarus"), (6, 4, 8, 2, "verilator"),
    (32, 4, 32, 8, "icarus")])
def test_router(tmp_path, n_experts, top_k, rows, beat, simulator):
    from golden.gpt_oss_int import LOG2E_FRAC, route_int
    from golden.integer import exp2_table
    from hdl.router import RouterUnit

    rng = np.random.default_rng(n_experts + top_k)
    table = exp2_table(FMT)
    log2e = round(np.log2(np.e) * (1 << LOG2E_FRAC))
    dut = RouterUnit(n_experts, top_k, rows, beat, FMT, table, log2e)
    ins, outs = [], []
    for logits in _router_cases(n_experts, rows, rng):
        ids, w = route_int(logits[:n_experts], top_k, table, log2e, FMT)
        ins += beats(logits, beat, FMT.fx_bits)
        outs += [int(i) | (int(v) << dut.id_bits) for i, v in zip(ids, w, strict=True)]
    fields = [("expert", 0, dut.id_bits, False),
              ("weight", dut.id_bits, FMT.prob_frac + 1, False)]
    _run(tmp_path, dut, "router", [_cases("tokens", ins, outs)], fields, simulator)


def test_router_cycles():
    """The measured token period at full rate is :attr:`RouterUnit.cycles`."""
    from golden.gpt_oss_int import LOG2E_FRAC
    from golden.integer import exp2_table
    from hdl.router import RouterUnit

    from .pysim import full_rate

    dut = RouterUnit(8, 2, 16, 4, FMT, exp2_table(FMT), round(np.log2(np.e) * (1 << LOG2E_FRAC)))
    rng = np.random.default_rng(0)
    ins = [b for _ in range(3) for b in beats(rng.integers(-4096, 4096, 16), 4, FMT.fx_bits)]
    _, taken = full_rate(dut, ins, 6)
    firsts = taken[::4]
    assert [b - a for a, b in zip(firsts, firsts[1:], strict=False)] == [dut.cycles] * 2


def _with_weights(dut):
    """A one-stream wrapper of a :class:`hdl.combine.CombineUnit` for :mod:`sim.tb_stream`:
    every input beat carries its expert's weight beside the elements."""
    from amaranth.hdl import Module
    from amaranth.lib import data, stream, wiring
    from amaranth.lib.wiring import In, Out

    class Harness(wiring.Component):
        def __init__(self):
            self.inner = dut
            lay = data.StructLayout({"elem": dut.x.payload.shape().size,
                                     "w": dut.w.payload.shape().size})
            super().__init__({"x": In(stream.Signature(lay)),
                              "y": Out(stream.Signature(dut.y.payload.shape()))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = d = self.inner
            m.d.comb += [d.x.valid.eq(self.x.valid), d.w.valid.eq(self.x.valid),
                         d.x.payload.elem.eq(self.x.payload.elem),
                         d.w.payload.as_value().eq(self.x.payload.w),
                         self.x.ready.eq(d.x.ready)]
            wiring.connect(m, wiring.flipped(self.y), d.y)
            return m

    return Harness()


@pytest.mark.parametrize("n, beat, top_k, simulator", [
    (32, 8, 2, "icarus"), (16, 16, 3, "icarus"), (24, 4, 4, "verilator")])
def test_combine(tmp_path, n, beat, top_k, simulator):
    """Random expert outputs and weights, the fx extremes with weight 1.0 (saturating the
    sum), zero weights; one beat per vector (``n == beat``) reads the word just written."""
    from golden.gpt_oss_int import combine_int
    from hdl.combine import CombineUnit

    rng = np.random.default_rng(n + top_k)
    dut = CombineUnit(n, beat, top_k, 8, FMT)
    one = 1 << FMT.prob_frac
    ins, outs = [], []
    id_bits = 3
    tokens = []
    for _ in range(4):
        w = rng.integers(0, one + 1, top_k)
        tokens.append((w, [rng.integers(-LIM, LIM, n) for _ in range(top_k)]))
    tokens.append((np.full(top_k, one), [np.full(n, LIM - 1)] * top_k))
    tokens.append((np.full(top_k, one), [np.full(n, -LIM)] * top_k))
    tokens.append((np.zeros(top_k, np.int64), [rng.integers(-LIM, LIM, n)] * top_k))
    for w, ys in tokens:
        for wj, y in zip(w, ys, strict=True):
            wbits = int(wj) << id_bits
            ins += [b | (wbits << (beat * FMT.fx_bits)) for b in beats(y, beat, FMT.fx_bits)]
        outs += beats(combine_int(w, ys, FMT), beat, FMT.fx_bits)
    _run(tmp_path, _with_weights(dut), "combine", [_cases("tokens", ins, outs)],
         _fields(beat), simulator)


@pytest.mark.parametrize("n, beat, simulator", [(64, 16, "icarus"), (32, 4, "verilator")])
def test_clamped_swiglu(tmp_path, n, beat, simulator):
    """gpt-oss' SwiGLU: random gates and ups around the limit, far past it both ways, the fx
    extremes, zeros; a gate whose scaled argument rounds on a tie."""
    from golden.gpt_oss_int import ALPHA_FRAC, clamped_swiglu_int
    from golden.integer import sigmoid_table, to_fixed
    from hdl.swiglu import SwigluUnit

    table = sigmoid_table(FMT)
    lim, alpha = int(to_fixed(7.0, FMT.fx_frac, FMT.fx_bits)), round(1.702 * (1 << ALPHA_FRAC))
    dut = SwigluUnit(n, beat, FMT, table, clamp=(lim, alpha))
    rng = np.random.default_rng(n)
    top = beat * FMT.fx_bits
    vectors = [(rng.integers(-(10 << 12), 10 << 12, n), rng.integers(-(10 << 12), 10 << 12, n))
               for _ in range(4)]
    vectors.append((np.where(np.arange(n) % 2, LIM - 1, -LIM),
                    np.where(np.arange(n) % 3, -LIM, LIM - 1)))
    vectors.append((np.zeros(n, np.int64), np.zeros(n, np.int64)))
    vectors.append((np.full(n, lim), np.full(n, -lim)))
    # gates whose argument g * alpha / 2**ALPHA_FRAC lies exactly half way: ties, both signs
    g0 = 2048 * pow(alpha, -1, 4096) % 4096
    ties = (g0 + 4096 * np.arange(n // 2)) * np.where(np.arange(n // 2) % 2, 1, -1)
    assert all(int(t) * alpha % 4096 == 2048 for t in ties)
    vectors.append((np.repeat(ties, 2), rng.integers(-(1 << 12), 1 << 12, n)))
    ins, outs = [], []
    for g, u in vectors:
        a, e = clamped_swiglu_int(g, u, lim, alpha, table, FMT)
        ins += [x | (y << top) for x, y in zip(beats(g, beat, FMT.fx_bits),
                                               beats(u, beat, FMT.fx_bits), strict=True)]
        outs += beats(a, beat, FMT.abits, exp=e, exp_bits=FMT.exp_bits)
    fields = _fields(beat, FMT.abits) + [("exponent", beat * FMT.abits, FMT.exp_bits, True)]
    _run(tmp_path, dut, "clamped_swiglu", [_cases("vectors", ins, outs)], fields, simulator)


@pytest.mark.parametrize("beats_, times, simulator", [(4, 3, "icarus"), (1, 2, "icarus"),
                                                      (6, 5, "verilator")])
def test_replay(tmp_path, beats_, times, simulator):
    from amaranth.hdl import unsigned

    from hdl.replay import ReplayBuffer

    rng = np.random.default_rng(beats_)
    dut = ReplayBuffer(unsigned(40), beats_, times)
    ins, outs = [], []
    for _ in range(5):
        v = [int(x) for x in rng.integers(0, 1 << 40, beats_)]
        ins += v
        outs += v * times
    _run(tmp_path, dut, "replay", [_cases("vectors", ins, outs)], [("word", 0, 40, False)],
         simulator)


def test_replay_cycles():
    from amaranth.hdl import unsigned

    from hdl.replay import ReplayBuffer

    from .pysim import full_rate

    dut = ReplayBuffer(unsigned(8), 4, 3)
    _, taken = full_rate(dut, list(range(12)), 36)
    firsts = taken[::4]
    assert [b - a for a, b in zip(firsts, firsts[1:], strict=False)] == [dut.cycles] * 2


def _tagger_harness(dut, width: int, id_bits: int):
    """A one-stream wrapper of a :class:`hdl.tagger.PassTagger` for :mod:`sim.tb_stream`: an
    input beat with ``is_id`` set goes to the ids FIFO, any other to the vectors' FIFO."""
    from amaranth.hdl import Module, Mux
    from amaranth.lib import data, stream, wiring
    from amaranth.lib.wiring import In, Out

    from hdl.glue import BeatFifo, connect_stream

    class Harness(wiring.Component):
        def __init__(self):
            self.inner = dut
            lay = data.StructLayout({"data": width, "id": id_bits, "is_id": 1})
            super().__init__({"x": In(stream.Signature(lay)),
                              "y": Out(stream.Signature(dut.y.payload.shape()))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = d = self.inner
            m.submodules.vecs = vecs = BeatFifo(width, 4)
            m.submodules.ids = ids = BeatFifo(id_bits, 8)
            x = self.x
            m.d.comb += [vecs.i.valid.eq(x.valid & ~x.payload.is_id),
                         ids.i.valid.eq(x.valid & x.payload.is_id),
                         vecs.i.payload.eq(x.payload.data), ids.i.payload.eq(x.payload.id),
                         x.ready.eq(Mux(x.payload.is_id, ids.i.ready, vecs.i.ready))]
            connect_stream(m, vecs.o, d.x)
            connect_stream(m, ids.o, d.ids)
            wiring.connect(m, wiring.flipped(self.y), d.y)
            return m

    return Harness()


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_pass_tagger(tmp_path, simulator):
    """Tokens of fixed passes and top-2 experts' gate/up and down vectors: each beat leaves
    named with its pass (an expert's ``base + 2 * id``). The experts' ids come before their
    vectors or only after the first gate/up beat is waiting (the tagger holds it)."""
    from amaranth.hdl import unsigned

    from hdl.router import router_layout
    from hdl.tagger import PassTagger

    rng = np.random.default_rng(3)
    width, n_experts, k = 10, 8, 2
    segs = [(0, 2), (1, 1), (2, 2)] + [(("gate_up", 3), 3), (("down", 4), 2)] * k
    ids_lay = router_layout(n_experts, FMT)
    id_bits = ids_lay.size
    dut = PassTagger(unsigned(width), ids_lay, segs, pass_bits=5)
    ins, outs = [], []
    id_at = width
    flag = width + id_bits
    for _ in range(5):
        experts = rng.choice(n_experts, k, replace=False)
        if rng.random() < 0.3:
            experts[:] = [n_experts - 1, 0]  # the extreme ids
        j = 0
        for kind, n in segs:
            late = rng.random() < 0.5
            gate_up = isinstance(kind, tuple) and kind[0] == "gate_up"
            if gate_up:
                e = int(experts[j])
                id_beat = (1 << flag) | (e << (id_at + ids_lay["id"].offset))
                j += 1
                if not late:
                    ins.append(id_beat)
            for t in range(n):
                v = int(rng.integers(0, 1 << width))
                ins.append(v)
                if gate_up and late and t == 0:
                    ins.append(id_beat)
                sel = kind if isinstance(kind, int) else kind[1] + 2 * e
                outs.append(v | (sel << width))
    _run(tmp_path, _tagger_harness(dut, width, id_bits), "tagger", [_cases("tokens", ins, outs)],
         [("data", 0, width, False), ("sel", width, 5, False)], simulator)
