"""The integer gpt-oss layer and model (a mixture of experts): every step exact on integers,
bit for bit what the hardware computes, built from :mod:`golden.integer` like
:mod:`golden.llama_int`. The float model it follows is :mod:`golden.gpt_oss`.

What is new against the Llama layer, each an executable function below:

- **Biases** (q/k/v/o, the router, every expert's gate/up/down): constants in Q.fx_frac
  (:func:`golden.integer.to_fixed`, half away from zero), added after the projection's
  rescale, the sum saturated to fx_bits (:func:`add_bias`).
- **YaRN RoPE tables**: ``round(cos(p * inv_freq) * mscale * 2**trig_frac)`` and likewise
  sin, the attention factor folded in (:func:`yarn_rope_table`); RoPE itself is the Llama
  unit's.
- **Sinks and the sliding window** in the integer attention
  (:func:`golden.integer.attention_int` with ``sinks`` and ``window``): a sink is one score per
  head, ``to_fixed(sink * log2(e), score_frac)``, in the max and in the denominator; a sliding
  layer's cache is a ring of ``sliding_window`` slots.
- **The router** (:func:`route_int`): ``logits = project(router) + bias``, top-k by the larger
  logit, the lower expert index on ties; a k-way softmax through the exp2 table:
  ``d_j = rescale((max - l_j) * LOG2E, LOG2E_FRAC + fx_frac - score_frac)`` (log2 units),
  ``p_j = exp2_neg(d_j)``, ``w_j = rescale(p_j * r, k - prob_frac)`` with ``(r, k) =
  recip(sum p, recip_bits)``: weights in Q.prob_frac.
- **The clamped SwiGLU** (:func:`clamped_swiglu_int`): ``g = min(gate, L)``,
  ``u = clip(up, -L, L)`` with ``L = to_fixed(swiglu_limit, fx_frac)``; ``a = rescale(g *
  ALPHA, ALPHA_FRAC)`` with ``ALPHA = round(swiglu_alpha * 2**ALPHA_FRAC)``; ``glu =
  rescale(g * sigmoid_int(a), prob_frac)`` (Q.fx); ``(u + 1) * glu`` exactly (Q.2fx) through
  :func:`golden.integer.bfp`.
- **The weighted sum** (:func:`combine_int`): ``rescale(sum_j w_j * y_j, prob_frac)``, the
  products and their sum exact.
"""

import math
from dataclasses import dataclass

import numpy as np

from golden.blockquant import BlockAffine
from golden.gpt_oss import ATTN_PROJECTIONS, EXPERT_PROJECTIONS, GptOssConfig
from golden.integer import (
    IntCache,
    IntFormat,
    attention_int,
    bfp,
    exp2_neg,
    project,
    recip,
    rescale,
    residual_add,
    rms_norm_int,
    rope_int,
    sigmoid_int,
    to_fixed,
)
from golden.llama_int import IntModel, LayerConstants
from golden.numerics import saturate

__all__ = ["ALPHA_FRAC", "LOG2E_FRAC", "yarn_rope_table", "add_bias", "route_int",
           "clamped_swiglu_int", "combine_int", "moe_shape_tables", "IntMoeLayer",
           "moe_layer_step", "IntMoeModel"]

#: Fraction bits of ``swiglu_alpha`` (1.702 -> 6971 / 4096, 6e-5 off).
ALPHA_FRAC = 12
#: Fraction bits of ``log2(e)`` in the router's softmax.
LOG2E_FRAC = 16


def yarn_rope_table(cfg: GptOssConfig, ctx: int, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """``C, S [ctx, head_dim/2]``: ``round(cos(p * inv_freq) * mscale * 2**frac)`` (float64,
    half-even), the YaRN frequencies and attention factor of :class:`golden.gpt_oss.Yarn`."""
    inv = cfg.yarn.inv_freq(cfg.head_dim, cfg.theta)
    ang = np.arange(ctx, dtype=np.float64)[:, None] * inv[None, :]
    m = cfg.yarn.mscale * (1 << frac)
    return np.round(np.cos(ang) * m).astype(np.int64), np.round(np.sin(ang) * m).astype(np.int64)


def add_bias(y, b: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``y + b`` (both Q.fx), saturated to fx_bits."""
    return saturate(np.asarray(y, np.int64) + b, fmt.fx_bits)


def route_int(logits: np.ndarray, top_k: int, exp_table: np.ndarray, log2e: int,
              fmt: IntFormat) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` experts of the router's logits (Q.fx: the larger first, the lower index
    on ties) and their weights in Q.prob_frac (see the module docstring)."""
    logits = np.asarray(logits, np.int64)
    order = np.lexsort((np.arange(len(logits)), -logits))[:top_k]
    sel = logits[order]
    d = rescale((sel[0] - sel) * np.int64(log2e), LOG2E_FRAC + fmt.fx_frac - fmt.score_frac,
                fmt.fx_bits)
    p = exp2_neg(d, exp_table, fmt)
    r, k = recip(int(p.sum()), fmt.recip_bits)
    return order, rescale(p * np.int64(r), k - fmt.prob_frac, fmt.fx_bits)


def clamped_swiglu_int(gate, up, limit: int, alpha: int, sig_table: np.ndarray,
                       fmt: IntFormat) -> tuple[np.ndarray, int]:
    """gpt-oss' activation as matvec activations ``(a, e)`` (see the module docstring);
    ``limit`` in Q.fx, ``alpha`` in Q.ALPHA_FRAC."""
    g = np.minimum(np.asarray(gate, np.int64), limit)
    u = np.clip(np.asarray(up, np.int64), -limit, limit)
    x = rescale(g * np.int64(alpha), ALPHA_FRAC, fmt.fx_bits)
    glu = rescale(g * sigmoid_int(x, sig_table, fmt), fmt.prob_frac, fmt.fx_bits)
    return bfp((u + np.int64(1 << fmt.fx_frac)) * glu, fmt.abits, 2 * fmt.fx_frac)


def combine_int(weights: np.ndarray, ys: list[np.ndarray], fmt: IntFormat) -> np.ndarray:
    """``sum_j w_j * y_j`` (weights Q.prob_frac, ``y_j`` Q.fx) rounded once to Q.fx."""
    acc = sum(np.int64(w) * np.asarray(y, np.int64) for w, y in zip(weights, ys, strict=True))
    return rescale(acc, fmt.prob_frac, fmt.fx_bits)


def moe_shape_tables(cfg: GptOssConfig, ctx: int, fmt: IntFormat, index: int) -> dict:
    """The constants of gpt-oss layer ``index`` that its weights do not change (beside
    :func:`golden.llama_int.shape_tables`): its window, the YaRN tables, log2(e), the SwiGLU
    limit and alpha."""
    cos, sin = yarn_rope_table(cfg, ctx, fmt.trig_frac)
    return {"window": cfg.window(index), "cos": cos, "sin": sin,
            "log2e": round(math.log2(math.e) * (1 << LOG2E_FRAC)),
            "limit": int(to_fixed(cfg.swiglu_limit, fmt.fx_frac, fmt.fx_bits)),
            "alpha": round(cfg.swiglu_alpha * (1 << ALPHA_FRAC))}


@dataclass(eq=False)
class IntMoeLayer(LayerConstants):
    """A gpt-oss layer's integer constants (layer ``index``), derived once from its
    weights."""

    index: int = 0

    def __post_init__(self):
        super().__post_init__()
        cfg, fmt, w = self.cfg, self.fmt, self.w
        self.__dict__.update(moe_shape_tables(cfg, self.ctx, fmt, self.index))
        self.sinks = to_fixed(np.asarray(w.sinks, np.float64) * math.log2(math.e),
                              fmt.score_frac, fmt.fx_bits)
        fx = fmt.fx_frac, fmt.fx_bits
        self.bias = {n: to_fixed(getattr(w, n), *fx) for n in ("bq", "bk", "bv", "bo")}
        self.bias["router"] = to_fixed(w.router_bias, *fx)
        self.expert_bias = [{n: to_fixed(getattr(ex, "b" + n[1:]), *fx)
                             for n in EXPERT_PROJECTIONS} for ex in w.experts]
        named = [(n, getattr(w, n)) for n in (*ATTN_PROJECTIONS, "router")]
        self.check(named + [(f"expert {e} {n}", getattr(ex, n)) for e, ex in
                            enumerate(w.experts) for n in EXPERT_PROJECTIONS])

    @property
    def slots(self) -> int:
        """KV-cache slots: a sliding layer's ring holds ``sliding_window`` positions."""
        return self.ctx if self.window is None else min(self.ctx, self.window)

    def matvec(self, w: BlockAffine, a, e: int, bias: np.ndarray) -> np.ndarray:
        return add_bias(project(w, a, e, self.fmt), bias, self.fmt)

    def step(self, h, pos: int, cache: IntCache) -> np.ndarray:
        """One decode step (:func:`moe_layer_step`)."""
        return moe_layer_step(self, h, pos, cache)


def _attention(L: IntMoeLayer, h, pos: int, cache: IntCache, t: dict) -> np.ndarray:
    cfg, fmt, w = L.cfg, L.fmt, L.w
    a, e = rms_norm_int(h, L.g_attn, L.gf_attn, L.eps_term, fmt)
    t["attn_norm"] = (a, e)
    q = L.matvec(w.wq, a, e, L.bias["bq"]).reshape(cfg.n_heads, cfg.head_dim)
    k = L.matvec(w.wk, a, e, L.bias["bk"]).reshape(cfg.n_kv_heads, cfg.head_dim)
    v = L.matvec(w.wv, a, e, L.bias["bv"]).reshape(cfg.n_kv_heads, cfg.head_dim)
    t["q"], t["k"], t["v"] = q, k, v
    q, k = rope_int(q, L.cos[pos], L.sin[pos], fmt), rope_int(k, L.cos[pos], L.sin[pos], fmt)
    t["q_rope"], t["k_rope"] = q, k
    att = attention_int(q, k, v, pos, cache, L.score_const, L.exp_table, fmt, cfg.group, t,
                        sinks=L.sinks, window=L.window)
    t["att"] = att
    a, e = bfp(att.reshape(-1), fmt.abits, fmt.fx_frac)
    o = L.matvec(w.wo, a, e, L.bias["bo"])
    t["o"] = o
    return residual_add(h, o, fmt)


def _experts(L: IntMoeLayer, h1, t: dict) -> np.ndarray:
    fmt, w = L.fmt, L.w
    a, e = rms_norm_int(h1, L.g_ffn, L.gf_ffn, L.eps_term, fmt)
    t["ffn_norm"] = (a, e)
    logits = L.matvec(w.router, a, e, L.bias["router"])
    experts, weights = route_int(logits, L.cfg.top_k, L.exp_table, L.log2e, fmt)
    t["router_logits"], t["experts"], t["weights"] = logits, experts, weights
    ys = []
    for j in experts:
        ex, b = w.experts[j], L.expert_bias[j]
        gate, up = L.matvec(ex.w_gate, a, e, b["w_gate"]), L.matvec(ex.w_up, a, e, b["w_up"])
        aa, ee = clamped_swiglu_int(gate, up, L.limit, L.alpha, L.sig_table, fmt)
        ys.append(L.matvec(ex.w_down, aa, ee, b["w_down"]))
    t["expert_out"] = ys
    moe = combine_int(weights, ys, fmt)
    t["moe"] = moe
    return residual_add(h1, moe, fmt)


def moe_layer_step(L: IntMoeLayer, h, pos: int, cache: IntCache, trace: dict | None = None):
    """One decode step on the residual ``h`` (int64 ``[dim]``, Q.res_frac); returns the new
    residual. ``trace``, if given, receives every intermediate by name."""
    if pos < 0 or pos >= L.ctx:
        raise ValueError(f"position {pos} is outside the context of {L.ctx}")
    t = trace if trace is not None else {}
    h = np.asarray(h, np.int64)
    h1 = _attention(L, h, pos, cache, t)
    t["h1"] = h1
    out = _experts(L, h1, t)
    t["out"] = out
    return out


class IntMoeModel(IntModel):
    """The integer gpt-oss model, one token per decode step: :class:`golden.llama_int.IntModel`
    (embedding, final norm, LM head, argmax) with :func:`moe_layer_step` layers, each with its
    own KV cache (a ring of ``sliding_window`` slots on sliding layers)."""

    def make_layer(self, i: int, lw) -> IntMoeLayer:
        return IntMoeLayer(self.cfg, lw, self.ctx, self.fmt, index=i)
