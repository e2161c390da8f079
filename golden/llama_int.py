"""The integer Llama decoder layer and model: every operation exact on integers, bit for bit
what the hardware computes, built from the units, tables and number formats of
:mod:`golden.integer` (which describes the formats and the rounding).

The whole model (:class:`IntModel`, one token per step):

- **Embedding**: the row of the block-affine embedding, ``v = D*c + M`` (exact, units
  ``2**exp``), rounded once into the residual: ``h = rescale(v, -(exp + res_frac), res_bits)``
  (:func:`golden.integer.embed_int`).
- **Layers**: :func:`int_layer_step` each, with their own KV caches.
- **Final RMSNorm** is :func:`golden.integer.rms_norm_int` with the final gain, giving
  ``head_abits``-bit mantissas (``abits`` unless set) and one exponent.
- **Logits**: the LM head is a block-affine matvec like every projection; the exact block
  product is rounded once to int32 with ``logit_frac = 12`` fraction bits (value
  ``logits * 2**-logit_frac``). The next token is the index of the largest integer logit, the
  lowest index among equal ones (:func:`golden.integer.argmax_int`).
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from golden.blockquant import BlockAffine, block_matvec
from golden.integer import (
    ExactF32,
    IntCache,
    IntFormat,
    argmax_int,
    attention_int,
    bfp,
    embed_int,
    exp2_table,
    head_matvec,
    norm_gain,
    project,
    residual_add,
    rms_norm_int,
    rope_int,
    rope_table,
    sigmoid_table,
    swiglu_int,
    to_residual,
)
from golden.integer.units import check_acc_bound
from golden.llama import PROJECTIONS, LayerWeights, LlamaConfig, ModelWeights

__all__ = ["shape_tables", "LayerConstants", "IntLayer", "int_layer_step", "int_layer_forward",
           "IntModel"]


def shape_tables(cfg, fmt: IntFormat) -> dict:
    """The constants of a layer that its weights do not change: the epsilon term, the exp2
    and sigmoid tables and the score constant."""
    return {"eps_term": int(round(cfg.dim * cfg.eps * 4.0 ** fmt.res_frac)),
            "exp_table": exp2_table(fmt), "sig_table": sigmoid_table(fmt),
            "score_const": round(math.log2(math.e) / math.sqrt(cfg.head_dim)
                                 * (1 << fmt.score_const_frac))}


@dataclass(eq=False)
class LayerConstants:
    """What every integer decoder layer derives once from its weights: the norm gains, the
    epsilon term, the exp2 and sigmoid tables and the score constant. ``check(named)`` makes
    sure the projections are quantised and their accumulators fit."""

    cfg: LlamaConfig
    w: LayerWeights
    ctx: int
    fmt: IntFormat = field(default_factory=IntFormat)

    def __post_init__(self):
        cfg, fmt = self.cfg, self.fmt
        self.g_attn, self.gf_attn = norm_gain(self.w.attn_norm, cfg.dim, fmt)
        self.g_ffn, self.gf_ffn = norm_gain(self.w.ffn_norm, cfg.dim, fmt)
        self.__dict__.update(shape_tables(cfg, fmt))

    @property
    def slots(self) -> int:
        """KV-cache positions the layer keeps (:class:`golden.integer.IntCache`)."""
        return self.ctx

    def check(self, named) -> None:
        for name, w in named:
            if not isinstance(w, BlockAffine):
                raise ValueError(f"integer layer needs quantised weights; {name} is float")
            check_acc_bound(w, self.fmt.abits, name)


@dataclass(eq=False)
class IntLayer(LayerConstants):
    """A Llama layer's integer constants, derived once from its weights."""

    def __post_init__(self):
        super().__post_init__()
        cfg = self.cfg
        self.cos, self.sin = rope_table(cfg.head_dim, cfg.theta, self.ctx, self.fmt.trig_frac)
        self.check((name, getattr(self.w, name)) for name in PROJECTIONS)

    def matvec(self, name: str, a: np.ndarray, e: int) -> np.ndarray:
        """Projection ``name`` of activations ``(a, e)`` as int32 Q.fx
        (:func:`golden.integer.project`)."""
        return project(getattr(self.w, name), a, e, self.fmt)

    def step(self, h, pos: int, cache: IntCache) -> np.ndarray:
        """One decode step (:func:`int_layer_step`)."""
        return int_layer_step(self, h, pos, cache)


def int_layer_step(L: IntLayer, h, pos: int, cache: IntCache, trace: dict | None = None):
    """One decode step on the residual ``h`` (int64 ``[dim]``, Q.res_frac); returns the new
    residual. ``trace``, if given, receives every intermediate by name."""
    cfg, fmt = L.cfg, L.fmt
    if not 0 <= pos < cache.ctx:
        raise ValueError(f"position {pos} is outside the context of {cache.ctx}")
    t = trace if trace is not None else {}
    nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    h = np.asarray(h, np.int64)

    # Attention.
    a, e = rms_norm_int(h, L.g_attn, L.gf_attn, L.eps_term, fmt)
    t["attn_norm"] = (a, e)
    q = L.matvec("wq", a, e).reshape(nh, hd)
    k = L.matvec("wk", a, e).reshape(nkv, hd)
    v = L.matvec("wv", a, e).reshape(nkv, hd)
    t["q"], t["k"], t["v"] = q, k, v
    q = rope_int(q, L.cos[pos], L.sin[pos], fmt)
    k = rope_int(k, L.cos[pos], L.sin[pos], fmt)
    t["q_rope"], t["k_rope"] = q, k
    att = attention_int(q, k, v, pos, cache, L.score_const, L.exp_table, fmt, cfg.group, t)
    t["att"] = att
    a, e = bfp(att.reshape(-1), fmt.abits, fmt.fx_frac)
    t["att_act"] = (a, e)
    o = L.matvec("wo", a, e)
    h1 = residual_add(h, o, fmt)
    t["o"], t["h1"] = o, h1

    # MLP.
    a, e = rms_norm_int(h1, L.g_ffn, L.gf_ffn, L.eps_term, fmt)
    t["ffn_norm"] = (a, e)
    gate = L.matvec("w_gate", a, e)
    up = L.matvec("w_up", a, e)
    t["gate"], t["up"] = gate, up
    a, e = swiglu_int(gate, up, L.sig_table, fmt)
    t["mlp_act"] = (a, e)
    down = L.matvec("w_down", a, e)
    out = residual_add(h1, down, fmt)
    t["down"], t["out"] = down, out
    return out


def int_layer_forward(L: IntLayer, xs: np.ndarray) -> np.ndarray:
    """Float ``xs [T, dim]`` through the integer layer (positions ``0..T-1``); returns the
    residual int64 ``[T, dim]``."""
    cache = IntCache(L.cfg, L.ctx)
    h = to_residual(xs, L.fmt)
    return np.stack([int_layer_step(L, h[t], t, cache) for t in range(len(h))])


class IntModel:
    """The integer model of the whole network, one token per decode step.

    ``step(token, pos)`` is, exactly:

    1. ``h = embed_int(embedding, token)``: int64 ``[dim]``, Q.res_frac (int32 range);
    2. every layer: ``h = int_layer_step(layer, h, pos, cache)`` (each layer writes position
       ``pos`` of its own :class:`IntCache` and attends over ``0..pos``);
    3. ``(a, e) = rms_norm_int(h, G, gf, eps_term)`` with the final norm's gain
       (:func:`norm_gain`) and :attr:`head_abits`-bit mantissas (``fmt.head_abits``, else
       ``fmt.abits``);
    4. ``logits = head_matvec(lm_head, a, e)``: int64 ``[vocab]`` in the int32 range, value
       ``logits * 2**-logit_frac`` (:attr:`logit_frac`, :meth:`logits_float`);
    5. ``next = argmax_int(logits)`` (lowest index among equal maxima).

    Returns ``(logits, next)``. ``trace``, if given, receives ``h_embed`` (1), ``h_final``
    (the residual entering the final norm), ``final_norm`` (``(a, e)`` of 3) and ``logits``.
    Positions must be fed in order ``0, 1, 2, ...`` for a meaningful result, as in the
    hardware; :meth:`reset` clears the KV caches.
    """

    def __init__(self, cfg: LlamaConfig, w: ModelWeights, ctx: int,
                 fmt: IntFormat | None = None):
        fmt = fmt or IntFormat()
        w.check(cfg)
        self.cfg, self.w, self.ctx, self.fmt = cfg, w, ctx, fmt
        for name in ("embedding", "lm_head"):
            if not isinstance(getattr(w, name), BlockAffine):
                raise ValueError(f"integer model needs quantised weights; {name} is float")
        self.head_abits = fmt.head_abits or fmt.abits
        check_acc_bound(w.lm_head, self.head_abits, "lm_head")
        self.layers = [self.make_layer(i, lw) for i, lw in enumerate(w.layers)]
        self.g_final, self.gf_final = norm_gain(w.final_norm, cfg.dim, fmt)
        self.eps_term = int(round(cfg.dim * cfg.eps * 4.0 ** fmt.res_frac))
        self._head_fmt = replace(fmt, abits=self.head_abits)
        self._head_mv = None
        self.reset()

    @property
    def logit_frac(self) -> int:
        """Fraction bits of the integer logits: their value is ``logits * 2**-logit_frac``."""
        return self.fmt.logit_frac

    def logits_float(self, logits) -> np.ndarray:
        """Integer logits as float32 values (exact: ``ldexp(logits, -logit_frac)``)."""
        return np.ldexp(np.asarray(logits, np.float64), -self.fmt.logit_frac).astype(np.float32)

    def make_layer(self, i: int, lw):
        """Layer ``i``'s integer constants (:class:`IntLayer`)."""
        return IntLayer(self.cfg, lw, self.ctx, self.fmt)

    def reset(self) -> None:
        """Empty KV caches, one per layer, of each layer's :attr:`LayerConstants.slots`."""
        self.caches = [IntCache(self.cfg, L.slots) for L in self.layers]

    def embed(self, token: int) -> np.ndarray:
        return embed_int(self.w.embedding, token, self.fmt)

    def head(self, h) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
        """Final norm and LM head of the residual ``h``: ``(logits, (a, e))``."""
        a, e = rms_norm_int(h, self.g_final, self.gf_final, self.eps_term, self._head_fmt)
        if self._head_mv is None:
            try:
                self._head_mv = ExactF32(self.w.lm_head, self.head_abits)
            except ValueError:  # wide codes or activations: the plain int64 product
                self._head_mv = lambda x: block_matvec(self.w.lm_head, x)
        return head_matvec(self.w.lm_head, a, e, self.fmt, self._head_mv), (a, e)

    def step(self, token: int, pos: int, trace: dict | None = None) -> tuple[np.ndarray, int]:
        if not 0 <= token < self.cfg.vocab:
            raise ValueError(f"token {token} is outside the vocabulary of {self.cfg.vocab}")
        h = h0 = self.embed(token)
        for L, cache in zip(self.layers, self.caches, strict=True):
            h = L.step(h, pos, cache)
        logits, act = self.head(h)
        if trace is not None:
            trace.update(h_embed=h0, h_final=h, final_norm=act, logits=logits)
        return logits, argmax_int(logits)
