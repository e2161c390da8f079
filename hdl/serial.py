"""Activation-bit-serial distributed arithmetic."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed

from golden.linear import LinearSpec, Requant, row_bounds, serial_digit_range

from .adder_graph import AdderGraph
from .arith import signed_width
from .ports import MatVecEngine, OutputFormatter, unpack

__all__ = ["SerialMatVec", "DIGITS"]

DIGITS = (1, 2, 4)


class SerialMatVec(MatVecEngine):
    """``y = W @ x`` one activation digit per cycle, all rows in parallel.

    Each activation is sign-extended to ``digits * digit`` bits and fed most significant digit
    first. Per cycle, every row adds ``sum_j W[i, j] * d_j`` for the current digits ``d_j``
    (the top digit signed, the others unsigned) through a constant shift-add graph, and
    accumulates by Horner's rule ``acc = (acc << digit) + p``. The accumulator of each row is
    exactly as wide as that row's result: every Horner prefix is ``W @ floor(x / 2**s)``, which
    lies inside the row's final bound.

    Timing: ``cycles_per_vector = ceil(abits / digit)`` and ``latency = cycles_per_vector + 1``
    (the handshake cycle, then one cycle per digit); a new vector is accepted in the cycle the
    previous one finishes, so a stream without stalls runs at full rate.

    Parameters
    ----------
    weights : ndarray
        ``rows x cols`` integer constants.
    spec : LinearSpec
    digit : int
        Activation bits per cycle: 1, 2 or 4.
    requant : Requant or None
    """

    def __init__(self, weights, spec: LinearSpec, *, digit: int = 1,
                 requant: Requant | None = None):
        if digit not in DIGITS:
            raise ValueError(f"digit must be one of {DIGITS}, not {digit!r}")
        super().__init__(weights, spec, requant)
        self.digit = digit
        self.digits = -(-spec.abits // digit)
        self._module = self._build()

    @property
    def latency(self) -> int:
        """Cycles from the input handshake to ``y.valid``."""
        return self.digits + 1

    @property
    def cycles_per_vector(self) -> int:
        return self.digits

    def _build(self):
        m = Module()
        rows, cols = self.weights.shape
        D, K, A = self.digit, self.digits, self.spec.abits
        xb = K * D

        busy = Signal()
        k = Signal(range(max(K, 2)))
        first = k == 0
        last = k == K - 1
        out_free = ~self.y.valid | self.y.ready
        adv = ~(busy & last & ~out_free)
        m.d.comb += self.x.ready.eq(adv & (~busy | last))
        fire = self.x.valid & self.x.ready

        # One shift register per activation, top digit first.
        regs = [Signal(xb, name=f"xsr{j}") for j in range(cols)]
        xs = unpack(self.x.payload, cols, A)
        digits = []
        for j, r in enumerate(regs):
            top = r[xb - D:]
            d = Signal(signed(D + 1), name=f"d{j}")
            m.d.comb += d.eq(Mux(first, top.as_signed(), top))
            digits.append(d)
        with m.If(fire):
            m.d.sync += [r.eq(x.as_signed()) for r, x in zip(regs, xs, strict=True)]
            m.d.sync += [busy.eq(1), k.eq(0)]
        with m.Elif(busy & adv):
            m.d.sync += [r.eq(r << D) for r in regs]
            m.d.sync += k.eq(k + 1)
            with m.If(last):
                m.d.sync += busy.eq(0)

        graph = AdderGraph(m, digits, *serial_digit_range(D), self.weights, name="p")
        self.adders = graph.adders
        fmt = OutputFormatter(m, self.requant, self.out_bits)
        lo, hi = row_bounds(self.weights, A)
        results = []
        for i, (p, _, _) in enumerate(graph.outputs()):
            acc = Signal(signed(signed_width(lo[i], hi[i])), name=f"acc{i}")
            nxt = Mux(first, p, (acc << D) + p)
            with m.If(busy & adv):
                m.d.sync += acc.eq(nxt)
            results.append(fmt(nxt, int(lo[i]), int(hi[i])))

        with m.If(busy & adv & last):
            m.d.sync += [self.y.payload.eq(Cat(*results)), self.y.valid.eq(1)]
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        return m

