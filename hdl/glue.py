"""Stream plumbing between the layer's units: fork, join, FIFO, and routing by beat count.

All of it keeps the stream rules: a ``valid`` never waits for a ``ready``; payloads hold while
they wait.
"""

from amaranth.hdl import Cat, DomainRenamer, Module, Mux, ResetInserter, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["Fork", "Join", "BeatFifo", "Route", "Merge", "Pairer", "Skid", "connect_stream",
           "registered"]


def connect_stream(m: Module, src, dst):
    """``src`` stream into ``dst``, the payload bits as they are (the layouts may differ)."""
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                 Value.cast(dst.payload).eq(Value.cast(src.payload))]


def registered(m: Module, name: str, dst, *, domain: str = "sync", reset=None):
    """A :class:`Skid` named ``name`` in front of the stream sink ``dst``; returns its input,
    to be driven in ``dst``'s place. Valid, payload and ready are each registered once
    between the two sides. ``domain``: the clock domain of its registers; ``reset``: a
    signal that resets them too (a reset-less gated domain's own reset)."""
    skid = Skid(dst.payload.shape())
    part = skid if domain == "sync" else DomainRenamer({"sync": domain})(skid)
    m.submodules[name] = part if reset is None else ResetInserter({domain: reset})(part)
    connect_stream(m, skid.o, dst)
    return skid.i


class Skid(wiring.Component):
    """A registered stream boundary at full rate: ``o.valid`` and ``o.payload`` come from a
    register, and so does ``i.ready``, so no combinational path crosses it either way.

    A beat taken while ``o`` stalls waits in a second (skid) register; ``i.ready`` is low
    while it is full. One cycle of latency, a beat per cycle throughput, at most two beats
    inside. Its registers change only when a beat moves."""

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        main, spare = Signal(width), Signal(width)
        full, spare_full = Signal(), Signal()
        m.d.comb += [self.o.valid.eq(full), Value.cast(self.o.payload).eq(main),
                     self.i.ready.eq(~spare_full)]
        take = self.i.valid & ~spare_full
        with m.If(~full | self.o.ready):  # the output register moves on
            with m.If(spare_full):
                m.d.sync += [main.eq(spare), full.eq(1), spare_full.eq(0)]
            with m.Else():
                m.d.sync += full.eq(take)
                with m.If(take):
                    m.d.sync += main.eq(Value.cast(self.i.payload))
        with m.Elif(take):  # stalled: the beat waits in the spare register
            m.d.sync += [spare.eq(Value.cast(self.i.payload)), spare_full.eq(1)]
        return m


class Fork(wiring.Component):
    """One stream to ``n`` consumers; each beat goes to every consumer exactly once."""

    def __init__(self, shape, n: int = 2):
        self._n = n
        super().__init__({"i": In(stream.Signature(shape)),
                          **{f"o{k}": Out(stream.Signature(shape)) for k in range(n)}})

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self._n)]
        done = [Signal(name=f"done{k}") for k in range(self._n)]
        ok = 1
        for o, d in zip(outs, done, strict=True):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~d)]
            ok = ok & (d | o.ready)
        m.d.comb += self.i.ready.eq(ok)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [d.eq(0) for d in done]
        with m.Else():
            for o, d in zip(outs, done, strict=True):
                with m.If(o.valid & o.ready):
                    m.d.sync += d.eq(1)
        return m


class Join(wiring.Component):
    """Two streams to one: a beat of each, side by side (``a`` in the low bits)."""

    def __init__(self, a_shape, b_shape, o_shape):
        super().__init__({"a": In(stream.Signature(a_shape)), "b": In(stream.Signature(b_shape)),
                          "o": Out(stream.Signature(o_shape))})

    def elaborate(self, platform):
        m = Module()
        fire = self.o.valid & self.o.ready
        m.d.comb += [self.o.valid.eq(self.a.valid & self.b.valid),
                     self.o.payload.eq(Cat(Value.cast(self.a.payload),
                                           Value.cast(self.b.payload))),
                     self.a.ready.eq(fire), self.b.ready.eq(fire)]
        return m


class BeatFifo(wiring.Component):
    """A FIFO of ``depth`` beats (at least 3: a buffered FIFO of 2 has a memory of one word,
    whose zero-bit address Verilator rejects)."""

    def __init__(self, shape, depth: int):
        self._shape, self._depth = shape, max(3, depth)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        m.submodules.fifo = f = SyncFIFOBuffered(width=width, depth=self._depth)
        m.d.comb += [f.w_data.eq(Value.cast(self.i.payload)), f.w_en.eq(self.i.valid),
                     self.i.ready.eq(f.w_rdy), self.o.payload.eq(f.r_data),
                     self.o.valid.eq(f.r_rdy), f.r_en.eq(self.o.ready)]
        return m


def _segments(m, segs, fire):
    """A counter over ``segs`` (a cycle of ``(port, beats)``), which moves on when ``fire``;
    returns the current port."""
    seg = Signal(range(max(len(segs), 2)))
    cnt = Signal(range(max(n for _, n in segs) + 1))
    last = Signal()
    port = Signal(range(max(p for p, _ in segs) + 2))
    n_expr = segs[-1][1] - 1
    p_expr = segs[-1][0]
    for k in range(len(segs) - 2, -1, -1):
        n_expr = Mux(seg == k, segs[k][1] - 1, n_expr)
        p_expr = Mux(seg == k, segs[k][0], p_expr)
    m.d.comb += [last.eq(cnt == n_expr), port.eq(p_expr)]
    with m.If(fire):
        with m.If(last):
            m.d.sync += [cnt.eq(0), seg.eq(Mux(seg == len(segs) - 1, 0, seg + 1))]
        with m.Else():
            m.d.sync += cnt.eq(cnt + 1)
    return port


def _by_count(m, unit, prefix: str, single):
    """The streams ``<prefix>0, <prefix>1, ...`` of a :class:`Route` or :class:`Merge`
    ``unit``, and the one of them the next beat of ``single`` (its other side) uses."""
    streams = [getattr(unit, f"{prefix}{k}") for k in range(unit._n)]
    return streams, _segments(m, unit._segs, single.valid & single.ready)


class Route(wiring.Component):
    """Demultiplex by count: ``segs`` is a repeating list of ``(output, beats)``."""

    def __init__(self, shape, segs, n_out: int):
        self._segs, self._n = segs, n_out
        super().__init__({"i": In(stream.Signature(shape)),
                          **{f"o{k}": Out(stream.Signature(shape)) for k in range(n_out)}})

    def elaborate(self, platform):
        m = Module()
        outs, port = _by_count(m, self, "o", self.i)
        ready = 0
        for k, o in enumerate(outs):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & (port == k))]
            ready = Mux(port == k, o.ready, ready)
        m.d.comb += self.i.ready.eq(ready)
        return m


class Merge(wiring.Component):
    """Multiplex by count: ``segs`` is a repeating list of ``(input, beats)``."""

    def __init__(self, shape, segs, n_in: int):
        self._segs, self._n = segs, n_in
        super().__init__({**{f"i{k}": In(stream.Signature(shape)) for k in range(n_in)},
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        ins, port = _by_count(m, self, "i", self.o)
        valid = 0
        for k, i in enumerate(ins):
            m.d.comb += i.ready.eq(self.o.ready & (port == k))
            valid = Mux(port == k, i.valid, valid)
        m.d.comb += self.o.valid.eq(valid)
        # A multiplexer per 32-bit slice, not one across the whole payload: Amaranth's
        # combinational-loop check walks every input of a cell for every output bit.
        width = len(Value.cast(self.o.payload))
        out = []
        for lo in range(0, width, 32):
            hi = min(lo + 32, width)
            sl = Value.cast(ins[0].payload)[lo:hi]
            for k, i in enumerate(ins[1:], start=1):
                sl = Mux(port == k, Value.cast(i.payload)[lo:hi], sl)
            out.append(sl)
        m.d.comb += Value.cast(self.o.payload).eq(Cat(*out))
        return m


class Pairer(wiring.Component):
    """Beats ``g0, u0, g1, u1, ...`` to beats ``(g0, u0), (g1, u1), ...`` (``g`` low)."""

    def __init__(self, shape, o_shape):
        self._w = Shape.cast(shape).width
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(o_shape))})

    def elaborate(self, platform):
        m = Module()
        hold = Signal()
        first = Signal(self._w)
        m.d.comb += [self.o.valid.eq(self.i.valid & hold),
                     self.o.payload.eq(Cat(first, Value.cast(self.i.payload))),
                     self.i.ready.eq(~hold | self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(~hold):
                m.d.sync += [first.eq(self.i.payload), hold.eq(1)]
            with m.Else():
                m.d.sync += hold.eq(0)
        return m
