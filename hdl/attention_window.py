"""The sliding window and the sinks of :class:`hdl.attention.AttentionUnit`
(:func:`golden.integer.attention_int` with ``window`` and ``sinks``).

- **Window** ``W``: the cache is a ring of ``W`` slots, position ``p`` in slot ``p % W``; a
  token at ``pos`` attends to the last ``min(pos + 1, W)`` positions, from slot
  ``(pos + 1) % W`` (once the ring is full) or 0 on. ``p % W`` is ``p - W * floor(p * M /
  2**s)`` with ``M = ceil(2**s / W)``: one multiplier, checked exact for every position at
  construction.
- **Sinks**: one score per head (Q.score_frac). The score pass starts its running max at the
  head's sink, and the weight pass adds one step whose score is the sink: its weight joins the
  sum, not the accumulators.

Without either, the signals are the plain ones (the slot is the position, the first row the
KV head), so a Llama layer's unit is what it was.
"""

from amaranth.hdl import Const, Mux, Signal, signed

from .arith import index_mux

__all__ = ["ring_divider", "window_signals", "sink_score"]


def ring_divider(window: int, ctx: int) -> tuple[int, int]:
    """``(M, s)`` with ``floor(p * M / 2**s) == p // window`` for every ``p < ctx``."""
    s = max(1, (ctx - 1).bit_length()) + window.bit_length() + 1
    while True:
        mult = -(-(1 << s) // window)
        if all((p * mult) >> s == p // window for p in range(ctx)):
            return mult, s
        s += 1


def window_signals(m, unit, r) -> None:
    """``r.slot`` (the token's slot), ``r.first_row`` (the first cache row a head reads),
    ``r.last`` (the last issue index) and ``r.row_step(row)`` (the next row)."""
    n_kv, W = unit.n_kv_heads, unit.window
    rows = unit.slots * n_kv
    if W is None:
        r.slot, r.first_row, r.last = r.pos, r.kv_head, r.pos
        r.row_step = lambda row: row + n_kv
        return
    mult, s = ring_divider(W, unit.ctx)
    q = Signal(range(unit.ctx // W + 1), name="ring_q")
    m.d.comb += q.eq((r.pos * mult) >> s)
    slot = Signal(range(W), name="slot")
    m.d.comb += slot.eq(r.pos - q * W)
    first = Signal(range(W), name="first_slot")
    m.d.comb += first.eq(Mux(r.pos >= W - 1, Mux(slot == W - 1, 0, slot + 1), 0))
    first_row = Signal(range(rows + n_kv), name="first_row")
    m.d.comb += first_row.eq(first * n_kv + r.kv_head)
    last = Signal(range(W), name="last")
    m.d.comb += last.eq(Mux(r.pos >= W - 1, W - 1, r.pos))
    r.slot, r.first_row, r.last = slot, first_row, last
    r.row_step = lambda row: Mux(row + n_kv >= rows, row + n_kv - rows, row + n_kv)


def sink_score(unit, r):
    """The current query head's sink score (a constant per head)."""
    return index_mux([Const(v, signed(unit.fmt.fx_bits)) for v in unit.sinks], r.q_head)
