"""The residual add, :func:`golden.integer.residual_add`, bit for bit."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .rounding import round_away, saturate
from .vector import beat_count, beat_layout, element

__all__ = ["ResidualAdd", "residual_layout"]


def residual_layout(beat: int, fmt: IntFormat) -> data.StructLayout:
    """Residual-add input payload: ``h`` (``beat`` elements of ``res_bits``) at bit 0, ``y``
    (``beat`` elements of ``fx_bits``, the same indices) directly above."""
    return data.StructLayout({"h": unsigned(beat * fmt.res_bits),
                              "y": unsigned(beat * fmt.fx_bits)})


class ResidualAdd(wiring.Component):
    """``golden.integer.residual_add(h, y, fmt)``: ``saturate(h + rescale(y, fx_frac -
    res_frac, res_bits), res_bits)``; the rescale rounds ``half_away`` for a positive shift,
    is exact for a negative one, and saturates to ``res_bits`` before the add.

    A two-stage pipeline (rescale, then add and saturate) that stalls as a whole: one beat per
    cycle, ``cycles = n / beat`` per vector, :attr:`latency` 2 (a beat taken in cycle ``c``
    leaves in cycle ``c + 2``).

    Ports: ``x`` payload :func:`residual_layout` (``h``, ``y``); ``y`` payload
    ``beat_layout(beat, res_bits)``.
    """

    def __init__(self, n: int, beat: int, fmt: IntFormat):
        self.beats = beat_count(n, beat)
        self.n, self.beat, self.fmt = n, beat, fmt
        self.shift = fmt.fx_frac - fmt.res_frac
        super().__init__({"x": In(stream.Signature(residual_layout(beat, fmt))),
                          "y": Out(stream.Signature(beat_layout(beat, fmt.res_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate: ``n / beat``."""
        return self.beats

    @property
    def latency(self) -> int:
        return 2

    def elaborate(self, platform):
        m = Module()
        R, F, d = self.fmt.res_bits, self.fmt.fx_bits, self.shift
        x, y = self.x, self.y
        adv = ~y.valid | y.ready
        m.d.comb += x.ready.eq(adv)
        v1 = Signal()
        with m.If(adv):
            m.d.sync += [v1.eq(x.valid), y.valid.eq(v1)]
        for i in range(self.beat):
            h = element(x.payload.h, i, R)
            v = element(x.payload.y, i, F)
            if d >= 0:
                r = saturate(m, round_away(m, v, d, f"resc_{i}"), R, f"resc_{i}")
            else:
                # Exact left shift: a width of F - d holds it, then saturate.
                r = saturate(m, v.shift_left(-d), R, f"resc_{i}")
            h1 = Signal(signed(R), name=f"h1_{i}")
            r1 = Signal(signed(R), name=f"r1_{i}")
            total = saturate(m, h1 + r1, R, f"sum_{i}")
            with m.If(adv):
                m.d.sync += [h1.eq(h), r1.eq(r)]
                m.d.sync += y.payload.elem[i * R:(i + 1) * R].eq(total)
        return m
