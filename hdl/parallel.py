"""Fully unrolled constant multiplication: one vector per cycle, pipelined."""

from amaranth.hdl import Cat, Module, Signal, signed

from golden.linear import LinearSpec, Requant
from golden.numerics import signed_range

from .adder_graph import AdderGraph
from .ports import MatVecEngine, OutputFormatter, unpack

__all__ = ["ParallelMatVec"]


class ParallelMatVec(MatVecEngine):
    """``y = W @ x`` as a pipelined shift-add graph (see :class:`AdderGraph`).

    The input is registered, a pipeline register follows every ``stage_levels`` adder levels,
    and the output is registered. The whole pipeline advances when the output can move
    (``~y.valid | y.ready``), so ``x.ready`` is that same condition.

    Timing: ``latency = stages + 2`` cycles from input handshake to ``y.valid``;
    ``cycles_per_vector = 1``.
    """

    #: a new vector every cycle
    cycles_per_vector = 1

    def __init__(self, weights, spec: LinearSpec, *, stage_levels: int = 2,
                 requant: Requant | None = None):
        if not isinstance(stage_levels, int) or stage_levels < 0:
            raise ValueError(f"stage_levels must be a non-negative integer, not {stage_levels!r}")
        super().__init__(weights, spec, requant)
        self.stage_levels = stage_levels
        self._module = self._build()

    @property
    def latency(self) -> int:
        return self.stages + 2

    def _build(self):
        m = Module()
        rows, cols = self.weights.shape
        A = self.spec.abits
        en = Signal()
        m.d.comb += [en.eq(~self.y.valid | self.y.ready), self.x.ready.eq(en)]

        xs = [Signal(signed(A), name=f"x{j}") for j in range(cols)]
        with m.If(en):
            m.d.sync += [r.eq(v) for r, v in zip(xs, unpack(self.x.payload, cols, A), strict=True)]
        lo, hi = signed_range(A)
        graph = AdderGraph(m, xs, lo, hi, self.weights, stage_levels=self.stage_levels,
                           enable=en, name="g")
        self.stages, self.adders = graph.stages, graph.adders
        fmt = OutputFormatter(m, self.requant, self.out_bits)
        results = [fmt(v, rlo, rhi) for v, rlo, rhi in graph.outputs()]

        valid = [Signal(name=f"v{s}") for s in range(self.stages + 1)]
        with m.If(en):
            m.d.sync += valid[0].eq(self.x.valid)
            m.d.sync += [valid[s + 1].eq(valid[s]) for s in range(self.stages)]
            m.d.sync += [self.y.valid.eq(valid[-1]), self.y.payload.eq(Cat(*results))]
        return m

