"""Ctrl-C (a real SIGINT to the process group, as a terminal sends it) in the middle of
``layer``, ``sim``, ``synth`` and ``generate --backend rtl``: one line, no partial output and
no process left; and the ``build/chip/`` cache after an interrupted build and under two runs at
once (``tests/test_cli.py`` has ``chip``)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.tools import group_left, need

ROOT = Path(__file__).resolve().parent.parent


def _start(args, cwd) -> subprocess.Popen:
    # pytest-xdist's workers ignore SIGINT, and a Python started with SIGINT ignored never
    # raises KeyboardInterrupt: restore the default in the child
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gen.cli", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(ready, p, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert p.poll() is None, f"the run ended before {what}: {p.communicate()[1][-500:]}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def _interrupt(p) -> str:
    """SIGINT to ``p``'s group; its stderr, after checking the run said so in one line and
    left no process of its group behind."""
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "hardwire: interrupted", \
        err[-2000:]
    left = group_left(p.pid)
    assert not left, left
    return err


def test_ctrl_c_during_layer(tmp_path):
    p = _start(["layer", "--model", "tiny", "--layer", "0", "--out", tmp_path / "l"], tmp_path)
    time.sleep(3)  # into the conversion (about 6 s)
    assert p.poll() is None, "the layer was done before the interrupt"
    _interrupt(p)
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_sim_and_synth(generate, tmp_path):
    """A matvec design: ``sim`` interrupted mid-simulation, then run again, passes;
    ``synth`` interrupted inside yosys writes no report (``synth_ecp5/`` keeps its logs)."""
    need("icarus")
    d, _ = generate(rows=32, cols=32, wbits=4, strategy="folded", lanes=1)
    p = _start(["sim", d, "--simulator", "icarus", "--vectors", 5000], tmp_path)
    _wait_for(lambda: (d / "sim_build" / "icarus" / "sim.vvp").exists(), p, "a simulation")
    time.sleep(1)
    _interrupt(p)
    p = _start(["sim", d, "--simulator", "icarus", "--vectors", 4], tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-1000:]
    before = sorted(os.listdir(d))
    p = _start(["synth", d, "--target", "ecp5"], tmp_path)
    _wait_for(lambda: any(d.rglob("*.ys")) or any(d.rglob("yosys*.log")), p, "yosys")
    time.sleep(1)
    _interrupt(p)
    # only the work files' directory is new (logs; no later run trusts them), and no report
    assert set(os.listdir(d)) - set(before) <= {"synth_ecp5"}
    assert not (d / "report.json").exists() and not (d / "synth_ecp5" / "report.json").exists()


def _generate(cwd, tokens=3):
    return _start(["generate", "--model", "tiny", "--prompt-ids", "1,2", "--tokens", tokens,
                   "--backend", "rtl", "--json"], cwd)


def test_interrupted_build_then_two_runs_at_once(tmp_path, capsys):
    """Ctrl-C in the Verilator build of ``build/chip/<digest>`` leaves no stamp, so the next
    run rebuilds; two runs started together then share the cache: one builds, the other
    waits for it, and both give golden's tokens. A third reuses the build."""
    from gen.cli import main

    need("verilator")
    p = _generate(tmp_path)
    chip = tmp_path / "build" / "chip"
    _wait_for(lambda: any(chip.glob("*/sim_build/fast/*.cpp")), p, "a Verilator build")
    time.sleep(2)  # into the C++ compile
    _interrupt(p)
    (d,) = [e for e in chip.iterdir() if e.is_dir()]
    assert json.loads((d / "manifest.json").read_text())["lane"] == "parallel"  # the default
    fast = d / "sim_build" / "fast"
    assert not (fast / "built.json").exists()
    assert not [e for e in chip.iterdir() if e.name.startswith(".")]  # no half-written design

    runs = [_generate(tmp_path), _generate(tmp_path)]
    outs = [r.communicate(timeout=1200) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-1000:] for o in outs]
    waited = ["waiting for it" in err for _, err in outs]
    assert sorted(waited) == [False, True], [err[-600:] for _, err in outs]
    assert main(["generate", "--model", "tiny", "--prompt-ids", "1,2", "--tokens", "3",
                 "--backend", "golden", "--json"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert [json.loads(out) for out, _ in outs] == [golden, golden]
    built = (fast / "Vchip").stat().st_mtime
    p = _generate(tmp_path, tokens=2)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0 and "waiting" not in err, err[-600:]
    assert (fast / "Vchip").stat().st_mtime == built
    assert json.loads(out)["ids"] == golden["ids"][:2]

