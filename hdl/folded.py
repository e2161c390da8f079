"""Lane-multiplexed matrix-vector engine with mask ROMs: the strategy that scales."""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, signed

from golden import folded as gf
from golden.linear import LinearSpec, Requant, row_bounds

from .folded_lane import FoldedLane
from .mask_rom import MaskRom
from .ports import MatVecEngine

__all__ = ["FoldedMatVec"]


class FoldedMatVec(MatVecEngine):
    """``y = W @ x`` on ``lanes`` lanes, each reading one ``word``-bit ROM word per cycle.

    The schedule and ROM contents are :mod:`golden.folded`'s. A two-stage pipeline: stage 0
    issues the ROM address and latches the matching activation chunk (the input register
    rotates by one chunk per cycle), stage 1 adds the
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
    lane_name : str
        Verilog module name of the lane datapath, which :meth:`lane_verilog` emits once and
        every lane instantiates (Amaranth would otherwise write, and Verilator compile, the
        same circuit ``lanes`` times).
    """

    def __init__(self, weights, spec: LinearSpec, *, lanes: int, word: int,
                 requant: Requant | None = None, rom_images: bool = False,
                 lane_name: str = "matvec_lane"):
        super().__init__(weights, spec, requant)
        rows, cols = self.weights.shape
        self.layout = gf.FoldedLayout(rows=rows, cols=cols, wbits=spec.wbits, lanes=lanes,
                                      word=word)
        images = gf.rom_images(self.weights, self.layout)
        self.lane_name = lane_name
        rlo, rhi = row_bounds(self.weights, spec.abits)
        self._lane_args = dict(
            word=word, abits=spec.abits, tree_bounds=gf.tree_bounds(self.weights, self.layout,
                                                                    spec.abits),
            acc_bounds=gf.acc_bounds(self.weights, self.layout, spec.abits),
            out_bounds=(int(rlo.min()), int(rhi.max())), out_bits=self.out_bits,
            requant=requant)
        self.roms = [MaskRom(images[p], word, image=f"rom_lane{p:03d}.hex" if rom_images else None)
                     for p in range(lanes)]
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
                xchunk1.eq(x_cur[:K * A]),
            ]
            with m.If(fire):
                m.d.sync += [x_cur.eq(self.x.payload), busy.eq(1), addr.eq(0), c.eq(0),
                             t.eq(0)]
            with m.Elif(busy):
                # Rotate by one chunk: the current chunk is always the low bits, so no
                # chunks-to-1 multiplexer. Each plane walks every chunk once, so the vector is
                # back in place at every plane boundary.
                if C > 1:
                    m.d.sync += x_cur.eq(Cat(x_cur[K * A:], x_cur[:K * A]))
                m.d.sync += addr.eq(addr + 1)
                with m.If(c == C - 1):
                    m.d.sync += c.eq(0)
                    m.d.sync += t.eq(Mux(t == T - 1, 0, t + 1))
                with m.Else():
                    m.d.sync += c.eq(c + 1)
                with m.If(issue_last):
                    m.d.sync += busy.eq(0)

        # -- stage 1: one FoldedLane per lane, emitted once (see lane_verilog) -----------------
        update = Signal()
        m.d.comb += update.eq(adv & v1)
        finished = []
        for p, rom in enumerate(self.roms):
            m.submodules[f"rom{p}"] = rom
            m.d.comb += [rom.addr.eq(addr), rom.en.eq(adv)]
            result = Signal(signed(ob), name=f"result{p}")
            m.submodules[f"lane{p}"] = Instance(
                self.lane_name, i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
                i_bits=rom.data, i_chunk=xchunk1, i_first_chunk=first_chunk1,
                i_sign_plane=sign_plane1, i_update=update, o_result=result)
            finished.append(result)

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

    def lane_verilog(self) -> str:
        from amaranth.back import verilog

        lane = FoldedLane(**self._lane_args)
        return verilog.convert(lane, name=self.lane_name, emit_src=False,
                               strip_internal_attrs=True)

