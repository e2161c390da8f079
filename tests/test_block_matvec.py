"""The block-affine folded engine (Q4_0 / Q4_1 / Q8_0 with block scales and mins) against
golden.integer.project, bit for bit, with cocotb."""

import numpy as np
import pytest

from gen.models import load_model
from golden.block_folded import bounds, evaluate
from golden.blockquant import block_matvec, decode, encode
from golden.integer import IntFormat, project
from hdl.block_matvec import BlockMatVec
from hdl.lane_array import pass_latency
from sim.runner import run_stream, simulator_available, write_unit
from sim.streams import beats

FMT = IntFormat()


def _weights(kind, rows, cols, seed):
    if kind == "tiny_wq":
        return load_model("tiny").layer(0).wq
    if kind == "tiny_wk":
        return load_model("tiny").layer(1).wk
    if kind == "tiny_down":
        return load_model("tiny").layer(0).w_down
    if kind == "smollm2_wk":
        from gen.models import smollm2_path
        try:
            return load_model(str(smollm2_path())).layer(0).wk
        except Exception as e:
            pytest.skip(str(e))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * rng.uniform(0.1, 3, (rows, 1))
    return decode(kind, encode(kind, w.astype(np.float32)), rows, cols)


def _vectors(w, abits, rng, n_random=6):
    lo, hi = -(1 << (abits - 1)), (1 << (abits - 1)) - 1
    cols = w.shape[1]
    out = []
    for _ in range(n_random):  # realistic exponents from the norm: around -10
        out.append((rng.integers(lo, hi + 1, cols), int(rng.integers(-16, -4))))
    out += [(np.full(cols, lo), -8), (np.full(cols, hi), -8), (np.zeros(cols, int), 3),
            (np.full(cols, lo), 60), (np.full(cols, hi), -120),  # saturate / round to 0
            (rng.integers(lo, hi + 1, cols), int(-w.exp - FMT.fx_frac - 1))]  # ties: shift 1
    # per row, the vectors that reach the accumulator's extremes: sign of each coefficient
    coef = (w.codes.astype(np.int64).reshape(w.shape[0], w.nblocks, w.block)
            * w.scale[:, :, None] + w.offset[:, :, None]).reshape(w.shape[0], cols)
    for r in (0, w.shape[0] - 1):
        out.append((np.where(coef[r] >= 0, hi, lo), -10))
        out.append((np.where(coef[r] >= 0, lo, hi), -10))
    return out


def _cases(name, ins, outs):
    return {"name": name, "in": [f"{v:x}" for v in ins], "out": [f"{v:x}" for v in outs]}


def _write(tmp_path, w, lanes, beat, abits, vectors, parallel=False):
    dut = BlockMatVec(w, abits=abits, lanes=lanes, beat=beat, fmt=FMT, parallel=parallel)
    ins, outs = [], []
    for a, e in vectors:
        ins += beats(a, beat, abits, exp=e, exp_bits=FMT.exp_bits)
        outs += beats(project(w, a, e, FMT), beat, FMT.fx_bits)
    n_in = w.shape[1] // beat
    cases = [_cases("vectors", ins, outs),
             _cases("single", ins[:n_in], outs[: w.shape[0] // beat])]
    fields = [(f"row {j}", j * FMT.fx_bits, FMT.fx_bits, True) for j in range(beat)]
    d = write_unit(dut, "block_matvec", tmp_path / "dut", {"fields": fields, "cases": cases},
                   extra_verilog=dut.lane_verilog())
    return d, dut


def write_passes(tmp_path, dut, steps, name):
    """A lane array's unit test: ``steps`` of ``(w, a, e)`` in the order the passes run,
    each expected as ``project(w, a, e)``."""
    ins, outs = [], []
    for w, a, e in steps:
        ins += beats(a, dut.beat, dut.abits, exp=e, exp_bits=FMT.exp_bits)
        outs += beats(project(w, a, e, FMT), dut.beat, FMT.fx_bits)
    fields = [(f"row {j}", j * FMT.fx_bits, FMT.fx_bits, True) for j in range(dut.beat)]
    return write_unit(dut, "lane_array", tmp_path / "dut",
                      {"fields": fields, "cases": [_cases(name, ins, outs)]},
                      extra_verilog=dut.lane_verilog())


def test_schedule_equals_block_matvec():
    rng = np.random.default_rng(0)
    for kind in ("Q4_0", "Q4_1", "Q8_0"):
        w = _weights(kind, 32, 96, 1)
        for _ in range(3):
            a = rng.integers(-2048, 2048, 96)
            np.testing.assert_array_equal(evaluate(w, a, 8), block_matvec(w, a))
            # parallel ROM words, at the codes' own width and sign-extended to wider ones
            for eb in (None, 6, 8, 13):
                if eb is None or eb >= w.bits:
                    np.testing.assert_array_equal(evaluate(w, a, 8, True, eb),
                                                  block_matvec(w, a))
        b = bounds(w, 12)
        lo, hi = -2048, 2047
        coef_hits = block_matvec(w, np.full(96, lo)), block_matvec(w, np.full(96, hi))
        for v in coef_hits:
            assert b["acc"][0] <= v.min() and v.max() <= b["acc"][1]


CONFIGS = [
    # kind, rows, cols, lanes, beat, abits, simulator
    ("tiny_wq", 64, 64, 16, 16, 12, "icarus"),
    ("tiny_wk", 32, 64, 16, 16, 12, "icarus"),
    ("tiny_down", 64, 128, 16, 16, 12, "icarus"),
    ("Q8_0", 32, 64, 8, 8, 12, "icarus"),
    ("Q4_0", 16, 96, 16, 16, 8, "icarus"),
    ("Q4_1", 32, 64, 32, 16, 16, "verilator"),
    pytest.param("smollm2_wk", 192, 576, 64, 32, 12, "verilator", marks=pytest.mark.slow),
]
#: parallel lanes (a block's whole codes per cycle): the same formats, fewer cases
PARALLEL_CONFIGS = [
    ("tiny_wq", 64, 64, 16, 16, 12, "icarus"),
    ("Q8_0", 32, 64, 8, 8, 12, "icarus"),
    ("Q4_1", 32, 64, 32, 16, 16, "icarus"),  # Verilator runs parallel lanes in the chips' tests
]


@pytest.mark.parametrize("kind,rows,cols,lanes,beat,abits,simulator,parallel",
                         [(*getattr(c, "values", c), False) if not hasattr(c, "marks")
                          else pytest.param(*c.values, False, marks=c.marks) for c in CONFIGS]
                         + [(*c, True) for c in PARALLEL_CONFIGS],
                         ids=[f"{v[0]}-{v[1]}x{v[2]}-P{v[3]}-{v[6]}"
                              for v in (getattr(c, "values", c) for c in CONFIGS)]
                         + [f"{v[0]}-{v[1]}x{v[2]}-P{v[3]}-{v[6]}-parallel"
                            for v in PARALLEL_CONFIGS])
def test_block_matvec_bit_exact(tmp_path, kind, rows, cols, lanes, beat, abits, simulator,
                                parallel):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    w = _weights(kind, rows, cols, 7)
    rng = np.random.default_rng(3)
    d, dut = _write(tmp_path, w, lanes, beat, abits, _vectors(w, abits, rng), parallel)
    res = run_stream(d, simulator=simulator)
    assert res.ok, res.summary()
    # the ROM reads, then the output register
    assert dut.cycles_per_vector - pass_latency(0) == dut.layout.ideal_cycles
    per_block = 1 if parallel else w.bits
    assert dut.layout.ideal_cycles == rows * cols * per_block // (lanes * w.block)


@pytest.mark.parametrize("parallel, gated, stages", [
    (False, False, 0), (True, False, 0), (False, True, 0), (True, True, 0),
    (False, False, 1), (True, False, 2), (False, True, 6), (True, True, 3)],
    ids=["serial", "parallel", "serial-gated", "parallel-gated", "serial-s1", "parallel-s2",
         "serial-gated-s6", "parallel-gated-s3"])
def test_lane_array_runs_a_layers_four_passes(tmp_path, parallel, gated, stages):
    """q|k|v, o, gate/up interleaved by beat, down: one lane array, passes in a cycle. Gated:
    the lanes on their own gated clock, as in a chip. Pipelined lanes (``stages``) give the
    same rows, ``stages`` cycles later per pass."""
    from golden.blockquant import interleave_rows, stack
    from hdl.lane_array import LaneArray

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    lw = load_model("tiny").layer(0)
    beat, lanes, abits = 16, 16, 12
    passes = [stack([lw.wq, lw.wk, lw.wv]), lw.wo, interleave_rows(lw.w_gate, lw.w_up, beat),
              lw.w_down]
    dut = LaneArray(passes, abits=abits, lanes=lanes, beat=beat, fmt=FMT, parallel=parallel,
                    gate_lanes=gated, stages=stages)
    rng = np.random.default_rng(5)
    steps = [(w, rng.integers(-(1 << (abits - 1)), 1 << (abits - 1), w.shape[1]),
              int(rng.integers(-14, -6))) for _token in range(3) for w in passes]
    d = write_passes(tmp_path, dut, steps, "3 tokens x 4 passes")
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
    assert dut.cycles_per_vector - 4 * pass_latency(stages) == dut.ideal_cycles == sum(
        w.shape[0] * w.shape[1] * (1 if parallel else w.bits) for w in passes) / (lanes * 32)


def test_per_channel_weights_run_as_lane_blocks(tmp_path):
    """Per-channel int4 (one block per row, as hardwire's own quantiser makes for float
    checkpoints) split into 32-column blocks exactly, then through the lanes."""
    from golden.blockquant import quantize_per_channel

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(11)
    w = quantize_per_channel(rng.standard_normal((32, 96)), 4)
    wb = w.reblock(32)
    a = rng.integers(-2048, 2048, 96)
    np.testing.assert_array_equal(block_matvec(wb, a), block_matvec(w, a))
    vectors = _vectors(wb, 12, rng, n_random=3)
    d, _ = _write(tmp_path, wb, 16, 16, 12, vectors)
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
    # and the golden project() of the original per-channel tensor is what the lanes computed
    for a, e in vectors[:3]:
        np.testing.assert_array_equal(project(w, a, e, FMT), project(wb, a, e, FMT))


@pytest.mark.parametrize("parallel, stages", [(False, 0), (True, 0), (False, 4), (True, 6)],
                         ids=["serial", "parallel", "serial-s4", "parallel-s6"])
def test_lane_array_selects_its_pass_per_vector(tmp_path, parallel, stages):
    """With ``select``, every input vector names its pass (as a mixture of experts names its
    experts): passes in an order no cycle gives, repeats included; the output beats carry
    the pass they belong to."""
    from hdl.lane_array import LaneArray

    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(9)
    beat, lanes, abits = 8, 8, 12
    passes = [_weights(k, r, c, s) for k, r, c, s in (("Q8_0", 16, 64, 1), ("Q4_1", 32, 32, 2),
                                                       ("Q4_0", 8, 64, 3), ("Q8_0", 16, 32, 4),
                                                       ("Q4_1", 8, 32, 5))]
    dut = LaneArray(passes, abits=abits, lanes=lanes, beat=beat, fmt=FMT, parallel=parallel,
                    select=True, stages=stages)
    lo, hi = -(1 << (abits - 1)), 1 << (abits - 1)
    ins, outs = [], []
    sel_in, sel_out = beat * abits + FMT.exp_bits, beat * FMT.fx_bits
    order = [0, 1, 2, 4, 4, 3, 0, 2, 1, 3, 0, 0]
    for k in order:
        w = passes[k]
        a = rng.integers(lo, hi, w.shape[1]) if k % 3 else np.full(w.shape[1], lo)
        e = int(rng.integers(-14, -6))
        ins += [b | (k << sel_in) for b in beats(a, beat, abits, exp=e, exp_bits=FMT.exp_bits)]
        outs += [b | (k << sel_out) for b in beats(project(w, a, e, FMT), beat, FMT.fx_bits)]
    fields = [(f"row {j}", j * FMT.fx_bits, FMT.fx_bits, True) for j in range(beat)]
    fields.append(("pass", sel_out, dut.pass_bits, False))
    d = write_unit(dut, "lane_array", tmp_path / "dut",
                   {"fields": fields, "cases": [_cases("passes by name", ins, outs)]},
                   extra_verilog=dut.lane_verilog())
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
