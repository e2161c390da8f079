"""``silu(gate) * up`` into matvec activations, :func:`golden.integer.swiglu_int`, bit for
bit."""

from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .arith import interpolation_words, signed_width, split_product, wire
from .beat_buffer import BFP_OUT_LATENCY, BfpBuffer
from .rounding import round_away, saturate
from .vector import beat_count, beat_layout, element

__all__ = ["SwigluUnit", "swiglu_layout", "FRONT_STAGES"]

#: The front end's stages, each a register moved when the bfp buffer takes a beat: the table
#: read, its word, the interpolated sigmoid, ``gate * sig``, ``silu`` rounded, the 18-bit
#: partial products of ``silu * up`` (:func:`hdl.arith.split_product`), ``silu * up``.
FRONT_STAGES = 7


def swiglu_layout(beat: int, fmt: IntFormat) -> data.StructLayout:
    """SwiGLU input payload: ``gate`` (``beat`` elements of ``fx_bits``) at bit 0, ``up``
    (the same indices) directly above."""
    return data.StructLayout({"gate": unsigned(beat * fmt.fx_bits),
                              "up": unsigned(beat * fmt.fx_bits)})


class SwigluUnit(wiring.Component):
    """``golden.integer.swiglu_int(gate, up, sig_table, fmt)``: matvec activations
    ``(a, e)`` of ``rescale(silu_int(gate), prob_frac) * up``.

    Per lane, a four-stage front end (it stalls as a whole), each stage ending on a register
    so that no multiplier follows another in one cycle:

    1. ``t = gate + (sig_range << fx_frac)``; the sigmoid ROM (``2 * sig_range <<
       sig_step_bits`` words of ``T[i]`` and ``T[i+1] - T[i]``; one memory with a synchronous
       read port per lane) is addressed by ``t >> (fx_frac - sig_step_bits)``.
    2. ``sig = T[i] + round((T[i+1] - T[i]) * rem)`` inside ``[-range, range)``, 0 below,
       ``2**prob_frac`` above.
    3. ``s = saturate(round(gate * sig >> prob_frac), fx_bits)``.
    4. The exact product ``p = s * up`` (``2 * fx_bits`` wide), into the buffer.

    Then block floating point over the whole vector (:class:`hdl.beat_buffer.BfpBuffer`),
    two passes over a memory of product beats: the input pass stores each beat and ORs the
    magnitudes (``bitlen(max|p|) == bitlen(OR |p|)``); the output pass reads them back and
    rounds (``half_away``) and saturates each by ``s = max(0, bitlen - (abits - 1))``; every
    output beat carries ``e = s - 2 * fx_frac``. The next vector's products are written while
    the output pass runs (beat ``j`` once it has been read).

    Timing at full rate, vectors back to back: ``cycles = n / beat + 1`` per vector (one beat
    per cycle plus one cycle to turn the buffer around); :attr:`latency` from the last input
    beat of a vector into an idle unit to its first output beat: 12 cycles.

    With ``clamp = (L, alpha)`` it is gpt-oss' activation,
    :func:`golden.gpt_oss_int.clamped_swiglu_int`: the gate clamped above at ``L`` and up to
    ``[-L, L]`` (Q.fx) in front of stage 1, the table read at
    ``rescale(gate * alpha, ALPHA_FRAC)``, and the product ``s * (up + 1)``.

    Ports: ``x`` payload :func:`swiglu_layout` (``gate``, ``up``); ``y`` payload
    ``beat_layout(beat, abits, exp_bits)``.
    """

    def __init__(self, n: int, beat: int, fmt: IntFormat, sig_table,
                 clamp: tuple[int, int] | None = None):
        self.beats = beat_count(n, beat)
        table = np.asarray(sig_table, np.int64).ravel()
        self.nseg = 2 * fmt.sig_range << fmt.sig_step_bits
        if table.shape != (self.nseg + 1,):
            raise ValueError(f"sigmoid table has {table.size} entries, not {self.nseg + 1}")
        self.sb = fmt.fx_frac - fmt.sig_step_bits
        if self.sb < 0:
            raise ValueError("fx_frac must not be less than sig_step_bits")
        if int(table.min()) < 0 or int(table.max()) > 1 << fmt.prob_frac:
            raise ValueError("sigmoid table values must be in [0, 2**prob_frac]")
        self.n, self.beat, self.fmt, self.table = n, beat, fmt, table
        self.clamp = None if clamp is None else (int(clamp[0]), int(clamp[1]))
        F = fmt.fx_bits
        diff = table[1:] - table[:-1]
        self.tlw = max(int(table.max()).bit_length(), 1)  # T[i], unsigned
        self.dw = signed_width(int(diff.min()), int(diff.max()))
        self.sigw = signed_width(0, max(int(table.max()), 1 << fmt.prob_frac))
        flo, fhi = -(1 << (F - 1)), (1 << (F - 1)) - 1
        if self.clamp is None:
            self.pw = signed_width(min(flo * fhi, 0), flo * flo)  # p = s * up, exact
        else:  # p = s * (clip(up, -L, L) + 1)
            lim, one = self.clamp[0], 1 << fmt.fx_frac
            if not 0 < lim < 1 << (F - 2):
                raise ValueError(f"the SwiGLU limit {lim} must be positive and fit fx_bits")
            self.pw = signed_width(flo * (lim + one), fhi * (lim + one))
        self.smax = max(0, self.pw - (fmt.abits - 1))  # bitlen(|p|) <= pw
        elo, ehi = -2 * fmt.fx_frac, self.smax - 2 * fmt.fx_frac
        if signed_width(elo, ehi) > fmt.exp_bits:
            raise ValueError(f"exponents {elo}..{ehi} do not fit exp_bits = {fmt.exp_bits}")
        super().__init__({
            "x": In(stream.Signature(swiglu_layout(beat, fmt))),
            "y": Out(stream.Signature(beat_layout(beat, fmt.abits, fmt.exp_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back: ``n / beat + 1``."""
        return self.beats + 1

    @property
    def latency(self) -> int:
        """Cycles from the last input beat of a vector (into an idle unit) to its first output
        beat: 12 (:data:`FRONT_STAGES` front-end stages, the write, then
        :data:`hdl.beat_buffer.BFP_OUT_LATENCY`: the turn-around, the read, its register, the
        rounding's register)."""
        return FRONT_STAGES + 1 + BFP_OUT_LATENCY

    def _rom_init(self) -> list[int]:
        return interpolation_words(self.table.tolist(), self.tlw, self.dw)

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        # the front end's stages hold a beat
        fv = [Signal(name=f"fv{k + 1}") for k in range(FRONT_STAGES)]
        bin_ready = Signal()
        fadv = ~fv[-1] | bin_ready
        m.d.comb += self.x.ready.eq(fadv)
        stage1 = self._sigmoid_lookup(m, fadv)
        with m.If(fadv):
            m.d.sync += [a.eq(b) for a, b in zip(fv, [self.x.valid, *fv[:-1]], strict=True)]
        # the table words off the block RAM into registers, beside the rest of stage 1
        names = ("g1", "up1", "rem1", "in1", "above1")
        lanes = [[rp.data for rp in stage1.roms]] + [getattr(stage1, n) for n in names]
        held = [[Signal(v.shape(), name=f"{n}b_{i}") for i, v in enumerate(vs)]
                for n, vs in zip(("word1",) + names, lanes, strict=True)]
        with m.If(fadv):
            m.d.sync += [a.eq(b) for hs, vs in zip(held, lanes, strict=True)
                         for a, b in zip(hs, vs, strict=True)]
        stage1b = SimpleNamespace(words=held[0], **dict(zip(names, held[1:], strict=True)))
        prods = self._silu_times_up(m, stage1b, fadv)

        # Block floating point: store and OR, then read, round and saturate.
        bfp = BfpBuffer(m, beats=self.beats, beat=self.beat, bits=self.pw,
                        out_bits=self.fmt.abits, s_max=self.smax, exp_bits=self.fmt.exp_bits)
        bfp.store(m, fv[-1], bin_ready, Cat(*prods), prods, named_nodes=False)
        bfp.emit(m, self.y, lambda s: s - 2 * self.fmt.fx_frac)
        return m

    def _sigmoid_lookup(self, m, fadv) -> SimpleNamespace:
        """Stage 1: per lane, the sigmoid ROM read at ``t = gate + (sig_range << fx_frac)``
        and the gate, up, the remainder of ``t`` and its range registered beside it."""
        fmt, B, F, sb = self.fmt, self.beat, self.fmt.fx_bits, self.sb
        tmax = self.nseg << sb  # t in [0, tmax) is inside the table
        # One sigmoid ROM, a read port per lane.
        m.submodules.sig = rom = memory.Memory(shape=unsigned(self.tlw + self.dw),
                                               depth=self.nseg, init=self._rom_init())
        roms, g1, up1, rem1, in1, above1 = [], [], [], [], [], []
        for i in range(B):
            rp = rom.read_port(domain="sync")
            roms.append(rp)
            g = element(self.x.payload.gate, i, F)
            up = element(self.x.payload.up, i, F)
            arg = g
            if self.clamp is not None:
                g, up, arg = self._clamped(m, g, up, i)
            t = Signal(signed(F + 2), name=f"t{i}")
            # g + (sig_range << fx_frac): the low fx_frac bits pass through (a narrow adder).
            ff = fmt.fx_frac
            m.d.comb += t.eq(Cat(arg[:ff], arg[ff:].as_signed() + fmt.sig_range).as_signed())
            inside = (t >= 0) & (t < tmax)
            m.d.comb += [rp.en.eq(fadv),
                         rp.addr.eq(Mux(inside, t[sb:], 0))]
            g1.append(Signal(signed(F), name=f"g1_{i}"))
            up1.append(Signal(signed(F), name=f"up1_{i}"))
            rem1.append(Signal(max(sb, 1), name=f"rem1_{i}"))
            in1.append(Signal(name=f"in1_{i}"))
            above1.append(Signal(name=f"above1_{i}"))
            with m.If(fadv):
                m.d.sync += [g1[i].eq(g), up1[i].eq(up),
                             in1[i].eq(inside), above1[i].eq(t >= tmax)]
                if sb:
                    m.d.sync += rem1[i].eq(t[:sb])
        return SimpleNamespace(roms=roms, g1=g1, up1=up1, rem1=rem1, in1=in1, above1=above1)

    def _silu_times_up(self, m, stage1, fadv) -> list:
        """Stages 3 to 7 (after the table word's register): per lane, the interpolated
        sigmoid, the exact ``gate * sig``, ``s = silu(gate)`` rounded by ``prob_frac`` and
        saturated, and the exact product ``s * up`` (its 18-bit partial products, then their
        sum), each registered."""
        B, F, sb, tlw, pf = self.beat, self.fmt.fx_bits, self.sb, self.tlw, self.fmt.prob_frac
        sig2 = [Signal(signed(self.sigw), name=f"sig2_{i}") for i in range(B)]
        g2 = [Signal(signed(F), name=f"g2_{i}") for i in range(B)]
        silu3 = [Signal(signed(F + self.sigw), name=f"silu3_{i}") for i in range(B)]
        s4 = [Signal(signed(F), name=f"s4_{i}") for i in range(B)]
        up2 = [Signal(signed(F), name=f"up2_{i}") for i in range(B)]
        up3 = [Signal(signed(F), name=f"up3_{i}") for i in range(B)]
        up4 = [Signal(signed(F), name=f"up4_{i}") for i in range(B)]
        for i in range(B):
            word = stage1.words[i]
            tlo = word[:tlw]
            diff = word[tlw:].as_signed()
            interp = Signal(signed(self.sigw + 1), name=f"interp{i}")
            if sb:
                dr = wire(m, diff * stage1.rem1[i], f"dr{i}")
                m.d.comb += interp.eq(tlo + round_away(m, dr, sb, f"dr{i}_rnd"))
            else:
                m.d.comb += interp.eq(tlo)
            sig = Mux(stage1.in1[i], interp, Mux(stage1.above1[i], 1 << pf, 0))
            s_new = saturate(m, round_away(m, silu3[i], pf, f"silu{i}_rnd"), F, f"silu{i}_rnd")
            with m.If(fadv):
                m.d.sync += [sig2[i].eq(sig), g2[i].eq(stage1.g1[i]), up2[i].eq(stage1.up1[i]),
                             silu3[i].eq(g2[i] * sig2[i]), up3[i].eq(up2[i]),
                             s4[i].eq(s_new), up4[i].eq(up3[i])]

        def register(parts):  # the partial products, moved as the front end is
            regs = [Signal(v.shape(), name=f"{v.name}_r") for v in parts]
            with m.If(fadv):
                m.d.sync += [a.eq(b) for a, b in zip(regs, parts, strict=True)]
            return regs

        prods = []
        for i in range(B):
            p = Signal(signed(self.pw), name=f"p{i}")
            up = up4[i]
            if self.clamp is not None:
                up = wire(m, up + (1 << self.fmt.fx_frac), f"up1p{i}")
            product = split_product(m, s4[i], up, register, f"su{i}")
            with m.If(fadv):
                m.d.sync += p.eq(product)
            prods.append(p)
        return prods

    def _clamped(self, m, g, up, i: int):
        """gpt-oss' clamps, and the table's argument ``rescale(g * alpha, ALPHA_FRAC)``."""
        from golden.gpt_oss_int import ALPHA_FRAC

        F, (lim, alpha) = self.fmt.fx_bits, self.clamp
        gc = Signal(signed(F), name=f"gc{i}")
        uc = Signal(signed(F), name=f"uc{i}")
        m.d.comb += [gc.eq(Mux(g > lim, lim, g)),
                     uc.eq(Mux(up > lim, lim, Mux(up < -lim, -lim, up)))]
        ga = wire(m, gc * alpha, f"ga{i}")
        arg = saturate(m, round_away(m, ga, ALPHA_FRAC, f"ga{i}_rnd"), F, f"ga{i}_sat")
        a = Signal(signed(F), name=f"arg{i}")
        m.d.comb += a.eq(arg)
        return gc, uc, a
