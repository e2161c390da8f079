"""The lanes of a :class:`hdl.lane_array.LaneArray`: one row of a block-affine matrix at a
time, ``D*P + M*S`` per block into the row accumulator. Every lane of an array is the same
circuit, emitted once and instantiated per lane.

- :class:`BlockLane` reads one bit plane of a block's codes per cycle (the selected
  activations' sum, Horner over the planes).
- :class:`ParallelLane` reads a block's whole codes per cycle (a multiplier per column).

``stages`` pipeline registers cut a lane's datapath, in this order as ``stages`` grows (the
cut of the longest remaining path first): after the block sum (the selected sum, or the
products' tree), after the block term ``D*P + M*S``, before the block term (a serial lane's
finished ``P``; a parallel lane's products), between the block term's multipliers and
their sum (a DSP block's output register), halfway up the block sum's adder tree, then
at the lane's inputs (the ROM words and the activations, off their block RAMs).
Every register moves with ``en`` (the array's advance), so a stalled array stalls its lanes
whole; the row leaves ``stages`` advances after its last ROM word. The constants ``d``, ``m``
and ``act_sum`` are taken at the block term, :meth:`term_offset` advances after the codes
(with 6 stages they register at the lane's inputs, as the codes do).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import MAX_LANE_STAGES
from .arith import adder_tree, selected_sum, signed_width

__all__ = ["BlockLane", "ParallelLane", "check_stages"]


def check_stages(stages: int) -> None:
    """Raise ``ValueError`` unless a lane can take ``stages`` pipeline registers."""
    if not 0 <= stages <= MAX_LANE_STAGES:
        raise ValueError(f"a lane takes 0..{MAX_LANE_STAGES} pipeline stages, not {stages}")


class _RowLane(wiring.Component):
    """What the lanes share. Ports, in this order: the block's ``codes``, the activation
    ``chunk``, the scale ``d``, the lane's own schedule ``flags``, ``first_block``, ``update``
    and the row ``result``; then the offset ``m`` and the activation sum ``act_sum`` when the
    weights have offsets (``m_bits > 0``); then the advance ``en`` when pipelined."""

    def __init__(self, codes: dict, flags: dict, *, block: int, abits: int, b: dict,
                 d_bits: int, m_bits: int, s_bits: int, stages: int = 0):
        check_stages(stages)
        self._block, self._abits, self._b = block, abits, b
        self._has_m = m_bits > 0
        self._acc_w = signed_width(*b["acc"])
        self.stages = stages
        ports = codes | {"chunk": In(block * abits), "d": In(signed(d_bits))} | flags | {
            "first_block": In(1), "update": In(1), "result": Out(signed(self._acc_w))}
        if self._has_m:
            ports |= {"m": In(signed(m_bits)), "act_sum": In(signed(s_bits))}
        if stages:
            ports |= {"en": In(1)}
        super().__init__(ports)

    @staticmethod
    def term_offset(stages: int) -> int:
        """Advances from the codes to the block term (where ``d``, ``m``, ``act_sum`` are
        taken): the cuts before it."""
        return (stages >= 1) + (stages >= 3) + (stages >= 5)

    def _cut(self, m, cut: bool, name: str, *sigs):
        """``sigs`` through a pipeline register moved by ``en`` when ``cut``, else as they
        are. A valid bit among them is the previous stage's ``fire``."""
        if not cut:
            return sigs
        regs = [Signal(s.shape(), name=f"{name}_{i}") for i, s in enumerate(sigs)]
        with m.If(self.en):
            m.d.sync += [r.eq(s) for r, s in zip(regs, sigs, strict=True)]
        return regs

    def _tree_cut(self, m, flags: list):
        """The block sum's ``cut`` (:func:`hdl.arith.adder_tree`) at ``stages`` 5: halfway up
        the tree, ``flags`` (replaced in place) registered beside the partial sums."""
        if self.stages < 5:
            return None

        def register(sums):
            out = self._cut(m, True, "tree", *sums, *flags)
            flags[:] = out[len(sums):]
            return out[:len(sums)]

        return ((self._block - 1).bit_length() + 1) // 2, register

    def _fire(self, valid):
        """A stage's valid as an enable. Unpipelined it is ``update``'s, which holds only
        when the array advances; a pipeline register's valid bit needs ``en`` too."""
        return self.en & valid if self.stages else valid

    def _accumulate(self, m, p, take, first, cut_before: bool):
        """The block term ``D*P + M*S`` into the row accumulator, which takes the sum when
        ``take`` fires; ``result`` is the sum (the finished row in a row's last stage)."""
        p, take, first = self._cut(m, cut_before, "pre_term", p, take, first)
        d, mm, s = self.d, getattr(self, "m", None), getattr(self, "act_sum", None)
        if self.stages >= 6:  # off their block RAMs, as the codes
            d, *ms = self._cut(m, True, "in_term", d, *([mm, s] if self._has_m else []))
            if ms:
                mm, s = ms
        term = Signal(signed(signed_width(*self._b["term"])))
        if self.stages >= 4:  # the multipliers' own output registers, then their sum
            dp = Signal(signed(len(d) + len(p)), name="dp")
            m.d.comb += dp.eq(d * p)
            prods = [dp]
            if self._has_m:
                ms = Signal(signed(len(mm) + len(s)), name="ms")
                m.d.comb += ms.eq(mm * s)
                prods.append(ms)
            *prods, take, first = self._cut(m, True, "prod_term", *prods, take, first)
            m.d.comb += term.eq(sum(prods[1:], prods[0]))
        elif self._has_m:
            m.d.comb += term.eq(d * p + mm * s)
        else:
            m.d.comb += term.eq(d * p)
        term, take, first = self._cut(m, self.stages >= 2, "term", term, take, first)
        acc, acc_next = Signal(signed(self._acc_w)), Signal(signed(self._acc_w))
        m.d.comb += acc_next.eq(Mux(first, term, acc + term))
        with m.If(self._fire(take)):
            m.d.sync += acc.eq(acc_next)
        m.d.comb += self.result.eq(acc_next)


class BlockLane(_RowLane):
    """One lane: selected-activation sum, Horner over planes, then ``D*P + M*S`` into the
    row accumulator. ``result`` is the finished row, combinationally, ``stages`` advances
    after the last plane of the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, b: dict, d_bits: int, m_bits: int,
                 s_bits: int, stages: int = 0):
        super().__init__({"bits": In(block)}, {"sign_plane": In(1), "last_plane": In(1)},
                         block=block, abits=abits, b=b, d_bits=d_bits, m_bits=m_bits,
                         s_bits=s_bits, stages=stages)

    def elaborate(self, platform):
        m = Module()
        b = self._b
        tree = Signal(signed(signed_width(*b["tree"])))
        bits, chunk, *flags = self._cut(m, self.stages >= 6, "in", self.bits, self.chunk,
                                        self.update, self.sign_plane, self.last_plane,
                                        self.first_block)
        m.d.comb += tree.eq(selected_sum(m, bits, chunk, self._block, self._abits,
                                         cut=self._tree_cut(m, flags)))
        tree, valid, sign, last, first = self._cut(m, self.stages >= 1, "sum", tree, *flags)
        hw = signed_width(*b["horner"])
        p, p_next = Signal(signed(hw)), Signal(signed(hw))
        m.d.comb += p_next.eq(Mux(sign, -tree, (p << 1) + tree))
        with m.If(self._fire(valid)):
            m.d.sync += p.eq(p_next)
        self._accumulate(m, p_next, valid & last, first, self.stages >= 3)
        return m


class ParallelLane(_RowLane):
    """One lane of a parallel layout: a block's whole codes per cycle, a multiplier per
    column for ``P``, then ``D*P + M*S`` into the row accumulator. ``result`` is the finished
    row, combinationally, ``stages`` advances after the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, elem_bits: int, b: dict, d_bits: int,
                 m_bits: int, s_bits: int, stages: int = 0):
        self._eb = elem_bits
        super().__init__({"codes": In(block * elem_bits)}, {}, block=block, abits=abits, b=b,
                         d_bits=d_bits, m_bits=m_bits, s_bits=s_bits, stages=stages)

    def elaborate(self, platform):
        m = Module()
        A, C, b = self._abits, self._eb, self._b
        plo, phi = b["product"]
        codes, chunk, update, first = self._cut(m, self.stages >= 6, "in", self.codes,
                                                self.chunk, self.update, self.first_block)
        products = []
        for k in range(self._block):
            pr = Signal(signed(signed_width(plo, phi)), name=f"prod{k}")
            m.d.comb += pr.eq(chunk[k * A:(k + 1) * A].as_signed()
                              * codes[k * C:(k + 1) * C].as_signed())
            products.append(pr)
        *products, valid, first = self._cut(m, self.stages >= 3, "prod", *products,
                                            update, first)
        code = Signal(signed(signed_width(*b["code"])))
        flags = [valid, first]
        m.d.comb += code.eq(adder_tree(m, products, plo, phi, cut=self._tree_cut(m, flags)))
        code, valid, first = self._cut(m, self.stages >= 1, "sum", code, *flags)
        self._accumulate(m, code, valid, first, False)
        return m
