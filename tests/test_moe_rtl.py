"""The mixture-of-experts layer and chip in RTL against the integer golden, bit for bit: the
built-in tiny-moe (8 MXFP4 experts, top-2, a sliding layer whose ring of 4 KV slots wraps,
then a full one) and a transformers gpt-oss checkpoint whose vocabulary (97) no lane count
divides."""

import json

import numpy as np
import pytest

from gen.cli import main
from sim.runner import run_chip, run_layer
from tests.tools import chip_design, collect_refused, need

SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def moe_chip(tmp_path_factory):
    return chip_design(tmp_path_factory, "tiny-moe", "tiny_moe", ctx=8)


def test_moe_chip_manifest(moe_chip):
    """The ROM holds every expert; the roles of the new units are recorded."""
    from gen.models import load_model

    man = json.loads((moe_chip / "manifest.json").read_text())
    cfg = load_model("tiny-moe").cfg
    assert man["config"]["n_experts"] == 8 and man["config"]["top_k"] == 2
    assert man["rom_bits"] == sum(man["rom_bits_by_part"].values())
    # MXFP4 codes are 5 bits in the lanes: every expert's 3 * ffn * dim weights are there
    experts = cfg.n_layers * cfg.n_experts * 3 * cfg.ffn * cfg.dim
    assert man["rom_bits_by_part"]["layers"] > 5 * experts
    classes = {v["class"] for v in man["modules"].values()}
    assert {"MoeDecoderLayer", "RouterUnit", "CombineUnit", "BiasAdd"} <= classes
    assert man["vectors"]["tokens"]["in"][:2] == [0, cfg.vocab - 1]
    moe = man["moe"]
    assert sum(moe["rom_bits"].values()) == man["rom_bits"]
    # a token reads top_k of the experts' bits, and all the rest but the embedding's
    rb = moe["rom_bits"]
    rest = rb["attention"] + rb["router"] + rb["lm_head"]
    assert rest + rb["experts"] * 2 // 8 < moe["read_bits_per_token"] < rest + rb["experts"] \
        * 2 // 8 + rb["biases"] + rb["embedding"]
    assert moe["read_share"] == round(moe["read_bits_per_token"] / man["rom_bits"], 6)


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=SLOW)])
def test_moe_chip_bit_exact(moe_chip, simulator):
    """Every position's next id and logit equal golden's, at full rate and with stalls."""
    need(simulator)
    res = run_chip(moe_chip, simulator=simulator, stall_tokens=3)
    assert res.tests == 3 and res.failed == 0, res.summary()
    assert [c[1] for c in res.cases] == ["PASS", "PASS", "SKIP"]


def test_moe_chip_pipelined_lanes(tmp_path_factory):
    """Pipelined lanes in the mixture of experts' lane array (select mode, gated lanes):
    every position's id and logit equal golden's, at full rate and with stalls."""
    need("icarus")
    d = chip_design(tmp_path_factory, "tiny-moe", "tiny_moe_s4", ctx=5, lane_stages=4)
    res = run_chip(d, simulator="icarus", stall_tokens=2)
    assert res.tests == 3 and res.failed == 0, res.summary()


@pytest.mark.parametrize("layer, ctx, simulator", [
    (0, 6, "icarus"),  # sliding: the ring of 4 slots wraps at positions 4 and 5
    pytest.param(1, 16, "verilator", marks=SLOW),  # full attention over 16 positions
])
def test_moe_layer_bit_exact(tmp_path, layer, ctx, simulator):
    """Real and extreme residuals (the int32 limits, zeros, random), full rate and stalls."""
    need(simulator)
    out = tmp_path / "layer"
    assert main(["layer", "--model", "tiny-moe", "--layer", str(layer), "--ctx", str(ctx),
                 "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["lanes"] == 64 and man["beat"] == 16
    res = run_layer(out, simulator=simulator)
    assert res.ok, res.summary()
    cycles = json.loads((out / "cycles_real_tokens.json").read_text())
    assert len(cycles) == ctx


def test_moe_layer_reads_top_k_experts():
    """Cycles scale with top_k, ROM bits with the experts: the expert index is part of the
    lanes' ROM address, so only the selected experts' rows are read."""
    from dataclasses import replace

    from gen.models import load_model
    from hdl import not_elaborated
    from hdl.moe_layer import MoeDecoderLayer

    m = load_model("tiny-moe")
    w = m.layer(0)
    a = MoeDecoderLayer(m.cfg, w, ctx=8, lanes=64, beat=16)
    b = MoeDecoderLayer(replace(m.cfg, top_k=4), w, ctx=8, lanes=64, beat=16)
    not_elaborated(a, b, a.engine, b.engine, *a.modules.values(), *b.modules.values())
    ua, ub = a.unit_cycles(7), b.unit_cycles(7)
    assert ub["gate/up passes"] == 2 * ua["gate/up passes"] == 4 * a.engine.pass_cycles[3]
    assert ub["down passes"] == 2 * ua["down passes"]
    assert a.engine.rom_bits == b.engine.rom_bits == sum(a.engine.pass_rom_bits)
    assert b.read_bits() - a.read_bits() == 2 * (a.engine.pass_rom_bits[3]
                                                 + a.engine.pass_rom_bits[4]) + 2 * (
        a.bias.rows[3] + a.bias.rows[4]) * a.bias.bias_bits
    # every expert's gate/up and down are passes of the one lane array
    assert len(a.engine.passes) == 3 + 2 * m.cfg.n_experts


def test_moe_default_lanes():
    from gen.models import load_model
    from hdl.decoder import default_lanes, pass_rows

    cfg = load_model("tiny-moe").cfg
    assert pass_rows(cfg) == [128, 64, 128]
    assert default_lanes(cfg) == 64
    # parallel lanes finish a row of 2 blocks in 2 cycles: 32 lanes give 2 beats of 16
    assert default_lanes(cfg, parallel=True) == 32


@pytest.mark.parametrize("cmd, args, msg", [
    ("layer", ["--layer", "0", "--lanes", "48"], "--lanes 48 must divide every pass's rows "
     "(128, 64, 128)"),
    ("chip", ["--lanes", "64", "--lane", "parallel"], "64 lanes finish rows faster"),
])
def test_moe_bad_lanes(tmp_path, capsys, cmd, args, msg):
    out = tmp_path / "x"
    assert main([cmd, "--model", "tiny-moe", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
    assert not out.exists()
    collect_refused()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers (the dev extra) is not installed")
    from tests.gpt_oss_files import hf_model, write_checkpoint

    return write_checkpoint(hf_model(seed=4), tmp_path_factory.mktemp("ckpt"))


def test_checkpoint_chip_bit_exact(checkpoint, tmp_path):
    """A gpt-oss checkpoint as OpenAI ships it: its chip (the LM head of 97 rows padded to
    two lanes' worth, 128) gives golden's tokens on Icarus, full rate and stalls."""
    need("icarus")
    out = tmp_path / "chip"
    assert main(["chip", "--model", str(checkpoint), "--ctx", "6", "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["vocab"] == 97 and man["head_lanes"] == 64
    res = run_chip(out, simulator="icarus", stall_tokens=2)
    assert res.tests == 3 and res.failed == 0, res.summary()


@SLOW
def test_generate_rtl_equals_golden_moe(tmp_path, monkeypatch, capsys):
    """``hardwire generate --backend rtl`` on tiny-moe (parallel lanes in Verilator) and
    ``forward --backend rtl`` give golden's tokens and hidden states."""
    need("verilator")
    monkeypatch.chdir(tmp_path)
    out = {}
    for backend in ("golden", "rtl"):
        assert main(["generate", "--model", "tiny-moe", "--prompt", "Hi!", "--tokens", "9",
                     "--backend", backend, "--json"]) == 0
        out[backend] = json.loads(capsys.readouterr().out)
    assert out["rtl"] == out["golden"] and len(out["rtl"]["ids"]) == 9
    from gen.models import load_model

    x = load_model("tiny-moe").embedding().dequantize()[[1, 5, 9, 200, 33, 7]]
    np.save(tmp_path / "x.npy", x)
    ys = {}
    for backend in ("golden", "rtl"):
        y = tmp_path / f"y_{backend}.npy"
        assert main(["forward", "--model", "tiny-moe", "--layers", "0:2", "--input",
                     str(tmp_path / "x.npy"), "--backend", backend, "--out", str(y)]) == 0
        ys[backend] = np.load(y)
    np.testing.assert_array_equal(ys["rtl"], ys["golden"])
