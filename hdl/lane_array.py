"""Lanes with mask ROMs that run a fixed cycle of block-affine matrix-vector passes:
``y = rescale(sum_b D*P + M*S, ...)`` (:func:`golden.integer.project`) with the schedule and
ROM contents of :mod:`golden.block_folded`."""

from types import SimpleNamespace

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import block_folded as gbf
from golden.blockquant import BlockAffine
from golden.integer import IntFormat
from golden.numerics import signed_range

from .arith import adder_tree, indexed_constant, signed_width
from .lane_shape import SharedShape
from .lanes import BlockLane, ParallelLane, check_stages
from .rescaler import OUTPUT_REGISTERS, batch_output, pass_latency
from .vector import beat_layout, element

__all__ = ["LaneArray", "OUTPUT_REGISTERS", "pass_latency"]



def _advanced(m, r, sig, name: str) -> Signal:
    """``sig`` one pipeline stage later: a register of the lanes' domain that moves when
    the array advances, beside the lanes' own."""
    reg = Signal(sig.shape(), name=name)
    with m.If(r.adv):
        m.d[r.ld] += reg.eq(sig)
    return reg


def _next_pass(p, passes: int):
    return Mux(p == passes - 1, 0, p + 1)


class LaneArray(SharedShape, wiring.Component):
    """``lanes`` lanes with mask ROMs that run a fixed cycle of matrix-vector *passes*.

    Pass ``k`` computes ``project(passes[k], a, e)`` (:func:`golden.integer.project`). Each
    lane's ROMs hold its rows of every pass, one after the other, so the lanes stay busy
    whatever the pass: a decoder layer is four passes (q|k|v, o, gate/up, down) on one array.
    Passes run in order, then start again at pass 0; with ``select``, each input vector names
    its pass instead (``sel``, on every beat; the first beat's counts), and each output beat
    carries the pass it belongs to (a mixture of experts picks its experts' passes per token:
    the expert is part of the ROM address).

    Ports
    -----
    x : In(stream)
        Activation beats, :func:`hdl.vector.beat_layout` ``(beat, abits, exp_bits)``;
        ``cols_k / beat`` beats for pass ``k``.
    y : Out(stream)
        Result beats, ``beat_layout(beat, fx_bits)``; ``rows_k / beat`` beats for pass ``k``.

    ``parallel`` lanes (:class:`hdl.lanes.ParallelLane`) take a block's whole codes per cycle
    instead of one bit plane (:class:`hdl.lanes.BlockLane`): ``bits`` times fewer cycles, a
    multiplier per column.

    With ``gate_lanes``, the lanes, their ROMs and the activation read run on a clock that
    ticks only while the array issues ROM reads or finishes them (as a clock-gating cell would
    gate it): an ASIC saves their power while the layer's vector units work, and Verilator skips
    their logic then. Off for FPGAs (see :class:`hdl.chip.Chip`).

    Timing per pass: the input loads in ``cols / beat`` cycles; then ``rows/lanes * nblocks *
    bits`` cycles of ROM reads (``rows/lanes * nblocks`` when parallel; :attr:`pass_cycles`);
    every batch of ``lanes`` rows leaves in ``lanes / beat`` beats while the next batch
    computes. A pass's input can load once the previous pass has issued its last ROM read.
    With ``stages`` pipeline registers in the lanes, each batch leaves ``stages`` cycles
    later (the flags that go with it travel beside the lanes' registers; the scale ROMs are
    read and the activation sum delayed to meet the lanes' block term).
    """

    def __init__(self, passes: list[BlockAffine], *, abits: int, lanes: int, beat: int,
                 fmt: IntFormat, rom_images: bool = False, prefix: str = "mv",
                 parallel: bool = False, gate_lanes: bool = False, select: bool = False,
                 stages: int = 0):
        check_stages(stages)
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
        self.parallel, self.gate_lanes, self.select = parallel, gate_lanes, select
        #: the lanes' pipeline registers (:mod:`hdl.lanes`): each pass's rows leave this
        #: many cycles later
        self.stages = stages
        self.pass_bits = max(1, (len(passes) - 1).bit_length())
        self.layouts = [gbf.BlockFoldedLayout.of(w, lanes, parallel) for w in passes]
        for L in self.layouts:
            if lanes // beat > L.nblocks * L.cycles_per_block:
                raise ValueError(f"{lanes} lanes finish rows faster than {beat}-element beats "
                                 f"can leave ({lanes // beat} > "
                                 f"{L.nblocks * L.cycles_per_block} cycles)")
        self.lanes, self.block = lanes, block
        bs = [gbf.bounds(w, abits) for w in passes]
        self.bounds = {k: (min(b[k][0] for b in bs), max(b[k][1] for b in bs)) for k in bs[0]}
        self.acc_bits = signed_width(*self.bounds["acc"])
        self._has_m = any(bool(np.any(w.offset)) for w in passes)
        self._d_bits = signed_width(min(0, *(int(w.scale.min()) for w in passes)),
                                    max(0, *(int(w.scale.max()) for w in passes)))
        self._m_bits = signed_width(min(0, *(int(w.offset.min()) for w in passes)),
                                    max(0, *(int(w.offset.max()) for w in passes))) \
            if self._has_m else 0
        self._s_bits = signed_width(*self.bounds["act_sum"])
        self.lane_name = f"{prefix}_lane"
        #: a parallel lane's code width: the widest pass's (narrower codes sign-extend)
        self.elem_bits = max(w.bits for w in passes)
        scales = [gbf.scale_images(w, L) for w, L in zip(passes, self.layouts, strict=True)]
        d_img = np.concatenate([d for d, _ in scales], axis=1)
        m_img = np.concatenate([mm for _, mm in scales], axis=1)
        self.code_base = np.cumsum([0] + [L.depth for L in self.layouts])[:-1].tolist()
        self.scale_base = np.cumsum(
            [0] + [L.rows_per_lane * L.nblocks for L in self.layouts])[:-1].tolist()

        self._prefix, self._rom_images = prefix, rom_images
        self._d_img, self._m_img = d_img, m_img
        rom = self._rom

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
        self._shift_init([-w.exp - fmt.fx_frac for w in passes])
        x_layout = beat_layout(beat, abits, fmt.exp_bits)
        y_layout = beat_layout(beat, fmt.fx_bits)
        if select:
            sel = {"sel": unsigned(self.pass_bits)}
            x_layout = data.StructLayout(dict(x_layout.members) | sel)
            y_layout = data.StructLayout(dict(y_layout.members) | sel)
        super().__init__({"x": In(stream.Signature(x_layout)),
                          "y": Out(stream.Signature(y_layout))})

    @property
    def pass_cycles(self) -> list[int]:
        """Each pass's cycles: its ROM reads, then the lanes' pipeline latency and the
        output register (:func:`pass_latency`)."""
        return [L.cycles_per_vector + pass_latency(self.stages) for L in self.layouts]

    @property
    def cycles_per_vector(self) -> int:
        return sum(self.pass_cycles)

    @property
    def ideal_cycles(self) -> float:
        return sum(L.ideal_cycles for L in self.layouts)

    @property
    def rom_bits(self) -> int:
        """The bits of the weights' ROMs (codes and block constants)."""
        return sum(len(r.words) * r.width for r in self.code_roms + self.d_roms + self.m_roms)

    @property
    def pass_rom_bits(self) -> list[int]:
        """The ROM bits of each pass (its code words and its block constants, every lane's);
        they add up to :attr:`rom_bits`."""
        word = sum(r.width for r in self.lane_code_roms[0])
        const = self._d_bits + (self._m_bits if self._has_m else 0)
        return [L.rom_bits(word, const) for L in self.layouts]

    def lane_args(self) -> dict:
        args = dict(block=self.block, abits=self.abits, b=self.bounds,
                    d_bits=self._d_bits, m_bits=self._m_bits, s_bits=self._s_bits)
        if self.stages:
            args |= {"stages": self.stages}
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
        """Every ROM of the weights (:attr:`rom_bits`), then the shift constants' images."""
        return self.code_roms + self.d_roms + self.m_roms + self.shift_roms

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        r = SimpleNamespace(pass_bits=self.pass_bits)
        # The lanes' domain: their registers, their ROMs, the activation read and the stage-1
        # flags, so that the lanes' logic depends on registers of this domain only.
        r.ld = "lanes" if self.gate_lanes else "sync"
        self._input(m, r)
        self._issue(m, r)
        results = self._lanes(m, r)
        batch_output(self, m, r, results)
        return m

    def _input(self, m, r):
        """Beats assemble into blocks in the activation memory; ``buf_full`` once a pass's
        vector is in."""
        A, B, K, NP, Ls = self.abits, self.beat, self.block, len(self.passes), self.layouts
        x = self.x
        max_nb = max(L.nblocks for L in Ls)
        per_block = K // B
        m.submodules.xmem = xmem = Memory(shape=K * A, depth=max(max_nb, 2), init=[])
        wr = xmem.write_port()
        r.rd = xmem.read_port(domain=r.ld)
        pass_in = Signal(r.pass_bits)
        cnt_in = Signal(range(max(L.cols // B for L in Ls) + 1))
        if self.select:  # the pass of the vector coming in: its first beat names it
            cur = Signal(r.pass_bits)
            m.d.comb += cur.eq(Mux(cnt_in == 0, x.payload.sel, pass_in))
            r.pass_buf = Signal(r.pass_bits)
        else:
            cur = pass_in
        nin = indexed_constant(m, cur, [L.cols // B for L in Ls], "nin")
        r.e_buf = e_buf = Signal(signed(self.fmt.exp_bits))
        buf_full, busy = Signal(), Signal()
        r.buf_full, r.busy = buf_full, busy
        m.d.comb += x.ready.eq(~buf_full & ~busy)
        fire_in = x.valid & x.ready
        if per_block > 1:
            asm = Signal((per_block - 1) * B * A)
            word = Cat(asm, x.payload.elem)
            with m.If(fire_in):
                m.d.sync += asm.eq(word[B * A:])
            sub_last = cnt_in[:(per_block - 1).bit_length()] == per_block - 1
            m.d.comb += [wr.addr.eq(cnt_in >> (per_block - 1).bit_length()),
                         wr.data.eq(word), wr.en.eq(fire_in & sub_last)]
        else:
            m.d.comb += [wr.addr.eq(cnt_in), wr.data.eq(x.payload.elem),
                         wr.en.eq(fire_in)]
        with m.If(fire_in):
            m.d.sync += e_buf.eq(x.payload.exp)
            with m.If(cnt_in == nin - 1):
                m.d.sync += [cnt_in.eq(0), buf_full.eq(1)]
                if self.select:
                    m.d.sync += r.pass_buf.eq(cur)
                else:
                    m.d.sync += pass_in.eq(_next_pass(pass_in, NP))
            with m.Else():
                m.d.sync += cnt_in.eq(cnt_in + 1)
            if self.select:
                with m.If(cnt_in == 0):
                    m.d.sync += pass_in.eq(x.payload.sel)

    def _issue(self, m, r):
        """Stage 0: the ROM addresses and the schedule flags of the word the lanes take in
        the next cycle (stage 1)."""
        E, NP, Ls = self.fmt.exp_bits, len(self.passes), self.layouts
        busy = r.busy
        pass_run = Signal(r.pass_bits)
        depth_all = sum(L.depth for L in Ls)
        r.addr = addr = Signal(range(max(depth_all, 2)))
        r.saddr = saddr = Signal(range(max(sum(L.rows_per_lane * L.nblocks for L in Ls), 2)))
        bb = Signal(range(max(max(L.nblocks for L in Ls), 2)))
        t = Signal(range(max(max(L.cycles_per_block for L in Ls), 2)))
        e_cur = Signal(signed(E))
        end = indexed_constant(
            m, pass_run, [b + L.depth - 1 for b, L in zip(self.code_base, Ls, strict=True)],
            "end")
        nb_last = indexed_constant(m, pass_run, [L.nblocks - 1 for L in Ls], "nb_last")
        t_last = indexed_constant(m, pass_run, [L.cycles_per_block - 1 for L in Ls], "t_last")
        issue_last = addr == end

        r.v1 = v1 = Signal()
        sign1, lastp1, firstb1, batch1 = Signal(), Signal(), Signal(), Signal()
        r.sign1, r.lastp1, r.firstb1, r.batch1 = sign1, lastp1, firstb1, batch1
        r.e1 = e1 = Signal(signed(E))
        r.pass1 = pass1 = Signal(r.pass_bits)
        r.pend_full = Signal()
        r.adv = adv = Signal()
        self._pipeline(m, r)
        start = Signal()
        m.d.comb += start.eq(adv & r.buf_full & ~busy)
        m.d.comb += [r.rd.addr.eq(bb), r.rd.en.eq(adv)]
        if self.gate_lanes:
            self._gate_lane_clock(m, busy | r.in_flight)
        if self.select:
            base = (indexed_constant(m, r.pass_buf, self.code_base, "code_base"),
                    indexed_constant(m, r.pass_buf, self.scale_base, "scale_base"))

        with m.If(adv):
            m.d[r.ld] += [
                v1.eq(busy), sign1.eq(t == 0), lastp1.eq(t == t_last), firstb1.eq(bb == 0),
                batch1.eq((bb == nb_last) & (t == t_last)), e1.eq(e_cur), pass1.eq(pass_run),
            ]
            with m.If(start):
                m.d.sync += [e_cur.eq(r.e_buf), busy.eq(1), bb.eq(0), t.eq(0),
                             r.buf_full.eq(0)]
                if self.select:  # this vector's pass, where its rows are in the ROMs
                    m.d.sync += [pass_run.eq(r.pass_buf), addr.eq(base[0]),
                                 saddr.eq(base[1])]
            with m.Elif(busy):
                m.d.sync += addr.eq(addr + 1)
                with m.If(issue_last):
                    m.d.sync += busy.eq(0)
                    if not self.select:
                        m.d.sync += pass_run.eq(_next_pass(pass_run, NP))
                with m.If(t == t_last):
                    m.d.sync += [t.eq(0), saddr.eq(saddr + 1),
                                 bb.eq(Mux(bb == nb_last, 0, bb + 1))]
                with m.Else():
                    m.d.sync += t.eq(t + 1)
        # addr and saddr run on from one pass into the next (the ROMs hold the passes in
        # order) and wrap after the last; with ``select`` they start at each vector's pass.
        if not self.select:
            with m.If(adv & busy & issue_last & (pass_run == NP - 1)):
                m.d.sync += [addr.eq(0), saddr.eq(0)]

    def _pipeline(self, m, r):
        """The lanes' last stage's flags (``vo``, ``batcho``, ``eo``, ``passo``, stage 1's moved
        on ``stages`` times) and ``saddr_t``, the scale address the lanes' block term reads."""
        flags = [r.v1, r.batch1, r.e1, r.pass1]
        r.in_flight = r.v1
        for k in range(self.stages):
            flags = [_advanced(m, r, f, f"{f.name}_s{k + 1}") for f in flags]
            r.in_flight = r.in_flight | flags[0]
        r.vo, r.batcho, r.eo, r.passo = flags
        # the array advances unless a finished batch meets a full output buffer
        m.d.comb += r.adv.eq(~(r.vo & r.batcho & r.pend_full))
        r.saddr_t = r.saddr
        for k in range(BlockLane.term_offset(self.stages)):
            r.saddr_t = _advanced(m, r, r.saddr_t, f"saddr_t{k + 1}")

    def _gate_lane_clock(self, m, enable):
        """A clock-gating cell: the enable is caught while the clock is low and ANDed with
        it. The lanes' clock ticks at the edges where a ROM read issues (busy) or the lanes
        take its word (v1), and through reset. At every other edge the ungated design would
        only have re-read the same words and kept v1 low."""
        m.domains.lanes_en = cde = ClockDomain(clk_edge="neg", reset_less=True, local=True)
        m.domains.lanes = cdl = ClockDomain(local=True)
        en, gclk = Signal(name="lanes_en_q"), Signal(name="lanes_gclk")
        m.d.comb += [cde.clk.eq(ClockSignal("sync")), gclk.eq(ClockSignal("sync") & en),
                     cdl.clk.eq(gclk), cdl.rst.eq(ResetSignal("sync"))]
        m.d.lanes_en += en.eq(enable | ResetSignal("sync"))

    def _lanes(self, m, r) -> list:
        """Stage 1: every lane's ROMs and an instance of the lane module; returns the rows
        (``result`` of each lane)."""
        A, K, ld = self.abits, self.block, r.ld
        update = Signal()
        m.d.comb += update.eq(r.adv & r.v1)
        chunk1 = r.rd.data
        act_sum = Signal(signed(self._s_bits))
        if self._has_m:
            lo, hi = signed_range(A)
            # The lanes take the sum term_offset advances later: the first of those
            # registers halfway up its adder tree, off the activation memory's read port.
            offset = BlockLane.term_offset(self.stages)
            cut = None
            if offset:
                cut = (((K - 1).bit_length() + 1) // 2,
                       lambda sums: [_advanced(m, r, v, f"act_half{i}")
                                     for i, v in enumerate(sums)])
            m.d.comb += act_sum.eq(adder_tree(m, [element(chunk1, k, A) for k in range(K)],
                                              lo, hi, cut=cut))
            for k in range(offset - (cut is not None)):
                act_sum = _advanced(m, r, act_sum, f"act_sum_t{k + 1}")
        results = []
        for p in range(self.lanes):
            croms = [spec.build() for spec in self.lane_code_roms[p]]
            drom = self.d_roms[p].build()
            for j, crom in enumerate(croms):
                m.submodules[f"code{p}" if len(croms) == 1 else f"code{p}_{j}"] = \
                    DomainRenamer(ld)(crom)
                m.d.comb += [crom.addr.eq(r.addr), crom.en.eq(r.adv)]
            m.submodules[f"d{p}"] = DomainRenamer(ld)(drom)
            m.d.comb += [drom.addr.eq(r.saddr_t), drom.en.eq(r.adv)]
            res = Signal(signed(self.acc_bits), name=f"row{p}")
            ports = dict(i_clk=ClockSignal(ld), i_rst=ResetSignal(ld),
                         i_chunk=chunk1, i_d=drom.data, i_first_block=r.firstb1,
                         i_update=update, o_result=res)
            if self.stages:
                ports |= dict(i_en=r.adv)
            if self.parallel:
                ports |= dict(i_codes=Cat(*(c.data for c in croms)))
            else:
                ports |= dict(i_bits=croms[0].data, i_sign_plane=r.sign1,
                              i_last_plane=r.lastp1)
            if self._has_m:
                mrom = self.m_roms[p].build()
                m.submodules[f"m{p}"] = DomainRenamer(ld)(mrom)
                m.d.comb += [mrom.addr.eq(r.saddr_t), mrom.en.eq(r.adv)]
                ports |= dict(i_m=mrom.data, i_act_sum=act_sum)
            m.submodules[f"lane{p}"] = Instance(self.lane_name, **ports)
            results.append(res)
        return results
