"""Integer causal grouped-query attention for one position, and its KV cache."""

import numpy as np

from golden.llama import LlamaConfig

from .arith import bfp, mul_rescale, recip, rescale
from .format import IntFormat
from .units import softmax_weights

__all__ = ["IntCache", "attention_int"]


class IntCache:
    """KV cache of one layer: block floating point per (position, KV head)."""

    def __init__(self, cfg: LlamaConfig, ctx: int):
        self.km = np.zeros((ctx, cfg.n_kv_heads, cfg.head_dim), np.int64)
        self.ke = np.zeros((ctx, cfg.n_kv_heads), np.int64)
        self.vm = np.zeros_like(self.km)
        self.ve = np.zeros_like(self.ke)

    @property
    def ctx(self) -> int:
        return self.km.shape[0]


def attention_int(q, k, v, pos: int, cache: IntCache, score_const: int, exp_table: np.ndarray,
                  fmt: IntFormat, group: int, trace: dict | None = None) -> np.ndarray:
    """Causal grouped-query attention for one position, all integer.

    Inputs are int32 Q.fx: ``q [n_heads, hd]`` and ``k [n_kv, hd]`` after RoPE, ``v [n_kv, hd]``.
    Writes position ``pos`` of ``cache`` and returns ``att [n_heads, hd]`` in int32 Q.fx.

    1. Cache: ``(km, ke) = bfp(k[j], kv_bits, fx_frac)`` and likewise ``v``, per KV head ``j``.
    2. Per query head ``i`` (KV head ``j = i // group``): ``(qm, qe) = bfp(q[i], q_bits,
       fx_frac)``; ``dot_t = qm . km[t, j]`` exactly, for ``t = 0..pos``.
    3. Score in log2 units, Q.score_frac: ``s_t = rescale(dot_t * score_const,
       score_const_frac - score_frac - qe - ke[t, j])`` with
       ``score_const = round(log2(e) / sqrt(hd) * 2**score_const_frac)``.
    4. ``w_t = exp2_neg(max(s) - s_t)`` (Q.prob_frac; the largest is 1.0).
    5. ``acc = sum_t (w_t * vm[t, j]) >> (E - ve[t, j])`` (floor) with ``E = max_t ve[t, j]``.
    6. ``(r, k) = recip(sum_t w_t, recip_bits)``; ``att[i] = rescale(acc * r,
       k - E - fx_frac)`` (the product is exact, wider than 64 bits).
    """
    t = trace if trace is not None else {}
    n_heads, hd = q.shape
    for j in range(k.shape[0]):
        cache.km[pos, j], cache.ke[pos, j] = bfp(k[j], fmt.kv_bits, fmt.fx_frac)
        cache.vm[pos, j], cache.ve[pos, j] = bfp(v[j], fmt.kv_bits, fmt.fx_frac)
    att = np.zeros((n_heads, hd), np.int64)
    t["scores"], t["probs"] = [], []
    n = pos + 1
    for i in range(n_heads):
        j = i // group
        qm, qe = bfp(q[i], fmt.q_bits, fmt.fx_frac)
        dots = cache.km[:n, j] @ qm
        sh = fmt.score_const_frac - fmt.score_frac - qe - cache.ke[:n, j]
        scores = rescale(dots * np.int64(score_const), sh, fmt.fx_bits)
        w = softmax_weights(scores, exp_table, fmt)
        big = int(cache.ve[:n, j].max())
        terms = (w[:, None] * cache.vm[:n, j]) >> np.minimum(big - cache.ve[:n, j], 62)[:, None]
        rq, rk = recip(int(w.sum()), fmt.recip_bits)
        att[i] = mul_rescale(terms.sum(axis=0), rq, rk - big - fmt.fx_frac, fmt.fx_bits)
        t["scores"].append(scores)
        t["probs"].append(w)
    return att
