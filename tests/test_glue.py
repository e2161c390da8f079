"""The stream plumbing of the layer under stalls: fork/FIFO/join, route/merge, pairer."""

import numpy as np
import pytest
from amaranth.hdl import Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.glue import BeatFifo, Fork, Join, Merge, Pairer, Route, Skid, registered
from sim.runner import run_stream, simulator_available, write_unit

W = 12


def _conn(m, src, dst):
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                 Value.cast(dst.payload).eq(Value.cast(src.payload))]


class ForkJoin(wiring.Component):
    """x -> fork -> (FIFO of 3, direct) -> join: y = (x, x)."""

    def __init__(self):
        super().__init__({"x": In(stream.Signature(W)), "y": Out(stream.Signature(2 * W))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fork = f = Fork(W, 2)
        m.submodules.fifo = q = BeatFifo(W, 3)
        m.submodules.join = j = Join(W, W, 2 * W)
        _conn(m, self.x, f.i)
        _conn(m, f.o0, q.i)
        _conn(m, q.o, j.a)
        _conn(m, f.o1, j.b)
        _conn(m, j.o, self.y)
        return m


class RouteMerge(wiring.Component):
    """x -> route by (0:2, 1:3, 2:1) -> each through a FIFO -> merge in the same order: y = x,
    then the pairer: beats (a, b) side by side."""

    SEGS = [(0, 2), (1, 3), (2, 1)]

    def __init__(self):
        super().__init__({"x": In(stream.Signature(W)), "y": Out(stream.Signature(2 * W))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.route = r = Route(W, self.SEGS, 3)
        m.submodules.merge = g = Merge(W, self.SEGS, 3)
        m.submodules.pair = p = Pairer(W, 2 * W)
        _conn(m, self.x, r.i)
        for k in range(3):
            fifo = BeatFifo(W, 4)
            m.submodules[f"q{k}"] = fifo
            _conn(m, getattr(r, f"o{k}"), fifo.i)
            _conn(m, fifo.o, getattr(g, f"i{k}"))
        _conn(m, g.o, p.i)
        _conn(m, p.o, self.y)
        return m


class SkidChain(wiring.Component):
    """x -> three skid buffers (the middle one by ``registered``) -> y = x."""

    def __init__(self):
        super().__init__({"x": In(stream.Signature(W)), "y": Out(stream.Signature(W))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.first = first = Skid(W)
        m.submodules.third = third = Skid(W)
        _conn(m, self.x, first.i)
        _conn(m, first.o, registered(m, "second", third.i))
        _conn(m, third.o, self.y)
        return m


@pytest.mark.parametrize("top", [ForkJoin, RouteMerge, SkidChain])
def test_glue_under_stalls(tmp_path, top):
    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(0)
    xs = [int(v) for v in rng.integers(0, 1 << W, 48)]
    if top is ForkJoin:
        ys = [x | (x << W) for x in xs]
    elif top is SkidChain:
        ys = xs
    else:
        ys = [xs[k] | (xs[k + 1] << W) for k in range(0, len(xs), 2)]
    d = write_unit(top(), "glue", tmp_path / "d", {"cases": [
        {"name": "beats", "in": [f"{x:x}" for x in xs], "out": [f"{y:x}" for y in ys]}]})
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()


def test_skid_chain_full_rate_and_registered():
    """At full rate a beat per cycle, three cycles late; and ``x.ready`` does not follow
    ``y.ready`` within a cycle (a register in between), nor ``y.valid`` ``x.valid``."""
    from amaranth.sim import Simulator

    from tests.pysim import full_rate

    xs = list(range(1, 21))
    outs, taken = full_rate(SkidChain(), xs, len(xs))
    assert [p for _, p in outs] == xs
    assert taken == list(range(20)) and [c for c, _ in outs] == list(range(3, 23))

    dut = SkidChain()

    async def bench(ctx):
        ctx.set(dut.y.ready, 0)
        ctx.set(dut.x.valid, 1)
        ready = []
        for _ in range(8):  # fill the chain: six beats, then x.ready falls
            ready.append(ctx.get(dut.x.ready))
            await ctx.tick()
        assert ready == [1] * 6 + [0] * 2
        ctx.set(dut.y.ready, 1)  # no change in the same cycle
        assert not ctx.get(dut.x.ready)
        ctx.set(dut.x.valid, 0)
        assert ctx.get(dut.y.valid)
        ready = []
        for _ in range(3):  # the free place moves back one buffer per cycle
            await ctx.tick()
            ready.append(ctx.get(dut.x.ready))
        assert ready == [0, 0, 1]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
