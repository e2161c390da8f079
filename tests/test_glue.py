"""The stream plumbing of the layer under stalls: fork/FIFO/join, route/merge, pairer."""

import numpy as np
import pytest
from amaranth.hdl import Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.glue import BeatFifo, Fork, Join, Merge, Pairer, Route
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


@pytest.mark.parametrize("top", [ForkJoin, RouteMerge])
def test_glue_under_stalls(tmp_path, top):
    why = simulator_available("icarus")
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(0)
    xs = [int(v) for v in rng.integers(0, 1 << W, 48)]
    if top is ForkJoin:
        ys = [x | (x << W) for x in xs]
    else:
        ys = [xs[k] | (xs[k + 1] << W) for k in range(0, len(xs), 2)]
    d = write_unit(top(), "glue", tmp_path / "d", {"cases": [
        {"name": "beats", "in": [f"{x:x}" for x in xs], "out": [f"{y:x}" for y in ys]}]})
    res = run_stream(d, simulator="icarus")
    assert res.ok, res.summary()
