"""cocotb testbench for any matrix-vector design, driven from its ``manifest.json`` alone.

The expected outputs come from the golden model applied to the design's ``weights.npy``, never
from the DUT. Environment: ``HARDWIRE_DESIGN`` (design directory), ``HARDWIRE_VECTORS``
(random vectors per test), ``HARDWIRE_SEED``.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer

from golden.linear import Requant, matvec, random_vectors, worst_case_vectors
from sim.streams import pack, unpack


class MatVecTB:
    """Clock, reset, a driver and a monitor on the two streams, and a scoreboard."""

    PERIOD_NS = 10

    def __init__(self, dut):
        self.dut = dut
        self.dir = Path(os.environ["HARDWIRE_DESIGN"])
        self.m = json.loads((self.dir / "manifest.json").read_text())
        self.rng = np.random.default_rng(int(os.environ.get("HARDWIRE_SEED", "1")))
        self.n_random = int(os.environ.get("HARDWIRE_VECTORS", "50"))
        self.w = np.load(self.dir / self.m["weights"])
        rq = self.m.get("requant")
        self.requant = Requant(**rq) if rq else None
        pin, pout = self.m["in"], self.m["out"]
        self.x_valid, self.x_ready = getattr(dut, pin["valid"]), getattr(dut, pin["ready"])
        self.x_data = getattr(dut, pin["data"])
        self.y_valid, self.y_ready = getattr(dut, pout["valid"]), getattr(dut, pout["ready"])
        self.y_data = getattr(dut, pout["data"])
        self.clk, self.rst = getattr(dut, self.m["clock"]), getattr(dut, self.m["reset"])

    def expected(self, xs):
        y = matvec(self.w, xs)
        return self.requant.apply(y) if self.requant else y

    async def reset(self):
        Clock(self.clk, self.PERIOD_NS, unit="ns").start()
        self.x_valid.value = 0
        self.y_ready.value = 0
        self.x_data.value = 0
        self.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.clk)
        await FallingEdge(self.clk)
        self.rst.value = 0

    async def stream(self, xs, *, valid_p=1.0, ready_p=1.0):
        """Send ``xs`` and collect as many outputs. Each cycle, a new vector is offered with
        probability ``valid_p`` and ``ready`` is high with probability ``ready_p``; an offered
        vector stays on the bus until it is taken (the stream rules).

        Returns ``(ys, x_cycles, y_cycles)``: the outputs and the cycles of each handshake.
        """
        pin, pout = self.m["in"], self.m["out"]
        payloads = [pack(x, pin["bits"]) for x in xs]
        ys, x_cycles, y_cycles = [], [], []
        sent, offering = 0, False
        # At full rate nothing can happen until x.ready or y.valid changes, so the monitor
        # sleeps until one does instead of waking every cycle (designs take up to thousands
        # of cycles per vector). With stalls it samples every cycle.
        full_rate = valid_p >= 1 and ready_p >= 1
        budget = 64 + (len(xs) + 4) * (self.m["cycles_per_vector"] + self.m["latency_cycles"])
        budget = int(budget / min(valid_p, ready_p) ** 2) + 64
        start = self._cycle()
        while len(ys) < len(xs):
            await FallingEdge(self.clk)
            cycle = self._cycle() - start
            if cycle > budget:
                raise AssertionError(f"timeout: {len(ys)} of {len(xs)} outputs after "
                                     f"{cycle} cycles")
            if not offering and sent < len(xs) and self.rng.random() < valid_p:
                self.x_data.value = payloads[sent]
                offering = True
            self.x_valid.value = int(offering)
            ready = bool(self.rng.random() < ready_p)
            self.y_ready.value = int(ready)
            await ReadOnly()
            fired = False
            if offering and self.x_ready.value == 1:
                x_cycles.append(cycle)
                sent += 1
                offering, fired = False, True
            if ready and self.y_valid.value == 1:
                y_cycles.append(cycle)
                ys.append(unpack(int(self.y_data.value), pout["count"], pout["bits"]))
                fired = True
            if full_rate and not fired:
                await First(self.x_ready.value_change, self.y_valid.value_change,
                            Timer(budget * self.PERIOD_NS, unit="ns"))
        await FallingEdge(self.clk)
        self.x_valid.value = 0
        return np.array(ys), x_cycles, y_cycles

    def _cycle(self) -> int:
        return int(get_sim_time("ns")) // self.PERIOD_NS

    def check(self, xs, ys, what):
        exp = self.expected(xs)
        bad = np.argwhere(exp != ys)
        if bad.size:
            v, r = bad[0]
            raise AssertionError(
                f"{what}: {len(bad)} mismatches; first at vector {v} row {r}: "
                f"got {ys[v, r]}, golden {exp[v, r]}")
        self.dut._log.info("%s: %d vectors x %d rows bit-exact", what, len(xs), exp.shape[1])


@cocotb.test()
async def random_full_rate(dut):
    """Random vectors, no stalls; also checks latency and cycles per vector."""
    tb = MatVecTB(dut)
    await tb.reset()
    xs = random_vectors(tb.n_random, tb.m["in"]["count"], tb.m["in"]["bits"], tb.rng)
    ys, xc, yc = await tb.stream(xs)
    tb.check(xs, ys, "random")
    assert yc[0] - xc[0] == tb.m["latency_cycles"], (
        f"latency {yc[0] - xc[0]} cycles, manifest says {tb.m['latency_cycles']}")
    gaps = set(np.diff(yc).tolist())
    assert gaps <= {tb.m["cycles_per_vector"]}, (
        f"output spacing {sorted(gaps)} cycles, manifest says {tb.m['cycles_per_vector']}")


@cocotb.test()
async def worst_case(dut):
    """Every activation at an extreme, and per row the vectors that hit both ends of its
    exact accumulator bound."""
    tb = MatVecTB(dut)
    await tb.reset()
    xs = worst_case_vectors(tb.w, tb.m["in"]["bits"])
    ys, _, _ = await tb.stream(xs)
    tb.check(xs, ys, "worst case")


@cocotb.test()
async def stalls_both_sides(dut):
    """Random valid gaps at the input and ready pauses at the output."""
    tb = MatVecTB(dut)
    await tb.reset()
    xs = np.concatenate([
        random_vectors(tb.n_random, tb.m["in"]["count"], tb.m["in"]["bits"], tb.rng),
        worst_case_vectors(tb.w, tb.m["in"]["bits"])[:8],
    ])
    ys, _, _ = await tb.stream(xs[: len(xs) // 2], valid_p=0.5, ready_p=0.5)
    tb.check(xs[: len(xs) // 2], ys, "stalls 50/50")
    ys, _, _ = await tb.stream(xs[len(xs) // 2:], valid_p=0.9, ready_p=0.3)
    tb.check(xs[len(xs) // 2:], ys, "stalls 90/30")
