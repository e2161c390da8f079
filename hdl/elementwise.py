"""Elementwise vector units of the layer, bit for bit equal to :mod:`golden.llama_int`:

- :class:`RopeUnit`: rotary position embedding, :func:`golden.llama_int.rope_int`.
- :class:`SwigluUnit`: ``silu(gate) * up`` into matvec activations,
  :func:`golden.llama_int.swiglu_int`.
- :class:`ResidualAdd`: the residual add, :func:`golden.llama_int.residual_add`.

Vectors travel as beats (:mod:`hdl.vector`): ``beat`` elements per payload, element ``i`` of a
beat at bits ``[i*bits, (i+1)*bits)``, two's complement. Units with two input vectors take
them side by side in one payload (a ``StructLayout``, first field at bit 0). Every unit has
``beat`` lanes, one element per lane; widths are derived from the format
(:class:`golden.llama_int.IntFormat`) and from the actual constant tables.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.llama_int import IntFormat

from .norm import RoundShift, _bitlen, _wire
from .vector import beat_layout

__all__ = ["RopeUnit", "SwigluUnit", "ResidualAdd", "rope_layout", "swiglu_layout",
           "residual_layout"]


# --- helpers ---------------------------------------------------------------------------------

def _signed_width(lo: int, hi: int) -> int:
    """Two's complement width holding ``[lo, hi]`` (Python integers of any size)."""
    need = lambda v: (v if v >= 0 else -v - 1).bit_length() + 1  # noqa: E731
    return max(need(int(lo)), need(int(hi)), 1)


def _check_beats(n: int, beat: int) -> int:
    if beat < 1 or n < 1 or n % beat:
        raise ValueError(f"a vector of {n} is not a whole number of {beat}-element beats")
    return n // beat


def _tree(values, op):
    """Balanced reduction (Python's ``sum`` would build a chain)."""
    values = list(values)
    while len(values) > 1:
        nxt = [op(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _saturate(m: Module, v, bits: int, name: str):
    """``golden.numerics.saturate(v, bits)`` of a signed value (a signal, or put on the comb
    signal ``name``: it is used three times). Call outside any ``m.If``."""
    if len(v) <= bits:
        return v
    if not isinstance(v, Signal):
        v = _wire(m, v, name)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v[:bits].as_signed()))


def _round_away(m: Module, v, shift: int, name: str):
    """``round_shift(v, shift, "half_away")`` of a signed signal ``v`` (or a slice of one:
    it is used twice) for a constant ``shift >= 0``: ``floor((v + bias) / 2**shift)`` with
    the bias ``2**(shift-1) - (v < 0)`` (:func:`golden.numerics.rounding_bias_terms`), which
    is the wiring ``shift - 1`` sign bits under the inverted sign. The low ``shift`` bits of
    ``v`` only give a carry into the high ones: two narrow adders instead of one as wide as
    ``v`` (the netlist checks cost output bits times input bits per adder). The comb signal
    ``name``; call outside any ``m.If``."""
    if shift == 0:
        return v
    bias = Cat(v[-1].replicate(shift - 1), ~v[-1])
    if shift >= len(v):
        return _wire(m, (v + bias)[shift:].as_signed(), name)
    carry = (v[:shift] + bias)[shift]
    return _wire(m, v[shift:].as_signed() + carry, name)


def _pack(values, bits: int) -> int:
    """Python integers as one word, element ``i`` at bits ``[i*bits, (i+1)*bits)``."""
    word, mask = 0, (1 << bits) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


# --- RoPE ------------------------------------------------------------------------------------

def rope_layout(beat: int, fmt: IntFormat, ctx: int) -> data.StructLayout:
    """RoPE input payload: ``elem`` (``beat`` elements of ``fx_bits``) at bit 0, the position
    ``pos`` (unsigned, ``max(1, bitlen(ctx - 1))`` bits) directly above."""
    return data.StructLayout({"elem": unsigned(beat * fmt.fx_bits),
                              "pos": unsigned(max(1, (ctx - 1).bit_length()))})


class RopeUnit(wiring.Component):
    """Rotary position embedding: ``golden.llama_int.rope_int(v, cos[pos], sin[pos], fmt)`` on
    a vector of ``n_heads_total`` heads of ``head_dim`` (half rotation: element ``i`` of a head
    pairs with element ``i + head_dim/2``).

    Each lane computes ``own * C + partner * S'`` (two multipliers) with ``S' = -S`` in the
    first half of a head and ``+S`` in the second, rounds ``half_away`` by ``trig_frac`` and
    saturates to ``fx_bits``. The cos/sin table is a ROM (``lib.memory``, synchronous read)
    of ``ctx * max(1, head_dim / (2 * beat))`` words, each ``min(beat, head_dim/2)`` cos then
    as many sin values of ``tw`` bits (:attr:`trig_bits`, ``trig_frac + 2`` for
    :func:`golden.llama_int.rope_table`).

    Two shapes:

    - ``beat`` a multiple of ``head_dim``: whole heads in every beat, no buffer; the position
      is read from every beat.
    - ``head_dim/2`` a multiple of ``beat``: the halves of a head are in different beats. The
      head is buffered in two memories (first halves, second halves) of ``head_dim / beat``
      beats each, two heads (ping-pong): a head is written while the previous one is read
      out, beat ``j`` of its first half paired with beat ``j`` of its second half. The
      position is read from the first beat of each head.

    The hardware works per head and keeps no state between vectors, so one unit serves
    vectors with any number of heads whose elements fill whole beats (q with ``n_heads``,
    then k with ``n_kv_heads``); ``n_heads_total`` only sets :attr:`cycles`. Every beat of a
    vector should carry the same position, ``pos < ctx``.

    Timing at full rate: one beat per cycle, ``cycles = n_heads_total * head_dim / beat`` per
    vector, vectors back to back; :attr:`latency` from an input beat to its output beat (the
    last beat of a head to the first output beat of that head, when buffered).

    Ports: ``x`` payload :func:`rope_layout` (``elem``, ``pos``); ``y`` payload
    ``beat_layout(beat, fx_bits)``.
    """

    def __init__(self, n_heads_total: int, head_dim: int, ctx: int, beat: int, fmt: IntFormat,
                 cos, sin):
        if head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be even, not {head_dim}")
        self.n = n_heads_total * head_dim
        self.beats = _check_beats(self.n, beat)
        half = head_dim // 2
        if beat % head_dim == 0:
            self.buffered = False
        elif half % beat == 0:
            self.buffered = True
        else:
            raise ValueError(f"beat {beat} must be a multiple of head_dim {head_dim} or divide "
                             f"head_dim / 2")
        cos = np.asarray(cos, np.int64)
        sin = np.asarray(sin, np.int64)
        if cos.shape != (ctx, half) or sin.shape != (ctx, half):
            raise ValueError(f"cos/sin tables must be [ctx, head_dim/2] = [{ctx}, {half}], not "
                             f"{cos.shape}, {sin.shape}")
        self.n_heads_total, self.head_dim, self.ctx, self.beat, self.fmt = (
            n_heads_total, head_dim, ctx, beat, fmt)
        self.cos, self.sin = cos, sin
        lo = min(int(cos.min()), int(sin.min()), 0)
        hi = max(int(cos.max()), int(sin.max()), 0)
        # One more bit so that -S never overflows.
        self.trig_bits = _signed_width(min(lo, -hi), max(hi, -lo))
        self.kh = max(1, half // beat)  # beats per half head (1 when unbuffered)
        self.cw = min(beat, half)  # cos (and sin) entries per ROM word
        super().__init__({"x": In(stream.Signature(rope_layout(beat, fmt, ctx))),
                          "y": Out(stream.Signature(beat_layout(beat, fmt.fx_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back: ``n_heads_total * head_dim /
        beat`` (one beat per cycle)."""
        return self.beats

    @property
    def latency(self) -> int:
        """Unbuffered: 2 cycles from an input beat to its output beat. Buffered: 3 cycles from
        the last input beat of a head (into an idle unit) to the head's first output beat."""
        return 3 if self.buffered else 2

    def _rom_init(self) -> list[int]:
        tw, cw, out = self.trig_bits, self.cw, []
        for p in range(self.ctx):
            for j in range(self.kh):
                c = self.cos[p, j * cw:(j + 1) * cw].tolist()
                s = self.sin[p, j * cw:(j + 1) * cw].tolist()
                out.append(_pack(c + s, tw))
        return out

    def elaborate(self, platform):
        m = Module()
        fmt, B, F, tw, cw = self.fmt, self.beat, self.fmt.fx_bits, self.trig_bits, self.cw
        hd, half, kh = self.head_dim, self.head_dim // 2, self.kh
        x, y = self.x, self.y

        m.submodules.rom = rom = memory.Memory(shape=unsigned(2 * cw * tw),
                                               depth=self.ctx * kh, init=self._rom_init())
        tp = rom.read_port(domain="sync")
        adv = ~y.valid | y.ready
        v1 = Signal()  # stage 1 (data from the read ports) holds a beat
        m.d.comb += tp.en.eq(adv)

        if not self.buffered:
            # Stage 1: the beat itself and its ROM word.
            m.d.comb += [x.ready.eq(adv), tp.addr.eq(x.payload.pos)]
            d1 = Signal(B * F)
            with m.If(adv):
                m.d.sync += [v1.eq(x.valid), d1.eq(x.payload.elem)]
            own, partner, neg, tsel = [], [], [], []
            for i in range(B):
                j = i % hd
                p = i - j + (j + half) % hd
                own.append(d1[i * F:(i + 1) * F].as_signed())
                partner.append(d1[p * F:(p + 1) * F].as_signed())
                neg.append(Const(int(j < half), 1))
                tsel.append(j % half)
        else:
            m.submodules.lo = lo = memory.Memory(shape=unsigned(B * F), depth=2 * kh, init=[])
            m.submodules.hi = hi = memory.Memory(shape=unsigned(B * F), depth=2 * kh, init=[])
            lw, hw = lo.write_port(), hi.write_port()
            lr, hr = lo.read_port(domain="sync"), hi.read_port(domain="sync")
            pw = len(x.payload.pos)
            full = [Signal(name="full0"), Signal(name="full1")]  # a bank holds a whole head
            bpos = [Signal(pw, name="pos0"), Signal(pw, name="pos1")]
            # Input: beat win of the head into bank wbank.
            wbank = Signal()
            whi = Signal()  # second half
            # Beat within a half head; none when a half head is one beat (a zero-width
            # signal would be declared [-1:0], which Verilator's lint rejects).
            wj = Signal(range(kh), name="wj") if kh > 1 else Const(0, 0)
            m.d.comb += x.ready.eq(Mux(wbank, full[1], full[0]) == 0)
            take = x.valid & x.ready
            waddr = Cat(wj, wbank) if kh & (kh - 1) == 0 else wbank * kh + wj
            m.d.comb += [lw.addr.eq(waddr), hw.addr.eq(waddr),
                         lw.data.eq(x.payload.elem), hw.data.eq(x.payload.elem),
                         lw.en.eq(take & ~whi), hw.en.eq(take & whi)]
            with m.If(take):
                with m.If(~whi & (wj == 0)):
                    for b in range(2):
                        with m.If(wbank == b):
                            m.d.sync += bpos[b].eq(x.payload.pos)
                if kh > 1:
                    m.d.sync += wj.eq(Mux(wj == kh - 1, 0, wj + 1))
                with m.If(wj == kh - 1):
                    m.d.sync += whi.eq(~whi)
                    with m.If(whi):
                        m.d.sync += wbank.eq(~wbank)
                        for b in range(2):
                            with m.If(wbank == b):
                                m.d.sync += full[b].eq(1)
            # Output: beat j of the first halves, then of the second halves, of bank rbank.
            rbank = Signal()
            rhi = Signal()
            rj = Signal(range(kh), name="rj") if kh > 1 else Const(0, 0)
            issue = adv & Mux(rbank, full[1], full[0])
            raddr = Cat(rj, rbank) if kh & (kh - 1) == 0 else rbank * kh + rj
            m.d.comb += [lr.addr.eq(raddr), hr.addr.eq(raddr), lr.en.eq(adv), hr.en.eq(adv),
                         tp.addr.eq(Mux(rbank, bpos[1], bpos[0]) * kh + rj)]
            with m.If(issue):
                if kh > 1:
                    m.d.sync += rj.eq(Mux(rj == kh - 1, 0, rj + 1))
                with m.If(rj == kh - 1):
                    m.d.sync += rhi.eq(~rhi)
                    with m.If(rhi):
                        m.d.sync += rbank.eq(~rbank)
                        for b in range(2):
                            with m.If(rbank == b):
                                m.d.sync += full[b].eq(0)
            hi1 = Signal()
            with m.If(adv):
                m.d.sync += [v1.eq(issue), hi1.eq(rhi)]
            own, partner, neg, tsel = [], [], [], []
            for i in range(B):
                a = lr.data[i * F:(i + 1) * F].as_signed()
                b = hr.data[i * F:(i + 1) * F].as_signed()
                own.append(Mux(hi1, b, a))
                partner.append(Mux(hi1, a, b))
                neg.append(~hi1)
                tsel.append(i)

        # The lanes: own * C + partner * (-S or S), rounded by trig_frac, saturated.
        out = []
        for i in range(B):
            c = tp.data[tsel[i] * tw:(tsel[i] + 1) * tw].as_signed()
            s = tp.data[(cw + tsel[i]) * tw:(cw + tsel[i] + 1) * tw].as_signed()
            acc = _wire(m, own[i] * c + partner[i] * Mux(neg[i], -s, s), f"acc{i}")
            out.append(_saturate(m, _round_away(m, acc, fmt.trig_frac, f"rnd{i}"), F,
                                 f"rnd{i}"))
        with m.If(adv):
            m.d.sync += [y.valid.eq(v1), y.payload.elem.eq(Cat(*out))]
        return m


# --- SwiGLU ----------------------------------------------------------------------------------

def swiglu_layout(beat: int, fmt: IntFormat) -> data.StructLayout:
    """SwiGLU input payload: ``gate`` (``beat`` elements of ``fx_bits``) at bit 0, ``up``
    (the same indices) directly above."""
    return data.StructLayout({"gate": unsigned(beat * fmt.fx_bits),
                              "up": unsigned(beat * fmt.fx_bits)})


class SwigluUnit(wiring.Component):
    """``golden.llama_int.swiglu_int(gate, up, sig_table, fmt)``: matvec activations
    ``(a, e)`` of ``rescale(silu_int(gate), prob_frac) * up``.

    Per lane, a three-stage front end (it stalls as a whole):

    1. ``t = gate + (sig_range << fx_frac)``; the sigmoid ROM (``2 * sig_range <<
       sig_step_bits`` words of ``T[i]`` and ``T[i+1] - T[i]``; one memory with a synchronous
       read port per lane) is addressed by ``t >> (fx_frac - sig_step_bits)``.
    2. ``sig = T[i] + round((T[i+1] - T[i]) * rem)`` inside ``[-range, range)``, 0 below,
       ``2**prob_frac`` above; ``s = saturate(round(gate * sig >> prob_frac), fx_bits)``.
    3. The exact product ``p = s * up`` (``2 * fx_bits`` wide).

    Then block floating point over the whole vector, two passes over a memory of product
    beats: the input pass stores each beat and ORs the magnitudes (``bitlen(max|p|) ==
    bitlen(OR |p|)``); the output pass reads them back and rounds (``half_away``) and
    saturates each by ``s = max(0, bitlen - (abits - 1))``; every output beat carries
    ``e = s - 2 * fx_frac``. The next vector's products are written while the output pass
    runs (beat ``j`` once it has been read).

    Timing at full rate, vectors back to back: ``cycles = n / beat + 1`` per vector (one beat
    per cycle plus one cycle to turn the buffer around); :attr:`latency` from the last input
    beat of a vector into an idle unit to its first output beat: 5 cycles.

    Ports: ``x`` payload :func:`swiglu_layout` (``gate``, ``up``); ``y`` payload
    ``beat_layout(beat, abits, exp_bits)``.
    """

    def __init__(self, n: int, beat: int, fmt: IntFormat, sig_table):
        self.beats = _check_beats(n, beat)
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
        F = fmt.fx_bits
        diff = table[1:] - table[:-1]
        self.tlw = max(int(table.max()).bit_length(), 1)  # T[i], unsigned
        self.dw = _signed_width(int(diff.min()), int(diff.max()))
        self.sigw = _signed_width(0, max(int(table.max()), 1 << fmt.prob_frac))
        flo, fhi = -(1 << (F - 1)), (1 << (F - 1)) - 1
        self.pw = _signed_width(min(flo * fhi, 0), flo * flo)  # p = s * up, exact
        self.smax = max(0, self.pw - (fmt.abits - 1))  # bitlen(|p|) <= pw
        elo, ehi = -2 * fmt.fx_frac, self.smax - 2 * fmt.fx_frac
        if _signed_width(elo, ehi) > fmt.exp_bits:
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
        beat: 5 (two front-end stages, the write, the turn-around, the read)."""
        return 5

    def _rom_init(self) -> list[int]:
        t = self.table.tolist()
        dm = (1 << self.dw) - 1
        return [t[i] | ((t[i + 1] - t[i]) & dm) << self.tlw for i in range(self.nseg)]

    def elaborate(self, platform):
        m = Module()
        fmt, nb, B, F, A = self.fmt, self.beats, self.beat, self.fmt.fx_bits, self.fmt.abits
        sb, pw, tlw, pf = self.sb, self.pw, self.tlw, fmt.prob_frac
        x, y = self.x, self.y
        tmax = self.nseg << sb  # t in [0, tmax) is inside the table

        # -- front end: sigmoid, silu, product ------------------------------------------------
        fv1, fv2 = Signal(), Signal()
        bin_ready = Signal()
        fadv = ~fv2 | bin_ready
        m.d.comb += x.ready.eq(fadv)
        # One sigmoid ROM, a read port per lane.
        m.submodules.sig = rom = memory.Memory(shape=unsigned(tlw + self.dw), depth=self.nseg,
                                               init=self._rom_init())
        roms, g1, up1, rem1, in1, above1, s2, up2 = [], [], [], [], [], [], [], []
        for i in range(B):
            rp = rom.read_port(domain="sync")
            roms.append(rp)
            g = x.payload.gate[i * F:(i + 1) * F].as_signed()
            t = Signal(signed(F + 2), name=f"t{i}")
            # g + (sig_range << fx_frac): the low fx_frac bits pass through (a narrow adder).
            ff = fmt.fx_frac
            m.d.comb += t.eq(Cat(g[:ff], g[ff:].as_signed() + fmt.sig_range).as_signed())
            inside = (t >= 0) & (t < tmax)
            m.d.comb += [rp.en.eq(fadv),
                         rp.addr.eq(Mux(inside, t[sb:], 0))]
            g1.append(Signal(signed(F), name=f"g1_{i}"))
            up1.append(Signal(signed(F), name=f"up1_{i}"))
            rem1.append(Signal(max(sb, 1), name=f"rem1_{i}"))
            in1.append(Signal(name=f"in1_{i}"))
            above1.append(Signal(name=f"above1_{i}"))
            s2.append(Signal(signed(F), name=f"s2_{i}"))
            up2.append(Signal(signed(F), name=f"up2_{i}"))
            with m.If(fadv):
                m.d.sync += [g1[i].eq(g), up1[i].eq(x.payload.up[i * F:(i + 1) * F].as_signed()),
                             in1[i].eq(inside), above1[i].eq(t >= tmax)]
                if sb:
                    m.d.sync += rem1[i].eq(t[:sb])
        with m.If(fadv):
            m.d.sync += [fv1.eq(x.valid), fv2.eq(fv1)]
        for i in range(B):
            word = roms[i].data
            tlo = word[:tlw]
            diff = word[tlw:].as_signed()
            interp = Signal(signed(self.sigw + 1), name=f"interp{i}")
            if sb:
                dr = _wire(m, diff * rem1[i], f"dr{i}")
                m.d.comb += interp.eq(tlo + _round_away(m, dr, sb, f"dr{i}_rnd"))
            else:
                m.d.comb += interp.eq(tlo)
            sig = Signal(signed(self.sigw), name=f"sig{i}")
            m.d.comb += sig.eq(Mux(in1[i], interp, Mux(above1[i], 1 << pf, 0)))
            silu = Signal(signed(F + self.sigw), name=f"silu{i}")
            m.d.comb += silu.eq(g1[i] * sig)
            s_new = _saturate(m, _round_away(m, silu, pf, f"silu{i}_rnd"), F, f"silu{i}_rnd")
            with m.If(fadv):
                m.d.sync += [s2[i].eq(s_new), up2[i].eq(up1[i])]
        prods = []
        for i in range(B):
            p = Signal(signed(pw), name=f"p{i}")
            m.d.comb += p.eq(s2[i] * up2[i])
            prods.append(p)

        # -- block floating point: store and OR, then read, round and saturate ---------------
        m.submodules.buf = buf = memory.Memory(shape=unsigned(B * pw), depth=nb, init=[])
        wp = buf.write_port()
        rp = buf.read_port(domain="sync")
        wr = Signal(range(nb + 1))  # beats of the next vector written
        rd = Signal(range(nb + 1))  # beats of the current vector read
        active = Signal()  # the output pass is issuing reads
        orv = Signal(pw)
        smax = self.smax
        s = Signal(range(smax + 1))
        e = Signal(signed(fmt.exp_bits))
        v1 = Signal()
        adv = ~y.valid | y.ready

        m.d.comb += bin_ready.eq((wr < nb) & (~active | (wr < rd)))
        take = fv2 & bin_ready
        m.d.comb += [wp.addr.eq(wr), wp.data.eq(Cat(*prods)), wp.en.eq(take)]
        with m.If(take):
            m.d.sync += [wr.eq(wr + 1),
                         orv.eq(orv | _tree([abs(p) for p in prods], lambda a, b: a | b))]

        # Turn around: the beat in the read port (previous vector) must leave in this cycle,
        # as it still uses the old shift.
        start = ~active & (wr == nb) & (~v1 | adv)
        bl = _bitlen(m, orv, "bitlen")
        s_new = Signal.like(s)
        m.d.comb += s_new.eq(Mux(bl > A - 1, bl - (A - 1), 0))
        issue = (active | start) & adv
        addr = Mux(start, 0, rd)
        m.d.comb += [rp.addr.eq(addr), rp.en.eq(adv)]
        with m.If(start):
            m.d.sync += [s.eq(s_new), e.eq(s_new - 2 * fmt.fx_frac), orv.eq(0), wr.eq(0),
                         rd.eq(0), active.eq(1)]
        with m.If(issue):
            m.d.sync += rd.eq(addr + 1)
            with m.If(addr == nb - 1):
                m.d.sync += active.eq(0)

        # |v| < 2**(A-1+s): the rounded value fits A + 1 bits; only +2**(A-1) saturates.
        rs = RoundShift(m, s, smax, pw, A, "rs", bounded=True)
        out = Cat(*(rs(rp.data[i * pw:(i + 1) * pw], f"rounded_{i}") for i in range(B)))
        with m.If(adv):
            m.d.sync += [v1.eq(issue), y.valid.eq(v1), y.payload.exp.eq(e), y.payload.elem.eq(out)]
        return m


# --- residual add ----------------------------------------------------------------------------

def residual_layout(beat: int, fmt: IntFormat) -> data.StructLayout:
    """Residual-add input payload: ``h`` (``beat`` elements of ``res_bits``) at bit 0, ``y``
    (``beat`` elements of ``fx_bits``, the same indices) directly above."""
    return data.StructLayout({"h": unsigned(beat * fmt.res_bits),
                              "y": unsigned(beat * fmt.fx_bits)})


class ResidualAdd(wiring.Component):
    """``golden.llama_int.residual_add(h, y, fmt)``: ``saturate(h + rescale(y, fx_frac -
    res_frac, res_bits), res_bits)``; the rescale rounds ``half_away`` for a positive shift,
    is exact for a negative one, and saturates to ``res_bits`` before the add.

    A two-stage pipeline (rescale, then add and saturate) that stalls as a whole: one beat per
    cycle, ``cycles = n / beat`` per vector, :attr:`latency` 2 (a beat taken in cycle ``c``
    leaves in cycle ``c + 2``).

    Ports: ``x`` payload :func:`residual_layout` (``h``, ``y``); ``y`` payload
    ``beat_layout(beat, res_bits)``.
    """

    def __init__(self, n: int, beat: int, fmt: IntFormat):
        self.beats = _check_beats(n, beat)
        self.n, self.beat, self.fmt = n, beat, fmt
        self.shift = fmt.fx_frac - fmt.res_frac
        super().__init__({"x": In(stream.Signature(residual_layout(beat, fmt))),
                          "y": Out(stream.Signature(beat_layout(beat, fmt.res_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate: ``n / beat``."""
        return self.beats

    @property
    def latency(self) -> int:
        return 2

    def elaborate(self, platform):
        m = Module()
        B, R, F, d = self.beat, self.fmt.res_bits, self.fmt.fx_bits, self.shift
        x, y = self.x, self.y
        adv = ~y.valid | y.ready
        m.d.comb += x.ready.eq(adv)
        v1 = Signal()
        with m.If(adv):
            m.d.sync += [v1.eq(x.valid), y.valid.eq(v1)]
        for i in range(B):
            h = x.payload.h[i * R:(i + 1) * R].as_signed()
            v = x.payload.y[i * F:(i + 1) * F].as_signed()
            if d >= 0:
                r = _saturate(m, _round_away(m, v, d, f"resc_{i}"), R, f"resc_{i}")
            else:
                # Exact left shift: a width of F - d holds it, then saturate.
                r = _saturate(m, v.shift_left(-d), R, f"resc_{i}")
            h1 = Signal(signed(R), name=f"h1_{i}")
            r1 = Signal(signed(R), name=f"r1_{i}")
            total = _saturate(m, h1 + r1, R, f"sum_{i}")
            with m.If(adv):
                m.d.sync += [h1.eq(h), r1.eq(r)]
                m.d.sync += y.payload.elem[i * R:(i + 1) * R].eq(total)
        return m
