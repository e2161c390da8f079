"""The ends of :class:`hdl.attention.AttentionUnit`'s token: the K/V conversion into the cache
(CONV) and the output's stages (OUT), with their pipeline registers
(:data:`hdl.attention_sizes.CONV_STAGES`, :data:`hdl.attention_sizes.OUT_STAGES`). ``self``
is the unit and ``r`` its registers (:meth:`hdl.attention.AttentionUnit._registers`)."""

from amaranth.hdl import Cat, Const, Mux, Signal, signed

from .arith import index_mux, priority_bit_length, split_product
from .attention_schedule import OUT
from .beat_buffer import bfp_shift
from .rounding import RoundShift
from .vector import element

__all__ = ["convert_kv", "output_stages"]


def convert_kv(self, m, r, mem):
    """CONV: a raw K or V beat, rounded to ``kv_bits`` mantissas, into its lanes of the
    cache row at ``pos``, through :data:`CONV_STAGES` registers: the head's bfp shift
    beside the raw beat, the shifted beat before its rounding add, then the rounded beat,
    each beside its row, lanes and write enables."""
    fx_bits, kv_bits, bh = self.fmt.fx_bits, self.fmt.kv_bits, self.beats_per_head
    sk_c = bfp_shift(m, index_mux(r.head_bitlen, r.conv_head), kv_bits, self.sk_max, "sk_conv")
    row = Signal(range(self.slots * self.n_kv_heads))
    m.d.comb += row.eq(r.slot * self.n_kv_heads + r.conv_kv)
    lanes = Signal(bh)
    m.d.comb += lanes.eq(Const(1, bh) << r.conv_beat)
    wk, wv = Signal(), Signal()
    m.d.comb += [wk.eq(r.conv_valid & ~r.conv_is_v), wv.eq(r.conv_valid & r.conv_is_v)]
    # stage 2: the raw beat and its head's shift
    raw2 = Signal(self.beat * fx_bits, name="conv_raw2")
    sk2 = Signal.like(sk_c, name="conv_sk2")
    row2, lanes2 = Signal.like(row, name="conv_row2"), Signal(bh, name="conv_lanes2")
    wk2, wv2 = Signal(name="conv_wk2"), Signal(name="conv_wv2")
    m.d.sync += [raw2.eq(mem.raw_r.data), sk2.eq(sk_c), row2.eq(row), lanes2.eq(lanes),
                 wk2.eq(wk), wv2.eq(wv)]
    # saturate(round_shift(v, s, "half_away"), bits) per lane: see rounding.RoundShift.
    # The shift is the head's bfp shift, so |v| < 2**(bits-1+s) (bounded).
    kv_round = RoundShift(m, sk2, self.sk_max, fx_bits, kv_bits, "kvr", bounded=True)
    stage3 = []

    def cut(*sigs):  # stage 3: the shifted beat before its rounding add
        regs = [Signal(v.shape(), name=f"conv_cut{len(stage3) + k}") for k, v in enumerate(sigs)]
        stage3.extend(regs)
        m.d.sync += [a.eq(b) for a, b in zip(regs, sigs, strict=True)]
        return regs

    kv_beat = Cat(*[kv_round(raw2[k * fx_bits:(k + 1) * fx_bits], f"kvm{k}", cut)
                    for k in range(self.beat)])
    sk3, sk4 = Signal.like(sk_c, name="conv_sk3"), Signal.like(sk_c, name="conv_sk4")
    row3, row4 = Signal.like(row, name="conv_row3"), Signal.like(row, name="conv_row4")
    lanes3, lanes4 = Signal(bh, name="conv_lanes3"), Signal(bh, name="conv_lanes4")
    wk3, wv3, wk4, wv4 = (Signal(name=f"conv_{n}") for n in ("wk3", "wv3", "wk4", "wv4"))
    # stage 4: the rounded beat, into the cache
    kv4 = Signal(self.beat * kv_bits, name="conv_kv4")
    m.d.sync += [sk3.eq(sk2), row3.eq(row2), lanes3.eq(lanes2), wk3.eq(wk2), wv3.eq(wv2),
                 kv4.eq(kv_beat), sk4.eq(sk3), row4.eq(row3), lanes4.eq(lanes3),
                 wk4.eq(wk3), wv4.eq(wv3)]
    for mantissas, shift, write in ((mem.km_w, mem.ke_w, wk4), (mem.vm_w, mem.ve_w, wv4)):
        m.d.comb += [mantissas.addr.eq(row4), mantissas.data.eq(Cat(*[kv4] * bh)),
                     mantissas.en.eq(Mux(write, lanes4, 0)), shift.addr.eq(row4),
                     shift.data.eq(sk4), shift.en.eq(write)]


def output_stages(self, m, r):
    """OUT: ``rescale(acc * r, k - E - fx_frac)`` per lane (exact product, rounded,
    saturated) through :data:`OUT_STAGES` registers, which move together when ``y`` can
    take a beat: the product's 18-bit partial products (:func:`hdl.arith.split_product`),
    the product with the shift, then the shifted value before the rounding add. Also the
    normalisation of the weight sum for the divider."""
    fx_bits, acc_bits, sum_bits = self.fmt.fx_bits, self.acc_bits, self.sum_bits
    oadv = Signal()
    m.d.comb += oadv.eq(~self.y.valid | self.y.ready)
    pw = acc_bits + self.fmt.recip_bits + 2 + self.c_f
    shift1 = Signal.like(r.out_shift, name="out_shift1")
    shift2 = Signal.like(r.out_shift, name="out_shift2")
    regs = []

    def stage(*sigs):
        out = [Signal(v.shape(), name=f"att_r_{len(regs) + k}") for k, v in enumerate(sigs)]
        regs.extend(out)
        with m.If(oadv):
            m.d.sync += [a.eq(b) for a, b in zip(out, sigs, strict=True)]
        return out

    att_round = RoundShift(m, shift2, self.fs_max, pw, fx_bits, "ar")
    r.out_elems = []
    with m.If(oadv):
        m.d.sync += [shift1.eq(r.out_shift), shift2.eq(shift1)]
    for k in range(self.beat):
        prod = Signal(signed(pw), name=f"att_prod{k}")
        full = split_product(m, element(r.acc, k, acc_bits), r.recip, lambda ps: stage(*ps),
                             f"att{k}")
        with m.If(oadv):
            m.d.sync += prod.eq(full.shift_left(self.c_f))
        r.out_elems.append(att_round(prod, f"att{k}", stage))
    r.bl_sum = priority_bit_length(m, r.weight_sum, "bl_sum")
    norm = Signal(range(sum_bits + 1))
    m.d.comb += norm.eq(sum_bits - r.bl_sum)
    out_load = Signal()  # a beat into the output's stages
    m.d.comb += out_load.eq((r.state == OUT) & oadv)
    r.norm, r.out_load, r.out_adv = norm, out_load, oadv
