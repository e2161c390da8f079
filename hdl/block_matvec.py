"""Block-affine folded matrix-vector engine: llama.cpp block scales and mins, in hardware.

``y = rescale(sum_b D*P + M*S, ...)`` (:func:`golden.llama_int.project`) on ``lanes`` lanes with
the schedule and ROM contents of :mod:`golden.block_folded`.
"""

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden import block_folded as gbf
from golden.blockquant import BlockAffine
from golden.llama_int import IntFormat
from golden.numerics import signed_range, signed_width

from .folded_lane import _adder_tree
from .mask_rom import MaskRom
from .vector import beat_layout

__all__ = ["BlockLane", "BlockMatVec", "Rescaler"]


def _width(lo, hi) -> int:
    return int(signed_width(int(lo), int(hi)))


class BlockLane(wiring.Component):
    """One lane: selected-activation sum, Horner over planes, then ``D*P + M*S`` into the
    row accumulator. ``result`` is the finished row, combinationally, in the cycle of the last
    plane of the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, b: dict, d_bits: int, m_bits: int,
                 s_bits: int):
        self._block, self._abits, self._b = block, abits, b
        self._has_m = m_bits > 0
        self._acc_w = _width(*b["acc"])
        ports = {"bits": In(block), "chunk": In(block * abits), "d": In(signed(d_bits)),
                 "sign_plane": In(1), "last_plane": In(1), "first_block": In(1),
                 "update": In(1), "result": Out(signed(self._acc_w))}
        if self._has_m:
            ports |= {"m": In(signed(m_bits)), "act_sum": In(signed(s_bits))}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        A, b = self._abits, self._b
        lo, hi = signed_range(A)
        xk = [self.chunk[k * A:(k + 1) * A].as_signed() for k in range(self._block)]
        gated = [x & self.bits[k].replicate(A).as_signed() for k, x in enumerate(xk)]
        tree = Signal(signed(_width(*b["tree"])))
        m.d.comb += tree.eq(_adder_tree(m, gated, min(lo, 0), max(hi, 0)))
        hw = _width(*b["horner"])
        p, p_next = Signal(signed(hw)), Signal(signed(hw))
        m.d.comb += p_next.eq(Mux(self.sign_plane, -tree, (p << 1) + tree))
        term = Signal(signed(_width(*b["term"])))
        if self._has_m:
            m.d.comb += term.eq(self.d * p_next + self.m * self.act_sum)
        else:
            m.d.comb += term.eq(self.d * p_next)
        acc, acc_next = Signal(signed(self._acc_w)), Signal(signed(self._acc_w))
        m.d.comb += acc_next.eq(Mux(self.first_block, term, acc + term))
        with m.If(self.update):
            m.d.sync += p.eq(p_next)
            with m.If(self.last_plane):
                m.d.sync += acc.eq(acc_next)
        m.d.comb += self.result.eq(acc_next)
        return m


class Rescaler(wiring.Component):
    """:func:`golden.llama_int.rescale` of one value by a run-time shift: ``v * 2**-s``
    rounded half away from zero when ``s > 0``, exact when ``s <= 0``, saturated to
    ``out_bits``. Combinational."""

    def __init__(self, in_bits: int, shift_bits: int, out_bits: int):
        self._in, self._out = in_bits, out_bits
        super().__init__({"v": In(signed(in_bits)), "s": In(signed(shift_bits)),
                          "o": Out(signed(out_bits))})

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
        rounded = Signal(signed(W + 2))
        m.d.comb += rounded.eq((v + bias) >> right)
        shifted = Signal(signed(W + OB + 1))
        m.d.comb += shifted.eq(v << left)
        val = Signal(signed(W + OB + 2))
        m.d.comb += val.eq(Mux(right != 0, rounded, shifted))
        lo, hi = signed_range(OB)
        m.d.comb += self.o.eq(Mux(val > hi, hi, Mux(val < lo, lo, val)))
        return m


class BlockMatVec(wiring.Component):
    """``y = project(W, a, e)`` for one block-affine weight matrix.

    Ports
    -----
    x : In(stream)
        Activation beats, :func:`hdl.vector.beat_layout` ``(beat, abits, exp_bits)``;
        ``cols / beat`` beats per vector.
    y : Out(stream)
        Result beats, ``beat_layout(beat, fx_bits)``; ``rows / beat`` beats per vector.

    Timing: a vector loads in ``cols / beat`` beats (while the previous one computes), takes
    ``cycles_per_vector = rows/lanes * nblocks * bits`` cycles of ROM reads, and every batch
    of ``lanes`` rows leaves in ``lanes / beat`` beats while the next batch computes.
    """

    def __init__(self, w: BlockAffine, *, abits: int, lanes: int, beat: int, fmt: IntFormat,
                 rom_images: bool = False, prefix: str = "mv"):
        rows, cols = w.shape
        if cols % beat or lanes % beat:
            raise ValueError(f"beat {beat} must divide cols ({cols}) and lanes ({lanes})")
        self.w, self.fmt, self.abits, self.beat = w, fmt, abits, beat
        self.layout = L = gbf.BlockFoldedLayout.of(w, lanes)
        if lanes // beat > L.nblocks * L.bits:
            raise ValueError(f"{lanes} lanes finish rows faster than {beat}-element beats can "
                             f"leave ({lanes // beat} > {L.nblocks * L.bits} cycles)")
        self.bounds = b = gbf.bounds(w, abits)
        self.acc_bits = _width(*b["acc"])
        d_img, m_img = gbf.scale_images(w, L)
        self._has_m = bool(np.any(w.offset))
        self._d_bits = _width(min(0, int(w.scale.min())), max(0, int(w.scale.max())))
        self._m_bits = _width(min(0, int(w.offset.min())), max(0, int(w.offset.max()))) \
            if self._has_m else 0
        self._s_bits = _width(*b["act_sum"])
        self.lane_name = f"{prefix}_lane"
        codes = gbf.code_images(w, L)

        def rom(words, width, kind, p):
            words = np.asarray(words).astype(np.int64) & ((1 << width) - 1)
            image = f"{prefix}_{kind}{p:03d}.hex" if rom_images else None
            return MaskRom(words.astype(np.uint64), width, image=image)

        self.code_roms = [rom(codes[p].view(np.int64), L.block, "code", p)
                          for p in range(lanes)]
        self.d_roms = [rom(d_img[p], self._d_bits, "d", p) for p in range(lanes)]
        self.m_roms = [rom(m_img[p], self._m_bits, "m", p) for p in range(lanes)] \
            if self._has_m else []
        self.shift_const = -w.exp - fmt.fx_frac  # rescale shift = shift_const - e
        super().__init__({
            "x": In(stream.Signature(beat_layout(beat, abits, fmt.exp_bits))),
            "y": Out(stream.Signature(beat_layout(beat, fmt.fx_bits))),
        })

    @property
    def cycles_per_vector(self) -> int:
        return self.layout.cycles_per_vector

    @property
    def rom_bits(self) -> int:
        L = self.layout
        return L.lanes * (L.depth * L.block + L.rows_per_lane * L.nblocks
                          * (self._d_bits + self._m_bits))

    def lane_args(self) -> dict:
        return dict(block=self.layout.block, abits=self.abits, b=self.bounds,
                    d_bits=self._d_bits, m_bits=self._m_bits, s_bits=self._s_bits)

    def lane_verilog(self) -> str:
        from amaranth.back import verilog

        return verilog.convert(BlockLane(**self.lane_args()), name=self.lane_name,
                               emit_src=False, strip_internal_attrs=True)

    def roms(self):
        return self.code_roms + self.d_roms + self.m_roms

    def elaborate(self, platform):
        m = Module()
        L, A, B, fmt = self.layout, self.abits, self.beat, self.fmt
        P, NB, T, K = L.lanes, L.nblocks, L.bits, L.block
        E = fmt.exp_bits

        # -- input: beats into x_buf; a full buffer moves to x_cur when the engine is free --
        nin = L.cols // B
        x_buf = Signal(L.cols * A)
        e_buf = Signal(signed(E))
        cnt_in = Signal(range(nin + 1))
        buf_full = Signal()
        m.d.comb += self.x.ready.eq(~buf_full)
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [x_buf.eq(Cat(x_buf[B * A:], self.x.payload.elem)),
                         e_buf.eq(self.x.payload.exp)]
            with m.If(cnt_in == nin - 1):
                m.d.sync += [cnt_in.eq(0), buf_full.eq(1)]
            with m.Else():
                m.d.sync += cnt_in.eq(cnt_in + 1)

        # -- stage 0: counters, ROM addresses, the current block of activations -------------
        busy = Signal()
        addr = Signal(range(max(L.depth, 2)))
        saddr = Signal(range(max(L.rows_per_lane * NB, 2)))
        bb = Signal(range(max(NB, 2)))
        t = Signal(range(max(T, 2)))
        x_cur = Signal(L.cols * A)
        e_cur = Signal(signed(E))
        issue_last = addr == L.depth - 1

        v1 = Signal()
        sign1, lastp1, firstb1, batch1 = Signal(), Signal(), Signal(), Signal()
        e1 = Signal(signed(E))
        chunk1 = Signal(K * A)

        pend_full = Signal()
        adv = Signal()
        m.d.comb += adv.eq(~(v1 & batch1 & pend_full))
        start = Signal()
        m.d.comb += start.eq(adv & buf_full & (~busy | issue_last))

        with m.If(adv):
            m.d.sync += [
                v1.eq(busy), sign1.eq(t == 0), lastp1.eq(t == T - 1), firstb1.eq(bb == 0),
                batch1.eq((bb == NB - 1) & (t == T - 1)), e1.eq(e_cur),
                chunk1.eq(x_cur[:K * A]),
            ]
            with m.If(start):
                m.d.sync += [x_cur.eq(x_buf), e_cur.eq(e_buf), busy.eq(1), addr.eq(0),
                             saddr.eq(0), bb.eq(0), t.eq(0)]
            with m.Elif(busy):
                m.d.sync += [addr.eq(addr + 1), busy.eq(~issue_last)]
                with m.If(t == T - 1):
                    m.d.sync += [t.eq(0), saddr.eq(saddr + 1),
                                 bb.eq(Mux(bb == NB - 1, 0, bb + 1))]
                    if NB > 1:
                        m.d.sync += x_cur.eq(Cat(x_cur[K * A:], x_cur[:K * A]))
                with m.Else():
                    m.d.sync += t.eq(t + 1)
        with m.If(start & ~(self.x.valid & self.x.ready & (cnt_in == nin - 1))):
            m.d.sync += buf_full.eq(0)

        # -- stage 1: the lanes ----------------------------------------------------------------
        update = Signal()
        m.d.comb += update.eq(adv & v1)
        act_sum = Signal(signed(self._s_bits))
        if self._has_m:
            lo, hi = signed_range(A)
            m.d.comb += act_sum.eq(_adder_tree(
                m, [chunk1[k * A:(k + 1) * A].as_signed() for k in range(K)], lo, hi))
        results = []
        for p in range(P):
            crom, drom = self.code_roms[p], self.d_roms[p]
            m.submodules[f"code{p}"] = crom
            m.submodules[f"d{p}"] = drom
            m.d.comb += [crom.addr.eq(addr), crom.en.eq(adv), drom.addr.eq(saddr),
                         drom.en.eq(adv)]
            res = Signal(signed(self.acc_bits), name=f"row{p}")
            ports = dict(i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
                         i_bits=crom.data, i_chunk=chunk1, i_d=drom.data, i_sign_plane=sign1,
                         i_last_plane=lastp1, i_first_block=firstb1, i_update=update,
                         o_result=res)
            if self._has_m:
                mrom = self.m_roms[p]
                m.submodules[f"m{p}"] = mrom
                m.d.comb += [mrom.addr.eq(saddr), mrom.en.eq(adv)]
                ports |= dict(i_m=mrom.data, i_act_sum=act_sum)
            m.submodules[f"lane{p}"] = Instance(self.lane_name, **ports)
            results.append(res)

        # -- output: a finished batch waits in `pend` and leaves beat by beat ----------------
        pend = Signal(P * self.acc_bits)
        pend_e = Signal(signed(E))
        k = Signal(range(max(P // B, 2)))
        with m.If(adv & v1 & batch1):
            m.d.sync += [pend.eq(Cat(*results)), pend_e.eq(e1), pend_full.eq(1), k.eq(0)]
        sh = Signal(signed(max(E, (abs(self.shift_const)).bit_length() + 1) + 2))
        m.d.comb += sh.eq(self.shift_const - pend_e)
        W = self.acc_bits
        sel = Signal(B * W)
        m.d.comb += sel.eq(pend.word_select(k, B * W) if P > B else pend)
        outs = []
        for j in range(B):
            rs = Rescaler(W, len(sh), fmt.fx_bits)
            m.submodules[f"rescale{j}"] = rs
            m.d.comb += [rs.v.eq(sel[j * W:(j + 1) * W].as_signed()), rs.s.eq(sh)]
            outs.append(rs.o)
        m.d.comb += [self.y.valid.eq(pend_full), self.y.payload.elem.eq(Cat(*outs))]
        with m.If(self.y.valid & self.y.ready & ~(adv & v1 & batch1)):
            with m.If(k == P // B - 1):
                m.d.sync += pend_full.eq(0)
            with m.Else():
                m.d.sync += k.eq(k + 1)
        return m
