"""The passes of :class:`hdl.attention.AttentionUnit` over a query head's cached positions,
one position per cycle through their pipeline registers: the score pass (the dot products,
scaled and rounded into the score buffer, and their running max) and the weight pass (the
exp2 weights and the accumulation of the weighted values). ``self`` is the unit and ``r``
its registers (:meth:`hdl.attention.AttentionUnit._registers`)."""

from amaranth.hdl import Mux, Signal, signed

from .arith import adder_tree, signed_width
from .attention_window import sink_score
from .rounding import RoundShift
from .vector import element

__all__ = ["score_pass", "weight_pass"]


def score_pass(self, m, r, mem):
    """The score pass: stage 0 reads key row ``issue_row``; 1: the ``head_dim`` products
    (registered); 2: their sum halfway up the adder tree; 3: the dot product; 4: the dot
    product times ``score_const`` and the score's shift; 5: the score shifted by it
    (registered); 6: rounded, into the score buffer; 7: the running max of the scores.
    The running max of the V shifts."""
    fmt = self.fmt
    m.d.comb += [mem.km_r.addr.eq(r.issue_row), mem.ke_r.addr.eq(r.issue_row)]
    lo, hi = self.prod_bounds
    prods = []
    for k in range(self.head_dim):
        p = Signal(signed(signed_width(lo, hi)), name=f"qk{k}")
        m.d.sync += p.eq(element(r.query, k, fmt.q_bits)
                         * element(mem.km_r.data, k, fmt.kv_bits))
        prods.append(p)
    sk1, sk2 = Signal.like(r.k_shift, name="k_shift1"), Signal.like(r.k_shift, name="k_shift2")

    def register(sums):  # stage 2: halfway up the tree
        regs = [Signal(v.shape(), name=f"qk_half{k}") for k, v in enumerate(sums)]
        m.d.sync += [a.eq(b) for a, b in zip(regs, sums, strict=True)]
        return regs

    tree = adder_tree(m, prods, lo, hi,
                      cut=(((self.head_dim - 1).bit_length() + 1) // 2, register))
    m.d.sync += [sk1.eq(mem.ke_r.data), sk2.eq(sk1), r.k_shift.eq(sk2), r.dot.eq(tree)]
    with m.If(r.valid1 & ~r.weight_mode & (mem.ve_r.data > r.v_shift_max)):
        m.d.sync += r.v_shift_max.eq(mem.ve_r.data)
    m.d.sync += [r.scaled.eq((r.dot * self.score_const).shift_left(self.c_s)),
                 r.score_shift.eq(self.sh0 + self.c_s - r.q_shift - r.k_shift)]
    stage6 = []

    def cut(*sigs):  # stage 6: the shifted score, before its rounding add
        regs = [Signal(v.shape(), name=f"score6_{len(stage6) + k}")
                for k, v in enumerate(sigs)]
        stage6.extend(regs)
        m.d.sync += [a.eq(b) for a, b in zip(regs, sigs, strict=True)]
        return regs

    score = RoundShift(m, r.score_shift, self.sh0 + self.c_s, len(r.scaled), fmt.fx_bits,
                       "sr")(r.scaled, "score", cut)
    m.d.comb += [mem.sm_w.addr.eq(r.pos6), mem.sm_w.data.eq(score),
                 mem.sm_w.en.eq(r.valid6 & ~r.weight_mode)]
    # The running max a stage later, from the score registered: the weight pass reads it
    # from its stage 1, two cycles after the last score's write.
    score7, max7 = Signal.like(score, name="score7"), Signal(name="max_valid7")
    m.d.sync += [score7.eq(score), max7.eq(r.valid6 & ~r.weight_mode)]
    with m.If(max7 & (score7 > r.score_max)):
        m.d.sync += r.score_max.eq(score7)

def weight_pass(self, m, r, mem):
    """The weight pass: stage 0 reads score ``issue_pos``; 1: the table address; 2: the
    table's base and the interpolation's product (registered); 3: the interpolated
    value; 4: the weight ``exp2_neg(max - s)`` (the value shifted), reads value row
    ``row4``; 5: ``head_dim`` products ``w * vm`` and the alignment ``E - ve``
    (registered); 6: ``(w * vm) >> (E - ve)`` (floor, registered); 7
    (:meth:`hdl.attention.AttentionUnit._pipelines`): into the accumulators."""
    fmt, t_bits, rb = self.fmt, self.t_bits, self.rb
    row4 = Signal.like(r.row3, name="row4")
    m.d.sync += row4.eq(r.row3)
    m.d.comb += [mem.sm_r.addr.eq(r.issue_pos), mem.vm_r.addr.eq(row4),
                 mem.ve_r.addr.eq(Mux(r.weight_mode, row4, r.issue_row))]
    diff = Signal(fmt.fx_bits)
    if self.sinks is None:
        m.d.comb += diff.eq(r.score_max - mem.sm_r.data)
    else:
        m.d.comb += diff.eq(r.score_max - Mux(r.sink1, sink_score(self, r), mem.sm_r.data))
    ip = diff[fmt.score_frac:]
    fp = diff[:fmt.score_frac]
    m.d.comb += mem.rom_r.addr.eq(fp[rb:])
    m.d.sync += [r.exp_underflow.eq(ip >= t_bits), r.exp_int.eq(ip), r.exp_rem.eq(fp[:rb])]
    base3 = Signal(t_bits, name="exp_base3")
    m.d.sync += [base3.eq(mem.rom_r.data[:t_bits]), r.exp_int3.eq(r.exp_int),
                 r.exp_underflow3.eq(r.exp_underflow)]
    val = Signal(signed(t_bits + 1))
    if rb:
        dp = Signal(signed(self.d_bits + rb + 1), name="exp_dp3")
        m.d.sync += dp.eq(mem.rom_r.data[t_bits:].as_signed() * r.exp_rem)
        interp = (dp + (1 << (rb - 1)) - dp[-1]) >> rb
        m.d.comb += val.eq(base3 + interp)
    else:
        m.d.comb += val.eq(base3)
    val4 = Signal(t_bits, name="exp_val4")
    int4, under4 = Signal.like(r.exp_int3, name="exp_int4"), Signal(name="exp_underflow4")
    m.d.sync += [val4.eq(val.as_unsigned()[:t_bits]), int4.eq(r.exp_int3),
                 under4.eq(r.exp_underflow3), r.weight.eq(Mux(under4, 0, val4 >> int4))]
    align = Signal(range(self.sk_max + 1), name="align6")
    weight6 = Signal.like(r.weight, name="weight6")
    r.weight7, r.acc_valid7 = Signal.like(r.weight, name="weight7"), Signal(name="acc_valid7")
    m.d.sync += [align.eq(r.v_shift_max - mem.ve_r.data), weight6.eq(r.weight),
                 r.weight7.eq(weight6), r.acc_valid7.eq(r.valid6 & r.weight_mode)]
    r.new_acc = []
    for k in range(self.head_dim):
        wv = Signal(signed(t_bits + fmt.kv_bits + 1), name=f"wv{k}")
        term = Signal(signed(t_bits + fmt.kv_bits + 1), name=f"wv_shifted{k}")
        m.d.sync += [wv.eq(r.weight * element(mem.vm_r.data, k, fmt.kv_bits)),
                     term.eq(wv >> align)]
        r.new_acc.append((element(r.acc, k, self.acc_bits) + term)[:self.acc_bits])
