"""Random configurations, each generated, simulated and compared with golden exactly: matvec
engines, lane arrays in every weight format, decoder layers of random Llama checkpoints and
mixture-of-experts layers of random gpt-oss shapes, on Icarus or Verilator (``tests/sweep.py``
draws them). A configuration drawn with an option out of range must be refused with the
one-line error, leaving no output.

``make test`` runs seeds 0-19, ``make test-full`` 0-219; ``HARDWIRE_FUZZ_SEED=N`` runs seed N
alone (the test id and every failure name the seed). The run's count is printed at the end.
"""

import os

import numpy as np
import pytest

from tests.sweep import FAST, draw, kind_of, write_llama_checkpoint
from tests.tools import collect_refused, need

#: ``make test`` runs seeds below FAST; ``make test-full`` all below FULL.
FULL = 220


def _params():
    if os.environ.get("HARDWIRE_FUZZ_SEED"):
        seeds = [int(os.environ["HARDWIRE_FUZZ_SEED"])]
        return [pytest.param(s, id=f"seed{s}-{kind_of(s)}") for s in seeds]
    return [pytest.param(s, id=f"seed{s}-{kind_of(s)}",
                         marks=[pytest.mark.slow] if s >= FAST else [])
            for s in range(FULL)]


def _cli(capsys, *args) -> tuple[int, str]:
    from gen.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _flags(options: dict, skip=()) -> list:
    out = []
    for k, v in options.items():
        if k in skip or v is False or v is None:
            continue
        out += [f"--{k.replace('_', '-')}"] + ([] if v is True else [v])
    return out


def _refused(code: int, err: str, why: str, out, seed: int) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hardwire: error: "), \
        f"seed {seed}: wanted one error line naming {why!r}, got exit {code}: {err!r}"
    assert why in lines[0], f"seed {seed}: the error does not name {why!r}: {lines[0]}"
    assert not out.exists(), f"seed {seed}: a refused configuration left {out}"


def _simulated(capsys, out, simulator: str, seed: int) -> None:
    need(simulator)
    code, err = _cli(capsys, "sim", out, "--simulator", simulator, "--vectors", 4,
                     "--seed", seed)
    assert code == 0, f"seed {seed} (HARDWIRE_FUZZ_SEED={seed}): {simulator} run " \
                      f"differs from golden or failed: {err.strip()[-400:]}"


@pytest.mark.parametrize("seed", _params())
def test_random_configuration(seed, tmp_path, capsys):
    kind, o, why = draw(seed)
    print(f"HARDWIRE_FUZZ_SEED={seed}: {kind} {o} refusal={why}")
    RUN[kind](seed, o, why, tmp_path, capsys)


def _matvec(seed, o, why, tmp_path, capsys):
    out = tmp_path / "mv"
    code, err = _cli(capsys, "matvec", *_flags(o, skip=("simulator",)), "--out", out)
    if why:
        return _refused(code, err, why, out, seed)
    assert code == 0, f"seed {seed}: a valid configuration was refused: {err.strip()}"
    _simulated(capsys, out, o["simulator"], seed)


def _layer(seed, o, why, tmp_path, capsys):
    ckpt = write_llama_checkpoint(tmp_path / "ckpt", o["shape"], o["seed"])
    out = tmp_path / "layer"
    code, err = _cli(capsys, "layer", "--model", ckpt, "--layer", 0,
                     *_flags(o, skip=("shape", "simulator")), "--out", out)
    collect_refused()
    if why is None and code == 2 and FASTER in err:
        why = FASTER  # the lanes' documented limit, which depends on the format's code bits
    if why:
        return _refused(code, err, why, out, seed)
    assert code == 0, f"seed {seed}: a valid configuration was refused: {err.strip()}"
    _simulated(capsys, out, o["simulator"], seed)


def _attempt(build, error: type) -> tuple:
    """``(build(), None)``, or ``(None, message)`` when it raises ``error``; the components a
    refused build had begun are collected (outside the ``except`` block, whose traceback
    holds their frames)."""
    try:
        return build(), None
    except error as e:
        message = str(e)
    collect_refused()
    return None, message


#: The refusal of lanes that would finish rows faster than beats can leave.
FASTER = "finish rows faster than"


def _moe(seed, o, why, tmp_path, capsys):
    from gen.errors import UserError
    from gen.layer import generate_layer
    from gen.models.tiny import tiny_moe_model

    model = tiny_moe_model(o["seed"], layer_types=o["layer_types"], **o["shape"])
    out = tmp_path / "moe"
    _, refused = _attempt(lambda: generate_layer(
        model, o["layer"], out, ctx=o["ctx"], lane_stages=o["lane_stages"], seed=o["seed"],
        log=None), UserError)
    if refused is not None:
        assert why, f"seed {seed}: a valid configuration was refused: {refused}"
        return _refused(2, f"hardwire: error: {refused}\n", why, out, seed)
    assert not why, f"seed {seed}: {why!r} out of range was accepted"
    _simulated(capsys, out, o["simulator"], seed)


def _lane_weights(fmt: str, rows: int, cols: int, rng):
    """One pass's weights in ``fmt``: a ``--quant`` name quantises floats, a GGUF type
    decodes bytes (llama.cpp's encoder, or random k-quant super-blocks with finite scales)."""
    from gen.models.quant import quantize
    from golden.blockquant import decode, encode

    w = (rng.standard_normal((rows, cols)) * rng.uniform(0.1, 3, (rows, 1))).astype(np.float32)
    if fmt.islower():
        return quantize(w, fmt, "sweep")
    if fmt in ("Q4_K", "Q6_K"):
        nbytes, f16 = (144, (0, 2)) if fmt == "Q4_K" else (210, (208,))
        raw = rng.integers(0, 256, (rows, cols // 256, nbytes), dtype=np.uint8)
        for at in f16:
            d = (rng.uniform(0.5, 2, raw.shape[:2]) * 2.0 ** rng.integers(-14, -4, raw.shape[:2]))
            raw[:, :, at:at + 2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        return decode(fmt, raw, rows, cols)
    return decode(fmt, encode(fmt, w), rows, cols)


def _lanes(seed, o, why, tmp_path, capsys):
    from golden.block_folded import BlockFoldedLayout
    from golden.blockquant import pad_rows
    from golden.integer import IntFormat
    from hdl.lane_array import LaneArray
    from sim.runner import run_stream
    from tests.test_block_matvec import write_passes

    rng = np.random.default_rng(o["seed"])
    lanes, beat, abits = o["lanes"], o["beat"], o["abits"]
    passes = []
    for r in o["rows"]:
        w = _lane_weights(o["fmt"], r, o["cols"], rng)
        passes.append(pad_rows(w, -(-r // lanes) * lanes))  # as the chip pads the LM head
    cycles = min(BlockFoldedLayout.of(w, lanes, o["parallel"]).nblocks
                 * (1 if o["parallel"] else w.bits) for w in passes)
    if lanes // beat > cycles and not why:  # the rows would leave faster than beats can
        why = FASTER
    dut, refused = _attempt(lambda: LaneArray(
        passes, abits=abits, lanes=lanes, beat=beat, fmt=IntFormat(), parallel=o["parallel"],
        gate_lanes=o["gated"], stages=o["stages"]), ValueError)
    if refused is not None:
        assert why, f"seed {seed}: a valid lane array was refused: {refused}"
        assert why in refused and "\n" not in refused, f"seed {seed}: {refused}"
        return
    assert not why, f"seed {seed}: {why!r} was accepted"
    need(o["simulator"])
    lo, hi = -(1 << (abits - 1)), (1 << (abits - 1)) - 1
    steps = []
    for token in range(3):  # random, then every input at its lowest, then at its highest
        for w in passes:
            a = (rng.integers(lo, hi + 1, o["cols"]), np.full(o["cols"], lo),
                 np.full(o["cols"], hi))[token]
            steps.append((w, a, int(rng.integers(-16, -4))))
    d = write_passes(tmp_path, dut, steps, f"seed {seed}")
    res = run_stream(d, simulator=o["simulator"])
    assert res.ok, f"seed {seed} (HARDWIRE_FUZZ_SEED={seed}): {res.summary()}"


RUN = {"matvec": _matvec, "lanes": _lanes, "layer": _layer, "moe": _moe}
