"""cocotb testbench for a generated decoder layer, driven by its manifest and golden tokens.

Each test runs a token sequence through positions ``0..ctx-1`` (filling the KV cache) and
compares every output beat with the integer golden model exactly. Environment:
``HARDWIRE_DESIGN``, ``HARDWIRE_SEED``.
"""

import json
import os

import cocotb
import numpy as np

from sim.bench import Bench
from sim.streams import beats, unbeat


class LayerTB(Bench):
    def tokens(self, name):
        v = self.m["vectors"][name]
        return np.load(self.dir / v["in"]), np.load(self.dir / v["out"])

    async def collect_tokens(self, xs):
        """Outputs for ``xs`` without a golden reference (the RTL backend)."""
        return await self.run(xs, None, "drive", keep=True)

    async def run(self, xs, ys, what, valid_p=1.0, ready_p=1.0, keep=False):
        """Tokens ``xs`` at positions ``0, 1, ...``; each token's output beats are compared
        with ``ys`` as soon as they are all out (``ys`` None: no comparison). Returns the
        cycles per token (first input beat to last output beat), or with ``keep`` the
        outputs."""
        i = self.m["in"]
        nb, beat, bits = i["beats"], i["beat"], i["bits"]
        payloads = [b | (p << i["pos_lo"]) for p, x in enumerate(xs) for b in beats(x, beat, bits)]

        def check(k, outs):
            tok = k // nb
            if ys is None or (k + 1) % nb:  # the drive test has no golden
                return
            got, _ = unbeat(outs[tok * nb:], beat, bits)
            bad = np.flatnonzero(got != ys[tok])
            if bad.size:
                e = bad[0]
                raise AssertionError(
                    f"{what}: token at position {tok}: {bad.size} of {len(got)} elements "
                    f"differ; first element {e}: got {got[e]}, golden {ys[tok][e]}")

        self.stalls(valid_p, ready_p)
        x0, y0 = self.source.count, self.sink.count
        self.source.send(payloads)
        outs = await self.collect(len(payloads), 2_000_000 * len(xs), what, check)
        first_in = self.source.cycles[x0::nb]
        last_out = self.sink.cycles[y0 + nb - 1::nb]
        cycles = [last_out[t] - first_in[t] + 1 for t in range(len(xs))]
        if keep:
            return np.stack([unbeat(outs[t * nb:(t + 1) * nb], beat, bits)[0]
                             for t in range(len(xs))])
        self.dut._log.info("%s: %d tokens bit-exact; cycles per token: first %d, last %d",
                           what, len(xs), cycles[0], cycles[-1])
        (self.dir / f"cycles_{what.replace(' ', '_')}.json").write_text(json.dumps(cycles))
        return cycles


async def _golden_tokens(dut, name: str, what: str, valid_p=1.0, ready_p=1.0):
    tb = LayerTB(dut)
    await tb.reset()
    xs, ys = tb.tokens(name)
    await tb.run(xs, ys, what, valid_p=valid_p, ready_p=ready_p)


@cocotb.test()
async def real_tokens(dut):
    """Real token embeddings at positions 0..ctx-1, full rate; records cycles per token."""
    await _golden_tokens(dut, "real", "real tokens")


@cocotb.test()
async def extreme_tokens(dut):
    """Residuals at ±2**31, zeros and random full-range values, filling the cache."""
    await _golden_tokens(dut, "extreme", "extreme tokens")


@cocotb.test()
async def stalls_both_sides(dut):
    """The real tokens again with valid gaps and ready pauses (50/50)."""
    await _golden_tokens(dut, "real", "stalls", valid_p=0.5, ready_p=0.5)


@cocotb.test(skip=os.environ.get("HARDWIRE_DRIVE_IN") is None)
async def drive(dut):
    """Run the residual tokens in ``HARDWIRE_DRIVE_IN`` (``.npy``, int64 ``[T, dim]``) at
    positions ``0..T-1`` and save the outputs to ``HARDWIRE_DRIVE_OUT``: the RTL backend of
    ``hardwire forward``. Skipped unless those are set."""
    tb = LayerTB(dut)
    await tb.reset()
    xs = np.load(os.environ["HARDWIRE_DRIVE_IN"])
    ys = await tb.collect_tokens(xs)
    np.save(os.environ["HARDWIRE_DRIVE_OUT"], ys)
