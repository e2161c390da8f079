"""The datapath widths of :class:`hdl.attention.AttentionUnit`, and its pipeline registers."""

from .arith import signed_width

__all__ = ["set_widths", "CONV_STAGES", "OUT_STAGES", "QUERY_STAGES"]

#: Registers of the K/V conversion after the raw beat is read: the head's bfp shift with the
#: beat, the shifted beat before its rounding add, then the rounded mantissas, before the
#: cache write. The sequencer waits for them to drain before it loads the query (which reads
#: the cache rows just written).
CONV_STAGES = 3

#: Registers of the query load after the raw beat is read: the beat, then its rounding
#: between shift and add. The score pass waits for them to drain.
QUERY_STAGES = 2

#: Registers of the output after the accumulator: the partial products of ``acc * r``, the
#: product with its shift, then the shifted value before the rounding add. The next token's
#: input waits for them.
OUT_STAGES = 3


def set_widths(unit) -> None:
    """The exact widths of an :class:`hdl.attention.AttentionUnit`'s datapath, from its
    format, shape, slots and exp2 table (set on the unit)."""
    f = unit.fmt
    fb = f.fx_bits
    hd, ctx = unit.head_dim, unit.slots
    # bfp shifts: bitlen(max |v|) <= fx_bits, so s <= fx_bits - bits + 1.
    unit.sq_max = max(0, fb - (f.q_bits - 1))
    unit.sk_max = max(0, fb - (f.kv_bits - 1))
    # Score shift score_const_frac - score_frac - qe - ke with qe = sq - fx_frac, etc.
    unit.sh0 = f.score_const_frac - f.score_frac + 2 * f.fx_frac
    sh_min = unit.sh0 - unit.sq_max - unit.sk_max
    if sh_min <= -fb or unit.sh0 > 62:
        raise ValueError("score shift range outside what golden's rescale computes exactly")
    unit.c_s = max(0, -sh_min)  # constant pre-shift: exact left shifts become rounding by 0
    qlo, qhi = -(1 << (f.q_bits - 1)), (1 << (f.q_bits - 1)) - 1
    klo, khi = -(1 << (f.kv_bits - 1)), (1 << (f.kv_bits - 1)) - 1
    pmin, pmax = min(qlo * khi, qhi * klo), qlo * klo
    unit.prod_bounds = (pmin, pmax)
    unit.dot_bounds = (hd * pmin, hd * pmax)
    unit.dot_bits = signed_width(*unit.dot_bounds)
    t = [int(e) for e in unit.exp_table]
    unit.t_max = max(t)
    unit.t_bits = unit.t_max.bit_length()  # also the width of a weight
    diffs = [t[i + 1] - t[i] for i in range(len(t) - 1)]
    unit.d_bits = signed_width(min(diffs + [0]), max(diffs + [0]))
    unit.rb = f.score_frac - f.exp_lut_bits
    tlo, thi = klo * unit.t_max, khi * unit.t_max
    unit.acc_bounds = (ctx * tlo, ctx * thi)
    unit.acc_bits = signed_width(*unit.acc_bounds)
    unit.sum_bits = max(2, ((ctx + (unit.sinks is not None)) * unit.t_max).bit_length())
    # Final shift: bitlen(sum) - 1 + recip_bits - sv_max, sum >= T[0].
    fs_min = int(t[0]).bit_length() - 1 + f.recip_bits - unit.sk_max
    unit.c_f = max(0, -fs_min)
    unit.fs_max = unit.sum_bits - 1 + f.recip_bits + unit.c_f
