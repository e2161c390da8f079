"""Rotary position embedding, :func:`golden.integer.rope_int`, bit for bit."""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .arith import pack, signed_width
from .rounding import round_away, saturate
from .vector import beat_count, beat_layout, element

__all__ = ["RopeUnit", "rope_layout"]


def rope_layout(beat: int, fmt: IntFormat, ctx: int) -> data.StructLayout:
    """RoPE input payload: ``elem`` (``beat`` elements of ``fx_bits``) at bit 0, the position
    ``pos`` (unsigned, ``max(1, bitlen(ctx - 1))`` bits) directly above."""
    return data.StructLayout({"elem": unsigned(beat * fmt.fx_bits),
                              "pos": unsigned(max(1, (ctx - 1).bit_length()))})


def _bank_address(j, bank, kh: int):
    """Buffer address of beat ``j`` of a half head in ``bank`` (``kh`` beats per half)."""
    return Cat(j, bank) if kh & (kh - 1) == 0 else bank * kh + j


def _next_beat(m: Module, kh: int, j, second_half, bank, full, value: int):
    """One beat further through the head in ``bank``: beat ``j`` of the first, then of the
    ``second_half``; after the head's last beat, the other bank, and ``full[bank]`` becomes
    ``value``."""
    if kh > 1:
        m.d.sync += j.eq(Mux(j == kh - 1, 0, j + 1))
    with m.If(j == kh - 1):
        m.d.sync += second_half.eq(~second_half)
        with m.If(second_half):
            m.d.sync += bank.eq(~bank)
            for b in range(2):
                with m.If(bank == b):
                    m.d.sync += full[b].eq(value)


class RopeUnit(wiring.Component):
    """Rotary position embedding: ``golden.integer.rope_int(v, cos[pos], sin[pos], fmt)`` on
    a vector of ``n_heads_total`` heads of ``head_dim`` (half rotation: element ``i`` of a head
    pairs with element ``i + head_dim/2``).

    Each lane computes ``own * C + partner * S'`` with ``S' = -S`` in the first half of a
    head and ``+S`` in the second: the two products in one cycle (registered), then their sum,
    rounded ``half_away`` by ``trig_frac`` and saturated to ``fx_bits``, in the next.
    The cos/sin table is a ROM (``lib.memory``, synchronous read) of
    ``ctx * max(1, head_dim / (2 * beat))`` words, each ``min(beat, head_dim/2)`` cos then as
    many sin values of ``tw`` bits (:attr:`trig_bits`, ``trig_frac + 2`` for
    :func:`golden.integer.rope_table`).

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
        self.beats = beat_count(self.n, beat)
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
        self.trig_bits = signed_width(min(lo, -hi), max(hi, -lo))
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
        """Unbuffered: 5 cycles from an input beat to its output beat. Buffered: 6 cycles from
        the last input beat of a head (into an idle unit) to the head's first output beat."""
        return 6 if self.buffered else 5

    def _rom_init(self) -> list[int]:
        tw, cw, out = self.trig_bits, self.cw, []
        for p in range(self.ctx):
            for j in range(self.kh):
                c = self.cos[p, j * cw:(j + 1) * cw].tolist()
                s = self.sin[p, j * cw:(j + 1) * cw].tolist()
                out.append(pack(c + s, tw))
        return out

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = memory.Memory(shape=unsigned(2 * self.cw * self.trig_bits),
                                               depth=self.ctx * self.kh, init=self._rom_init())
        tp = rom.read_port(domain="sync")
        adv = ~self.y.valid | self.y.ready
        v1 = Signal()  # stage 1 (data from the read ports) holds a beat
        m.d.comb += tp.en.eq(adv)
        if self.buffered:
            pairs = self._buffered_heads(m, tp, adv, v1)
        else:
            pairs = self._whole_heads(m, tp, adv, v1)
        self._rotate(m, tp, pairs, adv, v1)
        return m

    def _whole_heads(self, m, tp, adv, v1):
        """Stage 1 when every beat holds whole heads: the beat itself and its ROM word.
        Returns per lane ``(own, partner, negate sin, table entry)``."""
        B, F, hd, half = self.beat, self.fmt.fx_bits, self.head_dim, self.head_dim // 2
        x = self.x
        m.d.comb += [x.ready.eq(adv), tp.addr.eq(x.payload.pos)]
        d1 = Signal(B * F)
        with m.If(adv):
            m.d.sync += [v1.eq(x.valid), d1.eq(x.payload.elem)]
        pairs = []
        for i in range(B):
            j = i % hd
            p = i - j + (j + half) % hd
            pairs.append((element(d1, i, F), element(d1, p, F), Const(int(j < half), 1),
                          j % half))
        return pairs

    def _buffered_heads(self, m, tp, adv, v1):
        """Stage 1 when a head spans beats: the head's first and second halves in two banks
        of two memories, beat ``j`` of the first half read beside beat ``j`` of the second.
        Returns per lane ``(own, partner, negate sin, table entry)``."""
        B, F, kh, x = self.beat, self.fmt.fx_bits, self.kh, self.x
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
        waddr = _bank_address(wj, wbank, kh)
        m.d.comb += [lw.addr.eq(waddr), hw.addr.eq(waddr),
                     lw.data.eq(x.payload.elem), hw.data.eq(x.payload.elem),
                     lw.en.eq(take & ~whi), hw.en.eq(take & whi)]
        with m.If(take):
            with m.If(~whi & (wj == 0)):
                for b in range(2):
                    with m.If(wbank == b):
                        m.d.sync += bpos[b].eq(x.payload.pos)
            _next_beat(m, kh, wj, whi, wbank, full, 1)
        # Output: beat j of the first halves, then of the second halves, of bank rbank.
        rbank = Signal()
        rhi = Signal()
        rj = Signal(range(kh), name="rj") if kh > 1 else Const(0, 0)
        issue = adv & Mux(rbank, full[1], full[0])
        raddr = _bank_address(rj, rbank, kh)
        m.d.comb += [lr.addr.eq(raddr), hr.addr.eq(raddr), lr.en.eq(adv), hr.en.eq(adv),
                     tp.addr.eq(Mux(rbank, bpos[1], bpos[0]) * kh + rj)]
        with m.If(issue):
            _next_beat(m, kh, rj, rhi, rbank, full, 0)
        hi1 = Signal()
        with m.If(adv):
            m.d.sync += [v1.eq(issue), hi1.eq(rhi)]
        pairs = []
        for i in range(B):
            a, b = element(lr.data, i, F), element(hr.data, i, F)
            pairs.append((Mux(hi1, b, a), Mux(hi1, a, b), ~hi1, i))
        return pairs

    def _rotate(self, m, tp, pairs, adv, v1):
        """The lanes, in four stages: the operands and table entries off the block RAMs
        (registered), the products ``own * C`` and ``partner * S`` (registered), their sum or
        difference (registered), then rounded by trig_frac and saturated."""
        F, tw, cw = self.fmt.fx_bits, self.trig_bits, self.cw
        pw = F + tw
        vb = Signal()  # the operands' registers hold a beat
        v2 = Signal()  # stage 2 (the products) holds a beat
        v3 = Signal()  # stage 3 (their sum)
        out = []
        for i, (own, partner, neg, entry) in enumerate(pairs):
            ops = [own, partner, neg, element(tp.data, entry, tw), element(tp.data, cw + entry, tw)]
            own, partner, neg, c, s = regs = [
                Signal(v.shape(), name=f"{n}b{i}")
                for n, v in zip(("own", "partner", "neg", "c", "s"), ops, strict=True)]
            with m.If(adv):
                m.d.sync += [a.eq(b) for a, b in zip(regs, ops, strict=True)]
            pc = Signal(signed(pw), name=f"pc{i}")
            ps = Signal(signed(pw), name=f"ps{i}")
            neg2 = Signal(name=f"neg2_{i}")
            with m.If(adv):
                m.d.sync += [pc.eq(own * c), ps.eq(partner * s), neg2.eq(neg)]
            total = pc + Mux(neg2, -ps, ps)
            acc = Signal(total.shape(), name=f"acc{i}")
            with m.If(adv):
                m.d.sync += acc.eq(total)
            out.append(saturate(m, round_away(m, acc, self.fmt.trig_frac, f"rnd{i}"), F,
                                f"rnd{i}"))
        with m.If(adv):
            m.d.sync += [vb.eq(v1), v2.eq(vb), v3.eq(v2), self.y.valid.eq(v3),
                         self.y.payload.elem.eq(Cat(*out))]
