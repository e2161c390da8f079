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
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

PERIOD_NS = 10


async def start(clk, rst, *idle):
    """Start the clock, drive ``idle`` signals low, hold reset for three cycles, and return
    at a falling edge with reset released."""
    Clock(clk, PERIOD_NS, unit="ns").start()
    for sig in idle:
        sig.value = 0
    rst.value = 1
    for _ in range(3):
        await RisingEdge(clk)
    await FallingEdge(clk)
    rst.value = 0


class StreamTB:
    def __init__(self, dut):
        self.dut = dut
        self.t = json.loads((Path(os.environ["HARDWIRE_DESIGN"]) / "transactions.json")
                            .read_text())
        self.rng = np.random.default_rng(int(os.environ.get("HARDWIRE_SEED", "1")))
        sig = lambda name: getattr(dut, name)  # noqa: E731
        self.clk, self.rst = sig(self.t["clock"]), sig(self.t["reset"])
        i, o = self.t["in"], self.t["out"]
        self.iv, self.ir, self.idata = sig(i["valid"]), sig(i["ready"]), sig(i["data"])
        self.ov, self.orr, self.odata = sig(o["valid"]), sig(o["ready"]), sig(o["data"])
        self.max_cycles = int(self.t.get("max_cycles_per_case", 200000))

    async def reset(self):
        await start(self.clk, self.rst, self.iv, self.orr, self.idata)

    async def run(self, ins, n_out, valid_p, ready_p):
        """Offer ``ins`` (ints), collect ``n_out`` outputs; returns them and the cycle count."""
        outs, sent, offering, cycles = [], 0, False, 0
        while len(outs) < n_out or sent < len(ins):
            await FallingEdge(self.clk)
            cycles += 1
            if cycles > self.max_cycles:
                raise AssertionError(f"timeout: {sent}/{len(ins)} in, {len(outs)}/{n_out} out "
                                     f"after {cycles} cycles")
            if not offering and sent < len(ins) and self.rng.random() < valid_p:
                self.idata.value = ins[sent]
                offering = True
            self.iv.value = int(offering)
            ready = bool(self.rng.random() < ready_p)
            self.orr.value = int(ready)
            await ReadOnly()
            if offering and self.ir.value == 1:
                sent += 1
                offering = False
            if ready and self.ov.value == 1:
                outs.append(int(self.odata.value))
        await FallingEdge(self.clk)
        self.iv.value = 0
        self.orr.value = 0
        return outs, cycles

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
    await tb.reset()
    for case in tb.t["cases"]:
        ins = [int(h, 16) for h in case["in"]]
        outs, _ = await tb.run(ins, len(case["out"]), valid_p, ready_p)
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
