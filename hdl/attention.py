"""Causal grouped-query attention for one decode step, bit for bit
:func:`golden.integer.attention_int`, with the KV cache in RAM.

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
   (:func:`golden.integer.bfp`) and write it to its lanes of the cache row at ``pos``
   (``2 n_kv BH`` cycles).
3. Per query head ``i`` (KV head ``j = i // group``):

   - ``QLOAD`` (``BH + 2`` cycles): read the raw ``q`` beats and round them to ``q_bits``
     (:data:`QUERY_STAGES` registers on the way, drained before the score pass).
   - ``SCORE`` (``pos + 7`` cycles): one cached key per cycle; ``head_dim`` multipliers
     (registered) and an adder tree (registered halfway up) give the dot product, then
     ``dot * score_const`` (registered) and its ``rescale`` by the shift into the score
     buffer; running max of the scores and of the V exponents.
   - ``WEIGHT`` (``pos + 8`` cycles): one position per cycle; ``exp2_neg(max - s)`` by the
     interpolated table (its product registered), then ``head_dim`` multipliers ``w * vm``
     (registered), shifted ``(w * vm) >> (E - ve)`` (floor, registered) into the
     accumulators, and the sum of the weights.
   - ``RECIP`` (``recip_bits + 2`` cycles): normalise the weight sum, restoring divider.
   - ``OUT`` (``BH`` beats): ``rescale(acc * r, k - E - fx_frac)`` (exact product, rounded,
     saturated), ``beat`` multipliers per beat.

At full rate :meth:`AttentionUnit.cycles` is therefore
``(n_heads + 4 n_kv) BH + 6 + n_heads (2 pos + 2 BH + recip_bits + 19)`` cycles per token,
from its first input beat to the first input beat of the next token (the 6: the conversion's
registers drain before the query is loaded, :data:`CONV_STAGES`, and the output's before the
next token comes in, :data:`OUT_STAGES`).

The cache persists from token to token, like golden's :class:`golden.integer.IntCache`: a
token at ``pos`` overwrites row ``pos`` and attends over rows ``0..pos``, so a new sequence
simply starts again at position 0. The position is taken from the token's beats (all carry the
same value); the unit does not check it against ``ctx``.

Comb logic is plain assignments only (no ``m.If``/``Array``/FSM in the comb domain): Amaranth
writes those as ``always @*`` processes, which Icarus does not run at time 0 when their inputs
never change, leaving X in the datapath of the first token after power-up.
"""

from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .arith import (
    balanced_tree,
    counter,
    index_mux,
    interpolation_words,
    priority_bit_length,
)
from .attention_io import convert_kv, output_stages
from .attention_passes import score_pass, weight_pass
from .attention_schedule import CONV, RECV, AttentionSchedule
from .attention_sizes import CONV_STAGES, OUT_STAGES, QUERY_STAGES, set_widths
from .attention_window import window_signals
from .beat_buffer import bfp_shift
from .rounding import RoundShift
from .vector import beat_layout, element

__all__ = ["AttentionUnit", "CONV_STAGES", "OUT_STAGES", "QUERY_STAGES"]



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
        :func:`golden.integer.exp2_table` (``IntLayer.exp_table``).

    Members
    -------
    x : In(stream.Signature(in_layout))
    y : Out(stream.Signature(out_layout))
    """

    def __init__(self, n_heads: int, n_kv_heads: int, head_dim: int, ctx: int, beat: int,
                 fmt: IntFormat, score_const: int, exp_table, sinks=None,
                 window: int | None = None):
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
        if window is not None and window < 1:
            raise ValueError(f"the attention window must be positive, not {window}")
        self.window = None if window is None or window >= ctx else int(window)
        self.slots = ctx if self.window is None else self.window
        self.sinks = None if sinks is None else [int(v) for v in np.asarray(sinks).ravel()]
        if self.sinks is not None and len(self.sinks) != n_heads:
            raise ValueError(f"{len(self.sinks)} sinks for {n_heads} heads")
        set_widths(self)
        self.pos_bits = max(1, (ctx - 1).bit_length())
        self.in_layout = data.StructLayout({"elem": unsigned(beat * fmt.fx_bits),
                                            "pos": unsigned(self.pos_bits)})
        self.out_layout = beat_layout(beat, fmt.fx_bits)
        super().__init__({"x": In(stream.Signature(self.in_layout)),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def n_in(self) -> int:
        """Input beats per token."""
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim // self.beat

    @property
    def n_out(self) -> int:
        """Output beats per token."""
        return self.n_heads * self.head_dim // self.beat

    @property
    def beats_per_head(self) -> int:
        return self.head_dim // self.beat

    @property
    def shift_bits(self) -> int:
        """Bits of a cached row's shift (exponent) field."""
        return max(1, self.sk_max.bit_length())

    @property
    def ram_bits(self) -> int:
        """Bits of the KV cache: mantissas and the per-row shift (exponent) fields."""
        return self.slots * self.n_kv_heads * 2 * (self.head_dim * self.fmt.kv_bits
                                                  + self.shift_bits)

    def cycles(self, pos: int) -> int:
        """Cycles per token at position ``pos`` at full rate (first input beat to the next
        token's first input beat): ``(n_heads + 4 n_kv) BH + CONV_STAGES + OUT_STAGES +
        n_heads (2 pos + 2 BH + recip_bits + 17 + QUERY_STAGES)``."""
        bh = self.beats_per_head
        last = pos if self.window is None else min(pos, self.window - 1)
        return ((self.n_heads + 4 * self.n_kv_heads) * bh + CONV_STAGES + OUT_STAGES
                + self.n_heads * (2 * last + 2 * bh + self.fmt.recip_bits + 17 + QUERY_STAGES
                                  + (self.sinks is not None)))

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        # Combinational logic is written as plain assignments only (no m.If, m.Switch, Array
        # or FSM in the comb domain): those become `always @*` processes, which Icarus does
        # not evaluate at time 0 when their inputs never change, leaving X behind.
        m = Module()
        mem = self._memories(m)
        r = self._registers()
        window_signals(m, self, r)
        if self.sinks is not None:  # the weight pass's sink step, through its stages
            r.sink_pending = Signal(name="sink_pending")
            for k in range(1, 8):
                setattr(r, f"sink{k}", Signal(name=f"sink{k}"))
        self._receive(m, r, mem)
        convert_kv(self, m, r, mem)
        self._load_query(m, r, mem)
        score_pass(self, m, r, mem)
        weight_pass(self, m, r, mem)
        output_stages(self, m, r)
        self._pipelines(m, r)
        AttentionSchedule(self, r).build(m)
        return m

    def _memories(self, m) -> SimpleNamespace:
        """The raw input token, the KV cache (mantissas and shifts), the scores of a head and
        the exp2 table ROM, with their ports."""
        beat, fx_bits, kv_bits = self.beat, self.fmt.fx_bits, self.fmt.kv_bits
        rows = self.slots * self.n_kv_heads
        raw = memory.Memory(shape=unsigned(beat * fx_bits), depth=self.n_in, init=[])
        km = memory.Memory(shape=unsigned(self.head_dim * kv_bits), depth=rows, init=[])
        vm = memory.Memory(shape=unsigned(self.head_dim * kv_bits), depth=rows, init=[])
        ke = memory.Memory(shape=unsigned(self.shift_bits), depth=rows, init=[])
        ve = memory.Memory(shape=unsigned(self.shift_bits), depth=rows, init=[])
        sm = memory.Memory(shape=signed(fx_bits), depth=self.slots, init=[])
        rom = memory.Memory(shape=unsigned(self.t_bits + self.d_bits),
                            depth=len(self.exp_table) - 1,
                            init=interpolation_words(self.exp_table, self.t_bits, self.d_bits))
        # Amaranth names a port after the variable it is stored in, if it can tell: these
        # stay as they are, so that the Verilog names do (the raw and key ports unnamed).
        ports = SimpleNamespace()
        ports.raw_w, ports.raw_r = raw.write_port(), raw.read_port()
        ports.km_w, ports.km_r = km.write_port(granularity=beat * kv_bits), km.read_port()
        vm_w, vm_r = vm.write_port(granularity=beat * kv_bits), vm.read_port()
        ke_w, ke_r = ke.write_port(), ke.read_port()
        ve_w, ve_r = ve.write_port(), ve.read_port()
        sm_w, sm_r = sm.write_port(), sm.read_port()
        rom_r = rom.read_port()
        m.submodules.raw, m.submodules.km, m.submodules.vm = raw, km, vm
        m.submodules.ke, m.submodules.ve, m.submodules.sm = ke, ve, sm
        m.submodules.exp_rom = rom
        vars(ports).update(vm_w=vm_w, vm_r=vm_r, ke_w=ke_w, ke_r=ke_r, ve_w=ve_w, ve_r=ve_r,
                           sm_w=sm_w, sm_r=sm_r, rom_r=rom_r)
        return ports

    def _registers(self) -> SimpleNamespace:
        """The unit's state, by what it holds (the Verilog names are the short ones)."""
        fx_bits, recip_bits = self.fmt.fx_bits, self.fmt.recip_bits
        n_kv, bh, ctx = self.n_kv_heads, self.beats_per_head, self.slots
        heads_in = self.n_heads + 2 * n_kv
        sbits, sum_bits = self.shift_bits, self.sum_bits
        state = Signal(range(8))
        pos = Signal(self.pos_bits)
        # input beat / conversion step
        n = counter(max(self.n_in, 2 * n_kv * bh + CONV_STAGES, QUERY_STAGES + 1), "n")
        hb = counter(bh, "hb")  # beat within a head
        or_acc = Signal(fx_bits)
        # Bit length of each input head's max |element|; a shift register: after a token,
        # bl_head[h] belongs to head h (q heads, then k heads, then v heads).
        bl_head = [Signal(range(fx_bits + 1), name=f"bitlen{h}") for h in range(heads_in)]
        ck, cv = counter(n_kv, "ck"), Signal()  # conversion: KV head, 0 = K / 1 = V
        c1, c1_b, c1_k, c1_v = Signal(), counter(bh, "c1_b"), counter(n_kv, "c1_k"), Signal()
        c1_h = counter(heads_in, "c1_h")
        i, gi, j = counter(self.n_heads, "i"), counter(self.group, "gi"), counter(n_kv, "j")
        qaddr = counter(self.n_in, "qaddr")
        q1 = Signal()
        qm = Signal(self.head_dim * self.fmt.q_bits)
        sq = Signal(range(self.sq_max + 1))
        tt = counter(ctx, "tt")  # position being issued
        ka = Signal(range(ctx * n_kv + n_kv))  # cache row being issued
        issuing = Signal()
        wmode = Signal()  # pipeline carries the weight pass (else the score pass)
        p1, p2, p3, p4, p5, p6 = (Signal() for _ in range(6))
        t1, t2, t3 = counter(ctx, "t1"), counter(ctx, "t2"), counter(ctx, "t3")
        t4, t5, t6 = counter(ctx, "t4"), counter(ctx, "t5"), counter(ctx, "t6")
        a1, a2 = counter(ctx * n_kv, "a1"), counter(ctx * n_kv, "a2")
        a3 = counter(ctx * n_kv, "a3")
        # the weight pass's stage 3: the table value's shift and underflow
        ipl3 = Signal(range(max(self.t_bits, 2)), name="exp_int3")
        ipbig3 = Signal(name="exp_underflow3")
        dot2 = Signal(signed(self.dot_bits))
        sk2 = Signal(sbits)
        scaled3 = Signal(signed(self.dot_bits + self.score_const.bit_length() + 1 + self.c_s))
        sh3 = Signal(range(self.sh0 + self.c_s + 1))
        smax = Signal(signed(fx_bits))
        sve = Signal(sbits)  # max V shift of the head (E = sve - fx_frac)
        ipbig2 = Signal()
        ipl2 = Signal(range(max(self.t_bits, 2)))
        rem2 = Signal(max(self.rb, 1))
        w3 = Signal(self.t_bits)
        acc = Signal(self.head_dim * self.acc_bits)
        sumw = Signal(sum_bits)
        dn = Signal(sum_bits)  # normalised divisor
        rr = Signal(sum_bits + 1)  # divider remainder
        qq = Signal(recip_bits + 1)  # reciprocal
        cnt = Signal(range(recip_bits + 1))
        fs = Signal(range(self.fs_max + 1))
        ob = counter(bh, "ob")
        ov1, ov2, ov3 = (Signal(name=f"out_v{k}") for k in (1, 2, 3))  # the output's stages
        return SimpleNamespace(
            state=state, pos=pos, step=n, head_beat=hb, head_or=or_acc, head_bitlen=bl_head,
            conv_kv_head=ck, conv_v=cv, conv_valid=c1, conv_beat=c1_b, conv_kv=c1_k,
            conv_is_v=c1_v, conv_head=c1_h, q_head=i, q_in_group=gi, kv_head=j, q_addr=qaddr,
            q_valid=q1, query=qm, q_shift=sq, issue_pos=tt, issue_row=ka, issuing=issuing,
            weight_mode=wmode, valid1=p1, valid2=p2, valid3=p3, valid4=p4, valid5=p5,
            valid6=p6, pos1=t1, pos2=t2, pos3=t3, pos4=t4, pos5=t5, pos6=t6,
            row1=a1, row2=a2, row3=a3, exp_int3=ipl3, exp_underflow3=ipbig3,
            dot=dot2, k_shift=sk2, scaled=scaled3, score_shift=sh3,
            score_max=smax, v_shift_max=sve,
            exp_underflow=ipbig2, exp_int=ipl2, exp_rem=rem2, weight=w3, acc=acc,
            weight_sum=sumw, divisor=dn, remainder=rr, recip=qq, div_count=cnt, out_shift=fs,
            out_beat=ob, out_v1=ov1, out_v2=ov2, out_v3=ov3)

    def _receive(self, m, r, mem):
        """The input: beats into the raw buffer, the magnitudes OR-ed per head."""
        fx_bits, x = self.fmt.fx_bits, self.x
        fire = Signal()
        # the next token once the last one's output stages have drained (OUT_STAGES)
        m.d.comb += [x.ready.eq((r.state == RECV) & ~r.out_v1 & ~r.out_v2 & ~r.out_v3),
                     fire.eq(x.valid & x.ready),
                     mem.raw_w.addr.eq(r.step), mem.raw_w.data.eq(x.payload.elem),
                     mem.raw_w.en.eq(fire),
                     mem.raw_r.addr.eq(Mux(r.state == CONV, self.n_heads * self.beats_per_head
                                           + r.step, r.q_addr))]
        mags = []
        for k in range(self.beat):
            e = element(x.payload.elem, k, fx_bits)
            a = Signal(fx_bits, name=f"mag{k}")
            m.d.comb += a.eq(Mux(e[-1], -e, e))
            mags.append(a)
        or_new = Signal(fx_bits)
        m.d.comb += or_new.eq(r.head_or | balanced_tree(mags, lambda a, b: a | b))
        r.fire, r.or_new = fire, or_new
        r.bl_new = priority_bit_length(m, or_new, "bl_new")

    def _load_query(self, m, r, mem):
        """QLOAD: a raw q beat (registered off the buffer), rounded to ``q_bits`` mantissas
        (registered between its shift and its add), into the query register:
        :data:`QUERY_STAGES` registers after the read."""
        fx_bits, q_bits = self.fmt.fx_bits, self.fmt.q_bits
        raw = Signal.like(mem.raw_r.data, name="q_raw")
        qv2, qv3 = Signal(name="q_valid2"), Signal(name="q_valid3")  # QUERY_STAGES of them
        m.d.sync += [raw.eq(mem.raw_r.data), qv2.eq(r.q_valid), qv3.eq(qv2)]
        r.sq_c = sq_c = bfp_shift(m, index_mux(r.head_bitlen, r.q_head), q_bits, self.sq_max,
                                  "sq_conv")
        # The head's shift registered: ``q_head`` is set as QLOAD starts, and its first raw
        # beat comes a cycle later, when this register holds that head's shift.
        sq1 = Signal.like(sq_c, name="sq_conv1")
        m.d.sync += sq1.eq(sq_c)
        q_round = RoundShift(m, sq1, self.sq_max, fx_bits, q_bits, "qr", bounded=True)
        def cut(*sigs):
            regs = [Signal(v.shape(), name=f"q_cut{len(cuts) + k}") for k, v in enumerate(sigs)]
            cuts.extend(regs)
            m.d.sync += [a.eq(b) for a, b in zip(regs, sigs, strict=True)]
            return regs

        cuts = []
        q_beat = Cat(*[q_round(raw[k * fx_bits:(k + 1) * fx_bits], f"qm{k}", cut)
                       for k in range(self.beat)])
        with m.If(qv3):
            m.d.sync += r.query.eq(Cat(r.query[self.beat * q_bits:], q_beat))

    def _pipelines(self, m, r):
        """The pass pipelines' valid flags and the weight pass's stage-7 accumulation; the
        output beat. Stage 6 acts by the mode of the cycle it is in (the score pass's last
        step is there as the weight pass starts, with ``weight_mode`` still low), and stage 7
        by the mode stage 6 had."""
        beat, acc_bits = self.beat, self.acc_bits
        m.d.sync += [r.valid1.eq(0), r.valid2.eq(r.valid1), r.valid3.eq(r.valid2),
                     r.valid4.eq(r.valid3), r.valid5.eq(r.valid4), r.pos2.eq(r.pos1),
                     r.pos3.eq(r.pos2), r.pos4.eq(r.pos3), r.pos5.eq(r.pos4),
                     r.valid6.eq(r.valid5), r.pos6.eq(r.pos5),
                     r.row2.eq(r.row1), r.row3.eq(r.row2),
                     r.conv_valid.eq(0), r.q_valid.eq(0)]
        if self.sinks is None:
            with m.If(r.acc_valid7):
                m.d.sync += [r.acc.eq(Cat(*r.new_acc)),
                             r.weight_sum.eq(r.weight_sum + r.weight7)]
        else:  # the sink's weight joins the sum only
            m.d.sync += [r.sink2.eq(r.sink1), r.sink3.eq(r.sink2), r.sink4.eq(r.sink3),
                         r.sink5.eq(r.sink4), r.sink6.eq(r.sink5), r.sink7.eq(r.sink6),
                         r.sink1.eq(0)]
            with m.If(r.acc_valid7):
                m.d.sync += r.weight_sum.eq(r.weight_sum + r.weight7)
                with m.If(~r.sink7):
                    m.d.sync += r.acc.eq(Cat(*r.new_acc))
        with m.If(r.out_adv):
            m.d.sync += [r.out_v1.eq(r.out_load), r.out_v2.eq(r.out_v1), r.out_v3.eq(r.out_v2),
                         self.y.valid.eq(r.out_v3), self.y.payload.elem.eq(Cat(*r.out_elems))]
        if self.beats_per_head > 1:
            with m.If(r.out_load):
                m.d.sync += r.acc.eq(Cat(r.acc[beat * acc_bits:], r.acc[:beat * acc_bits]))
