"""The float reference of a gpt-oss model (a mixture of experts), one decode step at a time.

It follows Hugging Face ``transformers``' ``GptOssForCausalLM`` (``models/gpt_oss``) and is
checked against it (``tests/test_gpt_oss.py``):

- attention: q/k/v/o with biases, grouped-query heads of ``head_dim`` (not ``dim / n_heads``),
  NeoX-style RoPE (element ``i`` pairs with ``i + head_dim/2``) with YaRN scaling
  (:class:`Yarn`: the inverse frequencies blended between interpolation and extrapolation,
  and cos and sin multiplied by the attention factor), scaled by ``head_dim ** -0.5``;
- attention sinks: one learned logit per head joins the softmax denominator and has no value;
- sliding-window attention on the layers ``layer_types`` marks ``sliding_attention``: those see
  the last ``sliding_window`` positions, the current one included;
- the router: ``logits = W x + b``, the top ``top_k`` of the raw logits (the larger first, the
  lower expert index on ties), a softmax over those ``top_k``;
- each expert: ``gate = W_g x + b_g`` clamped above at ``swiglu_limit``, ``up = W_u x + b_u``
  clamped to ``±swiglu_limit``, ``h = (up + 1) * gate * sigmoid(alpha * gate)``,
  ``y = W_d h + b_d``; the layer's output is ``sum_k weight_k * y_k``;
- RMSNorm before attention and before the experts, a final RMSNorm and an untied LM head.

The whole model's weights are a :class:`golden.llama.ModelWeights` whose layers are
:class:`MoeLayerWeights`. Weights are ``[out, in]``; the checkpoint's interleaved
``gate_up`` (gate = even rows, up = odd rows of ``[2 ffn, dim]``) is split into ``w_gate`` and
``w_up`` by the loader (an exact row selection). All arithmetic is float32, except the RoPE
angles and YaRN frequencies, which are float64 and rounded.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from golden.blockquant import BlockAffine
from golden.llama import AttentionHeads, DenseWeights, FloatModel, KVCache, rms_norm, rope_half

__all__ = ["Yarn", "GptOssConfig", "Expert", "MoeLayerWeights",
           "yarn_tables", "route", "clamped_swiglu", "moe_step", "attention_step",
           "layer_step", "GptOssModel", "SLIDING", "FULL", "is_moe"]

SLIDING, FULL = "sliding_attention", "full_attention"


@dataclass(frozen=True)
class Yarn:
    """YaRN RoPE scaling (``rope_parameters`` with ``rope_type: yarn``), as transformers'
    ``_compute_yarn_parameters`` computes it. ``factor`` 1 and no ``attention_factor`` is
    plain RoPE."""
    factor: float = 1.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True
    original_max_position_embeddings: int = 4096
    attention_factor: float | None = None

    def __post_init__(self):
        if not self.factor > 0 or not math.isfinite(self.factor):
            raise ValueError(f"YaRN factor must be positive, not {self.factor}")
        if self.original_max_position_embeddings < 1:
            raise ValueError("YaRN original_max_position_embeddings must be positive, not "
                             f"{self.original_max_position_embeddings}")

    @property
    def mscale(self) -> float:
        """The factor on cos and sin: ``attention_factor``, else ``0.1 ln(factor) + 1``."""
        if self.attention_factor is not None:
            return float(self.attention_factor)
        return 1.0 if self.factor <= 1 else 0.1 * math.log(self.factor) + 1.0

    def inv_freq(self, head_dim: int, theta: float) -> np.ndarray:
        """The ``head_dim / 2`` inverse frequencies, float64."""
        pos_freqs = np.float64(theta) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        extra, inter = 1.0 / pos_freqs, 1.0 / (self.factor * pos_freqs)

        def corr_dim(rot):
            return (head_dim * math.log(self.original_max_position_embeddings
                                        / (rot * 2 * math.pi))) / (2 * math.log(theta))
        low, high = corr_dim(self.beta_fast), corr_dim(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, head_dim - 1)
        if low == high:
            high += 0.001  # as transformers does, against a division by zero
        ramp = np.clip((np.arange(head_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extra_factor = 1 - ramp
        return inter * (1 - extra_factor) + extra * extra_factor


@dataclass(frozen=True)
class GptOssConfig(AttentionHeads):
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    n_experts: int
    top_k: int
    n_layers: int = 1
    vocab: int = 0
    eps: float = 1e-5
    theta: float = 150000.0
    sliding_window: int = 128
    layer_types: tuple[str, ...] = ()
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    yarn: Yarn = Yarn()
    max_ctx: int = 4096

    def __post_init__(self):
        for name in ("dim", "n_heads", "n_kv_heads", "head_dim", "ffn", "n_experts", "top_k",
                     "n_layers", "max_ctx"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.top_k > self.n_experts:
            raise ValueError(f"experts_per_tok {self.top_k} is more than the {self.n_experts} "
                             "experts")
        if self.sliding_window < 1:
            raise ValueError(f"sliding_window must be positive, not {self.sliding_window}")
        self.check_heads()
        self.check_positive("eps", "theta")
        if len(self.layer_types) != self.n_layers:
            raise ValueError(f"{len(self.layer_types)} layer types for {self.n_layers} layers")
        bad = [t for t in self.layer_types if t not in (SLIDING, FULL)]
        if bad:
            raise ValueError(f"unknown layer type {bad[0]!r}; known: {SLIDING}, {FULL}")

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    def window(self, layer: int) -> int | None:
        """The positions layer ``layer`` attends to (``None``: all)."""
        return self.sliding_window if self.layer_types[layer] == SLIDING else None


@dataclass(eq=False)
class Expert(DenseWeights):
    """One expert's projections (:class:`BlockAffine`, or float32 ``[out, in]``) and biases."""
    w_gate: BlockAffine
    w_up: BlockAffine
    w_down: BlockAffine
    b_gate: np.ndarray
    b_up: np.ndarray
    b_down: np.ndarray
    _float: dict = field(default_factory=dict, repr=False)


#: The attention projections of a gpt-oss layer, in the order the hardware runs them.
ATTN_PROJECTIONS = ("wq", "wk", "wv", "wo")
#: Each expert's projections.
EXPERT_PROJECTIONS = ("w_gate", "w_up", "w_down")


@dataclass(eq=False)
class MoeLayerWeights(DenseWeights):
    """One gpt-oss decoder layer."""
    attn_norm: np.ndarray
    wq: BlockAffine
    wk: BlockAffine
    wv: BlockAffine
    wo: BlockAffine
    bq: np.ndarray
    bk: np.ndarray
    bv: np.ndarray
    bo: np.ndarray
    sinks: np.ndarray
    ffn_norm: np.ndarray
    router: BlockAffine
    router_bias: np.ndarray
    experts: list[Expert]
    _float: dict = field(default_factory=dict, repr=False)

    def tensors(self) -> dict:
        """Every weight matrix by name (``experts.<e>.<projection>`` for the experts')."""
        out = {n: getattr(self, n) for n in (*ATTN_PROJECTIONS, "router")}
        for e, ex in enumerate(self.experts):
            out |= {f"experts.{e}.{n}": getattr(ex, n) for n in EXPERT_PROJECTIONS}
        return out

    def vectors(self) -> dict:
        """Every other tensor by name: norm gains, biases, sinks."""
        out = {n: getattr(self, n) for n in ("attn_norm", "bq", "bk", "bv", "bo", "sinks",
                                             "ffn_norm", "router_bias")}
        for e, ex in enumerate(self.experts):
            out |= {f"experts.{e}.{n}": getattr(ex, n) for n in ("b_gate", "b_up", "b_down")}
        return out

    def check(self, cfg: GptOssConfig) -> None:
        """Raise ``ValueError`` naming the first tensor whose shape does not fit ``cfg``."""
        d, q, kv, f, e = cfg.dim, cfg.q_dim, cfg.kv_dim, cfg.ffn, cfg.n_experts
        want = {"attn_norm": (d,), "ffn_norm": (d,), "wq": (q, d), "wk": (kv, d),
                "wv": (kv, d), "wo": (d, q), "bq": (q,), "bk": (kv,), "bv": (kv,), "bo": (d,),
                "sinks": (cfg.n_heads,), "router": (e, d), "router_bias": (e,)}
        for name, shape in want.items():
            got = tuple(np.shape(getattr(self, name)))
            if got != shape:
                raise ValueError(f"tensor {name} has shape {got}, the config needs {shape}")
        if len(self.experts) != e:
            raise ValueError(f"{len(self.experts)} experts, the config has {e}")
        ewant = {"w_gate": (f, d), "w_up": (f, d), "w_down": (d, f), "b_gate": (f,),
                 "b_up": (f,), "b_down": (d,)}
        for i, ex in enumerate(self.experts):
            for name, shape in ewant.items():
                got = tuple(np.shape(getattr(ex, name)))
                if got != shape:
                    raise ValueError(f"expert {i} tensor {name} has shape {got}, the config "
                                     f"needs {shape}")


def is_moe(cfg) -> bool:
    """Whether a model's configuration is a gpt-oss mixture of experts."""
    return isinstance(cfg, GptOssConfig)


def yarn_tables(cfg: GptOssConfig, positions) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` ``[len(positions), head_dim/2]`` float64, each times the YaRN attention
    factor."""
    inv = cfg.yarn.inv_freq(cfg.head_dim, cfg.theta)
    ang = np.asarray(positions, np.float64)[:, None] * inv[None, :]
    return np.cos(ang) * cfg.yarn.mscale, np.sin(ang) * cfg.yarn.mscale


def route(logits: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` experts of router ``logits [E]`` (the larger logit first; on equal logits
    the lower index) and their weights, a softmax over the selected logits."""
    order = np.lexsort((np.arange(len(logits)), -np.asarray(logits, np.float64)))[:top_k]
    sel = np.asarray(logits, np.float32)[order]
    p = np.exp(sel - sel.max())
    return order, (p / p.sum()).astype(np.float32)


def clamped_swiglu(gate: np.ndarray, up: np.ndarray, alpha: float, limit: float) -> np.ndarray:
    """gpt-oss' activation: ``(clip(up, ±limit) + 1) * g * sigmoid(alpha * g)`` with
    ``g = min(gate, limit)``."""
    g = np.minimum(np.asarray(gate, np.float32), np.float32(limit))
    u = np.clip(np.asarray(up, np.float32), -np.float32(limit), np.float32(limit))
    glu = g / (np.float32(1) + np.exp(-np.float32(alpha) * g))
    return ((u + np.float32(1)) * glu).astype(np.float32)


def moe_step(cfg: GptOssConfig, w: MoeLayerWeights, h: np.ndarray,
             trace: dict | None = None) -> np.ndarray:
    """The experts of one token: normed hidden ``h [dim]`` -> the weighted sum ``[dim]``."""
    logits = (w.dense("router") @ h + np.asarray(w.router_bias, np.float32)).astype(np.float32)
    experts, weights = route(logits, cfg.top_k)
    out = np.zeros(cfg.dim, np.float32)
    for e, g in zip(experts, weights, strict=True):
        ex = w.experts[e]
        gate = ex.dense("w_gate") @ h + np.asarray(ex.b_gate, np.float32)
        up = ex.dense("w_up") @ h + np.asarray(ex.b_up, np.float32)
        act = clamped_swiglu(gate, up, cfg.swiglu_alpha, cfg.swiglu_limit)
        y = ex.dense("w_down") @ act + np.asarray(ex.b_down, np.float32)
        out += g * y.astype(np.float32)
    if trace is not None:
        trace["router_logits"], trace["experts"], trace["weights"] = logits, experts, weights
    return out


def attention_step(cfg: GptOssConfig, w: MoeLayerWeights, h: np.ndarray, pos: int,
                   cache: KVCache, window: int | None) -> np.ndarray:
    """Attention of normed hidden ``h`` at ``pos``, with sinks; writes the cache; attends to
    the last ``window`` positions (all when None). Returns ``o [dim]`` (before the residual)."""
    hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    q = (w.dense("wq") @ h + np.asarray(w.bq, np.float32)).reshape(nh, hd)
    k = (w.dense("wk") @ h + np.asarray(w.bk, np.float32)).reshape(nkv, hd)
    v = (w.dense("wv") @ h + np.asarray(w.bv, np.float32)).reshape(nkv, hd)
    cos, sin = yarn_tables(cfg, [pos])
    q, k = rope_half(q, cos[0], sin[0]), rope_half(k, cos[0], sin[0])
    cache.k[pos], cache.v[pos] = k, v
    lo = 0 if window is None else max(0, pos - window + 1)
    kv_of = np.arange(nh) // cfg.group
    keys, vals = cache.k[lo:pos + 1][:, kv_of, :], cache.v[lo:pos + 1][:, kv_of, :]
    scores = np.einsum("hd,thd->ht", q, keys) * np.float32(hd ** -0.5)
    sinks = np.asarray(w.sinks, np.float32)[:, None]
    top = np.maximum(scores.max(axis=1, keepdims=True), sinks)
    p = np.exp(scores - top)
    p = p / (p.sum(axis=1, keepdims=True) + np.exp(sinks - top))
    att = np.einsum("ht,thd->hd", p.astype(np.float32), vals).reshape(-1)
    return (w.dense("wo") @ att.astype(np.float32) + np.asarray(w.bo, np.float32)).astype(
        np.float32)


def layer_step(cfg: GptOssConfig, w: MoeLayerWeights, x: np.ndarray, pos: int,
               cache: KVCache, window: int | None, trace: dict | None = None) -> np.ndarray:
    """One decode step of a decoder layer: hidden ``x [dim]`` at ``pos`` -> ``[dim]``."""
    if not 0 <= pos < cache.ctx:
        raise ValueError(f"position {pos} is outside the context of {cache.ctx}")
    x = np.asarray(x, np.float32)
    x1 = x + attention_step(cfg, w, rms_norm(x, w.attn_norm, cfg.eps), pos, cache, window)
    return (x1 + moe_step(cfg, w, rms_norm(x1, w.ffn_norm, cfg.eps), trace)).astype(np.float32)


class GptOssModel(FloatModel):
    """The float32 reference of a whole gpt-oss model, one token per decode step:
    ``step(token, pos) -> (logits float32 [vocab], greedy id)`` (:class:`FloatModel`'s, with
    gpt-oss layers; ``trace["layers"]`` holds each layer's output)."""

    def layer_step(self, i: int, layer, x: np.ndarray, pos: int, cache: KVCache) -> np.ndarray:
        return layer_step(self.cfg, layer, x, pos, cache, self.cfg.window(i))
