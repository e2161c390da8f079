"""cocotb testbench for a generated decoder layer, driven by its manifest and golden tokens.

Each test runs a token sequence through positions ``0..ctx-1`` (filling the KV cache) and
compares every output beat with the integer golden model exactly. Environment:
``HARDWIRE_DESIGN``, ``HARDWIRE_SEED``.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly

from sim.streams import beats, unbeat
from sim.tb_stream import PERIOD_NS, start


class LayerTB:
    def __init__(self, dut):
        self.dut = dut
        self.dir = Path(os.environ["HARDWIRE_DESIGN"])
        self.m = json.loads((self.dir / "manifest.json").read_text())
        self.rng = np.random.default_rng(int(os.environ.get("HARDWIRE_SEED", "1")))
        i, o = self.m["in"], self.m["out"]
        self.iv, self.ir, self.idata = (getattr(dut, i[k]) for k in ("valid", "ready", "data"))
        self.ov, self.orr, self.odata = (getattr(dut, o[k]) for k in ("valid", "ready", "data"))
        self.clk, self.rst = getattr(dut, self.m["clock"]), getattr(dut, self.m["reset"])

    def tokens(self, name):
        v = self.m["vectors"][name]
        return np.load(self.dir / v["in"]), np.load(self.dir / v["out"])

    async def reset(self):
        await start(self.clk, self.rst, self.iv, self.orr, self.idata)

    def _cycle(self):
        return int(get_sim_time("ns")) // PERIOD_NS

    async def collect(self, xs):
        """Outputs for ``xs`` without a golden reference (the RTL backend)."""
        return await self.run(xs, None, "drive", keep=True)

    async def run(self, xs, ys, what, valid_p=1.0, ready_p=1.0, keep=False):
        i = self.m["in"]
        nb, beat, bits = i["beats"], i["beat"], i["bits"]
        payloads = []
        for p, x in enumerate(xs):
            payloads += [b | (p << i["pos_lo"]) for b in beats(x, beat, bits)]
        outs, sent, offering = [], 0, False
        first_in, last_out = {}, {}
        budget = 2_000_000 * len(xs)
        start = self._cycle()
        while len(outs) < len(payloads):
            await FallingEdge(self.clk)
            if self._cycle() - start > budget:
                raise AssertionError(f"{what}: timeout after {len(outs)} of {len(payloads)} "
                                     "output beats")
            if not offering and sent < len(payloads) and self.rng.random() < valid_p:
                self.idata.value = payloads[sent]
                offering = True
            self.iv.value = int(offering)
            ready = bool(self.rng.random() < ready_p)
            self.orr.value = int(ready)
            await ReadOnly()
            if offering and self.ir.value == 1:
                first_in.setdefault(sent // nb, self._cycle())
                sent += 1
                offering = False
            if ready and self.ov.value == 1:
                outs.append(int(self.odata.value))
                tok = len(outs) // nb - 1
                if len(outs) % nb == 0:
                    last_out[tok] = self._cycle()
                if len(outs) % nb == 0 and ys is not None:  # the drive test has no golden
                    got, _ = unbeat(outs[tok * nb:], beat, bits)
                    bad = np.flatnonzero(got != ys[tok])
                    if bad.size:
                        k = bad[0]
                        raise AssertionError(
                            f"{what}: token at position {tok}: {bad.size} of {len(got)} "
                            f"elements differ; first element {k}: got {got[k]}, golden "
                            f"{ys[tok][k]}")
        await FallingEdge(self.clk)
        self.iv.value = 0
        self.orr.value = 0
        cycles = [last_out[t] - first_in[t] + 1 for t in range(len(xs))]
        if keep:
            return np.stack([unbeat(outs[t * nb:(t + 1) * nb], beat, bits)[0]
                             for t in range(len(xs))])
        self.dut._log.info("%s: %d tokens bit-exact; cycles per token: first %d, last %d",
                           what, len(xs), cycles[0], cycles[-1])
        (self.dir / f"cycles_{what.replace(' ', '_')}.json").write_text(json.dumps(cycles))
        return cycles


@cocotb.test()
async def real_tokens(dut):
    """Real token embeddings at positions 0..ctx-1, full rate; records cycles per token."""
    tb = LayerTB(dut)
    await tb.reset()
    xs, ys = tb.tokens("real")
    await tb.run(xs, ys, "real tokens")


@cocotb.test()
async def extreme_tokens(dut):
    """Residuals at ±2**31, zeros and random full-range values, filling the cache."""
    tb = LayerTB(dut)
    await tb.reset()
    xs, ys = tb.tokens("extreme")
    await tb.run(xs, ys, "extreme tokens")


@cocotb.test()
async def stalls_both_sides(dut):
    """The real tokens again with valid gaps and ready pauses (50/50)."""
    tb = LayerTB(dut)
    await tb.reset()
    xs, ys = tb.tokens("real")
    await tb.run(xs, ys, "stalls", valid_p=0.5, ready_p=0.5)


@cocotb.test(skip=os.environ.get("HARDWIRE_DRIVE_IN") is None)
async def drive(dut):
    """Run the residual tokens in ``HARDWIRE_DRIVE_IN`` (``.npy``, int64 ``[T, dim]``) at
    positions ``0..T-1`` and save the outputs to ``HARDWIRE_DRIVE_OUT``: the RTL backend of
    ``hardwire forward``. Skipped unless those are set."""
    tb = LayerTB(dut)
    await tb.reset()
    xs = np.load(os.environ["HARDWIRE_DRIVE_IN"])
    ys = await tb.collect(xs)
    np.save(os.environ["HARDWIRE_DRIVE_OUT"], ys)
