"""`verilator --lint-only -Wall` passes on every generated top with exactly the waivers the
manifest lists (each with its reason): the matvec strategies, a decoder layer and the
mixture-of-experts chip."""

import json
import os
import subprocess

import pytest

from sim.runner import simulator_available, verilator_env

from .tools import chip_design


def _lint(design, m) -> None:
    assert all(w["reason"] for w in m["lint_waivers"])
    waive = [f"-Wno-{w['warning']}" for w in m["lint_waivers"]]
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *waive, "--top-module", m["top"],
                        *m["sources"]], cwd=design, capture_output=True, text=True,
                       env={**os.environ, **verilator_env()})
    assert r.returncode == 0, r.stderr[-3000:]


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
    _lint(design, m)


@pytest.mark.parametrize("what", ["tiny layer", "tiny-moe chip"])
def test_lint_wall_model_designs(tmp_path, tmp_path_factory, what):
    why = simulator_available("verilator")
    if why:
        pytest.skip(why)
    if what == "tiny layer":
        from gen.layer import generate_layer

        design = tmp_path / "layer"
        generate_layer("tiny", 1, design, ctx=4, log=None)
    else:  # pipelined lanes too
        design = chip_design(tmp_path_factory, "tiny-moe", "moe", ctx=4, lane_stages=5)
    _lint(design, json.loads((design / "manifest.json").read_text()))
