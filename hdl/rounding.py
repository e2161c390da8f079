"""Rounding and saturation of signed lane values, bit for bit :mod:`golden.numerics`
(``round_shift(v, s, "half_away")``, ``saturate``), by a constant shift (:func:`round_away`)
or by a run-time one shared by the lanes (:class:`RoundShift`).

Every helper here drives comb signals with plain assignments: call them outside any ``m.If``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed

from .arith import wire

__all__ = ["RoundShift", "round_away", "saturate"]


def saturate(m: Module, v, bits: int, name: str):
    """``golden.numerics.saturate(v, bits)`` of a signed value (a signal, or put on the comb
    signal ``name``: it is used three times)."""
    if len(v) <= bits:
        return v
    if not isinstance(v, Signal):
        v = wire(m, v, name)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v[:bits].as_signed()))


def round_away(m: Module, v, shift: int, name: str):
    """``round_shift(v, shift, "half_away")`` of a signed signal ``v`` (or a slice of one:
    it is used twice) for a constant ``shift >= 0``: ``floor((v + bias) / 2**shift)`` with
    the bias ``2**(shift-1) - (v < 0)`` (:func:`golden.numerics.rounding_bias_terms`), which
    is the wiring ``shift - 1`` sign bits under the inverted sign. The low ``shift`` bits of
    ``v`` only give a carry into the high ones: two narrow adders instead of one as wide as
    ``v`` (the netlist checks cost output bits times input bits per adder). The comb signal
    ``name``."""
    if shift == 0:
        return v
    bias = Cat(v[-1].replicate(shift - 1), ~v[-1])
    if shift >= len(v):
        return wire(m, (v + bias)[shift:].as_signed(), name)
    carry = (v[:shift] + bias)[shift]
    return wire(m, v[shift:].as_signed() + carry, name)


class RoundShift:
    """``saturate(round_shift(v, s, "half_away"), bits)`` of signed lane values ``v`` (up to
    ``width`` bits) for one variable shift ``0 <= s <= s_max`` shared by the lanes.

    No operator is as wide as ``v`` (Amaranth's netlist checks cost output bits times input
    bits per operator, and a wide shifter and adders per lane dominated the conversion):

    - ``t = floor(v / 2**(s-1))`` (``2 * v`` for ``s == 0``) is a ``bits + 1`` bit slice at
      offset ``s`` of ``v`` with a zero below it and the sign above (``bit_select``);
    - ``round_shift`` is ``(t + 1 - (v < 0 and v % 2**(s-1) == 0)) >> 1`` (the bias
      ``2**(s-1) - (v < 0)`` of :func:`golden.numerics.rounding_bias_terms` added after the
      shift): the low bits of ``v`` are tested with the mask ``k < s - 1``;
    - the rounded value fits ``bits + 1`` bits when ``t`` fits: ``v[k]`` equals the sign for
      ``k >= s + bits - 1`` (mask ``high``); otherwise it saturates by the sign.

    The masks come from one thermometer code ``2**s - 1`` shared by the lanes (a comb
    signal). ``bounded``: the caller guarantees ``|v| < 2**(bits-1+s)`` (``s`` from the bit
    length of the largest ``|v|``), so the rounded value lies in ``[-2**(bits-1),
    2**(bits-1)]`` and the range test is left out."""

    def __init__(self, m: Module, s, s_max: int, width: int, bits: int, name: str, *,
                 bounded: bool = False):
        self.m, self.s, self.s_max, self.bits = m, s, s_max, bits
        self.nl = min(width, s_max - 1)  # v[k] below the rounding bit: k < s - 1
        self.nh = 0 if bounded else max(0, width - (bits - 1))  # v[k], k >= bits - 1 ...
        tw = max(self.nl + 1, self.nh)
        self.low = self.high = None
        if tw > 0:
            thermo = Signal(tw, name=f"{name}_thermo")  # bit k: k < s
            m.d.comb += thermo.eq((Const(1, 1) << s) - 1)
            if self.nl > 0:
                self.low = thermo[1:self.nl + 1]
            if self.nh > 0:  # ... that must equal the sign: k >= s + bits - 1
                self.high = Signal(self.nh, name=f"{name}_high")
                m.d.comb += self.high.eq(~thermo)

    def __call__(self, v, name: str, cut=None) -> Signal:
        """The rounded, saturated ``v`` (a signal or a slice of one: it is used several times)
        as a comb signal ``name``. ``cut(*signals)``, if given, puts the shifted value and
        its rounding and range bits through pipeline registers (it returns them) before the
        rounding add and the saturation: ``v`` and ``s`` are then read a stage earlier."""
        m, bits = self.m, self.bits
        v = v.as_signed()
        w, sign = len(v), v[-1]
        # The sign above v, explicitly: the simulator reads bits above an expression as 0.
        ext = Cat(Const(0, 1), v, sign.replicate(max(0, self.s_max + bits - w)))
        t = wire(m, ext.bit_select(self.s, bits + 1).as_signed(), f"{name}_t")
        exact = Const(1, 1)  # v % 2**(s-1) == 0
        if self.low is not None:
            nl = min(w, self.nl)
            exact = (v[:nl] & self.low[:nl]) == 0
        down = wire(m, sign & exact, f"{name}_down")  # the bias is one less
        over = None  # |v| beyond what the shift brings into range
        if self.high is not None and w > bits - 1:
            nh = min(w - (bits - 1), self.nh)
            high = self.high[:nh]
            vh = wire(m, v[bits - 1:bits - 1 + nh] & high, f"{name}_vh")
            over = wire(m, Mux(sign, vh != high, vh != 0), f"{name}_over")
        if cut is not None:
            t, sign, down, *rest = cut(t, sign, down, *([] if over is None else [over]))
            over = rest[0] if rest else None
        u = wire(m, t + ~down, f"{name}_u")
        r = u[1:].as_signed()  # in [-2**(bits-1), 2**(bits-1)] when t fits
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        out = Mux(r > hi, hi, r[:bits].as_signed())  # r >= lo when t fits
        if over is not None:
            out = Mux(over, Mux(sign, lo, hi), out)
        res = Signal(signed(bits), name=name)
        m.d.comb += res.eq(out)
        return res
