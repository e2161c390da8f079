"""Requantisation of an accumulator to a narrow signed output, as :class:`golden.linear.Requant`
defines it: multiply by a constant, add the rounding bias of the named mode, arithmetic shift,
saturate."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.linear import Requant
from golden.numerics import rounding_bias_terms, signed_range

from .arith import signed_width

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """Combinational requantiser.

    Parameters
    ----------
    lo, hi : int
        Range of the input accumulator.
    requant : Requant
        Multiplier, shift, rounding mode and output width.

    Members
    -------
    i : In(signed)
        Accumulator.
    o : Out(signed(requant.out_bits))
        Requantised value.
    """

    def __init__(self, lo: int, hi: int, requant: Requant):
        if not isinstance(requant, Requant):
            raise TypeError(f"requant must be a Requant, not {requant!r}")
        self._rq = requant
        self._plo, self._phi = requant.product_bounds(lo, hi)
        in_w = signed_width(lo, hi)
        super().__init__({"i": In(signed(in_w)), "o": Out(signed(requant.out_bits))})

    def elaborate(self, platform):
        m = Module()
        rq = self._rq
        s = rq.shift
        prod = Signal(signed(signed_width(self._plo, self._phi)))
        m.d.comb += prod.eq(self.i * rq.multiplier)
        # golden's bias table: const + per_negative * (prod < 0) + per_bit * prod[shift].
        const, per_neg, per_bit = rounding_bias_terms(s, rq.rounding)
        bias = const
        if per_neg:
            bias = bias + per_neg * prod[-1]
        if per_bit:
            # Bits above the top of prod are copies of its sign bit.
            bias = bias + per_bit * prod[min(s, len(prod) - 1)]
        blo = self._plo + const + min(per_neg, 0)
        bhi = self._phi + const + max(per_neg, 0) + max(per_bit, 0)
        biased = Signal(signed(signed_width(blo, bhi)))
        m.d.comb += biased.eq(prod + bias)
        shifted = Signal(signed(max(len(biased) - s, 1)))
        m.d.comb += shifted.eq(biased >> s)
        lo, hi = signed_range(rq.out_bits)
        m.d.comb += self.o.eq(Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))
        return m
