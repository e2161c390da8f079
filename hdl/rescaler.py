""":func:`golden.integer.rescale` of one value by a run-time shift, bit for bit, and a lane
array's output of rescaled rows through it (:func:`batch_output`)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.integer import MODE
from golden.numerics import rounding_bias_terms, signed_range

from .vector import element

__all__ = ["Rescaler", "OUTPUT_REGISTERS", "pass_latency", "batch_output"]

#: Registers between a finished batch's rows and ``y``: the rescalers' own (after the rounding
#: bias is added, and after the shift; :class:`hdl.rescaler.Rescaler`).
OUTPUT_REGISTERS = 2


def pass_latency(stages: int) -> int:
    """Cycles a pass's last batch takes after its last ROM read before its first beat is on
    ``y``, beyond the unpipelined array's: the lanes' ``stages`` and the output register."""
    return stages + OUTPUT_REGISTERS


class Rescaler(wiring.Component):
    """:func:`golden.integer.rescale` of one value by a run-time shift: ``v * 2**-s``
    rounded half away from zero when ``s > 0``, exact when ``s <= 0``, saturated to
    ``out_bits``. Combinational, or with ``registered`` in three steps with a pipeline
    register after each of the first two, both moved by ``en``: the rounding bias added
    (beside the clamped shifts), the shift, the saturation. ``o`` is then the value that
    came in on ``v`` and ``s`` two advances before."""

    def __init__(self, in_bits: int, shift_bits: int, out_bits: int, *,
                 registered: bool = False):
        # The bias below is 2**(s-1) - (v < 0): golden's table for its rounding mode, for
        # every shift this rescaler can take. Fail here if golden's rule ever changes.
        for s in range(1, in_bits + 2):
            if rounding_bias_terms(s, MODE) != (1 << (s - 1), -1, 0):
                raise ValueError(f"Rescaler implements half_away; golden rounds {MODE}")
        self._in, self._out, self.registered = in_bits, out_bits, registered
        ports = {"v": In(signed(in_bits)), "s": In(signed(shift_bits)), "o": Out(signed(out_bits))}
        super().__init__(ports | ({"en": In(1)} if registered else {}))

    def _stage(self, m, *sigs):
        """``sigs`` through pipeline registers moved by ``en`` when ``registered``."""
        if not self.registered:
            return sigs
        regs = [Signal(v.shape(), name=f"{v.name}_r") for v in sigs]
        with m.If(self.en):
            m.d.sync += [r.eq(v) for r, v in zip(regs, sigs, strict=True)]
        return regs

    def elaborate(self, platform):
        m = Module()
        W, OB = self._in, self._out
        v, s = self.v, self.s
        # Shifts beyond these make no difference: right by W + 1 leaves 0, left by OB saturates.
        right = Signal(range(W + 2))
        left = Signal(range(OB + 1))
        m.d.comb += [
            right.eq(Mux(s > 0, Mux(s > W + 1, W + 1, s), 0)),
            left.eq(Mux(s < 0, Mux(-s > OB, OB, -s), 0)),
        ]
        half = Signal(W + 1)
        m.d.comb += half.eq((Const(1, W + 2) << right) >> 1)
        bias = Signal(signed(W + 2))
        m.d.comb += bias.eq(half - ((v < 0) & (right != 0)))
        # with no right shift the bias is 0, so ``biased`` is ``v`` for the left shift too
        biased = Signal(signed(W + 2))
        m.d.comb += biased.eq(v + bias)
        biased, right, left = self._stage(m, biased, right, left)
        val = Signal(signed(W + OB + 2))
        m.d.comb += val.eq(Mux(right != 0, biased >> right, biased << left))
        (val,) = self._stage(m, val)
        lo, hi = signed_range(OB)
        m.d.comb += self.o.eq(Mux(val > hi, hi, Mux(val < lo, lo, val)))
        return m


def batch_output(self, m, r, results):
    """A finished batch waits in ``pend`` and leaves beat by beat, each row rescaled
    through the rescalers' :data:`OUTPUT_REGISTERS` registers, which move together when
    ``y`` can take a beat. The batch's shift is taken with it."""
    B, E, P, W = self.beat, self.fmt.exp_bits, self.lanes, self.acc_bits
    y = self.y
    pend = Signal(P * W)
    pend_pass = Signal(r.pass_bits)
    sc = self._shift_const(m, r.passo)
    sh = Signal(signed(max(len(sc), E) + 2))
    pend_sh = Signal.like(sh)
    m.d.comb += sh.eq(sc - r.eo)
    k = Signal(range(max(P // B, 2)))
    oadv, take = Signal(), Signal()  # the output registers move; they take pend's beat
    m.d.comb += [oadv.eq(~y.valid | y.ready), take.eq(r.pend_full & oadv)]
    with m.If(r.adv & r.vo & r.batcho):
        m.d.sync += [pend.eq(Cat(*results)), pend_sh.eq(sh), pend_pass.eq(r.passo),
                     r.pend_full.eq(1), k.eq(0)]
    with m.Elif(take):
        # the next beat's rows move down: a constant shift, no wide multiplexer
        m.d.sync += pend.eq(pend[B * W:])
    sel = pend[:B * W]
    outs = []
    for j in range(B):
        rs = Rescaler(W, len(sh), self.fmt.fx_bits, registered=True)
        m.submodules[f"rescale{j}"] = rs
        m.d.comb += [rs.v.eq(element(sel, j, W)), rs.s.eq(pend_sh), rs.en.eq(oadv)]
        outs.append(rs.o)
    m.d.comb += y.payload.elem.eq(Cat(*outs))
    # the valid bit (and the pass) beside the rescalers' registers
    carried = [take] + ([pend_pass] if self.select else [])
    for n in range(OUTPUT_REGISTERS):
        if n == OUTPUT_REGISTERS - 1:
            nxt = [y.valid] + ([y.payload.sel] if self.select else [])
        else:
            nxt = [Signal.like(c, name=f"out{n + 1}_{i}") for i, c in enumerate(carried)]
        with m.If(oadv):
            m.d.sync += [a.eq(b) for a, b in zip(nxt, carried, strict=True)]
        carried = nxt
    with m.If(take):
        with m.If(k == P // B - 1):
            m.d.sync += r.pend_full.eq(0)
        with m.Else():
            m.d.sync += k.eq(k + 1)
