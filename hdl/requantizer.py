"""Requantisation of an accumulator to a narrow signed output, as :class:`golden.linear.Requant`
defines it: multiply by a constant, add the rounding bias of the named mode, arithmetic shift,
saturate."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.linear import Requant
from golden.numerics import signed_range, signed_width

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
        in_w = int(signed_width(lo, hi))
        super().__init__({"i": In(signed(in_w)), "o": Out(signed(requant.out_bits))})

    def elaborate(self, platform):
        m = Module()
        rq = self._rq
        s = rq.shift
        prod = Signal(signed(int(signed_width(self._plo, self._phi))))
        m.d.comb += prod.eq(self.i * rq.multiplier)
        # The bias of each mode, as golden.numerics.rounding_bias defines it (its table).
        neg = prod[-1]
        if s == 0 or rq.rounding == "floor":
            bias = 0
        elif rq.rounding == "trunc_zero":
            bias = Mux(neg, (1 << s) - 1, 0)
        elif rq.rounding == "half_up":
            bias = 1 << (s - 1)
        elif rq.rounding == "half_down":
            bias = (1 << (s - 1)) - 1
        elif rq.rounding == "half_away":
            bias = (1 << (s - 1)) - neg
        elif rq.rounding == "half_even":
            bias = (1 << (s - 1)) - 1 + prod[s]
        else:  # pragma: no cover - Requant validates the mode
            raise AssertionError(rq.rounding)
        biased = Signal(signed(len(prod) + 1))
        m.d.comb += biased.eq(prod + bias)
        shifted = Signal(signed(max(len(biased) - s, 1)))
        m.d.comb += shifted.eq(biased >> s)
        lo, hi = signed_range(rq.out_bits)
        m.d.comb += self.o.eq(Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))
        return m
