"""Names each vector going into a mixture-of-experts layer's lane array with its pass."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import counter, index_mux

__all__ = ["PassTagger"]


class PassTagger(wiring.Component):
    """A token's vectors arrive in a fixed order of kinds, ``segs`` (a repeating list of
    ``(kind, beats)``): a kind is a fixed pass (an ``int``) or an expert's pass (``("gate_up",
    base)`` / ``("down", base)``: pass ``base + 2 * expert``). Each beat leaves with its pass
    in ``sel``. The first beat of a gate/up vector waits for the next expert on ``ids`` and
    takes it; the down vector after it reuses that expert.

    Ports: ``x`` payload ``shape``; ``ids`` payload with an ``id`` field (the router's);
    ``y`` payload ``{"data": shape, "sel": pass_bits}``.
    """

    def __init__(self, shape, ids_shape, segs, pass_bits: int):
        self.segs, self.pass_bits = list(segs), pass_bits
        out = data.StructLayout({"data": shape, "sel": unsigned(pass_bits)})
        super().__init__({"x": In(stream.Signature(shape)),
                          "ids": In(stream.Signature(ids_shape)),
                          "y": Out(stream.Signature(out))})

    def elaborate(self, platform):
        m = Module()
        segs = self.segs
        seg, cnt = counter(len(segs), "seg"), counter(max(n for _, n in segs), "cnt")
        expert = Signal(len(self.ids.payload.id))
        fire = self.y.valid & self.y.ready
        last = cnt == index_mux([n - 1 for _, n in segs], seg)
        takes = [isinstance(k, tuple) and k[0] == "gate_up" for k, _ in segs]
        needs = Signal()  # the first beat of a gate/up vector: it takes the next expert
        m.d.comb += needs.eq((cnt == 0) & index_mux([int(t) for t in takes], seg))
        eid = Mux(needs, self.ids.payload.id, expert)
        sels = [k if isinstance(k, int) else k[1] + 2 * eid for k, _ in segs]
        sel = Signal(self.pass_bits)
        m.d.comb += sel.eq(index_mux(sels, seg))
        ok = Signal()
        m.d.comb += [ok.eq(~needs | self.ids.valid), self.y.valid.eq(self.x.valid & ok),
                     self.x.ready.eq(self.y.ready & ok), self.ids.ready.eq(needs & fire),
                     self.y.payload.data.eq(self.x.payload), self.y.payload.sel.eq(sel)]
        with m.If(fire):
            with m.If(needs):
                m.d.sync += expert.eq(self.ids.payload.id)
            with m.If(last):
                m.d.sync += [cnt.eq(0), seg.eq(Mux(seg == len(segs) - 1, 0, seg + 1))]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        return m
