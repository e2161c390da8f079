"""Block-affine folded matrix-vector engine: llama.cpp block scales and mins, in hardware.

``y = rescale(sum_b D*P + M*S, ...)`` (:func:`golden.llama_int.project`) on ``lanes`` lanes with
the schedule and ROM contents of :mod:`golden.block_folded`.
"""

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import block_folded as gbf
from golden.blockquant import BlockAffine
from golden.llama_int import MODE, IntFormat
from golden.numerics import rounding_bias_terms, signed_range, signed_width

from .folded_lane import _adder_tree
from .mask_rom import MaskRom, hex_image
from .vector import beat_layout

__all__ = ["BlockLane", "BlockMatVec", "LaneArray", "ParallelLane", "Rescaler"]


class RomSpec:
    """A lane ROM's contents; :meth:`build` makes the :class:`MaskRom` at elaboration (so
    that a design converted in another process leaves no unused ROM objects behind)."""

    def __init__(self, words, width: int, image: str | None):
        self.words, self.width, self.image = words, width, image

    def build(self) -> MaskRom:
        return MaskRom(self.words, self.width, image=self.image)

    def image_text(self) -> bytes:
        return hex_image(self.words, self.width)


def _width(lo, hi) -> int:
    return int(signed_width(int(lo), int(hi)))


def _accumulate(m, lane, p, take):
    """A lane's block term ``D*P + M*S`` into its row accumulator, which takes the sum when
    ``take`` is high; ``lane.result`` is the sum (the finished row in a row's last cycle)."""
    b = lane._b
    term = Signal(signed(_width(*b["term"])))
    if lane._has_m:
        m.d.comb += term.eq(lane.d * p + lane.m * lane.act_sum)
    else:
        m.d.comb += term.eq(lane.d * p)
    acc, acc_next = Signal(signed(lane._acc_w)), Signal(signed(lane._acc_w))
    m.d.comb += acc_next.eq(Mux(lane.first_block, term, acc + term))
    with m.If(take):
        m.d.sync += acc.eq(acc_next)
    m.d.comb += lane.result.eq(acc_next)


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
        with m.If(self.update):
            m.d.sync += p.eq(p_next)
        _accumulate(m, self, p_next, self.update & self.last_plane)
        return m


class ParallelLane(wiring.Component):
    """One lane of a parallel layout: a block's whole codes per cycle, a multiplier per
    column for ``P``, then ``D*P + M*S`` into the row accumulator. ``result`` is the finished
    row, combinationally, in the cycle of the last block (``update`` high)."""

    def __init__(self, *, block: int, abits: int, elem_bits: int, b: dict, d_bits: int,
                 m_bits: int, s_bits: int):
        self._block, self._abits, self._eb, self._b = block, abits, elem_bits, b
        self._has_m = m_bits > 0
        self._acc_w = _width(*b["acc"])
        ports = {"codes": In(block * elem_bits), "chunk": In(block * abits),
                 "d": In(signed(d_bits)), "first_block": In(1), "update": In(1),
                 "result": Out(signed(self._acc_w))}
        if self._has_m:
            ports |= {"m": In(signed(m_bits)), "act_sum": In(signed(s_bits))}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        A, C, b = self._abits, self._eb, self._b
        plo, phi = b["product"]
        products = []
        for k in range(self._block):
            pr = Signal(signed(_width(plo, phi)), name=f"prod{k}")
            m.d.comb += pr.eq(self.chunk[k * A:(k + 1) * A].as_signed()
                              * self.codes[k * C:(k + 1) * C].as_signed())
            products.append(pr)
        code = Signal(signed(_width(*b["code"])))
        m.d.comb += code.eq(_adder_tree(m, products, plo, phi))
        _accumulate(m, self, code, self.update)
        return m


class Rescaler(wiring.Component):
    """:func:`golden.llama_int.rescale` of one value by a run-time shift: ``v * 2**-s``
    rounded half away from zero when ``s > 0``, exact when ``s <= 0``, saturated to
    ``out_bits``. Combinational."""

    def __init__(self, in_bits: int, shift_bits: int, out_bits: int):
        # The bias below is 2**(s-1) - (v < 0): golden's table for its rounding mode, for
        # every shift this rescaler can take. Fail here if golden's rule ever changes.
        for s in range(1, in_bits + 2):
            if rounding_bias_terms(s, MODE) != (1 << (s - 1), -1, 0):
                raise ValueError(f"Rescaler implements half_away; golden rounds {MODE}")
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


class LaneArray(wiring.Component):
    """``lanes`` lanes with mask ROMs that run a fixed cycle of matrix-vector *passes*.

    Pass ``k`` computes ``project(passes[k], a, e)`` (:func:`golden.llama_int.project`). Each
    lane's ROMs hold its rows of every pass, one after the other, so the lanes stay busy
    whatever the pass: a decoder layer is four passes (q|k|v, o, gate/up, down) on one array.
    Passes run in order, then start again at pass 0.

    Ports
    -----
    x : In(stream)
        Activation beats, :func:`hdl.vector.beat_layout` ``(beat, abits, exp_bits)``;
        ``cols_k / beat`` beats for pass ``k``.
    y : Out(stream)
        Result beats, ``beat_layout(beat, fx_bits)``; ``rows_k / beat`` beats for pass ``k``.

    ``parallel`` lanes (:class:`ParallelLane`) take a block's whole codes per cycle instead of
    one bit plane (:class:`BlockLane`): ``bits`` times fewer cycles, a multiplier per column.

    With ``gate_lanes``, the lanes, their ROMs and the activation read run on a clock that
    ticks only while the array issues ROM reads or finishes them (as a clock-gating cell would
    gate it): an ASIC saves their power while the layer's vector units work, and Verilator skips
    their logic then. Off for FPGAs (see :class:`hdl.chip.Chip`).

    Timing per pass: the input loads in ``cols / beat`` cycles; then ``rows/lanes * nblocks *
    bits`` cycles of ROM reads (``rows/lanes * nblocks`` when parallel; :attr:`pass_cycles`);
    every batch of ``lanes`` rows leaves in ``lanes / beat`` beats while the next batch
    computes. A pass's input can load once the previous pass has issued its last ROM read.
    """

    def __init__(self, passes: list[BlockAffine], *, abits: int, lanes: int, beat: int,
                 fmt: IntFormat, rom_images: bool = False, prefix: str = "mv",
                 parallel: bool = False, gate_lanes: bool = False):
        if not passes:
            raise ValueError("at least one pass is needed")
        block = passes[0].block
        if block % beat:
            raise ValueError(f"beat {beat} must divide the block ({block})")
        if lanes % beat:
            raise ValueError(f"beat {beat} must divide lanes ({lanes})")
        for w in passes:
            if w.block != block:
                raise ValueError("every pass needs the same block size")
        self.passes, self.fmt, self.abits, self.beat = passes, fmt, abits, beat
        self.parallel, self.gate_lanes = parallel, gate_lanes
        self.layouts = [gbf.BlockFoldedLayout.of(w, lanes, parallel) for w in passes]
        for L in self.layouts:
            if lanes // beat > L.nblocks * L.cycles_per_block:
                raise ValueError(f"{lanes} lanes finish rows faster than {beat}-element beats "
                                 f"can leave ({lanes // beat} > "
                                 f"{L.nblocks * L.cycles_per_block} cycles)")
        self.lanes, self.block = lanes, block
        bs = [gbf.bounds(w, abits) for w in passes]
        self.bounds = {k: (min(b[k][0] for b in bs), max(b[k][1] for b in bs)) for k in bs[0]}
        self.acc_bits = _width(*self.bounds["acc"])
        self._has_m = any(bool(np.any(w.offset)) for w in passes)
        self._d_bits = _width(min(0, *(int(w.scale.min()) for w in passes)),
                              max(0, *(int(w.scale.max()) for w in passes)))
        self._m_bits = _width(min(0, *(int(w.offset.min()) for w in passes)),
                              max(0, *(int(w.offset.max()) for w in passes))) \
            if self._has_m else 0
        self._s_bits = _width(*self.bounds["act_sum"])
        self.lane_name = f"{prefix}_lane"
        #: a parallel lane's code width: the widest pass's (narrower codes sign-extend)
        self.elem_bits = max(w.bits for w in passes)
        scales = [gbf.scale_images(w, L) for w, L in zip(passes, self.layouts, strict=True)]
        d_img = np.concatenate([d for d, _ in scales], axis=1)
        m_img = np.concatenate([mm for _, mm in scales], axis=1)
        self.code_base = np.cumsum([0] + [L.depth for L in self.layouts])[:-1].tolist()
        self.scale_base = np.cumsum(
            [0] + [L.rows_per_lane * L.nblocks for L in self.layouts])[:-1].tolist()

        def rom(words, width, kind, p):
            words = np.asarray(words)
            if words.dtype != np.uint64:  # signed constants: their two's complement
                words = words.astype(np.int64).view(np.uint64)
            if width < 64:
                words = words & np.uint64((1 << width) - 1)
            image = f"{prefix}_{kind}{p:03d}.hex" if rom_images else None
            return RomSpec(words, width, image)

        if parallel:
            self.piece_cols = gbf.piece_cols(block, self.elem_bits)
            pieces = np.concatenate([gbf.parallel_code_images(w, L, self.elem_bits) for w, L in
                                     zip(passes, self.layouts, strict=True)], axis=2)
            width = self.piece_cols * self.elem_bits
            #: per lane, its code ROMs (one per piece of the word, low columns first)
            self.lane_code_roms = [
                [rom(pieces[j, p], width, f"code{j}_", p)
                 for j in range(len(pieces))] for p in range(lanes)]
        else:
            codes = np.concatenate([gbf.code_images(w, L) for w, L in
                                    zip(passes, self.layouts, strict=True)], axis=1)
            self.lane_code_roms = [[rom(codes[p], block, "code", p)]
                                   for p in range(lanes)]
        self.code_roms = [r for rs in self.lane_code_roms for r in rs]
        self.d_roms = [rom(d_img[p], self._d_bits, "d", p) for p in range(lanes)]
        self.m_roms = [rom(m_img[p], self._m_bits, "m", p) for p in range(lanes)] \
            if self._has_m else []
        # rescale shift of pass k = shift_const[k] - e
        self.shift_const = [-w.exp - fmt.fx_frac for w in passes]
        super().__init__({
            "x": In(stream.Signature(beat_layout(beat, abits, fmt.exp_bits))),
            "y": Out(stream.Signature(beat_layout(beat, fmt.fx_bits))),
        })

    @property
    def pass_cycles(self) -> list[int]:
        return [L.cycles_per_vector for L in self.layouts]

    @property
    def cycles_per_vector(self) -> int:
        return sum(self.pass_cycles)

    @property
    def ideal_cycles(self) -> float:
        return sum(L.ideal_cycles for L in self.layouts)

    @property
    def rom_bits(self) -> int:
        return sum(len(r.words) * r.width for r in self.roms())

    def lane_args(self) -> dict:
        args = dict(block=self.block, abits=self.abits, b=self.bounds,
                    d_bits=self._d_bits, m_bits=self._m_bits, s_bits=self._s_bits)
        return args | ({"elem_bits": self.elem_bits} if self.parallel else {})

    @property
    def lane_kind(self) -> str:
        return "ParallelLane" if self.parallel else "BlockLane"

    def lane(self) -> wiring.Component:
        """The lane circuit (every lane of the array is this module)."""
        return (ParallelLane if self.parallel else BlockLane)(**self.lane_args())

    def lane_verilog(self) -> str:
        from amaranth.back import verilog

        return verilog.convert(self.lane(), name=self.lane_name,
                               emit_src=False, strip_internal_attrs=True)

    def roms(self):
        return self.code_roms + self.d_roms + self.m_roms

    def elaborate(self, platform):
        m = Module()
        A, B, fmt, P, K = self.abits, self.beat, self.fmt, self.lanes, self.block
        E, NP, Ls = fmt.exp_bits, len(self.passes), self.layouts

        def pick(sel, values, name):
            """A pass-indexed constant, as a small multiplexer."""
            values = [int(v) for v in values]
            sig = Signal(signed(_width(min(values + [0]), max(values + [0]))), name=name)
            expr = values[-1]
            for k in range(len(values) - 2, -1, -1):
                expr = Mux(sel == k, values[k], expr)
            m.d.comb += sig.eq(expr)
            return sig

        pass_bits = max(1, (NP - 1).bit_length())
        # The lanes' domain: their registers, their ROMs, the activation read and the stage-1
        # flags, so that the lanes' logic depends on registers of this domain only.
        ld = "lanes" if self.gate_lanes else "sync"

        # -- input: beats assemble into blocks in the activation memory ----------------------
        max_nb = max(L.nblocks for L in Ls)
        per_block = K // B
        m.submodules.xmem = xmem = Memory(shape=K * A, depth=max(max_nb, 2), init=[])
        wr = xmem.write_port()
        rd = xmem.read_port(domain=ld)
        pass_in = Signal(pass_bits)
        nin = pick(pass_in, [L.cols // B for L in Ls], "nin")
        cnt_in = Signal(range(max(L.cols // B for L in Ls) + 1))
        e_buf = Signal(signed(E))
        buf_full, busy = Signal(), Signal()
        m.d.comb += self.x.ready.eq(~buf_full & ~busy)
        fire_in = self.x.valid & self.x.ready
        if per_block > 1:
            asm = Signal((per_block - 1) * B * A)
            word = Cat(asm, self.x.payload.elem)
            with m.If(fire_in):
                m.d.sync += asm.eq(word[B * A:])
            sub_last = cnt_in[:(per_block - 1).bit_length()] == per_block - 1
            m.d.comb += [wr.addr.eq(cnt_in >> (per_block - 1).bit_length()),
                         wr.data.eq(word), wr.en.eq(fire_in & sub_last)]
        else:
            m.d.comb += [wr.addr.eq(cnt_in), wr.data.eq(self.x.payload.elem),
                         wr.en.eq(fire_in)]
        with m.If(fire_in):
            m.d.sync += e_buf.eq(self.x.payload.exp)
            with m.If(cnt_in == nin - 1):
                m.d.sync += [cnt_in.eq(0), buf_full.eq(1),
                             pass_in.eq(Mux(pass_in == NP - 1, 0, pass_in + 1))]
            with m.Else():
                m.d.sync += cnt_in.eq(cnt_in + 1)

        # -- stage 0: counters and addresses -------------------------------------------------
        pass_run = Signal(pass_bits)
        depth_all = sum(L.depth for L in Ls)
        addr = Signal(range(max(depth_all, 2)))
        saddr = Signal(range(max(sum(L.rows_per_lane * L.nblocks for L in Ls), 2)))
        bb = Signal(range(max(max_nb, 2)))
        t = Signal(range(max(max(L.cycles_per_block for L in Ls), 2)))
        e_cur = Signal(signed(E))
        end = pick(pass_run, [b + L.depth - 1 for b, L in zip(self.code_base, Ls, strict=True)],
                   "end")
        nb_last = pick(pass_run, [L.nblocks - 1 for L in Ls], "nb_last")
        t_last = pick(pass_run, [L.cycles_per_block - 1 for L in Ls], "t_last")
        issue_last = addr == end

        v1 = Signal()
        sign1, lastp1, firstb1, batch1 = Signal(), Signal(), Signal(), Signal()
        e1 = Signal(signed(E))
        pass1 = Signal(pass_bits)
        pend_full = Signal()
        adv = Signal()
        m.d.comb += adv.eq(~(v1 & batch1 & pend_full))
        start = Signal()
        m.d.comb += start.eq(adv & buf_full & ~busy)
        m.d.comb += [rd.addr.eq(bb), rd.en.eq(adv)]
        if self.gate_lanes:
            # A clock-gating cell: the enable is caught while the clock is low and ANDed with
            # it. The lanes' clock ticks at the edges where a ROM read issues (busy) or the
            # lanes take its word (v1), and through reset. At every other edge the ungated
            # design would only have re-read the same words and kept v1 low.
            m.domains.lanes_en = cde = ClockDomain(clk_edge="neg", reset_less=True, local=True)
            m.domains.lanes = cdl = ClockDomain(local=True)
            en, gclk = Signal(name="lanes_en_q"), Signal(name="lanes_gclk")
            m.d.comb += [cde.clk.eq(ClockSignal("sync")), gclk.eq(ClockSignal("sync") & en),
                         cdl.clk.eq(gclk), cdl.rst.eq(ResetSignal("sync"))]
            m.d.lanes_en += en.eq(busy | v1 | ResetSignal("sync"))

        with m.If(adv):
            m.d[ld] += [
                v1.eq(busy), sign1.eq(t == 0), lastp1.eq(t == t_last), firstb1.eq(bb == 0),
                batch1.eq((bb == nb_last) & (t == t_last)), e1.eq(e_cur), pass1.eq(pass_run),
            ]
            with m.If(start):
                m.d.sync += [e_cur.eq(e_buf), busy.eq(1), bb.eq(0), t.eq(0),
                             buf_full.eq(0)]
            with m.Elif(busy):
                m.d.sync += addr.eq(addr + 1)
                with m.If(issue_last):
                    m.d.sync += [busy.eq(0),
                                 pass_run.eq(Mux(pass_run == NP - 1, 0, pass_run + 1))]
                with m.If(t == t_last):
                    m.d.sync += [t.eq(0), saddr.eq(saddr + 1),
                                 bb.eq(Mux(bb == nb_last, 0, bb + 1))]
                with m.Else():
                    m.d.sync += t.eq(t + 1)
        # addr and saddr run on from one pass into the next (the ROMs hold the passes in
        # order) and wrap after the last.
        with m.If(adv & busy & issue_last & (pass_run == NP - 1)):
            m.d.sync += [addr.eq(0), saddr.eq(0)]

        # -- stage 1: the lanes ----------------------------------------------------------------
        update = Signal()
        m.d.comb += update.eq(adv & v1)
        chunk1 = rd.data
        act_sum = Signal(signed(self._s_bits))
        if self._has_m:
            lo, hi = signed_range(A)
            m.d.comb += act_sum.eq(_adder_tree(
                m, [chunk1[k * A:(k + 1) * A].as_signed() for k in range(K)], lo, hi))
        results = []
        for p in range(P):
            croms = [spec.build() for spec in self.lane_code_roms[p]]
            drom = self.d_roms[p].build()
            for j, crom in enumerate(croms):
                m.submodules[f"code{p}" if len(croms) == 1 else f"code{p}_{j}"] = \
                    DomainRenamer(ld)(crom)
                m.d.comb += [crom.addr.eq(addr), crom.en.eq(adv)]
            m.submodules[f"d{p}"] = DomainRenamer(ld)(drom)
            m.d.comb += [drom.addr.eq(saddr), drom.en.eq(adv)]
            res = Signal(signed(self.acc_bits), name=f"row{p}")
            ports = dict(i_clk=ClockSignal(ld), i_rst=ResetSignal(ld),
                         i_chunk=chunk1, i_d=drom.data, i_first_block=firstb1,
                         i_update=update, o_result=res)
            if self.parallel:
                ports |= dict(i_codes=Cat(*(c.data for c in croms)))
            else:
                ports |= dict(i_bits=croms[0].data, i_sign_plane=sign1, i_last_plane=lastp1)
            if self._has_m:
                mrom = self.m_roms[p].build()
                m.submodules[f"m{p}"] = DomainRenamer(ld)(mrom)
                m.d.comb += [mrom.addr.eq(saddr), mrom.en.eq(adv)]
                ports |= dict(i_m=mrom.data, i_act_sum=act_sum)
            m.submodules[f"lane{p}"] = Instance(self.lane_name, **ports)
            results.append(res)

        # -- output: a finished batch waits in `pend` and leaves beat by beat ----------------
        pend = Signal(P * self.acc_bits)
        pend_e = Signal(signed(E))
        pend_pass = Signal(pass_bits)
        k = Signal(range(max(P // B, 2)))
        W = self.acc_bits
        with m.If(adv & v1 & batch1):
            m.d.sync += [pend.eq(Cat(*results)), pend_e.eq(e1), pend_pass.eq(pass1),
                         pend_full.eq(1), k.eq(0)]
        with m.Elif(self.y.valid & self.y.ready):
            # the next beat's rows move down: a constant shift, no wide multiplexer
            m.d.sync += pend.eq(pend[B * W:])
        sc = pick(pend_pass, self.shift_const, "shift_const")
        sh = Signal(signed(max(len(sc), E) + 2))
        m.d.comb += sh.eq(sc - pend_e)
        sel = pend[:B * W]
        outs = []
        for j in range(B):
            rs = Rescaler(W, len(sh), fmt.fx_bits)
            m.submodules[f"rescale{j}"] = rs
            m.d.comb += [rs.v.eq(sel[j * W:(j + 1) * W].as_signed()), rs.s.eq(sh)]
            outs.append(rs.o)
        m.d.comb += [self.y.valid.eq(pend_full), self.y.payload.elem.eq(Cat(*outs))]
        with m.If(self.y.valid & self.y.ready):
            with m.If(k == P // B - 1):
                m.d.sync += pend_full.eq(0)
            with m.Else():
                m.d.sync += k.eq(k + 1)
        return m


class BlockMatVec(LaneArray):
    """A :class:`LaneArray` of one pass: ``y = project(w, a, e)``."""

    def __init__(self, w: BlockAffine, **kwargs):
        super().__init__([w], **kwargs)
        self.w = w
        self.layout = self.layouts[0]
