"""Block floating point of an integer vector into matvec activations,
:func:`golden.integer.bfp`, bit for bit."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width
from .beat_buffer import BFP_OUT_LATENCY, BfpBuffer
from .vector import beat_count, beat_layout, element

__all__ = ["BfpUnit"]


class BfpUnit(wiring.Component):
    """Block floating point of an integer vector: ``golden.integer.bfp(v, out_bits, in_frac)``.

    Two passes over a buffer of beats (:class:`hdl.beat_buffer.BfpBuffer`): the input pass
    stores each beat and ORs the element magnitudes (``bitlen(max|v|) == bitlen(OR |v|)``);
    the output pass reads the beats back and rounds (``half_away``) and saturates each
    element by the vector's shift ``s = max(0, bitlen - (out_bits - 1))``; every output beat
    carries ``e = s - in_frac``. Input of the next vector overlaps the output pass: beat
    ``j`` is overwritten only after it has been read.

    Timing at full rate, vectors back to back: ``cycles = n / beat + 1`` per vector (one beat
    per cycle plus one cycle to turn the buffer around); latency of the first output beat
    after the last input beat: 5 cycles.

    Ports: ``x`` beats of ``beat`` elements of ``in_bits`` (``beat_layout(beat, in_bits)``),
    ``y`` beats of ``beat_layout(beat, out_bits, exp_bits)``.
    """

    def __init__(self, n: int, beat: int, in_bits: int, in_frac: int, out_bits: int,
                 exp_bits: int = 8):
        self.beats = beat_count(n, beat)
        if out_bits < 2 or in_bits < 1 or exp_bits < 2:
            raise ValueError("widths too small")
        self.n, self.beat, self.in_bits, self.in_frac = n, beat, in_bits, in_frac
        self.out_bits, self.exp_bits = out_bits, exp_bits
        self.smax = max(0, in_bits - (out_bits - 1))  # bitlen(|v|) <= in_bits
        super().__init__({"x": In(stream.Signature(beat_layout(beat, in_bits))),
                          "y": Out(stream.Signature(beat_layout(beat, out_bits, exp_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back: ``n / beat + 1``."""
        return self.beats + 1

    @property
    def latency(self) -> int:
        """Cycles from the last input beat of a vector (into an idle unit) to its first
        output beat: 5 (the input's write, then :data:`hdl.beat_buffer.BFP_OUT_LATENCY`)."""
        return 1 + BFP_OUT_LATENCY

    def elaborate(self, platform):
        m = Module()
        x, W = self.x, self.in_bits
        bfp = BfpBuffer(m, beats=self.beats, beat=self.beat, bits=W, out_bits=self.out_bits,
                        s_max=self.smax, exp_bits=self.exp_bits)
        elems = [element(x.payload.elem, i, W) for i in range(self.beat)]
        bfp.store(m, x.valid, x.ready, x.payload.elem, elems)
        e_bits = max(self.exp_bits, signed_width(-self.in_frac, self.smax)) + 1

        def exponent(s):
            e_new = Signal(signed(e_bits), name="e_new")
            m.d.comb += e_new.eq(s - self.in_frac)  # unsigned - unsigned is signed, exact
            return e_new

        bfp.emit(m, self.y, exponent)
        return m
