"""Command line: bad input gets one line and exit 2 with nothing left behind; output is
deterministic."""

import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import hardwire
from .tools import group_left

BASE = ["matvec", "--rows", "4", "--cols", "5", "--wbits", "4"]


@pytest.mark.parametrize("args, msg", [
    (["matvec", "--rows", "4", "--cols", "4", "--wbits", "1"], "--wbits must be"),
    (["matvec", "--rows", "4", "--cols", "4", "--wbits", "9"], "--wbits must be"),
    (["matvec", "--rows", "0", "--cols", "4", "--wbits", "4"], "--rows must be"),
    (BASE + ["--strategy", "systolic"], "unknown strategy 'systolic'"),
    (BASE + ["--lanes", "0"], "--lanes must be at least 1"),
    (BASE + ["--abits", "12"], "--abits must be"),
    (BASE + ["--digit", "3", "--strategy", "serial"], "--digit must be"),
    (BASE + ["--ternary"], "ternary"),
    (BASE + ["--rounding", "nearest", "--requant"], "unknown rounding"),
    (["matvec", "--wbits", "4"], "--rows and --cols"),
    (BASE + ["--seed", "-1"], "non-negative integer"),
    (BASE + ["--rows", "x"], "non-negative integer"),
    (["chip", "--model", "tiny", "--lane-stages", "7"], "--lane-stages must be 0..6, not 7"),
    (["matvec", "--rows", "65536", "--cols", "65536", "--wbits", "8"],
     "a 65536x65536 matvec needs about 128.0 GiB, more than this machine can hold"),
    # options the design would ignore
    (["layer", "--model", "tiny", "--layer", "0", "--quant", "q9_9"], "unknown --quant 'q9_9'"),
    (BASE + ["--requant-scale", "0.5"], "--requant-scale applies with --requant only"),
    (BASE + ["--rounding", "floor"], "--rounding applies with --requant only"),
    (BASE + ["--digit", "4"], "--digit applies to --strategy serial only, not folded"),
    (BASE + ["--strategy", "serial", "--word", "4"], "--word applies to --strategy folded"),
    (BASE + ["--stage-levels", "1"], "--stage-levels applies to --strategy parallel"),
    (["layer", "--model", "tiny", "--lane-stages", "-1"], "non-negative integer"),
])
def test_bad_config(tmp_path, capsys, args, msg):
    out = tmp_path / "out"
    assert hardwire(*args, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hardwire: error: ") and msg in err, err
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def _weights_file(tmp_path, arr):
    p = tmp_path / "w.npy"
    np.save(p, arr)
    return p


@pytest.mark.parametrize("arr, msg", [
    (np.full((4, 5), 8, np.int64), "outside the int4 range"),
    (np.full((4, 5), -9, np.int32), "outside the int4 range"),
    (np.full((4, 5), 2**63, np.uint64), "= 9223372036854775808 is outside the int4 range"),
    (np.full((4, 5), np.nan), "contains NaN"),
    (np.zeros((4, 5), np.float32), "floating point"),
    (np.zeros((4, 5, 2), np.int8), "2-D"),
    (np.array([["a"]]), "not an integer type"),
])
def test_bad_weights_file(tmp_path, capsys, arr, msg):
    w = _weights_file(tmp_path, arr)
    out = tmp_path / "out"
    assert hardwire("matvec", "--wbits", "4", "--weights", w, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err, err
    assert not out.exists()


def test_weights_shape_mismatch(tmp_path, capsys):
    w = _weights_file(tmp_path, np.zeros((4, 5), np.int8))
    assert hardwire("matvec", "--wbits", "4", "--rows", "5", "--weights", w, "--out",
                    tmp_path / "o") == 2
    assert "shape 4x5" in capsys.readouterr().err


def test_weights_not_npy(tmp_path, capsys):
    p = tmp_path / "w.npy"
    p.write_bytes(b"not numpy at all")
    assert hardwire("matvec", "--wbits", "4", "--weights", p, "--out", tmp_path / "o") == 2
    assert "not a readable .npy" in capsys.readouterr().err
    assert hardwire("matvec", "--wbits", "4", "--weights", tmp_path / "none.npy", "--out",
                    tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err


def test_unwritable_output(tmp_path, capsys):
    # A path below a regular file cannot be created, even by root (CI runs as root, so a
    # read-only directory would not do).
    f = tmp_path / "file"
    f.write_text("")
    assert hardwire(*BASE, "--out", f / "x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err


def test_weights_file_roundtrip(tmp_path):
    w = np.random.default_rng(0).integers(-4, 4, size=(3, 7)).astype(np.int8)
    p = _weights_file(tmp_path, w)
    assert hardwire("matvec", "--wbits", "3", "--weights", p, "--out", tmp_path / "o") == 0
    assert (np.load(tmp_path / "o" / "weights.npy") == w).all()


@pytest.mark.parametrize("strategy", ["serial", "folded", "parallel"])
def test_deterministic(tmp_path, strategy):
    """The same command twice gives byte-identical files (in different directories too)."""
    args = BASE + ["--strategy", strategy, "--requant", "--rom-images", "files"]
    assert hardwire(*args, "--out", tmp_path / "a") == 0
    assert hardwire(*args, "--out", tmp_path / "b") == 0
    assert hardwire(*args, "--out", tmp_path / "a") == 0  # replacing an existing directory
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_help_and_console_script():
    r = subprocess.run([sys.executable, "-m", "gen.cli", "matvec", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--strategy" in r.stdout and "mask ROM" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gen.cli", "matvec", "--bogus"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_out_never_loses_data(tmp_path, capsys, monkeypatch):
    """--out replaces only a design directory hardwire wrote (or an empty one): never a
    directory of other files, the working directory or one that holds it; a path under a
    file is named as such. Nothing is left beside it."""
    u = tmp_path / "u"
    (u / "sub").mkdir(parents=True)
    (u / "p.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    cases = [("u", "--out u exists and is not a hardwire design (no manifest.json)"),
             (".", "is the working directory"), ("", "is the working directory"),
             (str(tmp_path.parent), "is the working directory or holds it"),
             ("u/p.txt/sub", "u/p.txt is not a directory"),
             ("u/p.txt", "exists and is not a directory")]
    for out, msg in cases:
        assert hardwire(*BASE, "--out", out) == 2, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, (out, err)
    assert sorted(p.name for p in u.iterdir()) == ["p.txt", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"]
    # a design directory is replaced; so is an empty one
    for d in ("d", "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert hardwire(*BASE, "--out", d) == 0
        assert hardwire(*BASE, "--out", d) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "empty", "u"]


def test_prompt_not_utf8(capsys):
    """Bytes that are not UTF-8 (as a shell passes them: surrogate escapes) get one line."""
    bad = b"\xff\xfe".decode("utf-8", "surrogateescape")
    assert hardwire("generate", "--model", "tiny", "--prompt", bad, "--tokens", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prompt is not valid UTF-8" in err, err


def _damage(d, how):
    """A design directory ``d`` (a folded matvec with ROM image files) damaged one way."""
    import json

    mpath = d / "manifest.json"
    m = json.loads(mpath.read_text())
    if how == "manifest []":
        mpath.write_text("[]")
    elif how == "no top":
        m.pop("top")
        mpath.write_text(json.dumps(m))
    elif how == "unknown format":
        mpath.write_text(json.dumps(m | {"format": "foo/9"}))
    elif how == "kind of another format":
        mpath.write_text(json.dumps(m | {"kind": "chip"}))
    elif how == "missing source":
        (d / m["sources"][0]).unlink()
    elif how == "missing ROM image":
        (d / m["rom_images"][0]).unlink()
    elif how == "corrupt ROM image":
        (d / m["rom_images"][-1]).write_text("0f\nzz\n")


@pytest.mark.parametrize("how, msg", [
    ("manifest []", "not a JSON object"),
    ("no top", "lacks key 'top'"),
    ("unknown format", "format 'foo/9' is not a design this version reads"),
    ("kind of another format", "kind 'chip' does not match format 'hardwire-matvec/1'"),
    ("missing source", "named in manifest.json is missing"),
    ("missing ROM image", "ROM image rom_lane000.hex named in manifest.json is missing"),
    ("corrupt ROM image", "not a ROM image (one hexadecimal word per line)"),
])
def test_sim_on_a_damaged_design(generate, capsys, how, msg):
    """'hardwire sim' on a damaged design directory: one line naming the damage, exit 2."""
    d, _ = generate(rows=4, cols=5, wbits=4, rom_images="files")
    _damage(d, how)
    capsys.readouterr()
    assert hardwire("sim", d, "--simulator", "icarus") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hardwire: error: ") and msg in err, err


def test_ctrl_c_during_chip_conversion(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the chip's
    modules convert in worker processes: one line, no partial output directory, no worker
    left."""
    import signal
    import time

    out = tmp_path / "chip"
    # SIGINT as a shell leaves it to a foreground job: pytest-xdist's workers ignore it, and
    # a Python started with SIGINT ignored never raises KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "gen.cli", "chip", "--model", "tiny", "--out",
                          str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)  # past loading the model, into the conversion (about 10 s for tiny)
    assert p.poll() is None, "the chip was done before the interrupt"
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert err.strip().splitlines() == ["hardwire: interrupted"], err
    assert not out.exists() and os.listdir(tmp_path) == []
    # the workers' own tools (Amaranth runs yosys) end with them: wait for the last
    left = group_left(p.pid, tries=50)
    assert not left, left


def test_an_error_naming_damaged_bytes_stays_one_line():
    """A name read from a damaged file may hold control characters; the error line shows
    them escaped."""
    from gen.cli import one_line

    assert one_line("tensor \x0clk.1\n\u2028x") == "tensor \\x0clk.1\\n\\u2028x"
    assert len(one_line("a\rb\x1bc").splitlines()) == 1
