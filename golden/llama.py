"""The float reference of a Llama decoder layer and of the whole model, one decode step at a
time, with a KV cache.

This is the model the integer golden (:mod:`golden.llama_int`) is measured against, and it is
itself checked against Hugging Face ``transformers``' ``LlamaDecoderLayer`` (``tests/``).

Conventions (the same as Hugging Face):

- weights are ``[out, in]``; ``y = W @ x``;
- RoPE rotates *halves*: element ``i`` pairs with ``i + head_dim/2``. llama.cpp's GGUF files
  store the Q and K rows permuted for adjacent-pair RoPE; the loader undoes that permutation
  (:func:`unpermute_qk_rows`), so every source reaches this module in one convention;
- grouped-query attention: query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)``.

All arithmetic is float32, except the RoPE angles, which are computed in float64 and rounded.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from golden.blockquant import BlockAffine

__all__ = [
    "AttentionHeads",
    "LlamaConfig",
    "LayerWeights",
    "KVCache",
    "rms_norm",
    "rope_tables",
    "rope_half",
    "rope_adjacent",
    "permute_qk_rows",
    "unpermute_qk_rows",
    "silu",
    "layer_step",
    "layer_forward",
    "ModelWeights",
    "DenseWeights",
    "as_float",
    "FloatModel",
    "greedy",
]


class AttentionHeads:
    """Grouped-query heads of a config with ``n_heads``, ``n_kv_heads`` and ``head_dim``."""

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv_heads

    #: what the float fields are, for messages
    FIELD_NAMES = {"eps": "the RMS norm epsilon", "theta": "the RoPE base theta"}

    def check_positive(self, *names: str) -> None:
        """Each named field is a positive, finite number (an RMS epsilon, a RoPE base)."""
        for name in names:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{self.FIELD_NAMES.get(name, name)} must be a positive "
                                 f"finite number, not {v}")

    def check_heads(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")


@dataclass(frozen=True)
class LlamaConfig(AttentionHeads):
    dim: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    eps: float = 1e-5
    theta: float = 10000.0
    n_layers: int = 1
    max_ctx: int = 2048
    vocab: int = 0

    def __post_init__(self):
        for name in ("dim", "n_heads", "n_kv_heads", "ffn", "n_layers", "max_ctx"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        self.check_heads()
        self.check_positive("eps", "theta")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


#: The projections of a layer, in the order the hardware runs them.
PROJECTIONS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def as_float(w) -> np.ndarray:
    """A weight tensor as float32: a :class:`BlockAffine` dequantised, else as given."""
    return w.dequantize() if isinstance(w, BlockAffine) else np.asarray(w, dtype=np.float32)


class DenseWeights:
    """Weights that dequantise each named tensor once, on first use (``_float`` caches)."""

    def dense(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32 ``[out, in]`` (dequantised once, then cached)."""
        if name not in self._float:
            self._float[name] = as_float(getattr(self, name))
        return self._float[name]


@dataclass(eq=False)
class LayerWeights(DenseWeights):
    """One decoder layer. Projections are :class:`BlockAffine` (or float32 ``[out, in]``)."""

    attn_norm: np.ndarray
    wq: BlockAffine
    wk: BlockAffine
    wv: BlockAffine
    wo: BlockAffine
    ffn_norm: np.ndarray
    w_gate: BlockAffine
    w_up: BlockAffine
    w_down: BlockAffine
    _float: dict = field(default_factory=dict, repr=False)

    def tensors(self) -> dict:
        """Every weight matrix by name, in the order the hardware runs them."""
        return {n: getattr(self, n) for n in PROJECTIONS}

    def vectors(self) -> dict:
        """Every other tensor (the norm gains) by name."""
        return {"attn_norm": self.attn_norm, "ffn_norm": self.ffn_norm}

    def check(self, cfg: LlamaConfig) -> None:
        """Raise ``ValueError`` naming the first tensor whose shape does not fit ``cfg``."""
        want = {
            "attn_norm": (cfg.dim,), "ffn_norm": (cfg.dim,),
            "wq": (cfg.dim, cfg.dim), "wk": (cfg.kv_dim, cfg.dim), "wv": (cfg.kv_dim, cfg.dim),
            "wo": (cfg.dim, cfg.dim), "w_gate": (cfg.ffn, cfg.dim), "w_up": (cfg.ffn, cfg.dim),
            "w_down": (cfg.dim, cfg.ffn),
        }
        for name, shape in want.items():
            got = tuple(np.shape(getattr(self, name)) if name.endswith("norm")
                        else getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"tensor {name} has shape {got}, the config needs {shape}")


def permute_qk_rows(rows: int, n_heads: int) -> np.ndarray:
    """Row order llama.cpp's converter applies to Q/K (``new[i] = old[order[i]]``): within
    each head, rows ``(0, hd/2, 1, hd/2+1, ...)``, so that rotated pairs are adjacent."""
    hd = rows // n_heads
    idx = np.arange(rows).reshape(n_heads, 2, hd // 2)
    return idx.swapaxes(1, 2).reshape(rows)


def unpermute_qk_rows(rows: int, n_heads: int) -> np.ndarray:
    """Inverse of :func:`permute_qk_rows`: GGUF row order back to Hugging Face's."""
    return np.argsort(permute_qk_rows(rows, n_heads))


class KVCache:
    """Float KV cache of one layer: ``k, v`` are ``[ctx, n_kv_heads, head_dim]`` float32."""

    def __init__(self, cfg: LlamaConfig, ctx: int):
        self.k = np.zeros((ctx, cfg.n_kv_heads, cfg.head_dim), np.float32)
        self.v = np.zeros_like(self.k)

    @property
    def ctx(self) -> int:
        return self.k.shape[0]


def rms_norm(x: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    x = np.asarray(x, np.float32)
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (np.asarray(g, np.float32) * (x / np.sqrt(var + np.float32(eps)))).astype(np.float32)


def rope_tables(head_dim: int, theta: float, positions) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` of shape ``[len(positions), head_dim/2]`` in float64: angle
    ``pos * theta ** (-2i / head_dim)``."""
    half = head_dim // 2
    inv_freq = np.float64(theta) ** (-np.arange(half, dtype=np.float64) * 2 / head_dim)
    ang = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang), np.sin(ang)


def rope_half(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Half rotation (HF): ``x [..., hd]`` with pair ``(i, i + hd/2)``; ``cos, sin [hd/2]``."""
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    c, s = cos.astype(np.float32), sin.astype(np.float32)
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1).astype(np.float32)


def rope_adjacent(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Adjacent-pair rotation (llama.cpp on GGUF rows): pair ``(2i, 2i + 1)``."""
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = cos.astype(np.float32), sin.astype(np.float32)
    out = np.empty_like(x, dtype=np.float32)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = b * c + a * s
    return out


def silu(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / (np.float32(1) + np.exp(-x))).astype(np.float32)


def layer_step(cfg: LlamaConfig, w: LayerWeights, x: np.ndarray, pos: int,
               cache: KVCache) -> np.ndarray:
    """One decode step: hidden ``x [dim]`` at position ``pos`` -> new hidden ``[dim]``.

    Writes this position's K and V into ``cache`` and attends over positions ``0..pos``."""
    if not 0 <= pos < cache.ctx:
        raise ValueError(f"position {pos} is outside the context of {cache.ctx}")
    x = np.asarray(x, np.float32)
    hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    h = rms_norm(x, w.attn_norm, cfg.eps)
    q = (w.dense("wq") @ h).reshape(nh, hd)
    k = (w.dense("wk") @ h).reshape(nkv, hd)
    v = (w.dense("wv") @ h).reshape(nkv, hd)
    cos, sin = rope_tables(hd, cfg.theta, [pos])
    q = rope_half(q, cos[0], sin[0])
    k = rope_half(k, cos[0], sin[0])
    cache.k[pos] = k
    cache.v[pos] = v
    keys = cache.k[: pos + 1]  # [t, nkv, hd]
    vals = cache.v[: pos + 1]
    kv_of = np.arange(nh) // cfg.group
    scores = np.einsum("hd,thd->ht", q, keys[:, kv_of, :]) / np.float32(np.sqrt(hd))
    scores = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(scores)
    p = p / p.sum(axis=1, keepdims=True)
    att = np.einsum("ht,thd->hd", p.astype(np.float32), vals[:, kv_of, :]).reshape(-1)
    x1 = x + w.dense("wo") @ att.astype(np.float32)
    h2 = rms_norm(x1, w.ffn_norm, cfg.eps)
    mlp = w.dense("w_down") @ (silu(w.dense("w_gate") @ h2) * (w.dense("w_up") @ h2))
    return (x1 + mlp).astype(np.float32)


def layer_forward(cfg: LlamaConfig, w: LayerWeights, xs: np.ndarray, ctx: int | None = None):
    """Run ``xs [T, dim]`` through one layer, positions ``0..T-1``, one step at a time."""
    xs = np.asarray(xs, np.float32)
    cache = KVCache(cfg, ctx or len(xs))
    return np.stack([layer_step(cfg, w, x, t, cache) for t, x in enumerate(xs)])


# --- the whole model -------------------------------------------------------------------------

@dataclass(eq=False)
class ModelWeights:
    """A whole Llama: token embedding, decoder layers, final RMSNorm gain and LM head.

    ``embedding`` and ``lm_head`` are ``[vocab, dim]`` :class:`BlockAffine` (or float32); a
    model with tied embeddings passes the same object twice, and it is dequantised once."""

    embedding: BlockAffine
    layers: list[LayerWeights]
    final_norm: np.ndarray
    lm_head: BlockAffine
    _float: dict = field(default_factory=dict, repr=False)

    def check(self, cfg: LlamaConfig) -> None:
        """Raise ``ValueError`` naming the first tensor whose shape does not fit ``cfg``."""
        if len(self.layers) != cfg.n_layers:
            raise ValueError(f"{len(self.layers)} layers, the config has {cfg.n_layers}")
        for name, shape in (("embedding", (cfg.vocab, cfg.dim)), ("lm_head", (cfg.vocab, cfg.dim)),
                            ("final_norm", (cfg.dim,))):
            got = tuple(np.shape(getattr(self, name)) if name == "final_norm"
                        else getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"tensor {name} has shape {got}, the config needs {shape}")
        for w in self.layers:
            w.check(cfg)

    def dense(self, name: str) -> np.ndarray:
        """``embedding`` or ``lm_head`` as float32 ``[vocab, dim]`` (dequantised once; tied
        tensors share the array)."""
        w = getattr(self, name)
        if id(w) not in self._float:
            self._float[id(w)] = as_float(w)
        return self._float[id(w)]

    def embed(self, token: int) -> np.ndarray:
        """Row ``token`` of the embedding, float32 ``[dim]`` (the same values as
        ``dense("embedding")[token]``, without dequantising the whole table)."""
        w = self.embedding
        if isinstance(w, BlockAffine):
            return w.rows_slice(token, token + 1).dequantize()[0]
        return np.asarray(w[token], np.float32)


def greedy(logits: np.ndarray) -> int:
    """The next token: the index of the largest logit; ties go to the lowest index."""
    return int(np.argmax(logits))  # np.argmax returns the first of equal maxima


class FloatModel:
    """The float32 reference of the whole model, one token per decode step.

    ``step(token, pos)``: embedding row of ``token``, every layer (:func:`layer_step`, which
    writes position ``pos`` of that layer's KV cache), the final :func:`rms_norm`, then
    ``logits = lm_head @ h``. Returns ``(logits float32 [vocab], greedy(logits))``."""

    def __init__(self, cfg: LlamaConfig, w: ModelWeights, ctx: int):
        w.check(cfg)
        self.cfg, self.w, self.ctx = cfg, w, ctx
        self.caches = [KVCache(cfg, ctx) for _ in w.layers]

    def step(self, token: int, pos: int, trace: dict | None = None) -> tuple[np.ndarray, int]:
        cfg, w = self.cfg, self.w
        if not 0 <= token < cfg.vocab:
            raise ValueError(f"token {token} is outside the vocabulary of {cfg.vocab}")
        x = w.embed(token)
        layers = []
        for i, (layer, cache) in enumerate(zip(w.layers, self.caches, strict=True)):
            x = self.layer_step(i, layer, x, pos, cache)
            layers.append(x)
        h = rms_norm(x, w.final_norm, cfg.eps)
        logits = (w.dense("lm_head") @ h).astype(np.float32)
        if trace is not None:
            trace["h_final"], trace["final_norm"], trace["logits"] = x, h, logits
            trace["layers"] = layers
        return logits, greedy(logits)

    def layer_step(self, i: int, layer, x: np.ndarray, pos: int, cache: KVCache) -> np.ndarray:
        """Decoder layer ``i`` at ``pos`` (:func:`layer_step`)."""
        return layer_step(self.cfg, layer, x, pos, cache)

    def reset(self) -> None:
        """Empty every KV cache."""
        self.caches = [KVCache(self.cfg, self.ctx) for _ in self.w.layers]
