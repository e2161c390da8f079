"""The index of the largest logit, :func:`golden.integer.argmax_int`, bit for bit."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import balanced_tree
from .vector import beat_layout, element

__all__ = ["ArgmaxUnit"]


class ArgmaxUnit(wiring.Component):
    """The index of the largest of ``n`` signed values arriving in beats, and that value;
    equal maxima go to the lowest index (:func:`golden.integer.argmax_int`).

    The vector may come padded to ``rows`` elements (an LM head padded to whole lanes): the
    elements past ``n`` count as the smallest value, and a tie goes to the lower index, so
    they are never chosen.

    Ports: ``x`` (``beat_layout(beat, bits)``, ``rows / beat`` beats), ``y`` (``{"id",
    "logit"}``, one payload per vector, a cycle after the last beat)."""

    def __init__(self, n: int, beat: int, bits: int, rows: int | None = None):
        rows = n if rows is None else rows
        if rows % beat or rows < n:
            raise ValueError(f"beat {beat} does not divide {rows}" if rows % beat else
                             f"{rows} rows cannot hold {n} values")
        self.n, self.rows, self.beat, self.bits = n, rows, beat, bits
        self.id_bits = max(1, (n - 1).bit_length())
        self.out_layout = data.StructLayout({"id": unsigned(self.id_bits),
                                             "logit": signed(bits)})
        super().__init__({"x": In(stream.Signature(beat_layout(beat, bits))),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def cycles(self) -> int:
        return self.rows // self.beat + 1

    def _beat_maximum(self, m):
        """The beat's maximum and its index by a tree of comb signals ``mx<level>_<i>`` and
        ``ix<level>_<i>``; the left (lower index) wins a tie."""
        B, W = self.beat, self.bits

        def larger(a, b):
            (va, ia), (vb, ib) = a, b
            take_b = vb > va
            return Mux(take_b, vb, va), Mux(take_b, ib, ia)

        def node(pair, level, j):
            v = Signal(signed(W), name=f"mx{level}_{j}")
            i = Signal(range(B), name=f"ix{level}_{j}")
            m.d.comb += [v.eq(pair[0]), i.eq(pair[1])]
            return v, i

        def value(i):
            v = element(self.x.payload.elem, i, W)
            last = (self.n - 1 - i) // B  # the last beat whose element i is a value
            if last >= self.rows // B - 1:
                return v  # never padding
            return Mux(cnt > last, Const(-(1 << (W - 1)), signed(W)), v)

        cnt = self._cnt
        return balanced_tree([(value(i), Const(i, range(B))) for i in range(B)], larger, node)

    def elaborate(self, platform):
        m = Module()
        B, W, nb = self.beat, self.bits, self.rows // self.beat
        self._cnt = cnt = Signal(range(nb), name="cnt")
        bv, bi = self._beat_maximum(m)
        best = Signal(signed(W))
        best_id = Signal(self.id_bits)
        full = Signal()
        here = Signal(self.id_bits)
        m.d.comb += here.eq(cnt * B + bi)
        take = (cnt == 0) | (bv > best)
        m.d.comb += [self.x.ready.eq(~full), self.y.valid.eq(full),
                     self.y.payload.id.eq(best_id), self.y.payload.logit.eq(best)]
        with m.If(self.x.valid & self.x.ready):
            with m.If(take):
                m.d.sync += [best.eq(bv), best_id.eq(here)]
            with m.If(cnt == nb - 1):
                m.d.sync += [cnt.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += full.eq(0)
        return m
