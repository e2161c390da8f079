"""The router of a mixture of experts: top-k of its logits and their k-way softmax,
:func:`golden.gpt_oss_int.route_int`, bit for bit.

Schedule of one token (no overlap between steps; ``W = rows / beat`` input words):

1. ``RECV`` (``W`` cycles): the logits (Q.fx, after their bias) into a memory, a word per
   beat; rows past ``n_experts`` (a lane array's padding) are never selected.
2. ``SCAN``, ``top_k`` rounds of ``W + 2`` cycles: read every word, take the largest logit
   of the experts not yet selected (the lower index among equal ones: candidates are compared
   in index order, the earlier kept on a tie), then mark it selected.
3. ``EXP`` (``top_k + 2`` cycles, pipelined): ``d_j = rescale((l_0 - l_j) * log2e,
   LOG2E_FRAC + fx_frac - score_frac)`` (half away, saturated), ``p_j = exp2_neg(d_j)`` by
   the interpolated exp2 table, and their sum.
4. ``RNORM``, ``RDIV`` (``recip_bits + 2`` cycles): the sum normalised to its leading one and
   a restoring divider, ``r = floor(2**k / sum)`` with ``k = bitlen(sum) - 1 + recip_bits``.
5. ``OUT`` (``top_k`` beats): ``(id_j, w_j)`` with ``w_j = rescale(p_j * r, k - prob_frac)``
   (Q.prob_frac), the larger logit first.

Comb logic is plain assignments (no ``m.If`` in the comb domain), as in
:mod:`hdl.attention`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.gpt_oss_int import LOG2E_FRAC
from golden.integer import IntFormat

from .arith import (
    balanced_tree,
    bit_length,
    counter,
    index_mux,
    interpolation_words,
    signed_width,
)
from .rounding import RoundShift, round_away, saturate
from .vector import beat_count, beat_layout, element

__all__ = ["RouterUnit", "router_layout"]

RECV, SCAN, EXP, RNORM, RDIV, OUT = range(6)


def _issue(m, issuing, count, last: int) -> None:
    """While ``issuing``, step ``count`` up to ``last``, then stop issuing."""
    with m.If(issuing):
        with m.If(count == last):
            m.d.sync += issuing.eq(0)
        with m.Else():
            m.d.sync += count.eq(count + 1)


def router_layout(n_experts: int, fmt: IntFormat) -> data.StructLayout:
    """An output beat: the expert's index and its weight (Q.prob_frac, unsigned)."""
    return data.StructLayout({"id": unsigned(max(1, (n_experts - 1).bit_length())),
                              "weight": unsigned(fmt.prob_frac + 1)})


class RouterUnit(wiring.Component):
    """Top-k routing of one token (see the module text).

    Parameters
    ----------
    n_experts, top_k : int
    rows : int
        Input elements per token (``n_experts`` or more: a padded router pass).
    beat : int
    fmt : IntFormat
    exp_table : ndarray
        :func:`golden.integer.exp2_table`.
    log2e : int
        ``round(log2(e) * 2**LOG2E_FRAC)``.
    """

    def __init__(self, n_experts: int, top_k: int, rows: int, beat: int, fmt: IntFormat,
                 exp_table, log2e: int):
        if not 1 <= top_k <= n_experts <= rows:
            raise ValueError(f"top_k {top_k}, n_experts {n_experts}, rows {rows}: need "
                             "1 <= top_k <= n_experts <= rows")
        self.n_experts, self.top_k, self.rows, self.beat, self.fmt = (
            n_experts, top_k, rows, beat, fmt)
        self.words = beat_count(rows, beat)
        self.table = [int(v) for v in exp_table]
        self.log2e = int(log2e)
        self.t_bits = max(self.table).bit_length()
        diffs = [self.table[i + 1] - self.table[i] for i in range(len(self.table) - 1)]
        self.d_bits = signed_width(min(diffs + [0]), max(diffs + [0]))
        self.rb = fmt.score_frac - fmt.exp_lut_bits
        self.sum_bits = max(2, (top_k * max(self.table)).bit_length())
        self.id_bits = max(1, (n_experts - 1).bit_length())
        self.out_layout = router_layout(n_experts, fmt)
        super().__init__({"x": In(stream.Signature(beat_layout(beat, fmt.fx_bits))),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def cycles(self) -> int:
        """Cycles per token at full rate, first input beat to the next token's."""
        k = self.top_k
        return self.words + k * (self.words + 2) + (k + 2) + 1 + (self.fmt.recip_bits + 1) + k

    # -- circuit -------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        B, W, K, fx = self.beat, self.words, self.top_k, self.fmt.fx_bits
        state = Signal(range(6))
        mem = memory.Memory(shape=unsigned(B * fx), depth=W, init=[])
        m.submodules.logits = mem
        wp, rp = mem.write_port(), mem.read_port()
        # -- receive ------------------------------------------------------------------------
        waddr = counter(W, "waddr")
        fire = Signal()
        m.d.comb += [self.x.ready.eq(state == RECV), fire.eq(self.x.valid & self.x.ready),
                     wp.addr.eq(waddr), wp.data.eq(self.x.payload.elem), wp.en.eq(fire)]
        # -- scan: the best candidate of a word, then against the running best ----------------
        raddr, a1, issuing, v1 = counter(W, "raddr"), counter(W, "a1"), Signal(), Signal()
        rnd = counter(K, "round")
        chosen = Signal(self.rows)  # experts already selected (padding never is)
        m.d.comb += rp.addr.eq(raddr)
        cands = []
        for j in range(B):
            idx = Signal(range(self.rows), name=f"cand_idx{j}")
            m.d.comb += idx.eq(a1 * B + j)
            ok = Signal(name=f"cand_ok{j}")
            m.d.comb += ok.eq((idx < self.n_experts) & ~chosen.bit_select(idx, 1))
            cands.append((ok, element(rp.data, j, fx), idx))

        def better(a, b):  # a has the lower indices: it wins a tie
            take_a = a[0] & (~b[0] | (a[1] >= b[1]))
            return (a[0] | b[0], Mux(take_a, a[1], b[1]), Mux(take_a, a[2], b[2]))

        best_ok, best_val, best_idx = Signal(), Signal(signed(fx)), Signal(range(self.rows))
        word = balanced_tree(cands, better)
        new = better((best_ok, best_val, best_idx), word)
        # -- the selected, in order -----------------------------------------------------------
        sel_val = [Signal(signed(fx), name=f"sel_val{j}") for j in range(K)]
        sel_id = [Signal(self.id_bits, name=f"sel_id{j}") for j in range(K)]
        self._scan(m, state, raddr, a1, issuing, v1, rnd, chosen, fire, waddr,
                   (best_ok, best_val, best_idx), new, sel_val, sel_id)
        p = self._exponentials(m, state, sel_val)
        self._divide_and_emit(m, state, p, sel_id)
        return m

    def _scan(self, m, state, raddr, a1, issuing, v1, rnd, chosen, fire, waddr, best, new,
              sel_val, sel_id):
        W, K = self.words, self.top_k
        best_ok, best_val, best_idx = best
        m.d.sync += [v1.eq(issuing), a1.eq(raddr)]
        with m.If(state == RECV):
            with m.If(fire):
                with m.If(waddr == W - 1):
                    m.d.sync += [waddr.eq(0), state.eq(SCAN), raddr.eq(0), issuing.eq(1),
                                 rnd.eq(0), chosen.eq(0), best_ok.eq(0)]
                with m.Else():
                    m.d.sync += waddr.eq(waddr + 1)
        with m.Elif(state == SCAN):
            _issue(m, issuing, raddr, W - 1)
            with m.If(v1):
                m.d.sync += [best_ok.eq(new[0]), best_val.eq(new[1]), best_idx.eq(new[2])]
            with m.If(~issuing & ~v1):  # the round's best is in: record it
                m.d.sync += [sel_val[-1].eq(best_val), sel_id[-1].eq(best_idx),
                             chosen.eq(chosen | (Const(1, self.rows) << best_idx)),
                             best_ok.eq(0), raddr.eq(0)]
                m.d.sync += [sel_val[j].eq(sel_val[j + 1]) for j in range(K - 1)]
                m.d.sync += [sel_id[j].eq(sel_id[j + 1]) for j in range(K - 1)]
                with m.If(rnd == K - 1):
                    m.d.sync += state.eq(EXP)
                with m.Else():
                    m.d.sync += [rnd.eq(rnd + 1), issuing.eq(1)]
        done = Signal()
        m.d.comb += done.eq((state == SCAN) & ~issuing & ~v1 & (rnd == K - 1))
        self._scan_done = done

    def _exponentials(self, m, state, sel_val):
        """EXP: per selected expert, ``p_j = exp2_neg(d_j)`` (two stages), and their sum."""
        fmt, K, rb, t_bits = self.fmt, self.top_k, self.rb, self.t_bits
        fx = fmt.fx_bits
        rom = memory.Memory(shape=unsigned(t_bits + self.d_bits), depth=len(self.table) - 1,
                            init=interpolation_words(self.table, t_bits, self.d_bits))
        m.submodules.exp_rom = rom
        rr = rom.read_port()
        j, e_issue, e1 = counter(K, "ej"), Signal(), Signal()
        top = sel_val[0]
        cur = index_mux(sel_val, j)
        diff = Signal(signed(fx + 2))
        m.d.comb += diff.eq(top - cur)
        prod = Signal(signed(len(diff) + self.log2e.bit_length() + 1))
        m.d.comb += prod.eq(diff * self.log2e)
        sh = LOG2E_FRAC + fmt.fx_frac - fmt.score_frac
        d = saturate(m, round_away(m, prod, sh, "d_rnd"), fx, "d")
        dd = Signal(fx)  # d >= 0
        m.d.comb += dd.eq(d)
        ip, fp = dd[fmt.score_frac:], dd[:fmt.score_frac]
        m.d.comb += rr.addr.eq(fp[rb:])
        under1, ip1, rem1 = Signal(), Signal(range(t_bits)), Signal(max(rb, 1))
        m.d.sync += [under1.eq(ip >= t_bits), ip1.eq(ip), rem1.eq(fp[:rb]), e1.eq(e_issue)]
        t_lo, t_d = rr.data[:t_bits], rr.data[t_bits:].as_signed()
        val = Signal(signed(t_bits + 1))
        if rb:
            dp = Signal(signed(self.d_bits + rb + 1))
            m.d.comb += dp.eq(t_d * rem1)
            m.d.comb += val.eq(t_lo + ((dp + (1 << (rb - 1)) - dp[-1]) >> rb))
        else:
            m.d.comb += val.eq(t_lo)
        p = [Signal(t_bits, name=f"p{k}") for k in range(K)]
        total = Signal(self.sum_bits)
        pnew = Signal(t_bits)
        m.d.comb += pnew.eq(Mux(under1, 0, val.as_unsigned()[:t_bits] >> ip1))
        with m.If(e1):  # stage 2: the value, appended in order
            m.d.sync += [p[-1].eq(pnew), total.eq(total + pnew)]
            m.d.sync += [p[k].eq(p[k + 1]) for k in range(K - 1)]
        with m.If(state == EXP):
            _issue(m, e_issue, j, K - 1)
            with m.If(~e_issue & ~e1):
                m.d.sync += state.eq(RNORM)
        with m.If(self._scan_done):  # EXP starts as the last round records
            m.d.sync += [j.eq(0), e_issue.eq(1), total.eq(0)]
        self._total = total
        return p

    def _divide_and_emit(self, m, state, p, sel_id):
        """RNORM, RDIV: ``r = floor(2**k / sum)``; OUT: the weights, in order."""
        fmt, K, S, R = self.fmt, self.top_k, self.sum_bits, self.fmt.recip_bits
        total = self._total
        bl = bit_length(m, total, "bl_sum")
        dn, rem = Signal(S), Signal(S + 1)
        q, cnt = Signal(R + 1), Signal(range(R + 1))
        shift_max = S - 1 + R - fmt.prob_frac
        shift = Signal(range(max(shift_max, 1) + 1))
        with m.If(state == EXP):
            m.d.sync += cnt.eq(R)
        norm = Signal(range(S + 1))
        m.d.comb += norm.eq(S - bl)
        with m.If(state == RNORM):
            m.d.sync += [dn.eq(total << norm), rem.eq(1 << (S - 2)), q.eq(0),
                         shift.eq(bl - 1 + R - fmt.prob_frac), state.eq(RDIV)]
        r2 = Cat(Const(0, 1), rem[:S])
        ge = r2 >= dn
        with m.If(state == RDIV):
            m.d.sync += [rem.eq(Mux(ge, r2 - dn, r2)), q.eq(Cat(ge, q[:R])),
                         cnt.eq(cnt - 1)]
            with m.If(cnt == 0):
                m.d.sync += state.eq(OUT)
        # OUT: one (id, weight) beat per cycle, the selected in order
        k = counter(K, "ok")
        pw = self.t_bits + R + 2
        prod = Signal(signed(pw))
        m.d.comb += prod.eq(index_mux(p, k) * q)
        w = RoundShift(m, shift, shift_max, pw, fmt.fx_bits, "wr")(prod, "w")
        load = Signal()
        y = self.y
        m.d.comb += load.eq((state == OUT) & (~y.valid | y.ready))
        with m.If(load):
            m.d.sync += [y.valid.eq(1), y.payload.id.eq(index_mux(sel_id, k)),
                         y.payload.weight.eq(w[:fmt.prob_frac + 1])]
            with m.If(k == K - 1):
                m.d.sync += [k.eq(0), state.eq(RECV)]
            with m.Else():
                m.d.sync += k.eq(k + 1)
        with m.Elif(y.ready):
            m.d.sync += y.valid.eq(0)
