"""One lane of the folded engine: the sum of the activations a ROM word selects, and the Horner
accumulator. Every lane of a design is the same circuit, so it is emitted once and
instantiated per lane."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.linear import Requant

from .arith import selected_sum, signed_width
from .requantizer import Requantizer

__all__ = ["FoldedLane"]


class FoldedLane(wiring.Component):
    """Lane datapath.

    Parameters
    ----------
    word, abits : int
        Activations per chunk and their width.
    tree_bounds, acc_bounds, out_bounds : tuple of int
        Exact ranges (from :mod:`golden.folded` and :mod:`golden.linear`) of the per-cycle
        sum, of every accumulator value, and of a finished row.
    out_bits : int
    requant : Requant or None

    Members
    -------
    bits : In(word)
        The ROM word: bit ``k`` selects activation ``k`` of ``chunk``.
    chunk : In(word * abits)
    first_chunk, sign_plane, update : In(1)
        Schedule flags; the accumulator takes ``result_acc`` when ``update`` is high.
    result : Out(signed(out_bits))
        The output element of the row, valid in the cycle of its last word.
    """

    def __init__(self, *, word: int, abits: int, tree_bounds, acc_bounds, out_bounds,
                 out_bits: int, requant: Requant | None):
        self._word, self._abits = word, abits
        self._tree_w = signed_width(*tree_bounds)
        self._acc_w = signed_width(*acc_bounds)
        self._out_bounds, self._rq = out_bounds, requant
        super().__init__({
            "bits": In(word), "chunk": In(word * abits), "first_chunk": In(1),
            "sign_plane": In(1), "update": In(1), "result": Out(signed(out_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        tree = Signal(signed(self._tree_w))
        m.d.comb += tree.eq(selected_sum(m, self.bits, self.chunk, self._word, self._abits))
        acc = Signal(signed(self._acc_w))
        nxt = Signal(signed(self._acc_w))
        base = Mux(self.first_chunk, Mux(self.sign_plane, 0, acc << 1), acc)
        m.d.comb += nxt.eq(base + Mux(self.sign_plane, -tree, tree))
        with m.If(self.update):
            m.d.sync += acc.eq(nxt)
        if self._rq is None:
            m.d.comb += self.result.eq(nxt)
        else:
            m.submodules.requant = rq = Requantizer(*self._out_bounds, self._rq)
            m.d.comb += [rq.i.eq(nxt), self.result.eq(rq.o)]
        return m
