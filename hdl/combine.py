"""The weighted sum of a token's experts, :func:`golden.gpt_oss_int.combine_int`, bit for
bit."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .arith import counter, signed_width
from .rounding import round_away, saturate
from .router import router_layout
from .vector import beat_count, beat_layout, element

__all__ = ["CombineUnit"]


class CombineUnit(wiring.Component):
    """``rescale(sum_j w_j * y_j, prob_frac)`` over a token's ``top_k`` expert outputs.

    Each expert's output vector (``n / beat`` beats on ``x``) comes with its weight (one
    beat on ``w``, :func:`hdl.router.router_layout`, taken with the vector's last beat). The
    products accumulate, exactly, in a memory of ``n / beat`` words; the last expert's beats
    leave as they are added, rounded (half away) and saturated to ``fx_bits``. One register
    stage: one beat per cycle at full rate, :attr:`latency` 1.

    Ports: ``x`` ``beat_layout(beat, fx_bits)``; ``w`` ``router_layout``; ``y``
    ``beat_layout(beat, fx_bits)``.
    """

    def __init__(self, n: int, beat: int, top_k: int, n_experts: int, fmt: IntFormat):
        self.n, self.beat, self.top_k, self.fmt = n, beat, top_k, fmt
        self.beats = beat_count(n, beat)
        fx, pf = fmt.fx_bits, fmt.prob_frac
        lo, hi = -(1 << (fx - 1)), (1 << (fx - 1)) - 1
        wmax = 1 << pf  # a weight is at most 1.0
        self.prod_bits = signed_width(lo * wmax, hi * wmax)
        self.acc_bits = signed_width(top_k * lo * wmax, top_k * hi * wmax)
        fx_beat = beat_layout(beat, fx)
        super().__init__({"x": In(stream.Signature(fx_beat)),
                          "w": In(stream.Signature(router_layout(n_experts, fmt))),
                          "y": Out(stream.Signature(fx_beat))})

    @property
    def latency(self) -> int:
        return 1

    @property
    def cycles(self) -> int:
        """Cycles per token at full rate: one per input beat."""
        return self.top_k * self.beats

    def elaborate(self, platform):
        m = Module()
        fmt, B, A, K, nb = self.fmt, self.beat, self.acc_bits, self.top_k, self.beats
        fx = fmt.fx_bits
        x, w, y = self.x, self.w, self.y
        mem = memory.Memory(shape=unsigned(B * A), depth=nb, init=[])
        m.submodules.acc = mem
        wp, rp = mem.write_port(), mem.read_port()
        t, j = counter(nb, "t"), counter(K, "j")
        held, last1, first1 = Signal(), Signal(), Signal()
        t1, y1, w1 = counter(nb, "t1"), Signal(B * fx), Signal(fmt.prob_frac + 1)
        adv = Signal()
        m.d.comb += [adv.eq(~(held & last1) | y.ready),
                     x.ready.eq(adv & w.valid), rp.addr.eq(t), rp.en.eq(adv)]
        fire = x.valid & x.ready
        m.d.comb += w.ready.eq(fire & (t == nb - 1))
        with m.If(fire):
            m.d.sync += t.eq(Mux(t == nb - 1, 0, t + 1))
            with m.If(t == nb - 1):
                m.d.sync += j.eq(Mux(j == K - 1, 0, j + 1))
        with m.If(adv):
            m.d.sync += [held.eq(fire), last1.eq(j == K - 1), first1.eq(j == 0), t1.eq(t),
                         y1.eq(x.payload.elem), w1.eq(w.payload.weight)]
        # the word just written, for a read of the same word in the next cycle (one beat)
        fwd_ok, fwd_addr, fwd_data = Signal(), counter(nb, "fwd_addr"), Signal(B * A)
        old = Mux(fwd_ok & (fwd_addr == t1), fwd_data, rp.data)
        sums, outs = [], []
        for k in range(B):
            prod = Signal(signed(self.prod_bits), name=f"prod{k}")
            m.d.comb += prod.eq(element(y1, k, fx) * w1)
            s = Signal(signed(A), name=f"acc{k}")
            m.d.comb += s.eq(Mux(first1, 0, element(old, k, A)) + prod)
            sums.append(s)
            outs.append(saturate(m, round_away(m, s, fmt.prob_frac, f"out{k}_rnd"), fx,
                                 f"out{k}"))
        write = Signal()
        m.d.comb += [write.eq(held & adv & ~last1), wp.addr.eq(t1), wp.data.eq(Cat(*sums)),
                     wp.en.eq(write)]
        with m.If(adv):  # while the stage waits, so does what it forwards
            m.d.sync += [fwd_ok.eq(write), fwd_addr.eq(t1), fwd_data.eq(Cat(*sums))]
        m.d.comb += [y.valid.eq(held & last1), y.payload.elem.eq(Cat(*outs))]
        return m
