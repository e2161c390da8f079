"""Integer causal grouped-query attention for one position, and its KV cache."""

import numpy as np

from golden.llama import LlamaConfig

from .arith import bfp, mul_rescale, recip, rescale
from .format import IntFormat
from .units import exp2_neg, softmax_weights

__all__ = ["IntCache", "attention_int"]


class IntCache:
    """KV cache of one layer: block floating point per (position, KV head)."""

    def __init__(self, cfg: LlamaConfig, ctx: int):
        """``ctx`` slots (a sliding layer's ring holds ``min(ctx, window)``)."""
        self.km = np.zeros((ctx, cfg.n_kv_heads, cfg.head_dim), np.int64)
        self.ke = np.zeros((ctx, cfg.n_kv_heads), np.int64)
        self.vm = np.zeros_like(self.km)
        self.ve = np.zeros_like(self.ke)

    @property
    def ctx(self) -> int:
        return self.km.shape[0]


def attention_int(q, k, v, pos: int, cache: IntCache, score_const: int, exp_table: np.ndarray,
                  fmt: IntFormat, group: int, trace: dict | None = None,
                  sinks: np.ndarray | None = None, window: int | None = None) -> np.ndarray:
    """Causal grouped-query attention for one position, all integer.

    Inputs are int32 Q.fx: ``q [n_heads, hd]`` and ``k [n_kv, hd]`` after RoPE, ``v [n_kv, hd]``.
    Writes position ``pos`` of ``cache`` and returns ``att [n_heads, hd]`` in int32 Q.fx.

    The attended positions are ``0..pos``, or with ``window`` the last ``window`` of them (the
    current one included). Position ``p`` lives in slot ``p % slots`` of the cache, so a
    sliding layer's cache is a ring of ``window`` slots that does not grow with the context.

    1. Cache: ``(km, ke) = bfp(k[j], kv_bits, fx_frac)`` and likewise ``v``, per KV head ``j``.
    2. Per query head ``i`` (KV head ``j = i // group``): ``(qm, qe) = bfp(q[i], q_bits,
       fx_frac)``; ``dot_t = qm . km[t, j]`` exactly, for every attended ``t``.
    3. Score in log2 units, Q.score_frac: ``s_t = rescale(dot_t * score_const,
       score_const_frac - score_frac - qe - ke[t, j])`` with
       ``score_const = round(log2(e) / sqrt(hd) * 2**score_const_frac)``.
    4. ``w_t = exp2_neg(m - s_t)`` (Q.prob_frac) with ``m = max(s)``; with ``sinks`` (one
       score per head, Q.score_frac, log2 units), ``m = max(max(s), sink_i)`` and the sink's
       weight ``exp2_neg(m - sink_i)`` joins the denominator only (it has no value).
    5. ``acc = sum_t (w_t * vm[t, j]) >> (E - ve[t, j])`` (floor) with ``E = max_t ve[t, j]``.
    6. ``(r, k) = recip(sum_t w_t [+ sink weight], recip_bits)``; ``att[i] = rescale(acc * r,
       k - E - fx_frac)`` (the product is exact, wider than 64 bits).
    """
    t = trace if trace is not None else {}
    n_heads, hd = q.shape
    slots = cache.ctx
    slot = pos % slots
    for j in range(k.shape[0]):
        cache.km[slot, j], cache.ke[slot, j] = bfp(k[j], fmt.kv_bits, fmt.fx_frac)
        cache.vm[slot, j], cache.ve[slot, j] = bfp(v[j], fmt.kv_bits, fmt.fx_frac)
    lo = 0 if window is None else max(0, pos - window + 1)
    if pos - lo >= slots:
        raise ValueError(f"position {pos} attends to {pos - lo + 1} positions; the cache has "
                         f"{slots} slots")
    at = np.arange(lo, pos + 1) % slots
    att = np.zeros((n_heads, hd), np.int64)
    t["scores"], t["probs"] = [], []
    for i in range(n_heads):
        j = i // group
        qm, qe = bfp(q[i], fmt.q_bits, fmt.fx_frac)
        km, ke, vm, ve = cache.km[at, j], cache.ke[at, j], cache.vm[at, j], cache.ve[at, j]
        sh = fmt.score_const_frac - fmt.score_frac - qe - ke
        scores = rescale((km @ qm) * np.int64(score_const), sh, fmt.fx_bits)
        if sinks is None:
            w = softmax_weights(scores, exp_table, fmt)
            total = int(w.sum())
        else:
            top = max(int(scores.max()), int(sinks[i]))
            w = exp2_neg(top - scores, exp_table, fmt)
            total = int(w.sum()) + int(exp2_neg(top - int(sinks[i]), exp_table, fmt))
        big = int(ve.max())
        terms = (w[:, None] * vm) >> np.minimum(big - ve, 62)[:, None]
        rq, rk = recip(total, fmt.recip_bits)
        att[i] = mul_rescale(terms.sum(axis=0), rq, rk - big - fmt.fx_frac, fmt.fx_bits)
        t["scores"].append(scores)
        t["probs"].append(w)
    return att
