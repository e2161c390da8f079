import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gen import set_tool_environment
from gen.cli import main

set_tool_environment()


def hardwire(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def generate(tmp_path):
    """Generate a design into tmp_path and return its directory and manifest."""
    def _generate(name="d", **opts):
        out = tmp_path / name
        args = ["matvec"]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            elif v is not False and v is not None:
                args += [flag, v]
        assert hardwire(*args, "--out", out) == 0
        return out, json.loads((out / "manifest.json").read_text())
    return _generate


def sigterm_leaves_no_tool(args: list[str], log: Path, workdir: Path) -> None:
    """Start ``python -m gen.cli ARGS``, wait until its first tool writes ``log``, send it
    SIGTERM, and check that it fails and that no process running in ``workdir`` is left."""
    def ours():
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True,
                            text=True).stdout
        return [line for line in ps.splitlines() if str(workdir) in line]

    p = subprocess.Popen([sys.executable, "-m", "gen.cli", *map(str, args)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (log.exists() and log.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.2)
    assert p.poll() is None, "synthesis finished before it could be interrupted"
    assert ours(), "no yosys process of this run was found to interrupt"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) != 0
    time.sleep(0.5)
    assert ours() == [], ours()


def pytest_terminal_summary(terminalreporter):
    """The random-configuration sweep's count (``tests/test_sweep.py``), also under xdist."""
    runs = [r for reports in terminalreporter.stats.values() for r in reports
            if "test_random_configuration" in getattr(r, "nodeid", "")
            and getattr(r, "when", None) == "call"]
    if runs:
        n = {k: sum(r.outcome == k for r in runs) for k in ("passed", "failed", "skipped")}
        terminalreporter.write_line(
            f"random configurations: {len(runs)} run, {n['passed']} bit-exact or refused as "
            f"they should be, {n['failed']} failed, {n['skipped']} skipped "
            "(HARDWIRE_FUZZ_SEED=N reruns seed N)")
