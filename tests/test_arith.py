"""hdl.arith's split multiplier: exact for every signedness and width, extremes included,
with its partial products each within one 18 x 18 signed multiplier and registered once."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned

from hdl.arith import PRODUCT_PIECE, split_product


def _check(a_shape, b_shape, seed: int):
    from amaranth.sim import Simulator

    m = Module()
    a, b = Signal(a_shape), Signal(b_shape)
    parts = []

    def register(ps):
        regs = [Signal(p.shape()) for p in ps]
        parts.extend(ps)
        m.d.sync += [r.eq(p) for r, p in zip(regs, ps, strict=True)]
        return regs

    out = Signal(signed(len(a) + len(b) + 1))
    m.d.comb += out.eq(split_product(m, a, b, register, "t"))
    for p in parts:  # every partial fits one MULT18X18D: 18 signed bits a side
        assert len(p) <= 2 * (PRODUCT_PIECE + 1)

    def extremes(shape):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        return lo, hi, [lo, hi, 0, 1, -1 if shape.signed else 2, lo + 1, hi - 1]

    alo, ahi, aex = extremes(a_shape)
    blo, bhi, bex = extremes(b_shape)
    rng = np.random.default_rng(seed)
    pairs = list(itertools.product(aex, bex))
    pairs += [(int(rng.integers(alo, ahi, endpoint=True)), int(rng.integers(blo, bhi,
                                                                            endpoint=True)))
              for _ in range(200)]

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(a, x)
            ctx.set(b, y)
            await ctx.tick()  # the partials' register
            assert ctx.get(out) == x * y, (x, y)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return len(parts)


@pytest.mark.parametrize("a_shape,b_shape,parts", [
    (signed(18), signed(18), 1), (unsigned(17), signed(18), 1), (signed(30), unsigned(17), 2),
    (signed(40), unsigned(20), 6), (unsigned(36), unsigned(35), 9), (signed(53), signed(19), 8),
])
def test_split_product_exact(a_shape, b_shape, parts):
    assert _check(a_shape, b_shape, seed=a_shape.width * 64 + b_shape.width) == parts
