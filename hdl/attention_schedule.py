"""The sequencer of :class:`hdl.attention.AttentionUnit`: a token's schedule (see
:mod:`hdl.attention`), one step per state, over the unit's registers."""

from amaranth.hdl import Cat, Const, Mux

from .attention_sizes import CONV_STAGES, QUERY_STAGES
from .attention_window import sink_score

__all__ = ["AttentionSchedule", "RECV", "CONV", "QLOAD", "SCORE", "WEIGHT", "RNORM", "RDIV",
           "OUT"]

# The states of a token, in order: receive, convert K and V into the cache, then per query
# head: load q, score pass, weight pass, normalise and divide the weight sum, output.
RECV, CONV, QLOAD, SCORE, WEIGHT, RNORM, RDIV, OUT = range(8)


class AttentionSchedule:
    """The steps of the states of ``unit`` (an :class:`hdl.attention.AttentionUnit`) on its
    registers ``r`` (:meth:`hdl.attention.AttentionUnit._registers`, plus the datapath's
    signals it reads: ``fire``, ``or_new``, ``bl_new``, ``sq_c``, ``bl_sum``, ``norm``,
    ``out_load``)."""

    def __init__(self, unit, r):
        self.unit, self.r = unit, r

    def build(self, m):
        steps = [(RECV, self._receive), (CONV, self._convert), (QLOAD, self._load_query),
                 (SCORE, self._score), (WEIGHT, self._weight), (RNORM, self._normalise),
                 (RDIV, self._divide)]
        for k, (state, step) in enumerate(steps):
            with (m.If if k == 0 else m.Elif)(self.r.state == state):
                step(m)
        with m.Else():  # OUT
            self._output(m)

    def _receive(self, m):
        """Take the token's beats; after each head's last beat, its bit length."""
        u, r = self.unit, self.r
        bh, heads_in = u.beats_per_head, len(r.head_bitlen)
        with m.If(r.fire):
            m.d.sync += r.pos.eq(u.x.payload.pos)
            with m.If(r.head_beat == bh - 1):
                m.d.sync += [r.head_bitlen[-1].eq(r.bl_new), r.head_or.eq(0),
                             r.head_beat.eq(0)]
                m.d.sync += [r.head_bitlen[h].eq(r.head_bitlen[h + 1])
                             for h in range(heads_in - 1)]
            with m.Else():
                m.d.sync += [r.head_or.eq(r.or_new), r.head_beat.eq(r.head_beat + 1)]
            with m.If(r.step == u.n_in - 1):
                m.d.sync += [r.step.eq(0), r.head_beat.eq(0), r.conv_kv_head.eq(0),
                             r.conv_v.eq(0), r.conv_head.eq(u.n_heads), r.q_head.eq(0),
                             r.q_in_group.eq(0), r.kv_head.eq(0), r.q_addr.eq(0),
                             r.state.eq(CONV)]
            with m.Else():
                m.d.sync += r.step.eq(r.step + 1)

    def _convert(self, m):
        """Every K, then every V head, beat by beat, into conversion stage 1; then
        :data:`hdl.attention_sizes.CONV_STAGES` steps for the conversion's registers to drain."""
        u, r = self.unit, self.r
        bh, steps = u.beats_per_head, 2 * u.n_kv_heads * u.beats_per_head
        with m.If(r.step < steps):
            m.d.sync += [r.conv_valid.eq(1), r.conv_beat.eq(r.head_beat),
                         r.conv_kv.eq(r.conv_kv_head), r.conv_is_v.eq(r.conv_v)]
            with m.If(r.head_beat == bh - 1):
                m.d.sync += r.head_beat.eq(0)
                with m.If(r.conv_kv_head == u.n_kv_heads - 1):
                    m.d.sync += [r.conv_kv_head.eq(0), r.conv_v.eq(1)]
                with m.Else():
                    m.d.sync += r.conv_kv_head.eq(r.conv_kv_head + 1)
            with m.Else():
                m.d.sync += r.head_beat.eq(r.head_beat + 1)
        with m.If(r.conv_valid & (r.conv_beat == bh - 1)):
            # conv_head names the head of the beat in stage 1; advance it with the beat.
            m.d.sync += r.conv_head.eq(r.conv_head + 1)
        with m.If(r.step == steps + CONV_STAGES - 1):
            m.d.sync += [r.step.eq(0), r.head_beat.eq(0), r.state.eq(QLOAD)]
        with m.Else():
            m.d.sync += r.step.eq(r.step + 1)

    def _load_query(self, m):
        """The query head's beats (``step`` 0), then :data:`hdl.attention_sizes.QUERY_STAGES`
        steps for the load's registers to drain (``step`` 1 on), then the score pass."""
        u, r = self.unit, self.r
        with m.If(r.step == 0):
            m.d.sync += [r.q_valid.eq(1), r.q_addr.eq(r.q_addr + 1), r.q_shift.eq(r.sq_c)]
            with m.If(r.head_beat == u.beats_per_head - 1):
                m.d.sync += [r.head_beat.eq(0), r.step.eq(1)]
            with m.Else():
                m.d.sync += r.head_beat.eq(r.head_beat + 1)
        with m.Elif(r.step == QUERY_STAGES):
            low = -(1 << (u.fmt.fx_bits - 1)) if u.sinks is None else sink_score(u, r)
            m.d.sync += [r.step.eq(0), r.issue_pos.eq(0), r.issue_row.eq(r.first_row),
                         r.issuing.eq(1), r.weight_mode.eq(0), r.score_max.eq(low),
                         r.v_shift_max.eq(0), r.state.eq(SCORE)]
        with m.Else():
            m.d.sync += r.step.eq(r.step + 1)

    def _issue_positions(self, m, stage1):
        """One cached position per cycle, ``0..pos``, into stage 1 (with the assignments
        ``stage1``)."""
        r = self.r
        m.d.sync += [r.valid1.eq(1), *stage1, r.issue_row.eq(r.row_step(r.issue_row))]
        with m.If(r.issue_pos == r.last):
            m.d.sync += r.issuing.eq(0)
        with m.Else():
            m.d.sync += r.issue_pos.eq(r.issue_pos + 1)

    def _score(self, m):
        """The score pass; the weight pass starts as its last score reaches stage 6, where
        it is written and joins the max (the weight pass reads both from its stage 1)."""
        r = self.r
        with m.If(r.issuing):
            self._issue_positions(m, [r.pos1.eq(r.issue_pos)])
        with m.Elif(~r.valid1 & ~r.valid2 & ~r.valid3 & ~r.valid4 & ~r.valid5):
            m.d.sync += [r.issue_pos.eq(0), r.issue_row.eq(r.first_row), r.issuing.eq(1),
                         r.weight_mode.eq(1), r.acc.eq(0), r.weight_sum.eq(0),
                         r.state.eq(WEIGHT)]
            if self.unit.sinks is not None:
                m.d.sync += r.sink_pending.eq(1)

    def _weight(self, m):
        """The weight pass, until it has drained (its accumulators at stage 7, a stage after
        the score pass's last write)."""
        r = self.r
        with m.If(r.issuing):
            self._issue_positions(m, [r.row1.eq(r.issue_row)])
        if self.unit.sinks is not None:  # then the sink's step
            with m.Elif(r.sink_pending):
                m.d.sync += [r.valid1.eq(1), r.sink1.eq(1), r.sink_pending.eq(0)]
        with m.Elif(~r.valid1 & ~r.valid2 & ~r.valid3 & ~r.valid4 & ~r.valid5 & ~r.valid6):
            m.d.sync += r.state.eq(RNORM)

    def _normalise(self, m):
        """The weight sum normalised to its leading one; the output shift."""
        u, r = self.unit, self.r
        recip_bits = u.fmt.recip_bits
        m.d.sync += [r.divisor.eq(r.weight_sum << r.norm),
                     r.remainder.eq(1 << (u.sum_bits - 2)), r.recip.eq(0),
                     r.div_count.eq(recip_bits),
                     r.out_shift.eq(r.bl_sum - 1 + recip_bits + u.c_f - r.v_shift_max),
                     r.state.eq(RDIV)]

    def _divide(self, m):
        """The restoring divider, one reciprocal bit per cycle."""
        u, r = self.unit, self.r
        recip_bits = u.fmt.recip_bits
        r2 = Cat(Const(0, 1), r.remainder[:u.sum_bits])
        ge = r2 >= r.divisor
        m.d.sync += [r.remainder.eq(Mux(ge, r2 - r.divisor, r2)),
                     r.recip.eq(Cat(ge, r.recip[:recip_bits])), r.div_count.eq(r.div_count - 1)]
        with m.If(r.div_count == 0):
            m.d.sync += r.state.eq(OUT)

    def _output(self, m):
        """The head's output beats; then the next query head, or the next token."""
        u, r = self.unit, self.r
        with m.If(r.out_load):
            with m.If(r.out_beat == u.beats_per_head - 1):
                m.d.sync += r.out_beat.eq(0)
                with m.If(r.q_head == u.n_heads - 1):
                    m.d.sync += r.state.eq(RECV)
                with m.Else():
                    m.d.sync += [r.q_head.eq(r.q_head + 1), r.state.eq(QLOAD)]
                    with m.If(r.q_in_group == u.group - 1):
                        m.d.sync += [r.q_in_group.eq(0), r.kv_head.eq(r.kv_head + 1)]
                    with m.Else():
                        m.d.sync += r.q_in_group.eq(r.q_in_group + 1)
            with m.Else():
                m.d.sync += r.out_beat.eq(r.out_beat + 1)
