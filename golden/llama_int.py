"""The integer Llama decoder layer: every operation exact on integers, bit for bit what the
hardware computes.

Number formats (all choices live in :class:`IntFormat`; the defaults are below):

- **Residual stream** ``h``: int32, ``res_frac = 12`` fraction bits (Q19.12). SmolLM2 carries
  outliers near 22,500; int32 holds ±524,288 at 2.4e-4 resolution. The residual adds saturate.
- **Vectors between units** (q, k, v, gate, up, attention output): int32 with ``fx_frac = 12``.
- **Matrix-vector inputs** are *block floating point* per token: a signed ``abits``-bit mantissa
  vector ``a`` and one power-of-two exponent ``e`` (value ``a * 2**e``), made by :func:`bfp`.
  A power of two keeps every rescale a shift: no dividers, no per-token multipliers.
- **Weights** are :class:`golden.blockquant.BlockAffine`, exactly as the file holds them
  (Q4_0/Q4_1/Q8_0 block scales and mins, or per-channel intN). The product is the exact
  ``sum_b D*P + M*S`` (:func:`golden.blockquant.block_matvec`) in units of
  ``2**(w.exp + e)``, then one rounding to int32 Q.fx_frac (:func:`rescale`).
- **KV cache** entries are block floating point per (position, KV head): ``kv_bits`` mantissas
  and an exponent.

The whole model (:class:`IntModel`, one token per step):

- **Embedding**: the row of the block-affine embedding, ``v = D*c + M`` (exact, units
  ``2**exp``), rounded once into the residual: ``h = rescale(v, -(exp + res_frac), res_bits)``
  (:func:`embed_int`).
- **Final RMSNorm** is :func:`rms_norm_int` with the final gain, giving ``head_abits``-bit
  mantissas (``abits`` unless set) and one exponent.
- **Logits**: the LM head is a block-affine matvec like every projection; the exact block
  product is rounded once to int32 with ``logit_frac = 12`` fraction bits (value
  ``logits * 2**-logit_frac``). The next token is the index of the largest integer logit, the
  lowest index among equal ones (:func:`argmax_int`).

Rounding is :func:`golden.numerics.round_shift` with ``half_away`` unless a docstring says
``floor``. Float enters in exactly two places, both at generation time, never per token: the
constant tables (:func:`rope_table`, :func:`exp2_table`, :func:`sigmoid_table`,
:func:`norm_gain`) and the layer input (:func:`to_residual`); the whole model takes tokens, so
only the tables remain.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from golden.blockquant import BlockAffine, block_matvec
from golden.llama import LayerWeights, LlamaConfig, ModelWeights
from golden.numerics import round_shift, rounding_bias_terms, saturate

__all__ = [
    "IntFormat",
    "IntLayer",
    "IntCache",
    "bitlen",
    "rescale",
    "bfp",
    "to_residual",
    "from_residual",
    "norm_gain",
    "rope_table",
    "exp2_table",
    "sigmoid_table",
    "rms_norm_int",
    "rope_int",
    "softmax_weights",
    "exp2_neg",
    "silu_int",
    "recip",
    "project",
    "attention_int",
    "swiglu_int",
    "residual_add",
    "int_layer_step",
    "int_layer_forward",
    "embed_int",
    "head_matvec",
    "argmax_int",
    "IntModel",
]

MODE = "half_away"


@dataclass(frozen=True)
class IntFormat:
    """Every width and fraction of the integer layer."""

    abits: int = 16  # matvec activation mantissa bits (12 bits: 4.9 % off on SmolLM2's logits)
    res_frac: int = 12  # residual: int32 Q19.12
    res_bits: int = 32
    fx_frac: int = 12  # vectors between units: int32 Q.12
    fx_bits: int = 32
    norm_bits: int = 16  # RMSNorm squares this many bits of each element
    gain_bits: int = 15  # RMSNorm gain magnitude bits (plus sign)
    isqrt_frac: int = 16  # fraction bits of the square root
    recip_bits: int = 24  # mantissa bits of every reciprocal
    kv_bits: int = 16  # KV cache mantissa bits
    q_bits: int = 16  # query mantissa bits for the scores
    trig_frac: int = 14  # RoPE cos/sin: round(cos * 2**14)
    score_frac: int = 12  # scores in log2 units, Q.12
    score_const_frac: int = 16  # log2(e) / sqrt(head_dim) as round(c * 2**16)
    prob_frac: int = 16  # exp2 results: Q.16, 2**16 == 1.0
    exp_lut_bits: int = 6  # exp2 table: 2**6 + 1 entries, linear interpolation
    sig_range: int = 16  # sigmoid table covers [-16, 16)
    sig_step_bits: int = 4  # ... in steps of 2**-4, linear interpolation
    exp_bits: int = 8  # every block-floating-point exponent is a signed 8-bit field
    head_abits: int | None = None  # LM head input (final RMSNorm) mantissa bits; None: abits
    logit_frac: int = 12  # logits: int32 Q.12
    logit_bits: int = 32

    def __post_init__(self):
        for name in ("abits", "head_abits"):
            v = getattr(self, name)
            if v is not None and not 2 <= v <= 16:
                raise ValueError(f"{name} must be in 2..16, not {v}")
        if self.exp_lut_bits > self.score_frac:
            raise ValueError("exp_lut_bits must not exceed score_frac")


# --- integer primitives ----------------------------------------------------------------------

def bitlen(v) -> int:
    """Bit length of ``max |v|`` (0 for all zeros): the leading-one detector."""
    return int(np.max(np.abs(np.asarray(v, dtype=np.int64)), initial=0)).bit_length()


def rescale(v, shift, bits: int):
    """``v * 2**-shift`` rounded (``half_away``) when ``shift > 0``, exact when ``shift <= 0``,
    then saturated to ``bits``. ``shift`` may be an array (one shift per element)."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim == 0:
        s = int(shift)
        if s > 0:
            return saturate(round_shift(v, min(s, 62), MODE), bits)
        # Any nonzero v shifted left by bits - 1 or more saturates, so capping the shift (and
        # the magnitude) there keeps int64 from overflowing without changing the result.
        k, lim = min(-s, bits - 1), 1 << (bits - 1)
        return saturate(np.clip(v, -lim, lim) << np.int64(k), bits)
    v, shift = np.broadcast_arrays(v, shift)
    out = np.empty(v.shape, np.int64)
    for s in np.unique(shift):
        sel = shift == s
        out[sel] = rescale(v[sel], int(s), bits)
    return out


def bfp(v, bits: int, frac: int) -> tuple[np.ndarray, int]:
    """Block floating point: ``v`` (value ``v * 2**-frac``) as ``bits``-bit mantissas ``a`` and
    one exponent ``e`` with value ``a * 2**e``.

    ``s = max(0, bitlen(max|v|) - (bits - 1))``, ``a = saturate(round_shift(v, s), bits)``,
    ``e = s - frac``. When nothing needs dropping, ``a == v`` exactly."""
    s = max(0, bitlen(v) - (bits - 1))
    return rescale(v, s, bits), s - frac


def recip(x: int, bits: int) -> tuple[int, int]:
    """Reciprocal of a positive integer as ``(r, k)`` with ``r = floor(2**k / x)`` and
    ``k = bitlen(x) - 1 + bits``, so ``2**(bits-1) <= r <= 2**bits``: a ``bits``-bit divider."""
    x = int(x)
    if x <= 0:
        raise ValueError("recip of a non-positive value")
    k = x.bit_length() - 1 + bits
    return (1 << k) // x, k


def to_residual(x, fmt: IntFormat) -> np.ndarray:
    """Float hidden states to the residual format: ``round(x * 2**res_frac)`` (float64
    round-half-even), saturated. The only float-to-integer step on the data path."""
    v = np.round(np.asarray(x, np.float64) * (1 << fmt.res_frac))
    lim = float(1 << (fmt.res_bits - 1))
    return np.clip(v, -lim, lim - 1).astype(np.int64)


def from_residual(h, fmt: IntFormat) -> np.ndarray:
    return np.ldexp(np.asarray(h, np.float64), -fmt.res_frac).astype(np.float32)


# --- constant tables (computed once, at generation time) -------------------------------------

def norm_gain(g: np.ndarray, dim: int, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """RMSNorm weights with ``sqrt(dim)`` folded in: ``G = round(g * sqrt(dim) * 2**gf)``
    (float64, half-even), with ``gf`` the largest that keeps ``|G| < 2**gain_bits``."""
    gs = np.asarray(g, np.float64) * math.sqrt(dim)
    top = float(np.max(np.abs(gs)))
    gf = fmt.gain_bits - 1 - (math.floor(math.log2(top)) if top > 0 else 0)
    gf = min(gf, 40)
    return np.round(np.ldexp(gs, gf)).astype(np.int64), gf


def rope_table(head_dim: int, theta: float, ctx: int, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """``C, S [ctx, head_dim/2]``: ``round(cos(p * theta**(-2i/hd)) * 2**frac)`` (float64)."""
    half = head_dim // 2
    inv_freq = np.float64(theta) ** (-np.arange(half, dtype=np.float64) * 2 / head_dim)
    ang = np.arange(ctx, dtype=np.float64)[:, None] * inv_freq[None, :]
    return (np.round(np.cos(ang) * (1 << frac)).astype(np.int64),
            np.round(np.sin(ang) * (1 << frac)).astype(np.int64))


def exp2_table(fmt: IntFormat) -> np.ndarray:
    """``E[i] = round(2**(-i / 2**exp_lut_bits) * 2**prob_frac)`` for ``i = 0..2**bits``."""
    n = 1 << fmt.exp_lut_bits
    return np.round(np.exp2(-np.arange(n + 1) / n) * (1 << fmt.prob_frac)).astype(np.int64)


def sigmoid_table(fmt: IntFormat) -> np.ndarray:
    """``T[i] = round(sigmoid(-range + i * 2**-step_bits) * 2**prob_frac)``,
    ``i = 0..2 * range * 2**step_bits``."""
    n = 2 * fmt.sig_range << fmt.sig_step_bits
    x = -fmt.sig_range + np.arange(n + 1, dtype=np.float64) / (1 << fmt.sig_step_bits)
    return np.round((1 << fmt.prob_frac) / (1 + np.exp(-x))).astype(np.int64)


def _interp(table: np.ndarray, idx: np.ndarray, rem: np.ndarray, rem_bits: int) -> np.ndarray:
    """``T[idx] + round((T[idx+1] - T[idx]) * rem / 2**rem_bits)``: linear interpolation."""
    lo = table[idx]
    return lo + round_shift((table[idx + 1] - lo) * rem, rem_bits, MODE)


# --- units -----------------------------------------------------------------------------------

def rms_norm_int(h, gain: np.ndarray, gf: int, eps_term: int, fmt: IntFormat):
    """RMSNorm of the residual ``h`` into matvec activations ``(a, e)``.

    1. ``s = max(0, bitlen(max|h|) - (norm_bits - 1))``; ``x = h >> s`` (floor).
    2. ``T = sum(x*x) + (eps_term >> 2s)`` with ``eps_term = round(dim * eps * 4**res_frac)``.
    3. ``r = isqrt(T << 2*isqrt_frac)`` (floor): ``sqrt(T)`` with ``isqrt_frac`` fraction bits.
    4. ``(q, k) = recip(r, recip_bits)``.
    5. ``y = x * G * q``; its value is ``y * 2**(isqrt_frac - gf - k)`` (``G`` has sqrt(dim)
       folded in, see :func:`norm_gain`), and :func:`bfp` makes it ``abits`` wide.
    """
    h = np.asarray(h, np.int64)
    s = max(0, bitlen(h) - (fmt.norm_bits - 1))
    x = h >> np.int64(s)
    t = int(np.dot(x, x)) + (eps_term >> (2 * s))
    r = math.isqrt(max(t, 1) << (2 * fmt.isqrt_frac))
    q, k = recip(r, fmt.recip_bits)
    y = x * gain * np.int64(q)
    return bfp(y, fmt.abits, k + gf - fmt.isqrt_frac)


def rope_int(v, cos: np.ndarray, sin: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """Half rotation on ``v [heads, hd]`` (int32 Q.fx): ``(a*C - b*S) >> trig_frac`` and
    ``(b*C + a*S) >> trig_frac``, rounded, saturated to fx_bits."""
    half = v.shape[-1] // 2
    a, b = v[..., :half], v[..., half:]
    lo = rescale(a * cos - b * sin, fmt.trig_frac, fmt.fx_bits)
    hi = rescale(b * cos + a * sin, fmt.trig_frac, fmt.fx_bits)
    return np.concatenate([lo, hi], axis=-1)


def exp2_neg(d, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``2**(-d / 2**score_frac)`` in Q.prob_frac for ``d >= 0``: integer part as a right
    shift (floor), fraction by the interpolated :func:`exp2_table`."""
    d = np.asarray(d, np.int64)
    ip = d >> np.int64(fmt.score_frac)
    fp = d & np.int64((1 << fmt.score_frac) - 1)
    rb = fmt.score_frac - fmt.exp_lut_bits
    val = _interp(table, fp >> np.int64(rb), fp & np.int64((1 << rb) - 1), rb)
    return np.where(ip >= 62, 0, val >> np.minimum(ip, 62))


def softmax_weights(scores, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """Unnormalised softmax in log2 units: ``w = exp2_neg(max(s) - s)``; the largest is
    ``2**prob_frac``. Normalisation happens after the weighted sum (one divide per head)."""
    scores = np.asarray(scores, np.int64)
    return exp2_neg(scores.max(axis=-1, keepdims=True) - scores, table, fmt)


def silu_int(g, table: np.ndarray, fmt: IntFormat) -> np.ndarray:
    """``g * sigmoid(g)`` for ``g`` in Q.fx, returned in Q.(fx + prob_frac) (exact product).

    The sigmoid is the interpolated :func:`sigmoid_table` on ``[-range, range)``, 0 below and
    ``2**prob_frac`` above."""
    g = np.asarray(g, np.int64)
    sb = fmt.fx_frac - fmt.sig_step_bits
    t = g + np.int64(fmt.sig_range << fmt.fx_frac)
    n = 2 * fmt.sig_range << fmt.sig_step_bits
    inside = (t >= 0) & (t < np.int64(n << sb))
    tc = np.clip(t, 0, (n << sb) - 1)
    sig = _interp(table, tc >> np.int64(sb), tc & np.int64((1 << sb) - 1), sb)
    sig = np.where(inside, sig, np.where(t < 0, 0, np.int64(1 << fmt.prob_frac)))
    return g * sig


# --- the layer -------------------------------------------------------------------------------

@dataclass(eq=False)
class IntLayer:
    """A layer's integer constants, derived once from its weights."""

    cfg: LlamaConfig
    w: LayerWeights
    ctx: int
    fmt: IntFormat = field(default_factory=IntFormat)

    def __post_init__(self):
        cfg, fmt = self.cfg, self.fmt
        self.g_attn, self.gf_attn = norm_gain(self.w.attn_norm, cfg.dim, fmt)
        self.g_ffn, self.gf_ffn = norm_gain(self.w.ffn_norm, cfg.dim, fmt)
        self.eps_term = int(round(cfg.dim * cfg.eps * 4.0 ** fmt.res_frac))
        self.cos, self.sin = rope_table(cfg.head_dim, cfg.theta, self.ctx, fmt.trig_frac)
        self.exp_table = exp2_table(fmt)
        self.sig_table = sigmoid_table(fmt)
        self.score_const = round(math.log2(math.e) / math.sqrt(cfg.head_dim)
                                 * (1 << fmt.score_const_frac))
        for name in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
            w = getattr(self.w, name)
            if not isinstance(w, BlockAffine):
                raise ValueError(f"integer layer needs quantised weights; {name} is float")
            _check_acc_bound(w, fmt.abits, name)

    def matvec(self, name: str, a: np.ndarray, e: int) -> np.ndarray:
        """Projection ``name`` of activations ``(a, e)`` as int32 Q.fx (:func:`project`)."""
        return project(getattr(self.w, name), a, e, self.fmt)


def project(w: BlockAffine, a, e: int, fmt: IntFormat) -> np.ndarray:
    """``W @ (a * 2**e)`` as int32 Q.fx: the exact block product
    (:func:`golden.blockquant.block_matvec`, units ``2**(w.exp + e)``), rescaled once."""
    return rescale(block_matvec(w, a), -(w.exp + e) - fmt.fx_frac, fmt.fx_bits)


def _check_acc_bound(w: BlockAffine, abits: int, name: str) -> None:
    amax = 1 << (abits - 1)
    per_block = (np.abs(w.scale) * (w.block * (1 << (w.bits - 1))) * amax
                 + np.abs(w.offset) * (w.block * amax))
    if int(per_block.sum(axis=1).max()) >= 1 << 62:
        raise ValueError(f"{name}: accumulator bound exceeds 62 bits")


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
        att[i] = _mul_rescale(terms.sum(axis=0), rq, rk - big - fmt.fx_frac, fmt.fx_bits)
        t["scores"].append(scores)
        t["probs"].append(w)
    return att


def swiglu_int(gate, up, sig_table: np.ndarray, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """``silu(gate) * up`` as matvec activations ``(a, e)``: ``s = rescale(silu_int(gate),
    prob_frac)`` (Q.fx), then the exact product ``s * up`` (Q.2fx) through :func:`bfp`."""
    s = rescale(silu_int(gate, sig_table, fmt), fmt.prob_frac, fmt.fx_bits)
    return bfp(s * np.asarray(up, np.int64), fmt.abits, 2 * fmt.fx_frac)


def residual_add(h, y, fmt: IntFormat) -> np.ndarray:
    """``h + y``: ``y`` (Q.fx) rounded to Q.res_frac, the sum saturated to res_bits."""
    return saturate(np.asarray(h, np.int64) + rescale(y, fmt.fx_frac - fmt.res_frac,
                                                      fmt.res_bits), fmt.res_bits)


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


def _mul_rescale(v: np.ndarray, m: int, shift: int, bits: int) -> np.ndarray:
    """``rescale(v * m, shift, bits)`` with the product in exact Python integers (it may
    exceed 64 bits before the shift)."""
    out = []
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    const, per_neg, per_bit = rounding_bias_terms(max(shift, 0), MODE)
    for x in v.tolist():  # one head of elements per call: exact Python integers
        p = x * m
        if shift > 0:
            p = (p + const + per_neg * (p < 0) + per_bit * ((p >> shift) & 1)) >> shift
        else:
            p <<= -shift
        out.append(min(max(p, lo), hi))
    return np.array(out, np.int64)


def int_layer_forward(L: IntLayer, xs: np.ndarray) -> np.ndarray:
    """Float ``xs [T, dim]`` through the integer layer (positions ``0..T-1``); returns the
    residual int64 ``[T, dim]``."""
    cache = IntCache(L.cfg, L.ctx)
    h = to_residual(xs, L.fmt)
    return np.stack([int_layer_step(L, h[t], t, cache) for t in range(len(h))])


# --- the whole model -------------------------------------------------------------------------

def embed_int(emb: BlockAffine, token: int, fmt: IntFormat) -> np.ndarray:
    """Row ``token`` of the embedding as the residual (int64 ``[dim]``, Q.res_frac): the exact
    block-affine value ``v = D*c + M`` (units ``2**emb.exp``) through
    ``rescale(v, -(emb.exp + res_frac), res_bits)``: one rounding (``half_away``), saturated.
    The same as :func:`to_residual` of the exactly dequantised row except that ties round
    away from zero instead of to even."""
    row = emb.rows_slice(token, token + 1)
    c = row.codes.astype(np.int64).reshape(row.nblocks, row.block)
    v = (c * row.scale[0][:, None] + row.offset[0][:, None]).reshape(-1)
    return rescale(v, -(emb.exp + fmt.res_frac), fmt.res_bits)


def argmax_int(logits) -> int:
    """Index of the largest integer logit; equal maxima go to the lowest index."""
    return int(np.argmax(np.asarray(logits)))  # np.argmax returns the first maximum


class _ExactF32:
    """:func:`golden.blockquant.block_matvec` for a large constant matrix, fast and still exact.

    The block partial sums ``P[r, b] = sum_j c[r, b, j] * a[b, j]`` are integers with
    ``|P| <= block * 2**(bits-1) * 2**(abits-1)``; when that bound is at most ``2**24`` every
    product and every partial sum, in any order, is an integer float32 holds exactly, so one
    float32 BLAS product per block computes ``P`` exactly. ``D*P + M*S`` stays int64. Keeps a
    float32 copy of the codes (``4 * rows * cols`` bytes)."""

    def __init__(self, w: BlockAffine, abits: int):
        bound = w.block << (w.bits - 1 + abits - 1)
        if bound > 1 << 24:
            raise ValueError(f"float32 block sums are exact up to 2**24, not {bound}")
        rows, cols = w.shape
        self.w = w
        self.c = np.ascontiguousarray(
            w.codes.reshape(rows, w.nblocks, w.block).transpose(1, 0, 2), dtype=np.float32)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        w = self.w
        ab = np.asarray(a, np.int64).reshape(w.nblocks, w.block)
        p = np.matmul(self.c, ab.astype(np.float32)[:, :, None])[:, :, 0]  # [nblocks, rows]
        p = p.T.astype(np.int64)
        return (p * w.scale).sum(axis=1) + (w.offset * ab.sum(axis=1)).sum(axis=1)


def head_matvec(w: BlockAffine, a, e: int, fmt: IntFormat, mv=None) -> np.ndarray:
    """Logits ``W @ (a * 2**e)`` as int Q.logit_frac: the exact block product (units
    ``2**(w.exp + e)``), ``rescale(acc, -(w.exp + e) - logit_frac, logit_bits)``. ``mv``, if
    given, computes the exact block product (``_ExactF32``); the default is
    :func:`golden.blockquant.block_matvec`."""
    acc = mv(a) if mv is not None else block_matvec(w, a)
    return rescale(acc, -(w.exp + e) - fmt.logit_frac, fmt.logit_bits)


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
        _check_acc_bound(w.lm_head, self.head_abits, "lm_head")
        self.layers = [IntLayer(cfg, lw, ctx, fmt) for lw in w.layers]
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

    def reset(self) -> None:
        self.caches = [IntCache(self.cfg, self.ctx) for _ in self.layers]

    def embed(self, token: int) -> np.ndarray:
        return embed_int(self.w.embedding, token, self.fmt)

    def head(self, h) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
        """Final norm and LM head of the residual ``h``: ``(logits, (a, e))``."""
        a, e = rms_norm_int(h, self.g_final, self.gf_final, self.eps_term, self._head_fmt)
        if self._head_mv is None:
            try:
                self._head_mv = _ExactF32(self.w.lm_head, self.head_abits)
            except ValueError:  # wide codes or activations: the plain int64 product
                self._head_mv = lambda x: block_matvec(self.w.lm_head, x)
        return head_matvec(self.w.lm_head, a, e, self.fmt, self._head_mv), (a, e)

    def step(self, token: int, pos: int, trace: dict | None = None) -> tuple[np.ndarray, int]:
        if not 0 <= token < self.cfg.vocab:
            raise ValueError(f"token {token} is outside the vocabulary of {self.cfg.vocab}")
        h = h0 = self.embed(token)
        for L, cache in zip(self.layers, self.caches, strict=True):
            h = int_layer_step(L, h, pos, cache)
        logits, act = self.head(h)
        if trace is not None:
            trace.update(h_embed=h0, h_final=h, final_norm=act, logits=logits)
        return logits, argmax_int(logits)
