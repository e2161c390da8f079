"""`verilator --lint-only -Wall` passes on every generated top with exactly the waivers the
manifest lists (each with its reason)."""

import subprocess

import pytest

from sim.runner import simulator_available, verilator_env


@pytest.mark.parametrize("opts", [
    dict(strategy="serial", digit=2),
    dict(strategy="folded", lanes=3, word=5),
    dict(strategy="folded", lanes=2, word=8, rom_images="files", requant=True),
    dict(strategy="parallel", requant=True),
], ids=["serial", "folded", "folded-files-requant", "parallel-requant"])
def test_lint_wall(generate, opts):
    why = simulator_available("verilator")
    if why:
        pytest.skip(why)
    design, m = generate(rows=7, cols=10, wbits=4, **opts)
    assert all(w["reason"] for w in m["lint_waivers"])
    waive = [f"-Wno-{w['warning']}" for w in m["lint_waivers"]]
    env = verilator_env()
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *waive, "--top-module", m["top"],
                        *m["sources"]], cwd=design, capture_output=True, text=True,
                       env={**__import__("os").environ, **env})
    assert r.returncode == 0, r.stderr[-3000:]
