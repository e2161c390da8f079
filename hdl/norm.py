"""RMSNorm of the residual into matvec activations, :func:`golden.integer.rms_norm_int`,
bit for bit.

The unit takes the vector as beats on ``x`` and gives beats of ``(mantissas, exponent)`` on
``y`` (:mod:`hdl.vector`). It buffers the vector in a ``lib.memory`` Memory of beats
(:class:`hdl.beat_buffer.BeatBuffer`, synchronous read, one beat per cycle) because the
exponent depends on the whole vector, and it has ``beat`` lanes, one element of a beat per
lane.

Widths are derived from bounds: the format (:class:`golden.integer.IntFormat`), the vector
length and the actual gain table. Some products are wider than 64 bits; Amaranth does not
care.
"""

import operator
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.block_folded import ROM_WIDTH
from golden.integer import IntFormat

from .arith import bit_length, pack, signed_width, split_product, wire, wired_tree
from .beat_buffer import BeatBuffer, bfp_shift
from .lane_shape import indexed_rom_word
from .mask_rom import RomSpec, twos_complement
from .rounding import RoundShift
from .vector import beat_count, beat_layout, element

__all__ = ["RmsNormUnit", "gain_bounds"]


def gain_bounds(*tables) -> tuple[int, int, int, int]:
    """``(gmin, gmax, gf_lo, gf_hi)`` over ``(gain, gf)`` tables: the bounds that size an
    :class:`RmsNormUnit`. Norms built with the same bounds have the same widths, so with
    their tables in ROM images they are the same circuit."""
    gmin = min([0] + [int(np.min(g)) for g, _ in tables])
    gmax = max([0] + [int(np.max(g)) for g, _ in tables])
    gfs = [int(gf) for _, gf in tables]
    return gmin, gmax, min(gfs), max(gfs)

# The sequence of a vector, one state after the other (plain ifs: an FSM's case statements
# trip Verilator's CASEINCOMPLETE).
(IDLE, SUMSQ, DRAIN, ISQRT, ROOTLEN, NORM, DIV, SCALE, PRODUCT, PARTIALS, BITLEN, SHIFT, EXP,
 OUT) = range(14)


def _max(a, b):
    return Mux(a > b, a, b)


class RmsNormUnit(wiring.Component):
    """RMSNorm of the residual into matvec activations:
    ``golden.integer.rms_norm_int(h, gain, gf, eps_term, fmt)``.

    The vector waits in a buffer of beats while the unit makes its passes. ``beat`` lanes,
    one element each, in a seven-stage pipeline (buffer and gain ROM read; ``x = h >> s``;
    ``x * G``; the wide product's operands; its 18-bit partial products
    (:func:`hdl.arith.split_product`); the product; the output's shift), with two
    multipliers per lane: ``x * G`` (``norm_bits`` by the gain width) and a wide one that
    forms ``x * x`` in the sum-of-squares pass and ``(x * G) * q`` in the output pass.
    The gains are a ROM of beats.

    1. *Input*: store the beats, OR the magnitudes ``|h|``; ``s = max(0, bitlen -
       (norm_bits - 1))``.
    2. *Sum of squares*: read every beat, ``x = h >> s``; the lane multiplier gives ``x * x``
       (balanced adder tree, accumulator ``T``); ``M = max |x * G|`` on the side.
    3. ``T + (eps_term >> 2s)`` (at least 1) goes through a bit-by-bit square root (two
       radicand bits per cycle; the ``2 * isqrt_frac`` appended zero bits are fed in, not
       stored) and a restoring divider for ``q = floor(2**k / r)``: ``r`` is normalised to
       its leading one, so the dividend is the constant ``2**(rw - 1 + recip_bits)``.
    4. The bfp shift needs ``bitlen(max |x * G * q|) == bitlen(q * M)`` as ``q > 0``: lane 0's
       multiplier forms ``q * M`` once, so no pass computes a maximum of products.
    5. *Output*: read every beat again, ``y = (x * G) * q`` in the lane multipliers, rounded
       (``half_away``) and saturated to ``abits``; every beat carries the exponent
       ``e = sy - k - gf + isqrt_frac``.

    The next vector's input overlaps the output pass (beat ``j`` is overwritten once read).

    Timing at full rate, vectors back to back (see :attr:`cycles`): ``2 * n / beat + 18 +
    isqrt_steps + recip_bits`` cycles per vector, where ``isqrt_steps`` (:attr:`isqrt_steps`)
    is half the even width of the largest ``T`` plus ``isqrt_frac`` (35 for dim 64, 36 for
    dim 576: 85 and 114 cycles with beats of 16 and 32). :attr:`latency` is the time from
    the last input beat to the first output beat.

    Ports: ``x`` beats of ``beat_layout(beat, fmt.res_bits)``; ``y`` beats of
    ``beat_layout(beat, fmt.abits, fmt.exp_bits)``.
    """

    def __init__(self, dim: int, beat: int, fmt: IntFormat, gain, gf: int, eps_term: int,
                 *, bounds: tuple | None = None, image: str | None = None):
        self.beats = beat_count(dim, beat)
        gain = np.asarray(gain, np.int64).ravel()
        if gain.shape != (dim,):
            raise ValueError(f"gain has {gain.size} elements, not dim = {dim}")
        if eps_term < 0:
            raise ValueError("eps_term must be non-negative")
        self.dim, self.beat, self.fmt = dim, beat, fmt
        self.gain, self.gf, self.eps_term = gain, int(gf), int(eps_term)
        self.bounds = gmin, gmax, self.gf_lo, self.gf_hi = bounds or gain_bounds((gain, gf))
        if not (gmin <= int(gain.min()) and int(gain.max()) <= gmax
                and self.gf_lo <= self.gf <= self.gf_hi):
            raise ValueError(f"the gain table (gf {gf}) is outside its bounds {bounds}")
        self.image = image

        # Bounds. x = h >> s has |x| <= 2**(xw-1) (floor of a negative reaches -2**(xw-1)).
        res_bits, norm_bits = fmt.res_bits, fmt.norm_bits
        self.xw = min(norm_bits, res_bits)
        self.smax = max(0, res_bits - (norm_bits - 1))
        xlo, xhi = -(1 << (self.xw - 1)), (1 << (self.xw - 1)) - 1
        self.gw = signed_width(gmin, gmax)
        corners = [a * b for a in (xlo, xhi) for b in (gmin, gmax)]
        self.xglo, self.xghi = min(corners), max(corners)
        self.xgw = signed_width(self.xglo, self.xghi)
        self.mmax = max(-self.xglo, self.xghi)  # bound of M = max|x * G|
        self.sqmax = xlo * xlo
        qmax = 1 << fmt.recip_bits
        self.yw = signed_width(min(self.xglo * qmax, 0),
                               max(self.xghi * qmax, self.mmax * qmax, self.sqmax))
        self.accw = (dim * self.sqmax).bit_length()
        tw = (dim * self.sqmax + self.eps_term).bit_length()
        self.tw = max(tw + (tw & 1), 2)  # radicand bits fed two at a time
        self.isqrt_steps = self.tw // 2 + fmt.isqrt_frac  # also the width of r
        if self.isqrt_steps < 2:
            raise ValueError("the square root needs at least 2 bits")
        self.symax = max(0, (self.mmax * qmax).bit_length() - (fmt.abits - 1))

        self.gf_bits = signed_width(self.gf_lo, self.gf_hi)
        self.gain_roms, self.gf_rom = self._rom_specs()

        super().__init__({
            "x": In(stream.Signature(beat_layout(beat, res_bits))),
            "y": Out(stream.Signature(beat_layout(beat, fmt.abits, fmt.exp_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back:
        ``2 * n/beat + isqrt_steps + recip_bits + 23``: the output pass (``n/beat``; the next
        input overlaps it), 7 to drain the pipeline and start, the sum-of-squares pass
        (``n/beat``), 7 to drain it and load the square root, the square root
        (``isqrt_steps``), 2 to normalise, the divider (``recip_bits + 1``), 6 for the
        product ``q * M``, its bit length, the bfp shift and the exponent."""
        return 2 * self.beats + self.isqrt_steps + self.fmt.recip_bits + 23

    @property
    def latency(self) -> int:
        """Cycles from the last input beat of a vector (into an idle unit) to its first
        output beat: ``n/beat + isqrt_steps + recip_bits + 26``."""
        return self.beats + self.isqrt_steps + self.fmt.recip_bits + 26

    def _rom_init(self) -> list[int]:
        return [pack(self.gain[b * self.beat:(b + 1) * self.beat].tolist(), self.gw)
                for b in range(self.beats)]

    def _rom_specs(self) -> tuple[list, RomSpec | None]:
        """With an :attr:`image`: the gain table as ROMs of beats, each holding as many lanes'
        gains as fit in a ROM word, and ``gf`` as a ROM of one word when its bounds allow more
        than one value. The unit's Verilog then holds no number of its table, and the
        decoder layers of a chip are one module for Verilator (:mod:`sim.shared`)."""
        if self.image is None:
            return [], None
        # each ROM a slice of :meth:`_rom_init`'s beats: ``per`` lanes' gains from lane ``a``
        per = max(1, ROM_WIDTH // self.gw)
        beats = self._rom_init()
        roms = []
        for k, a in enumerate(range(0, self.beat, per)):
            width = (min(self.beat, a + per) - a) * self.gw
            words = np.array([(w >> (a * self.gw)) & ((1 << width) - 1) for w in beats],
                             np.uint64)
            roms.append(RomSpec(words, width, f"{self.image}_gain{k}.hex"))
        gf_rom = None
        if self.gf_lo != self.gf_hi:
            gf_rom = RomSpec(twos_complement([self.gf], self.gf_bits), self.gf_bits,
                             f"{self.image}_gf.hex")
        return roms, gf_rom

    def roms(self) -> list:
        """The unit's ROM images (:class:`hdl.mask_rom.RomSpec`; none without an image)."""
        return self.gain_roms + ([self.gf_rom] if self.gf_rom is not None else [])

    def _gain_port(self, m):
        """The gain ROM's read port (``addr``, ``en``, ``data``: one beat of gains)."""
        if not self.gain_roms:
            m.submodules.gain = rom = memory.Memory(shape=unsigned(self.beat * self.gw),
                                                    depth=self.beats, init=self._rom_init())
            return rom.read_port(domain="sync")
        roms = [spec.build() for spec in self.gain_roms]
        for k, rom in enumerate(roms):
            m.submodules[f"gain{k}"] = rom
        port = SimpleNamespace(addr=Signal(range(max(2, self.beats))), en=Signal(),
                               data=Cat(*(rom.data for rom in roms)))
        m.d.comb += [x for rom in roms for x in (rom.addr.eq(port.addr), rom.en.eq(port.en))]
        return port

    def _gf_value(self, m):
        """``gf``: a constant, or the word of its ROM (read from the first cycle on; the
        unit needs it only at the end of a vector's square root)."""
        if self.gf_rom is None:
            return Const(self.gf, signed(self.gf_bits))
        return indexed_rom_word(m, 0, [self.gf_rom], 1, self.gf_bits, "gf")

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        nb, B, res_bits = self.beats, self.beat, self.fmt.res_bits
        x = self.x
        buf = BeatBuffer(m, nb, B, res_bits)
        gp = self._gain_port(m)
        r = self._registers(buf)
        adv = ~self.y.valid | self.y.ready

        # Input: store the beat, OR the magnitudes.
        m.d.comb += x.ready.eq(r.load & (buf.wr < nb))
        elems = [element(x.payload.elem, i, res_bits) for i in range(B)]
        buf.store(m, x.valid & x.ready, x.payload.elem, elems)
        m.d.comb += [buf.rp.addr.eq(buf.rd), buf.rp.en.eq(adv), gp.addr.eq(buf.rd),
                     gp.en.eq(adv)]

        self._sum_of_squares_pass(m, r, buf, adv)
        self._square_root(m, r)
        self._reciprocal(m, r)
        self._exponent_and_output_pass(m, r, buf, adv)
        # Comb outputs of the sequence as plain expressions (see arith.bit_length on Icarus).
        m.d.comb += [
            r.load.eq((r.state == IDLE) | ((r.state == OUT) & (buf.wr < buf.rd))),
            r.issue.eq(((r.state == SUMSQ) | (r.state == OUT)) & adv),
            r.scale.eq(r.state == SCALE)]

        self._lanes(m, r, buf.rp, gp, adv)
        # Output: y = x * G * q rounded by sy, saturated.
        # (the shifted value through a register of the pipeline, stage 7, beside v7)
        rs = RoundShift(m, r.sy, self.symax, self.yw, self.fmt.abits, "rs", bounded=True)

        def cut(*sigs):
            regs = [Signal(v.shape(), name=f"p4_{len(p4)}") for v in sigs]
            p4.extend(regs)
            with m.If(adv):
                m.d.sync += [a.eq(b) for a, b in zip(regs, sigs, strict=True)]
            return regs

        p4 = []
        out = Cat(*(rs(r.p3[i], f"rounded_{i}", cut) for i in range(B)))
        with m.If(adv):
            m.d.sync += [r.v7.eq(r.v6 & ~r.sq), self.y.valid.eq(r.v7),
                         self.y.payload.exp.eq(r.e), self.y.payload.elem.eq(out)]
        return m

    def _registers(self, buf: BeatBuffer) -> SimpleNamespace:
        """The unit's registers and sequence signals (besides the buffer's counters)."""
        fmt, B, rw = self.fmt, self.beat, self.isqrt_steps
        recip_bits, xw, gw = fmt.recip_bits, self.xw, self.gw
        s = Signal(range(self.smax + 1))
        sq = Signal()  # the pipeline holds the sum-of-squares pass
        acc = Signal(self.accw)  # sum of x*x
        mx = Signal(self.mmax.bit_length())  # max |x*G|
        rad = Signal(self.tw)  # radicand bits not yet fed
        irem = Signal(rw + 2)
        root = Signal(rw)
        rn = Signal(rw)  # r normalised: leading one at the top
        k = Signal(range(rw + recip_bits))
        drem = Signal(rw + 1)
        q = Signal(recip_bits + 1)
        cnt = Signal(range(max(rw, recip_bits + 1)))
        sy = Signal(range(self.symax + 1))
        e = Signal(signed(fmt.exp_bits))
        # Pipeline: v1 read port, v2 (x1, g1), v3 (x2, xg2), v4 (the wide multiplier's
        # operands a3, b3), v5 (its partial products), v6 (its product p3), v7 (an output
        # beat's rounding, between its shift and its add).
        v1, v2, v3, v4, v5, v6, v7 = (Signal(name=f"v{k}") for k in range(1, 8))
        x1 = [Signal(signed(xw), name=f"x1_{i}") for i in range(B)]
        g1 = [Signal(signed(gw), name=f"g1_{i}") for i in range(B)]
        x2 = [Signal(signed(xw), name=f"x2_{i}") for i in range(B)]
        xg2 = [Signal(signed(self.xgw), name=f"xg2_{i}") for i in range(B)]
        p3 = [Signal(signed(self.yw), name=f"p3_{i}") for i in range(B)]
        aw = max(self.xgw, xw, self.mmax.bit_length() + 1)
        a3 = [Signal(signed(aw), name=f"a3_{i}") for i in range(B)]
        b3 = [Signal(signed(max(xw, recip_bits + 2)), name=f"b3_{i}") for i in range(B)]
        state = Signal(range(14))
        issue = Signal()  # a pass reads beat rd in this cycle
        load = Signal()  # the buffer may take input
        scale = Signal()  # lane 0 multiplies q * M
        return SimpleNamespace(
            s=s, sq=sq, acc=acc, mx=mx, rad=rad, irem=irem, root=root, rn=rn, k=k, drem=drem,
            q=q, cnt=cnt, sy=sy, e=e, v1=v1, v2=v2, v3=v3, v4=v4, v5=v5, v6=v6, v7=v7,
            busy=v1 | v2 | v3 | v4 | v5 | v6,
            x1=x1, g1=g1, x2=x2, xg2=xg2, a3=a3, b3=b3, p3=p3, state=state, issue=issue, load=load,
            scale=scale)

    def _sum_of_squares_pass(self, m, r, buf: BeatBuffer, adv):
        """IDLE, SUMSQ, DRAIN: the input shift, the pass over the buffer, and the radicand
        ``T = sum(x*x) + (eps_term >> 2s)``, at least 1."""
        nb, state = self.beats, r.state
        s_new = bfp_shift(m, bit_length(m, buf.orv, "bitlen_h"), self.fmt.norm_bits,
                          self.smax, "s_new")
        eps = Const(self.eps_term, max(self.eps_term.bit_length(), 1))
        t_sum = Signal(self.tw)
        m.d.comb += t_sum.eq(r.acc + (eps >> Cat(Const(0, 1), r.s)))
        t_pos = Mux(t_sum == 0, 1, t_sum)

        with m.If(state == IDLE):
            # Start once the vector is in and the pipeline is empty (s and the mode
            # change); the last output beat may leave in this cycle.
            with m.If((buf.wr == nb) & ~r.busy & adv):
                m.d.sync += [r.s.eq(s_new), buf.orv.eq(0), buf.wr.eq(0), buf.rd.eq(0),
                             r.acc.eq(0), r.mx.eq(0), r.sq.eq(1)]
                m.d.sync += state.eq(SUMSQ)
        with m.If(state == SUMSQ):
            with m.If(adv):
                m.d.sync += buf.rd.eq(buf.rd + 1)
                with m.If(buf.rd == nb - 1):
                    m.d.sync += state.eq(DRAIN)
        with m.If(state == DRAIN):
            with m.If(~r.busy):
                m.d.sync += [r.rad.eq(t_pos), r.irem.eq(0), r.root.eq(0), r.cnt.eq(0),
                             r.sq.eq(0)]
                m.d.sync += state.eq(ISQRT)

    def _square_root(self, m, r):
        """ISQRT: the square root, digit by digit: two radicand bits per step."""
        rem4 = Cat(r.rad[-2:], r.irem)
        trial = Cat(Const(1, 2), r.root)
        with m.If(r.state == ISQRT):
            m.d.sync += [r.rad.eq(r.rad << 2), r.cnt.eq(r.cnt + 1)]
            with m.If(rem4 >= trial):
                m.d.sync += [r.irem.eq(rem4 - trial), r.root.eq(Cat(Const(1, 1), r.root))]
            with m.Else():
                m.d.sync += [r.irem.eq(rem4), r.root.eq(Cat(Const(0, 1), r.root))]
            with m.If(r.cnt == self.isqrt_steps - 1):
                m.d.sync += r.state.eq(ROOTLEN)

    def _reciprocal(self, m, r):
        """ROOTLEN, NORM, DIV: the bit length of ``r`` (registered), ``r`` normalised to its
        leading one, then the restoring divider for ``q = floor(2**k / r)``."""
        rw, recip_bits = self.isqrt_steps, self.fmt.recip_bits
        bl_r = Signal(range(rw + 1), name="bitlen_r1")
        m.d.sync += bl_r.eq(bit_length(m, r.root, "bitlen_r"))
        with m.If(r.state == ROOTLEN):
            m.d.sync += r.state.eq(NORM)
        lsh = Signal(range(rw + 1))
        m.d.comb += lsh.eq(rw - bl_r)
        rem2 = Cat(Const(0, 1), r.drem)
        with m.If(r.state == NORM):
            m.d.sync += [r.rn.eq(r.root << lsh), r.k.eq(bl_r - 1 + recip_bits),
                         r.drem.eq(1 << (rw - 2)), r.q.eq(0), r.cnt.eq(0)]
            m.d.sync += r.state.eq(DIV)
        with m.If(r.state == DIV):
            m.d.sync += r.cnt.eq(r.cnt + 1)
            with m.If(rem2 >= r.rn):
                m.d.sync += [r.drem.eq(rem2 - r.rn), r.q.eq(Cat(Const(1, 1), r.q))]
            with m.Else():
                m.d.sync += [r.drem.eq(rem2), r.q.eq(Cat(Const(0, 1), r.q))]
            with m.If(r.cnt == recip_bits):
                m.d.sync += r.state.eq(SCALE)

    def _exponent_and_output_pass(self, m, r, buf: BeatBuffer, adv):
        """SCALE to OUT: ``q * M`` through the wide multiplier (in ``p3[0]`` in BITLEN), its
        bit length (registered), the bfp shift, the exponent, and the output pass over the
        buffer."""
        fmt, state = self.fmt, r.state
        frac = fmt.isqrt_frac
        bl_y = Signal(range(self.yw), name="bitlen_y1")  # of q * M, registered in BITLEN
        m.d.sync += bl_y.eq(bit_length(m, r.p3[0][:self.yw - 1], "bitlen_y"))
        sy_new = bfp_shift(m, bl_y, fmt.abits, self.symax, "sy_new")
        gfa = max(abs(self.gf_lo), abs(self.gf_hi))
        e_lo = -(self.isqrt_steps + fmt.recip_bits) - gfa - frac
        e_hi = self.symax + gfa + frac
        e_new = Signal(signed(max(fmt.exp_bits, signed_width(e_lo, e_hi)) + 1))
        m.d.comb += e_new.eq(r.sy - r.k + frac - self._gf_value(m))
        with m.If(state == SCALE):
            m.d.sync += state.eq(PRODUCT)
        with m.If(state == PRODUCT):
            m.d.sync += state.eq(PARTIALS)
        with m.If(state == PARTIALS):
            m.d.sync += state.eq(BITLEN)
        with m.If(state == BITLEN):
            m.d.sync += state.eq(SHIFT)
        with m.If(state == SHIFT):
            m.d.sync += [r.sy.eq(sy_new), state.eq(EXP)]
        with m.If(state == EXP):
            m.d.sync += [r.e.eq(e_new), buf.rd.eq(0)]
            m.d.sync += state.eq(OUT)
        with m.If(state == OUT):
            with m.If(adv):
                m.d.sync += buf.rd.eq(buf.rd + 1)
                with m.If(buf.rd == self.beats - 1):
                    m.d.sync += state.eq(IDLE)

    def _lanes(self, m, r, buffered, gp, adv):
        """The lanes' pipeline over the beat in the read ports, and the sum-of-squares
        pass's adder tree (into ``acc``) and maximum tree (into ``mx``). In SUMSQ and from
        IDLE to SCALE, ``adv`` is 1: ``y`` is empty from the start on."""
        res_bits, xw, gw = self.fmt.res_bits, self.xw, self.gw
        x1, g1, x2, xg2, p3 = r.x1, r.g1, r.x2, r.xg2, r.p3
        with m.If(adv):
            m.d.sync += [r.v1.eq(r.issue), r.v2.eq(r.v1), r.v3.eq(r.v2), r.v4.eq(r.v3),
                         r.v5.eq(r.v4), r.v6.eq(r.v5)]
            for i in range(self.beat):
                h = element(buffered.data, i, res_bits)
                # x = h >> s (it fits xw bits): a slice at offset s, not a shifter per lane.
                hx = Cat(h, h[-1].replicate(max(0, self.smax + xw - res_bits)))
                a = Mux(r.sq, x2[i], xg2[i])
                if i == 0:
                    a = Mux(r.scale, r.mx, a)
                b = Mux(r.sq, x2[i], r.q)
                m.d.sync += [x1[i].eq(hx.bit_select(r.s, xw)),
                             g1[i].eq(element(gp.data, i, gw)),
                             x2[i].eq(x1[i]), xg2[i].eq(x1[i] * g1[i]),
                             r.a3[i].eq(a), r.b3[i].eq(b)]

        def register(parts):  # the partial products, moved by adv as the pipeline is
            regs = [Signal(p.shape(), name=f"{p.name}_r") for p in parts]
            with m.If(adv):
                m.d.sync += [q.eq(p) for q, p in zip(regs, parts, strict=True)]
            return regs

        for i in range(self.beat):  # outside m.If: the partial products are comb
            product = split_product(m, r.a3[i], r.b3[i], register, f"p{i}")
            with m.If(adv):
                m.d.sync += p3[i].eq(product)
        sqw = self.sqmax.bit_length()
        absxg = [wire(m, abs(v), f"absxg_{i}") for i, v in enumerate(xg2)]
        max_beat = wired_tree(m, absxg, _max, "max")
        sum_beat = wired_tree(m, [v[:sqw] for v in p3], operator.add, "sum")
        with m.If(adv & r.v3 & r.sq):
            m.d.sync += r.mx.eq(_max(r.mx, max_beat))
        with m.If(adv & r.v6 & r.sq):
            m.d.sync += r.acc.eq(r.acc + sum_beat)
