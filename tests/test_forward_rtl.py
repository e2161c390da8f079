"""``hardwire forward --backend rtl``: the generated layer in Verilator equals the golden."""

import numpy as np
import pytest

from gen.cli import main
from gen.models import load_model
from sim.runner import simulator_available


@pytest.mark.slow
def test_forward_rtl_equals_golden(tmp_path, monkeypatch):
    why = simulator_available("verilator")
    if why:
        pytest.skip(why)
    monkeypatch.chdir(tmp_path)  # the RTL backend keeps its designs in ./build/forward
    m = load_model("tiny")
    x = m.embedding().dequantize()[[3, 141, 59, 26]]
    np.save(tmp_path / "x.npy", x)
    for backend in ("rtl", "golden"):
        assert main(["forward", "--model", "tiny", "--layers", "1", "--input",
                     str(tmp_path / "x.npy"), "--backend", backend, "--ctx", "8",
                     "--out", str(tmp_path / f"{backend}.npy")]) == 0
    rtl, gold = np.load(tmp_path / "rtl.npy"), np.load(tmp_path / "golden.npy")
    np.testing.assert_array_equal(rtl, gold)
    assert len(list((tmp_path / "build" / "forward").iterdir())) == 1
