"""The lanes of a :class:`hdl.lane_array.LaneArray`: one row of a block-affine matrix at a
time, ``D*P + M*S`` per block into the row accumulator. Every lane of an array is the same
circuit, emitted once and instantiated per lane.

- :class:`BlockLane` reads one bit plane of a block's codes per cycle (the selected
  activations' sum, Horner over the planes).
- :class:`ParallelLane` reads a block's whole codes per cycle (a multiplier per column).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import adder_tree, selected_sum, signed_width

__all__ = ["BlockLane", "ParallelLane"]


class _RowLane(wiring.Component):
    """What the lanes share. Ports, in this order: the block's ``codes``, the activation
    ``chunk``, the scale ``d``, the lane's own schedule ``flags``, ``first_block``, ``update``
    and the row ``result``; then the offset ``m`` and the activation sum ``act_sum`` when the
    weights have offsets (``m_bits > 0``)."""

    def __init__(self, codes: dict, flags: dict, *, block: int, abits: int, b: dict,
                 d_bits: int, m_bits: int, s_bits: int):
        self._block, self._abits, self._b = block, abits, b
        self._has_m = m_bits > 0
        self._acc_w = signed_width(*b["acc"])
        ports = codes | {"chunk": In(block * abits), "d": In(signed(d_bits))} | flags | {
            "first_block": In(1), "update": In(1), "result": Out(signed(self._acc_w))}
        if self._has_m:
            ports |= {"m": In(signed(m_bits)), "act_sum": In(signed(s_bits))}
        super().__init__(ports)

    def _accumulate(self, m, p, take):
        """The block term ``D*P + M*S`` into the row accumulator, which takes the sum when
        ``take`` is high; ``result`` is the sum (the finished row in a row's last cycle)."""
        term = Signal(signed(signed_width(*self._b["term"])))
        if self._has_m:
            m.d.comb += term.eq(self.d * p + self.m * self.act_sum)
        else:
            m.d.comb += term.eq(self.d * p)
        acc, acc_next = Signal(signed(self._acc_w)), Signal(signed(self._acc_w))
        m.d.comb += acc_next.eq(Mux(self.first_block, term, acc + term))
        with m.If(take):
            m.d.sync += acc.eq(acc_next)
        m.d.comb += self.result.eq(acc_next)


class BlockLane(_RowLane):
    """One lane: selected-activation sum, Horner over planes, then ``D*P + M*S`` into the
    row accumulator. ``result`` is the finished row, combinationally, in the cycle of the last
    plane of the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, b: dict, d_bits: int, m_bits: int,
                 s_bits: int):
        super().__init__({"bits": In(block)}, {"sign_plane": In(1), "last_plane": In(1)},
                         block=block, abits=abits, b=b, d_bits=d_bits, m_bits=m_bits,
                         s_bits=s_bits)

    def elaborate(self, platform):
        m = Module()
        b = self._b
        tree = Signal(signed(signed_width(*b["tree"])))
        m.d.comb += tree.eq(selected_sum(m, self.bits, self.chunk, self._block, self._abits))
        hw = signed_width(*b["horner"])
        p, p_next = Signal(signed(hw)), Signal(signed(hw))
        m.d.comb += p_next.eq(Mux(self.sign_plane, -tree, (p << 1) + tree))
        with m.If(self.update):
            m.d.sync += p.eq(p_next)
        self._accumulate(m, p_next, self.update & self.last_plane)
        return m


class ParallelLane(_RowLane):
    """One lane of a parallel layout: a block's whole codes per cycle, a multiplier per
    column for ``P``, then ``D*P + M*S`` into the row accumulator. ``result`` is the finished
    row, combinationally, in the cycle of the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, elem_bits: int, b: dict, d_bits: int,
                 m_bits: int, s_bits: int):
        self._eb = elem_bits
        super().__init__({"codes": In(block * elem_bits)}, {}, block=block, abits=abits, b=b,
                         d_bits=d_bits, m_bits=m_bits, s_bits=s_bits)

    def elaborate(self, platform):
        m = Module()
        A, C, b = self._abits, self._eb, self._b
        plo, phi = b["product"]
        products = []
        for k in range(self._block):
            pr = Signal(signed(signed_width(plo, phi)), name=f"prod{k}")
            m.d.comb += pr.eq(self.chunk[k * A:(k + 1) * A].as_signed()
                              * self.codes[k * C:(k + 1) * C].as_signed())
            products.append(pr)
        code = Signal(signed(signed_width(*b["code"])))
        m.d.comb += code.eq(adder_tree(m, products, plo, phi))
        self._accumulate(m, code, self.update)
        return m
