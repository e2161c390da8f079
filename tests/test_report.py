"""hardwire report on a tiny chip: the JSON's parts and invariants, byte-identical JSON on a
second run, the Pareto plot, and one-line errors for bad input. Nothing here runs yosys or
nextpnr (figures come from the built-in calibration, or from an estimate put into the
manifest by hand); the slow test places a lane with nextpnr."""

import json
import shutil

import pytest

from gen.chip import generate_chip
from gen.report import STRATEGIES, make_report, pareto_front
from gen.report.calibration import builtin_fmax
from gen.synth import plan_layer, split_verilog

from .conftest import hardwire


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "chip"
    generate_chip("tiny", out, ctx=4, log=None)
    return out


def _copy(chip, tmp_path, name="c"):
    d = tmp_path / name
    shutil.copytree(chip, d)
    return d


@pytest.fixture(scope="module")
def swept(chip, tmp_path_factory):
    """A copy of the chip, reported with --sweep through the command line."""
    d = tmp_path_factory.mktemp("swept") / "chip"
    shutil.copytree(chip, d)
    assert hardwire("report", d, "--sweep") == 0
    return d, json.loads((d / "report.json").read_text())


def test_report_parts_and_invariants(swept):
    d, r = swept
    m = json.loads((d / "manifest.json").read_text())
    assert r["format"] == "hardwire-report/1" and r["kind"] == "chip" and r["model"] == "tiny"
    assert r["design"] == "chip"  # a name, not a path
    a = r["area"]
    assert a["memory"]["rom_bits"] == m["rom_bits"] and a["memory"]["ram_bits"] == m["ram_bits"]
    assert a["lanes"] == m["lanes"] and a["head_lanes"] == m["head_lanes"]
    assert a["yosys"] is None  # nothing synthesised: every figure is calibrated
    plan = plan_layer(split_verilog([(d / s).read_text() for s in m["sources"]]), m["top"])
    assert [row["module"] for row in a["modules"]] == [p.name for p in plan]
    assert not a["not_estimated"]
    for row in a["modules"]:
        assert row["method"].startswith("calibrated: "), row
        assert row["total"]["logic"] == row["per_instance"]["logic"] * row["instances"] > 0
    assert a["totals"]["logic"] == sum(row["total"]["logic"] for row in a["modules"])
    assert a["totals"]["logic"] == a["totals"]["logic_calibrated"]
    lanes = [row for row in a["modules"] if row["kind"] == "BlockLane"]
    assert sum(row["instances"] for row in lanes) == 2 * m["lanes"] + m["head_lanes"]

    s = r["speed"]
    c = s["cycles_per_token"]
    assert c["units_formula"] == m["cycles"]["units_sum_at_last_pos"]
    assert c["ideal"] == m["cycles"]["ideal_at_last_pos"] <= c["units_formula"]
    assert c["measured"] is None and s["position"] == m["ctx"] - 1
    f = s["fmax"]
    assert f["mhz"] > 0 and f["module"].startswith("hw_BlockLane_")
    assert f["method"].startswith("calibrated")  # no nextpnr run for this design
    assert s["tokens_per_s"]["units_formula"] == pytest.approx(
        f["mhz"] * 1e6 / c["units_formula"], rel=1e-5)

    w = r["weight_error"]
    assert w["computable"] is False and "cannot be computed" in w["note"]
    assert w["formats"] == {"layers": ["Q4_1"], "embedding": "Q8_0", "lm_head": "Q8_0"}


def test_sweep_points_front_and_plot(swept):
    d, r = swept
    sw = r["sweep"]
    pts = sw["points"]
    assert sw["design_point_matches_manifest"] is True
    assert {p["strategy"] for p in pts} == set(STRATEGIES)
    assert {p["lanes"] for p in pts} >= {8, 16, 32, 64}
    design = [p for p in pts if p["design"]]
    assert len(design) == 1 and design[0]["strategy"] == "per-layer"
    # The calibrated area of the design point is the area table's total, up to rounding.
    assert design[0]["logic"] == pytest.approx(r["area"]["totals"]["logic"], rel=1e-3)
    assert design[0]["tokens_per_s"] == r["speed"]["tokens_per_s"]["units_formula"]
    # The front: nothing beats a front point; every other point is beaten by one.
    front = set(sw["pareto"])
    assert front and front == {i for i, p in enumerate(pts) if p["pareto"]}
    assert front == set(pareto_front(pts))

    def beats(q, p):
        return (q["logic"] <= p["logic"] and q["tokens_per_s"] >= p["tokens_per_s"]
                and (q["logic"] < p["logic"] or q["tokens_per_s"] > p["tokens_per_s"]))
    for i, p in enumerate(pts):
        assert any(beats(q, p) for q in pts) == (i not in front)
    # Sharing one layer datapath saves area at the same cycles.
    by = {(p["strategy"], p["lanes"], p["head_lanes"]): p for p in pts}
    for (s, lanes, head), p in by.items():
        if s == "per-layer":
            q = by[("shared", lanes, head)]
            assert q["cycles_per_token"] == p["cycles_per_token"]
            assert q["logic"] < p["logic"]
    png = (d / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_second_run_is_byte_identical(swept, capsys):
    d, _ = swept
    before = (d / "report.json").read_bytes()
    capsys.readouterr()
    assert hardwire("report", d, "--sweep") == 0
    out = capsys.readouterr().out
    assert (d / "report.json").read_bytes() == before
    assert "Pareto front" in out and "cycles/token" in out and "calibrated" in out


def test_yosys_figures_where_the_manifest_has_them(chip, tmp_path):
    """An estimate for some modules (as 'hardwire synth' leaves it): those are 'yosys', and
    the same kind's other modules are calibrated from them (this design's own figures)."""
    d = _copy(chip, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    plan = plan_layer(split_verilog([(d / s).read_text() for s in m["sources"]]), m["top"])
    lane = next(p for p in plan if p.role == "lane")
    norm = next(p for p in plan if p.name.startswith("hw_RmsNormUnit_"))
    fig = {"lut4_equiv": 1000, "FF": 100, "BRAM": 0, "DSP": 0}
    m["yosys"] = {"ecp5": {"by_module": {
        lane.name: {k: v * lane.instances for k, v in fig.items()},
        norm.name: {k: 16 * v for k, v in fig.items()},
        "chip_argmax": None}, "complete": False, "missing": ["chip_argmax"],
        "yosys": "Yosys 0.70 (test)"}}
    (d / "manifest.json").write_text(json.dumps(m))
    r, table = make_report(d, log=None)
    rows = {row["module"]: row for row in r["area"]["modules"]}
    assert rows[lane.name]["method"] == "yosys"
    assert rows[lane.name]["per_instance"]["logic"] == 1000
    assert rows[norm.name]["method"] == "yosys" and rows[norm.name]["total"]["logic"] == 16000
    # The other modules of these kinds scale from them: the built-in model times a factor.
    cal = r["area"]["calibration"]
    assert cal["RmsNormUnit"]["source"] == "this design (yosys)"
    assert cal["BfpUnit"]["source"].startswith("built-in")
    assert cal["BfpUnit"]["logic_factor"] == 1
    for row in rows.values():
        if row["kind"] == "RmsNormUnit" and row["method"] != "yosys":
            assert row["method"].startswith(f"calibrated: {cal['RmsNormUnit']['logic_factor']:g}")
            assert row["per_instance"]["logic"] == 16000  # same beat as the synthesised one
        if row["kind"] == "BlockLane" and row["method"] != "yosys":
            same = row["drivers"] == rows[lane.name]["drivers"]
            assert (row["per_instance"]["logic"] == 1000) == same
    assert rows["chip_argmax"]["method"].startswith("calibrated")
    t = r["area"]["totals"]
    assert t["logic_yosys"] == 1000 * lane.instances + 16000
    assert t["logic"] == t["logic_yosys"] + t["logic_calibrated"]
    assert "missing chip_argmax" in table


def test_measured_cycles_are_reported(chip, tmp_path):
    d = _copy(chip, tmp_path)
    (d / "cycles_tokens.json").write_text(json.dumps({"cycles": [1300, 1320, 1340, 1360],
                                                      "wall_seconds": 12.5}))
    r, table = make_report(d, log=None)
    meas = r["speed"]["cycles_per_token"]["measured"]
    assert meas["last"] == 1360 and meas["first"] == 1300 and meas["mean"] == 1330
    assert "wall" not in json.dumps(r)
    mhz = r["speed"]["fmax"]["mhz"]
    assert r["speed"]["tokens_per_s"]["measured_last"] == pytest.approx(mhz * 1e6 / 1360,
                                                                        rel=1e-5)
    assert "measured 1,360" in table


def _one_line_error(capsys, *args, match):
    capsys.readouterr()
    assert hardwire("report", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardwire: error: ") and err.count("\n") == 1, err
    assert match in err, err


def test_bad_input(chip, tmp_path, capsys):
    _one_line_error(capsys, tmp_path / "nothing", match="is not a directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, tmp_path / "empty", match="no manifest.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    _one_line_error(capsys, bad, match="cannot read")
    (bad / "manifest.json").write_text(json.dumps({"top": "m", "sources": []}))
    _one_line_error(capsys, bad, match="holds a matvec design")
    d = _copy(chip, tmp_path)
    _one_line_error(capsys, d, "--fmax-module", "nosuch", match="not a module of the design")
    _one_line_error(capsys, d, "--target", "vhdl", match="invalid choice")
    _one_line_error(capsys, d, "--sweep", "--lanes", "0", match="expected at least 1")
    _one_line_error(capsys, d, "--model", tmp_path / "x.gguf",
                    match="not 'tiny', 'tiny-moe', 'smollm2'")
    (d / "hardwire_chip.v").unlink()
    _one_line_error(capsys, d, match="is missing")
    assert not (d / "report.json").exists()


@pytest.mark.slow
def test_fmax_of_a_lane_with_nextpnr(chip, tmp_path):
    """--synth places one lane alone (about a minute); yosys per module is not rerun when the
    manifest has an estimate (an empty one here, so nothing else is synthesised)."""
    d = _copy(chip, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["yosys"] = {"ecp5": {"by_module": {}, "complete": False, "missing": [], "yosys": None}}
    (d / "manifest.json").write_text(json.dumps(m))
    r, _ = make_report(d, synth=True, log=None)
    f = r["speed"]["fmax"]
    assert f["method"] == "nextpnr" and f["mhz"] > 10 and f["role"] == "lane"
    assert "ECP5" in f["device"]
    again, _ = make_report(d, log=None)  # cached: the same figure without --synth
    assert again["speed"]["fmax"] == f


def test_weight_error_of_a_float_checkpoint(tmp_path):
    """A float checkpoint: every --quant format's error against its float weights (layer 0)."""
    from gen.models import QUANTS, load_model
    from gen.report.weights import weight_error

    from .test_quant_formats import write_checkpoint

    path = write_checkpoint(tmp_path / "ck")
    model = load_model(str(path), "int4g")
    w = weight_error({"kind": "chip", "model": model.name}, model, str(path))
    assert w["computable"] is True and w["layers_compared"] == [0]
    assert list(w["quants"]) == list(QUANTS)
    e = {q: v["relative_l2"] for q, v in w["quants"].items()}
    assert 0 < e["int8g"] < e["int4g"] < e["int2g"]
    assert len(w["formats"]["layers"]) == 1 and w["formats"]["embedding"]


def test_layer_design(tmp_path, capsys):
    """A layer directory: area, cycles and the manifest's weight error; no sweep."""
    from gen.layer import generate_layer

    d = tmp_path / "layer"
    generate_layer("tiny", 1, d, ctx=4, log=None)
    m = json.loads((d / "manifest.json").read_text())
    r, table = make_report(d, log=None)
    assert r["kind"] == "layer" and r["sweep"] is None
    kinds = {row["kind"] for row in r["area"]["modules"]}
    assert {"BlockLane", "LaneArray", "AttentionUnit", "DecoderLayer"} <= kinds
    assert all(row["method"].startswith("calibrated") for row in r["area"]["modules"])
    c = r["speed"]["cycles_per_token"]
    assert c["units_formula"] == sum(m["cycles"]["units_at_last_pos"].values())
    assert r["speed"]["fmax"]["module"] == "layer_lane"
    assert r["weight_error"]["formats"]["layers"] == ["Q4_1"]
    assert "built in (" in table and "layer_lane itself is not placed" in table
    _one_line_error(capsys, d, "--sweep", match="--sweep needs a chip design")


def test_parallel_lanes_are_estimated(tmp_path):
    """A chip of parallel lanes gets their built-in area (fitted to the same tiny chip's
    lanes: yosys gave 19,955 LUT4-eq for the Q8_0 LM-head lane and 11,561 for a Q4_1 layer
    lane), within 5 % of those figures; its Fmax is the built-in parallel lane's."""
    from gen.chip import generate_chip

    d = tmp_path / "chip"
    generate_chip("tiny", d, ctx=4, lane="parallel", log=None)
    r, table = make_report(d, log=None)
    lanes = [row for row in r["area"]["modules"] if row["kind"] == "ParallelLane"]
    # the two layers' lanes are one module (their lane arrays share one shape), the head's
    assert len(lanes) == 2 and all(row["method"].startswith("calibrated") for row in lanes)
    assert sorted(row["instances"] for row in lanes) == [32, 64]
    per = sorted(row["per_instance"]["logic"] for row in lanes)
    assert per[0] == pytest.approx(11561, rel=0.05) and \
        per[1] == pytest.approx(19955, rel=0.05), per
    assert r["speed"]["fmax"]["mhz"] == builtin_fmax("ParallelLane", 0)
    assert "not estimated" not in table and "tiny chip, --lane parallel" in table


def test_builtin_fmax_covers_every_lane():
    """Every lane kind at every pipeline depth has its measured built-in Fmax."""
    from hdl import MAX_LANE_STAGES

    for cls in ("BlockLane", "ParallelLane"):
        mhz = [builtin_fmax(cls, s) for s in range(MAX_LANE_STAGES + 1)]
        assert all(f is not None and f > 10 for f in mhz), (cls, mhz)
    assert builtin_fmax("BlockLane", MAX_LANE_STAGES + 1) is None


@pytest.mark.parametrize("lane", ["serial", "parallel"])
def test_moe_report(tmp_path, capsys, lane):
    """A mixture of experts' report: its ROM by part and read share (the manifest's), the
    same weights with per-expert lanes and as a dense model of equal ROM, whose shape model
    gives the built design's own cycles; the public gpt-oss shapes beside HNLPU; a plot;
    the same bytes on a second run."""
    d = tmp_path / "moe"
    generate_chip("tiny-moe", d, ctx=8, lane=lane, log=None)
    assert hardwire("report", d) == 0
    text = capsys.readouterr().out
    assert "mixture of experts: 8 experts, top-2" in text and "HNLPU" in text
    r = json.loads((d / "report.json").read_text())
    x = r["moe"]
    built, *others = x["points"]
    assert built["variant"] == "shared" and built["matches_design"] is True
    assert built["rom_bits"] == r["area"]["memory"]["rom_bits"]
    per = [p for p in others if p["variant"] == "per-expert"]
    dense = next(p for p in others if p["variant"] == "dense")
    assert per and all(p["lanes"] > built["lanes"] for p in per)
    assert all(p["read_share"] == built["read_share"] < dense["read_share"] for p in per)
    # the experts read one after the other in the built design, at once with G = lanes
    same = next((p for p in per if p["group_lanes"] == built["lanes_per_layer"]), None)
    if same is not None:
        assert same["cycles_per_token"] < built["cycles_per_token"]
    assert dense["cycles_per_token"] > built["cycles_per_token"]
    ref = x["reference"]["gpt-oss-120b"]
    assert (ref["layers"], ref["experts"], ref["top_k"]) == (36, 128, 4)
    shared = [p for p in ref["points"] if p["variant"] == "shared"]
    assert shared[0]["read_share"] < 0.05 < 0.95 < next(
        p for p in ref["points"] if p["variant"] == "dense")["read_share"]
    # ~117 B weights, MXFP4 experts at 5 code bits and an 8-bit scale per 32
    assert 5.0e11 < shared[0]["rom_bits"] < 6.5e11
    assert (d / "moe.png").stat().st_size > 10000
    first = (d / "report.json").read_bytes()
    assert hardwire("report", d) == 0
    capsys.readouterr()
    assert (d / "report.json").read_bytes() == first
    assert hardwire("report", d, "--sweep") == 2
    assert "--sweep takes a dense chip" in capsys.readouterr().err
