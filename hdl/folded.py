"""Lane-multiplexed matrix-vector engine with mask ROMs: the strategy that scales."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring

from golden import folded as gf
from golden.linear import LinearSpec, Requant, row_bounds
from golden.numerics import signed_width

from .mask_rom import MaskRom
from .ports import OutputFormatter, matvec_ports, out_bits

__all__ = ["FoldedMatVec"]


def _balanced_sum(terms):
    while len(terms) > 1:
        nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class FoldedMatVec(wiring.Component):
    """``y = W @ x`` on ``lanes`` lanes, each reading one ``word``-bit ROM word per cycle.

    The schedule and ROM contents are :mod:`golden.folded`'s. A two-stage pipeline: stage 0
    issues the ROM address and latches the matching activation chunk, stage 1 adds the
    activations selected by the word's bits and accumulates by Horner's rule. Every lane
    finishes a row at the same cycle; the finished rows shift into the output vector.

    Timing: ``cycles_per_vector = rows_per_lane * wbits * ceil(cols / word)`` (the ROM depth);
    the next vector is accepted in the cycle the last word of the current one issues, so
    vectors follow back to back. ``latency = cycles_per_vector + 2``.

    Parameters
    ----------
    weights : ndarray
    spec : LinearSpec
    lanes, word : int
        See :class:`golden.folded.FoldedLayout`.
    requant : Requant or None
    rom_images : bool
        Load ROM contents from ``$readmemh`` files (named in :attr:`roms`) instead of
        writing them into the Verilog.
    """

    def __init__(self, weights, spec: LinearSpec, *, lanes: int, word: int,
                 requant: Requant | None = None, rom_images: bool = False):
        self.spec, self.requant = spec, requant
        self.weights, ports = matvec_ports(weights, spec, requant)
        rows, cols = self.weights.shape
        self.layout = gf.FoldedLayout(rows=rows, cols=cols, wbits=spec.wbits, lanes=lanes,
                                      word=word)
        self.out_bits = out_bits(self.weights, spec, requant)
        images = gf.rom_images(self.weights, self.layout)
        self.roms = [MaskRom(images[p], word, image=f"rom_lane{p:03d}.hex" if rom_images else None)
                     for p in range(lanes)]
        super().__init__(ports)
        self._module = self._build()

    @property
    def latency(self) -> int:
        return self.layout.cycles_per_vector + 2

    @property
    def cycles_per_vector(self) -> int:
        return self.layout.cycles_per_vector

    def _build(self):
        m = Module()
        L, A = self.layout, self.spec.abits
        P, K, C, T, R = L.lanes, L.word, L.chunks, L.wbits, L.rows_per_lane
        ob = self.out_bits

        # -- stage 0: counters, ROM address, activation chunk ---------------------------------
        busy = Signal()
        addr = Signal(range(max(L.depth, 2)))
        c = Signal(range(max(C, 2)))
        t = Signal(range(max(T, 2)))
        issue_last = addr == L.depth - 1
        x_cur = Signal(C * K * A)

        v1 = Signal()
        first_chunk1, sign_plane1, row_end1, vec_end1 = Signal(), Signal(), Signal(), Signal()
        xchunk1 = Signal(K * A)
        out_free = ~self.y.valid | self.y.ready
        adv = ~(v1 & vec_end1 & ~out_free)
        m.d.comb += self.x.ready.eq(adv & (~busy | issue_last))
        fire = self.x.valid & self.x.ready

        with m.If(adv):
            m.d.sync += [
                v1.eq(busy),
                first_chunk1.eq(c == 0),
                sign_plane1.eq(t == 0),
                row_end1.eq((c == C - 1) & (t == T - 1)),
                vec_end1.eq(issue_last),
                xchunk1.eq(x_cur.word_select(c, K * A)),
            ]
            with m.If(fire):
                m.d.sync += [x_cur.eq(self.x.payload), busy.eq(1), addr.eq(0), c.eq(0),
                             t.eq(0)]
            with m.Elif(busy):
                m.d.sync += addr.eq(addr + 1)
                with m.If(c == C - 1):
                    m.d.sync += c.eq(0)
                    m.d.sync += t.eq(Mux(t == T - 1, 0, t + 1))
                with m.Else():
                    m.d.sync += c.eq(c + 1)
                with m.If(issue_last):
                    m.d.sync += busy.eq(0)

        # -- stage 1: per lane, sum of selected activations, Horner accumulate -----------------
        xk = [xchunk1[k * A:(k + 1) * A].as_signed() for k in range(K)]
        tlo, thi = gf.tree_bounds(self.weights, L, A)
        alo, ahi = gf.acc_bounds(self.weights, L, A)
        rlo, rhi = row_bounds(self.weights, A)
        fmt = OutputFormatter(m, self.requant, ob)
        finished = []
        for p, rom in enumerate(self.roms):
            m.submodules[f"rom{p}"] = rom
            m.d.comb += [rom.addr.eq(addr), rom.en.eq(adv)]
            tree = Signal(signed(int(signed_width(tlo, thi))), name=f"tree{p}")
            m.d.comb += tree.eq(_balanced_sum([Mux(rom.data[k], xk[k], 0) for k in range(K)]))
            acc = Signal(signed(int(signed_width(alo, ahi))), name=f"acc{p}")
            nxt = Signal.like(acc, name=f"nxt{p}")
            base = Mux(first_chunk1, Mux(sign_plane1, 0, acc << 1), acc)
            m.d.comb += nxt.eq(base + Mux(sign_plane1, -tree, tree))
            with m.If(adv & v1):
                m.d.sync += acc.eq(nxt)
            # Output element bounds: the widest over this lane's rows (exact per row would
            # need per-row requantisers; they share one).
            rows = [i * P + p for i in range(R) if i * P + p < L.rows]
            finished.append(fmt(nxt, int(min(rlo[rows])), int(max(rhi[rows]))))

        new = Cat(*finished)
        if R > 1:
            pending = Signal((R - 1) * P * ob)
            with m.If(adv & v1 & row_end1):
                m.d.sync += pending.eq(Cat(pending[P * ob:], new))
            full = Cat(pending, new)
        else:
            full = new
        with m.If(adv & v1 & vec_end1):
            m.d.sync += [self.y.payload.eq(full[:L.rows * ob]), self.y.valid.eq(1)]
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        return m

    def elaborate(self, platform):
        return self._module
