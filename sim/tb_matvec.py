"""cocotb testbench for any matrix-vector design, driven from its ``manifest.json`` alone.

The expected outputs come from the golden model applied to the design's ``weights.npy``, never
from the DUT. Environment: ``HARDWIRE_DESIGN`` (design directory), ``HARDWIRE_VECTORS``
(random vectors per test), ``HARDWIRE_SEED``.
"""

import os

import cocotb
import numpy as np

from golden.linear import Requant, matvec, random_vectors, worst_case_vectors
from sim.bench import Bench
from sim.streams import pack, unpack


class MatVecTB(Bench):
    """Clock, reset, a source and a sink on the two streams, and a scoreboard."""

    def __init__(self, dut):
        super().__init__(dut)
        self.n_random = int(os.environ.get("HARDWIRE_VECTORS", "50"))
        self.w = np.load(self.dir / self.m["weights"])
        rq = self.m.get("requant")
        self.requant = Requant(**rq) if rq else None

    def expected(self, xs):
        y = matvec(self.w, xs)
        return self.requant.apply(y) if self.requant else y

    async def stream(self, xs, *, valid_p=1.0, ready_p=1.0):
        """Send ``xs`` and collect as many outputs. Each cycle, a new vector is offered with
        probability ``valid_p`` and ``ready`` is high with probability ``ready_p``; an offered
        vector stays on the bus until it is taken (the stream rules).

        Returns ``(ys, x_cycles, y_cycles)``: the outputs and the cycles of each handshake.
        """
        pin, pout = self.m["in"], self.m["out"]
        budget = 64 + (len(xs) + 4) * (self.m["cycles_per_vector"] + self.m["latency_cycles"])
        budget = int(budget / min(valid_p, ready_p) ** 2) + 64
        self.stalls(valid_p, ready_p)
        x0, y0 = self.source.count, self.sink.count
        self.source.send(pack(x, pin["bits"]) for x in xs)
        outs = await self.collect(len(xs), budget, "stream")
        ys = [unpack(v, pout["count"], pout["bits"]) for v in outs]
        return np.array(ys), self.source.cycles[x0:], self.sink.cycles[y0:y0 + len(xs)]

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
