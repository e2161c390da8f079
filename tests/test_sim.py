"""Every strategy, proven bit-exact against golden with cocotb on Icarus and Verilator:
random vectors, worst-case vectors, and valid/ready stalls on both sides (sim/tb_matvec.py)."""

import pytest

from sim.runner import run_matvec, simulator_available

CASES = {
    # name: (simulators, generator options)
    "serial-int4-d1": (("icarus", "verilator"),
                       dict(rows=6, cols=9, wbits=4, strategy="serial", digit=1)),
    "serial-ternary-a5-d2": (("icarus",), dict(rows=5, cols=12, wbits=2, ternary=True,
                                               abits=5, strategy="serial", digit=2)),
    "serial-int8-a3-d4-requant": (("icarus",), dict(rows=4, cols=7, wbits=8, abits=3,
                                                    strategy="serial", digit=4, requant=True,
                                                    rounding="half_even")),
    "serial-int3-a8-d4": (("icarus",), dict(rows=3, cols=5, wbits=3, strategy="serial",
                                            digit=4, seed=5)),
    "folded-int4-ragged": (("icarus", "verilator"),
                           dict(rows=7, cols=11, wbits=4, strategy="folded", lanes=3, word=5)),
    "folded-int3-wide-word": (("icarus",), dict(rows=4, cols=9, wbits=3, strategy="folded",
                                                lanes=4, word=64, abits=6)),
    "folded-int8-requant-files": (("icarus", "verilator"),
                                  dict(rows=6, cols=8, wbits=8, strategy="folded", lanes=2,
                                       word=8, requant=True, rounding="trunc_zero",
                                       rom_images="files")),
    "folded-int4-requant-half-away": (("icarus",), dict(rows=5, cols=7, wbits=4,
                                                        strategy="folded", lanes=5, word=7,
                                                        requant=True, requant_scale=0.05)),
    "folded-ternary-1lane": (("icarus",), dict(rows=3, cols=6, wbits=2, ternary=True,
                                               strategy="folded", lanes=1, word=3)),
    "parallel-int4": (("icarus", "verilator"),
                      dict(rows=8, cols=8, wbits=4, strategy="parallel")),
    "parallel-int8-a2": (("icarus",), dict(rows=5, cols=6, wbits=8, abits=2,
                                           strategy="parallel", stage_levels=1)),
    "parallel-ternary-requant": (("icarus",), dict(rows=6, cols=10, wbits=2, ternary=True,
                                                   strategy="parallel", requant=True,
                                                   rounding="half_up", stage_levels=0)),
    # Many rows sharing +/- pairs at equal shifts: exercises negated shared subexpressions.
    "parallel-ternary-wide": (("icarus",), dict(rows=12, cols=24, wbits=2, ternary=True,
                                                strategy="parallel", seed=9)),
    "parallel-int4-shared-64": (("icarus", "verilator"), dict(rows=64, cols=64, wbits=4,
                                                     strategy="parallel")),
    "parallel-int3-requant-half-down": (("icarus",), dict(rows=4, cols=9, wbits=3,
                                                          strategy="parallel", requant=True,
                                                          requant_scale=0.125,
                                                          rounding="half_down")),
    # A shift far wider than the product: the bias and the shifted value are all sign bits.
    "parallel-int2-requant-tiny-scale": (("icarus",), dict(rows=3, cols=3, wbits=2,
                                                           strategy="parallel", requant=True,
                                                           requant_scale=1e-9,
                                                           rounding="half_even")),
    "parallel-int2-requant-floor": (("icarus",), dict(rows=4, cols=5, wbits=2,
                                                      strategy="parallel", requant=True,
                                                      requant_scale=0.37, rounding="floor")),
}

#: Cases whose Verilator build takes minutes (a 64x64 parallel matvec: 3 min cold); Icarus
#: runs the same case in seconds in ``make test``.
SLOW = {("parallel-int4-shared-64", "verilator")}

PARAMS = [pytest.param(name, sim, id=f"{name}-{sim}",
                       marks=[pytest.mark.slow] if (name, sim) in SLOW else [])
          for name, (sims, _) in CASES.items() for sim in sims]


@pytest.mark.parametrize("name, simulator", PARAMS)
def test_bit_exact(generate, tmp_path, name, simulator):
    why = simulator_available(simulator)
    if why:
        pytest.skip(why)
    design, _ = generate(**CASES[name][1])
    res = run_matvec(design, simulator=simulator, vectors=40, seed=3,
                     build_dir=tmp_path / "sim")
    assert res.tests == 3, res.summary()
    assert res.ok, res.summary()


@pytest.mark.slow
def test_folded_layer_sized_verilator(generate, tmp_path):
    """A real-layer-sized fold, Verilator only: 128x256 int4, 16 lanes, ROM image files."""
    why = simulator_available("verilator")
    if why:
        pytest.skip(why)
    design, m = generate(rows=128, cols=256, wbits=4, strategy="folded", lanes=16, word=32,
                         rom_images="files")
    res = run_matvec(design, simulator="verilator", vectors=20, seed=4,
                     build_dir=tmp_path / "sim")
    assert res.ok, res.summary()
