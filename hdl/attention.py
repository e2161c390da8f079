"""Causal grouped-query attention for one decode step, bit for bit
:func:`golden.llama_int.attention_int`, with the KV cache in RAM.

Stream ports (see :mod:`hdl.vector` for the beat convention):

- ``x`` (in): per token, the ``q`` vector (``n_heads * head_dim`` elements, after RoPE), then
  ``k`` (``n_kv_heads * head_dim``, after RoPE), then ``v`` (``n_kv_heads * head_dim``), in
  that order, as beats of ``beat`` elements of ``fmt.fx_bits`` bits (two's complement, Q.fx).
  The payload is ``StructLayout({"elem": unsigned(beat * fx_bits), "pos": unsigned(pos_bits)})``
  with ``pos_bits = max(1, bit_length(ctx - 1))``: every beat carries the token's position
  ``pos`` (unsigned) directly above the elements. ``sim.streams.beats`` packs the elements; the
  position is ``pos << (beat * fx_bits)``.
- ``y`` (out): the attention output ``att`` (``n_heads * head_dim`` elements), as beats of
  ``beat`` elements of ``fx_bits`` (:func:`hdl.vector.beat_layout` without exponent).

Memories (:class:`amaranth.lib.memory.Memory`, one write and one read port each):

- KV cache: ``km``/``vm``, ``ctx * n_kv_heads`` rows of ``head_dim * kv_bits`` mantissas (one
  row per (position, KV head) at address ``pos * n_kv_heads + j``), and ``ke``/``ve`` with the
  block exponent of each row, stored as the bfp shift ``s`` (the exponent is
  ``s - fx_frac``; ``0 <= s <= fx_bits - kv_bits + 1``). :attr:`AttentionUnit.ram_bits`.
- Working buffers: the raw input token (``n_in`` rows of one beat), the scores of one head
  (``ctx`` rows of ``fx_bits``) and the exp2 table ROM (``2**exp_lut_bits`` rows holding
  ``T[i]`` and ``T[i+1] - T[i]``).

Schedule of one token (no overlap between steps; ``BH = head_dim / beat``):

1. ``RECV``: accept the ``(n_heads + 2 n_kv) BH`` input beats into the raw buffer; the OR of
   the magnitudes of each head's elements gives its bit length (the bfp leading-one detector).
2. ``CONV``: for every K and V head and beat, read the raw beat, round it to ``kv_bits``
   (:func:`golden.llama_int.bfp`) and write it to its lanes of the cache row at ``pos``
   (``2 n_kv BH`` cycles).
3. Per query head ``i`` (KV head ``j = i // group``):

   - ``QLOAD`` (``BH`` cycles): read the raw ``q`` beats and round them to ``q_bits``.
   - ``SCORE`` (``pos + 3`` cycles): one cached key per cycle; ``head_dim`` multipliers and
     an adder tree give the dot product, then ``rescale(dot * score_const, shift)`` into the
     score buffer; running max of the scores and of the V exponents.
   - ``WEIGHT`` (``pos + 4`` cycles): one position per cycle; ``exp2_neg(max - s)`` by the
     interpolated table, then ``head_dim`` multipliers accumulate ``(w * vm) >> (E - ve)``
     (floor), and the sum of the weights.
   - ``RECIP`` (``recip_bits + 2`` cycles): normalise the weight sum, restoring divider.
   - ``OUT`` (``BH`` beats): ``rescale(acc * r, k - E - fx_frac)`` (exact product, rounded,
     saturated), ``beat`` multipliers per beat.

At full rate :meth:`AttentionUnit.cycles` is therefore
``(n_heads + 4 n_kv) BH + n_heads (2 pos + 2 BH + recip_bits + 9)`` cycles per token, from
its first input beat to the first input beat of the next token.

The cache persists from token to token, like golden's :class:`golden.llama_int.IntCache`: a
token at ``pos`` overwrites row ``pos`` and attends over rows ``0..pos``, so a new sequence
simply starts again at position 0. The position is taken from the token's beats (all carry the
same value); the unit does not check it against ``ctx``.

Comb logic is plain assignments only (no ``m.If``/``Array``/FSM in the comb domain): Amaranth
writes those as ``always @*`` processes, which Icarus does not run at time 0 when their inputs
never change, leaving X in the datapath of the first token after power-up.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.llama_int import IntFormat
from golden.numerics import signed_width

from .norm import RoundShift
from .vector import beat_layout

__all__ = ["AttentionUnit"]


def _sw(lo: int, hi: int) -> int:
    return int(signed_width(lo, hi))


def _tree(values):
    """Balanced adder tree."""
    values = list(values)
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


def _bitlen(m: Module, u, name: str) -> Signal:
    """Bit length of the unsigned value ``u`` (0 for 0): a priority encoder."""
    bl = Signal(range(len(u) + 1), name=name)
    v = Const(0, len(bl))
    for b in range(len(u)):
        v = Mux(u[b], b + 1, v)
    m.d.comb += bl.eq(v)
    return bl


class AttentionUnit(wiring.Component):
    """One decode step of grouped-query attention with its KV cache (see the module text for
    ports, memories and schedule).

    Parameters
    ----------
    n_heads, n_kv_heads, head_dim : int
        Shape; ``beat`` must divide ``head_dim``.
    ctx : int
        Context length: cache rows per KV head; positions ``0..ctx-1``.
    beat : int
        Elements per stream beat.
    fmt : IntFormat
    score_const : int
        ``round(log2(e) / sqrt(head_dim) * 2**score_const_frac)`` (``IntLayer.score_const``).
    exp_table : ndarray
        :func:`golden.llama_int.exp2_table` (``IntLayer.exp_table``).

    Members
    -------
    x : In(stream.Signature(in_layout))
    y : Out(stream.Signature(out_layout))
    """

    def __init__(self, n_heads: int, n_kv_heads: int, head_dim: int, ctx: int, beat: int,
                 fmt: IntFormat, score_const: int, exp_table):
        if min(n_heads, n_kv_heads, head_dim, ctx, beat) < 1:
            raise ValueError("shape parameters must be positive")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        if head_dim % beat:
            raise ValueError(f"beat {beat} does not divide head_dim {head_dim}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.ctx, self.beat, self.fmt = ctx, beat, fmt
        self.group = n_heads // n_kv_heads
        self.score_const = int(score_const)
        table = np.asarray(exp_table, np.int64)
        if table.shape != ((1 << fmt.exp_lut_bits) + 1,):
            raise ValueError(f"exp_table must have 2**exp_lut_bits + 1 = "
                             f"{(1 << fmt.exp_lut_bits) + 1} entries, not {table.shape}")
        if int(table.min()) < 0 or int(table[0]) <= 0:
            raise ValueError("exp_table entries must be non-negative and exp_table[0] positive")
        self.exp_table = table
        self._widths()
        self.pos_bits = max(1, (ctx - 1).bit_length())
        self.in_layout = data.StructLayout({"elem": unsigned(beat * fmt.fx_bits),
                                            "pos": unsigned(self.pos_bits)})
        self.out_layout = beat_layout(beat, fmt.fx_bits)
        super().__init__({"x": In(stream.Signature(self.in_layout)),
                          "y": Out(stream.Signature(self.out_layout))})

    # -- sizes ---------------------------------------------------------------------------------

    def _widths(self):
        f = self.fmt
        fb = f.fx_bits
        hd, ctx = self.head_dim, self.ctx
        # bfp shifts: bitlen(max |v|) <= fx_bits, so s <= fx_bits - bits + 1.
        self.sq_max = max(0, fb - (f.q_bits - 1))
        self.sk_max = max(0, fb - (f.kv_bits - 1))
        # Score shift score_const_frac - score_frac - qe - ke with qe = sq - fx_frac, etc.
        self.sh0 = f.score_const_frac - f.score_frac + 2 * f.fx_frac
        sh_min = self.sh0 - self.sq_max - self.sk_max
        if sh_min <= -fb or self.sh0 > 62:
            raise ValueError("score shift range outside what golden's rescale computes exactly")
        self.c_s = max(0, -sh_min)  # constant pre-shift: exact left shifts become rounding by 0
        qlo, qhi = -(1 << (f.q_bits - 1)), (1 << (f.q_bits - 1)) - 1
        klo, khi = -(1 << (f.kv_bits - 1)), (1 << (f.kv_bits - 1)) - 1
        pmin, pmax = min(qlo * khi, qhi * klo), qlo * klo
        self.dot_bounds = (hd * pmin, hd * pmax)
        self.dot_bits = _sw(*self.dot_bounds)
        t = [int(e) for e in self.exp_table]
        self.t_max = max(t)
        self.t_bits = self.t_max.bit_length()  # also the width of a weight
        diffs = [t[i + 1] - t[i] for i in range(len(t) - 1)]
        self.d_bits = _sw(min(diffs + [0]), max(diffs + [0]))
        self.rb = f.score_frac - f.exp_lut_bits
        tlo, thi = klo * self.t_max, khi * self.t_max
        self.acc_bounds = (ctx * tlo, ctx * thi)
        self.acc_bits = _sw(*self.acc_bounds)
        self.sum_bits = max(2, (ctx * self.t_max).bit_length())
        # Final shift: bitlen(sum) - 1 + recip_bits - sv_max, sum >= T[0].
        fs_min = int(t[0]).bit_length() - 1 + f.recip_bits - self.sk_max
        self.c_f = max(0, -fs_min)
        self.fs_max = self.sum_bits - 1 + f.recip_bits + self.c_f

    @property
    def n_in(self) -> int:
        """Input beats per token."""
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim // self.beat

    @property
    def n_out(self) -> int:
        """Output beats per token."""
        return self.n_heads * self.head_dim // self.beat

    @property
    def ram_bits(self) -> int:
        """Bits of the KV cache: mantissas and the per-row shift (exponent) fields."""
        ebits = max(1, self.sk_max.bit_length())
        return self.ctx * self.n_kv_heads * 2 * (self.head_dim * self.fmt.kv_bits + ebits)

    def cycles(self, pos: int) -> int:
        """Cycles per token at position ``pos`` at full rate (first input beat to the next
        token's first input beat): ``(n_heads + 4 n_kv) BH + n_heads (2 pos + 2 BH +
        recip_bits + 9)``."""
        bh = self.head_dim // self.beat
        return ((self.n_heads + 4 * self.n_kv_heads) * bh
                + self.n_heads * (2 * pos + 2 * bh + self.fmt.recip_bits + 9))

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        # Combinational logic is written as plain assignments only (no m.If, m.Switch, Array
        # or FSM in the comb domain): those become `always @*` processes, which Icarus does
        # not evaluate at time 0 when their inputs never change, leaving X behind.
        m = Module()
        f = self.fmt
        FB, KB, QB, RB = f.fx_bits, f.kv_bits, f.q_bits, f.recip_bits
        NH, NKV, HD, B, CTX = self.n_heads, self.n_kv_heads, self.head_dim, self.beat, self.ctx
        G, BH = self.group, HD // B
        NHEADS_IN = NH + 2 * NKV
        NIN, NC = self.n_in, 2 * NKV * BH
        AW, L = self.acc_bits, self.sum_bits
        sbits = max(1, self.sk_max.bit_length())

        def ctr(count, name):
            return Signal(range(max(count, 2)), name=name)

        def elem(word, k, bits):
            return word[k * bits:(k + 1) * bits].as_signed()

        def pick(values, index):
            out = values[0]
            for h in range(1, len(values)):
                out = Mux(index == h, values[h], out)
            return out

        # -- memories --------------------------------------------------------------------------
        raw = memory.Memory(shape=unsigned(B * FB), depth=NIN, init=[])
        km = memory.Memory(shape=unsigned(HD * KB), depth=CTX * NKV, init=[])
        vm = memory.Memory(shape=unsigned(HD * KB), depth=CTX * NKV, init=[])
        ke = memory.Memory(shape=unsigned(sbits), depth=CTX * NKV, init=[])
        ve = memory.Memory(shape=unsigned(sbits), depth=CTX * NKV, init=[])
        sm = memory.Memory(shape=signed(FB), depth=CTX, init=[])
        t = [int(e) for e in self.exp_table]
        dmask = (1 << self.d_bits) - 1
        rom = memory.Memory(shape=unsigned(self.t_bits + self.d_bits), depth=len(t) - 1,
                            init=[t[k] | (((t[k + 1] - t[k]) & dmask) << self.t_bits)
                                  for k in range(len(t) - 1)])
        raw_w, raw_r = raw.write_port(), raw.read_port()
        km_w, km_r = km.write_port(granularity=B * KB), km.read_port()
        vm_w, vm_r = vm.write_port(granularity=B * KB), vm.read_port()
        ke_w, ke_r = ke.write_port(), ke.read_port()
        ve_w, ve_r = ve.write_port(), ve.read_port()
        sm_w, sm_r = sm.write_port(), sm.read_port()
        rom_r = rom.read_port()
        m.submodules.raw, m.submodules.km, m.submodules.vm = raw, km, vm
        m.submodules.ke, m.submodules.ve, m.submodules.sm = ke, ve, sm
        m.submodules.exp_rom = rom

        # -- registers -------------------------------------------------------------------------
        RECV, CONV, QLOAD, SCORE, WEIGHT, RNORM, RDIV, OUT = range(8)
        state = Signal(range(8))
        pos = Signal(self.pos_bits)
        n = ctr(max(NIN, NC), "n")  # input beat / conversion step
        hb = ctr(BH, "hb")  # beat within a head
        or_acc = Signal(FB)
        # Bit length of each input head's max |element|; a shift register: after a token,
        # bl_head[h] belongs to head h (q heads, then k heads, then v heads).
        bl_head = [Signal(range(FB + 1), name=f"bitlen{h}") for h in range(NHEADS_IN)]
        ck, cv = ctr(NKV, "ck"), Signal()  # conversion: KV head, 0 = K / 1 = V
        c1, c1_b, c1_k, c1_v = Signal(), ctr(BH, "c1_b"), ctr(NKV, "c1_k"), Signal()
        c1_h = ctr(NHEADS_IN, "c1_h")
        i, gi, j = ctr(NH, "i"), ctr(G, "gi"), ctr(NKV, "j")
        qaddr = ctr(NIN, "qaddr")
        q1 = Signal()
        qm = Signal(HD * QB)
        sq = Signal(range(self.sq_max + 1))
        tt = ctr(CTX, "tt")  # position being issued
        ka = Signal(range(CTX * NKV + NKV))  # cache row being issued
        issuing = Signal()
        wmode = Signal()  # pipeline carries the weight pass (else the score pass)
        p1, p2, p3 = Signal(), Signal(), Signal()
        t1, t2 = ctr(CTX, "t1"), ctr(CTX, "t2")
        a1, a2 = ctr(CTX * NKV, "a1"), ctr(CTX * NKV, "a2")
        dot2 = Signal(signed(self.dot_bits))
        sk2 = Signal(sbits)
        smax = Signal(signed(FB))
        sve = Signal(sbits)  # max V shift of the head (E = sve - fx_frac)
        ipbig2 = Signal()
        ipl2 = Signal(range(max(self.t_bits, 2)))
        rem2 = Signal(max(self.rb, 1))
        w3 = Signal(self.t_bits)
        acc = Signal(HD * AW)
        sumw = Signal(L)
        dn = Signal(L)  # normalised divisor
        rr = Signal(L + 1)  # divider remainder
        qq = Signal(RB + 1)  # reciprocal
        cnt = Signal(range(RB + 1))
        fs = Signal(range(self.fs_max + 1))
        ob = ctr(BH, "ob")

        def bfp_shift(bl, bits, s_max, name):
            s = Signal(range(s_max + 1), name=name)
            m.d.comb += s.eq(Mux(bl > bits - 1, bl - (bits - 1), 0))
            return s

        # -- input: raw buffer, magnitudes OR-ed per head ---------------------------------------
        fire = Signal()
        m.d.comb += [self.x.ready.eq(state == RECV), fire.eq(self.x.valid & self.x.ready),
                     raw_w.addr.eq(n), raw_w.data.eq(self.x.payload.elem), raw_w.en.eq(fire),
                     raw_r.addr.eq(Mux(state == CONV, NH * BH + n, qaddr))]
        mags = []
        for k in range(B):
            e = elem(self.x.payload.elem, k, FB)
            a = Signal(FB, name=f"mag{k}")
            m.d.comb += a.eq(Mux(e[-1], -e, e))
            mags.append(a)
        or_new = Signal(FB)
        m.d.comb += or_new.eq(or_acc | _tree_or(mags))
        bl_new = _bitlen(m, or_new, "bl_new")

        # -- conversion stage (CONV): raw beat -> kv_bits mantissas into the cache -------------
        sk_c = bfp_shift(pick(bl_head, c1_h), KB, self.sk_max, "sk_conv")
        # saturate(round_shift(v, s, "half_away"), bits) per lane: see norm.RoundShift. The
        # shift is the head's bfp shift, so |v| < 2**(bits-1+s) (bounded).
        kv_round = RoundShift(m, sk_c, self.sk_max, FB, KB, "kvr", bounded=True)
        kv_beat = Cat(*[kv_round(raw_r.data[k * FB:(k + 1) * FB], f"kvm{k}") for k in range(B)])
        row = Signal(range(CTX * NKV))
        m.d.comb += row.eq(pos * NKV + c1_k)
        lanes = Signal(BH)
        m.d.comb += lanes.eq(Const(1, BH) << c1_b)
        wk, wv = Signal(), Signal()
        m.d.comb += [wk.eq(c1 & ~c1_v), wv.eq(c1 & c1_v)]
        m.d.comb += [km_w.addr.eq(row), km_w.data.eq(Cat(*[kv_beat] * BH)),
                     km_w.en.eq(Mux(wk, lanes, 0)), ke_w.addr.eq(row), ke_w.data.eq(sk_c),
                     ke_w.en.eq(wk),
                     vm_w.addr.eq(row), vm_w.data.eq(Cat(*[kv_beat] * BH)),
                     vm_w.en.eq(Mux(wv, lanes, 0)), ve_w.addr.eq(row), ve_w.data.eq(sk_c),
                     ve_w.en.eq(wv)]

        # -- query stage (QLOAD): raw beat -> q_bits mantissas --------------------------------
        sq_c = bfp_shift(pick(bl_head, i), QB, self.sq_max, "sq_conv")
        q_round = RoundShift(m, sq_c, self.sq_max, FB, QB, "qr", bounded=True)
        q_beat = Cat(*[q_round(raw_r.data[k * FB:(k + 1) * FB], f"qm{k}") for k in range(B)])
        with m.If(q1):
            m.d.sync += qm.eq(Cat(qm[B * QB:], q_beat))

        # -- score pass: stage 0 reads key row ka; 1: dot product; 2: score -------------------
        m.d.comb += [km_r.addr.eq(ka), ke_r.addr.eq(ka)]
        prods = [elem(qm, k, QB) * elem(km_r.data, k, KB) for k in range(HD)]
        m.d.sync += [dot2.eq(_tree(prods)), sk2.eq(ke_r.data)]
        with m.If(p1 & ~wmode & (ve_r.data > sve)):
            m.d.sync += sve.eq(ve_r.data)
        sh = Signal(range(self.sh0 + self.c_s + 1))
        m.d.comb += sh.eq(self.sh0 + self.c_s - sq - sk2)
        scaled = Signal(signed(self.dot_bits + self.score_const.bit_length() + 1 + self.c_s))
        m.d.comb += scaled.eq((dot2 * self.score_const).shift_left(self.c_s))
        score = RoundShift(m, sh, self.sh0 + self.c_s, len(scaled), FB, "sr")(scaled, "score")
        m.d.comb += [sm_w.addr.eq(t2), sm_w.data.eq(score), sm_w.en.eq(p2 & ~wmode)]
        with m.If(p2 & ~wmode & (score > smax)):
            m.d.sync += smax.eq(score)

        # -- weight pass: stage 0 reads score tt; 1: table address; 2: weight, reads value
        #    row a2; 3: accumulate ----------------------------------------------------------
        m.d.comb += [sm_r.addr.eq(tt), vm_r.addr.eq(a2), ve_r.addr.eq(Mux(wmode, a2, ka))]
        diff = Signal(FB)
        m.d.comb += diff.eq(smax - sm_r.data)
        ip = diff[f.score_frac:]
        fp = diff[:f.score_frac]
        m.d.comb += rom_r.addr.eq(fp[self.rb:])
        m.d.sync += [ipbig2.eq(ip >= self.t_bits), ipl2.eq(ip), rem2.eq(fp[:self.rb])]
        t_lo = rom_r.data[:self.t_bits]
        t_d = rom_r.data[self.t_bits:].as_signed()
        val = Signal(signed(self.t_bits + 1))
        if self.rb:
            dp = Signal(signed(self.d_bits + self.rb + 1))
            m.d.comb += dp.eq(t_d * rem2)
            interp = (dp + (1 << (self.rb - 1)) - dp[-1]) >> self.rb
            m.d.comb += val.eq(t_lo + interp)
        else:
            m.d.comb += val.eq(t_lo)
        m.d.sync += w3.eq(Mux(ipbig2, 0, val.as_unsigned()[:self.t_bits] >> ipl2))
        align = Signal(range(self.sk_max + 1))
        m.d.comb += align.eq(sve - ve_r.data)
        new_acc = []
        for k in range(HD):
            term = (w3 * elem(vm_r.data, k, KB)) >> align
            new_acc.append((elem(acc, k, AW) + term)[:AW])

        # -- output: acc * r, rounded and saturated ------------------------------------------
        out_beat = []
        pw = AW + RB + 2 + self.c_f
        att_round = RoundShift(m, fs, self.fs_max, pw, FB, "ar")
        for k in range(B):
            prod = Signal(signed(pw), name=f"att_prod{k}")
            m.d.comb += prod.eq((elem(acc, k, AW) * qq).shift_left(self.c_f))
            out_beat.append(att_round(prod, f"att{k}"))
        bl_sum = _bitlen(m, sumw, "bl_sum")
        norm = Signal(range(L + 1))
        m.d.comb += norm.eq(L - bl_sum)
        out_load = Signal()
        m.d.comb += out_load.eq((state == OUT) & (~self.y.valid | self.y.ready))

        # -- pipelines --------------------------------------------------------------------------
        # Stage 3 exists only in the weight pass: the score pass's last stage-2 step, in flight
        # as the weight pass starts, must not reach it.
        m.d.sync += [p1.eq(0), p2.eq(p1), p3.eq(p2 & wmode), t2.eq(t1), a2.eq(a1), c1.eq(0),
                     q1.eq(0)]
        with m.If(p3 & wmode):
            m.d.sync += [acc.eq(Cat(*new_acc)), sumw.eq(sumw + w3)]
        with m.If(out_load):
            m.d.sync += [self.y.payload.elem.eq(Cat(*out_beat)), self.y.valid.eq(1)]
            if BH > 1:
                m.d.sync += acc.eq(Cat(acc[B * AW:], acc[:B * AW]))
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)

        # -- control ----------------------------------------------------------------------------
        with m.If(state == RECV):
            with m.If(fire):
                m.d.sync += pos.eq(self.x.payload.pos)
                with m.If(hb == BH - 1):
                    m.d.sync += [bl_head[-1].eq(bl_new), or_acc.eq(0), hb.eq(0)]
                    m.d.sync += [bl_head[h].eq(bl_head[h + 1]) for h in range(NHEADS_IN - 1)]
                with m.Else():
                    m.d.sync += [or_acc.eq(or_new), hb.eq(hb + 1)]
                with m.If(n == NIN - 1):
                    m.d.sync += [n.eq(0), hb.eq(0), ck.eq(0), cv.eq(0), c1_h.eq(NH), i.eq(0),
                                 gi.eq(0), j.eq(0), qaddr.eq(0), state.eq(CONV)]
                with m.Else():
                    m.d.sync += n.eq(n + 1)
        with m.Elif(state == CONV):
            m.d.sync += [c1.eq(1), c1_b.eq(hb), c1_k.eq(ck), c1_v.eq(cv)]
            with m.If(c1 & (c1_b == BH - 1)):
                # c1_h names the head of the beat in stage 1; advance it with the beat.
                m.d.sync += c1_h.eq(c1_h + 1)
            with m.If(hb == BH - 1):
                m.d.sync += hb.eq(0)
                with m.If(ck == NKV - 1):
                    m.d.sync += [ck.eq(0), cv.eq(1)]
                with m.Else():
                    m.d.sync += ck.eq(ck + 1)
            with m.Else():
                m.d.sync += hb.eq(hb + 1)
            with m.If(n == NC - 1):
                m.d.sync += [n.eq(0), hb.eq(0), state.eq(QLOAD)]
            with m.Else():
                m.d.sync += n.eq(n + 1)
        with m.Elif(state == QLOAD):
            m.d.sync += [q1.eq(1), qaddr.eq(qaddr + 1), sq.eq(sq_c)]
            with m.If(hb == BH - 1):
                m.d.sync += [hb.eq(0), tt.eq(0), ka.eq(j), issuing.eq(1), wmode.eq(0),
                             smax.eq(-(1 << (FB - 1))), sve.eq(0), state.eq(SCORE)]
            with m.Else():
                m.d.sync += hb.eq(hb + 1)
        with m.Elif(state == SCORE):
            with m.If(issuing):
                m.d.sync += [p1.eq(1), t1.eq(tt), ka.eq(ka + NKV)]
                with m.If(tt == pos):
                    m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += tt.eq(tt + 1)
            with m.Elif(~p1):
                m.d.sync += [tt.eq(0), ka.eq(j), issuing.eq(1), wmode.eq(1), acc.eq(0),
                             sumw.eq(0), state.eq(WEIGHT)]
        with m.Elif(state == WEIGHT):
            with m.If(issuing):
                m.d.sync += [p1.eq(1), a1.eq(ka), ka.eq(ka + NKV)]
                with m.If(tt == pos):
                    m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += tt.eq(tt + 1)
            with m.Elif(~p1 & ~p2):
                m.d.sync += state.eq(RNORM)
        with m.Elif(state == RNORM):
            m.d.sync += [dn.eq(sumw << norm), rr.eq(1 << (L - 2)), qq.eq(0), cnt.eq(RB),
                         fs.eq(bl_sum - 1 + RB + self.c_f - sve), state.eq(RDIV)]
        with m.Elif(state == RDIV):
            r2 = Cat(Const(0, 1), rr[:L])
            ge = r2 >= dn
            m.d.sync += [rr.eq(Mux(ge, r2 - dn, r2)), qq.eq(Cat(ge, qq[:RB])),
                         cnt.eq(cnt - 1)]
            with m.If(cnt == 0):
                m.d.sync += state.eq(OUT)
        with m.Else():  # OUT
            with m.If(out_load):
                with m.If(ob == BH - 1):
                    m.d.sync += ob.eq(0)
                    with m.If(i == NH - 1):
                        m.d.sync += state.eq(RECV)
                    with m.Else():
                        m.d.sync += [i.eq(i + 1), state.eq(QLOAD)]
                        with m.If(gi == G - 1):
                            m.d.sync += [gi.eq(0), j.eq(j + 1)]
                        with m.Else():
                            m.d.sync += gi.eq(gi + 1)
                with m.Else():
                    m.d.sync += ob.eq(ob + 1)
        return m


def _tree_or(values):
    values = list(values)
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
