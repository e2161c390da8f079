"""cocotb testbench for any one-in, one-out stream unit, driven by a transactions file.

The Python side (a test, with the golden model) writes ``transactions.json`` into the design
directory: the ports, and a list of *cases*, each a list of input payloads and the exact
output payloads golden expects. This bench only moves payloads and compares integers, so it
serves every vector unit of the layer. Environment: ``HARDWIRE_DESIGN``, ``HARDWIRE_SEED``.

``transactions.json``::

    {"clock": "clk", "reset": "rst",
     "in":  {"valid": "x__valid", "ready": "x__ready", "data": "x__payload"},
     "out": {"valid": "y__valid", "ready": "y__ready", "data": "y__payload"},
     "fields": [["name", lo, width, signed], ...],   # optional, to name a mismatch
     "cases": [{"name": "random", "in": ["1f", ...], "out": ["a0", ...]}, ...]}

Payloads are hex strings (two's complement, any width). Every case runs three times: at full
rate, with valid gaps and ready pauses at 50/50, and at 90/30.
"""

import json
import os
from pathlib import Path

import cocotb

from sim.bench import Bench


class StreamTB(Bench):
    def __init__(self, dut):
        self.t = json.loads((Path(os.environ["HARDWIRE_DESIGN"]) / "transactions.json")
                            .read_text())
        super().__init__(dut, self.t)
        self.max_cycles = int(self.t.get("max_cycles_per_case", 200000))

    def describe(self, got: int, want: int) -> str:
        parts = []
        for name, lo, width, signed in self.t.get("fields", []):
            g, w = (got >> lo) & ((1 << width) - 1), (want >> lo) & ((1 << width) - 1)
            if g != w:
                if signed:
                    g -= (g >> (width - 1)) << width
                    w -= (w >> (width - 1)) << width
                parts.append(f"{name}: got {g}, golden {w}")
        return "; ".join(parts[:4]) or f"got {got:#x}, golden {want:#x}"

    def check(self, case, outs, how):
        want = [int(h, 16) for h in case["out"]]
        for k, (g, w) in enumerate(zip(outs, want, strict=True)):
            if g != w:
                raise AssertionError(f"{case['name']} ({how}): output {k} of {len(want)} "
                                     f"differs: {self.describe(g, w)}")
        self.dut._log.info("%s (%s): %d outputs bit-exact", case["name"], how, len(want))


async def _all_cases(dut, valid_p, ready_p, how):
    tb = StreamTB(dut)
    tb.stalls(valid_p, ready_p)
    await tb.reset()
    for case in tb.t["cases"]:
        tb.source.send(int(h, 16) for h in case["in"])
        outs = await tb.collect(len(case["out"]), tb.max_cycles, f"{case['name']} ({how})")
        tb.check(case, outs, how)


@cocotb.test()
async def full_rate(dut):
    """Every case with valid always high and ready always high."""
    await _all_cases(dut, 1.0, 1.0, "full rate")


@cocotb.test()
async def stalls_50_50(dut):
    """Valid gaps and ready pauses, each half the time."""
    await _all_cases(dut, 0.5, 0.5, "stalls 50/50")


@cocotb.test()
async def stalls_90_30(dut):
    """A producer that is mostly ready against a consumer that mostly is not."""
    await _all_cases(dut, 0.9, 0.3, "stalls 90/30")
