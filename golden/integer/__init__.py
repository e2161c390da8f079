"""The integer building blocks of the decoder models: every operation exact on integers, bit
for bit what the hardware computes. :mod:`golden.llama_int` builds the Llama layer and model
from them.

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

Rounding is :func:`golden.numerics.round_shift` with ``half_away`` (:data:`MODE`) unless a
docstring says ``floor``. Float enters in exactly two places, both at generation time, never
per token: the constant tables (:func:`rope_table`, :func:`exp2_table`, :func:`sigmoid_table`,
:func:`norm_gain`) and the layer input (:func:`to_residual`); a whole model takes tokens, so
only the tables remain.

Modules: :mod:`~golden.integer.format`, :mod:`~golden.integer.arith` (shifts, block floating
point, reciprocals), :mod:`~golden.integer.tables`, :mod:`~golden.integer.units` (norm, RoPE,
softmax weights, SwiGLU, residual add, projections), :mod:`~golden.integer.attention` and
:mod:`~golden.integer.vocab` (embedding, LM head, argmax). The names in ``__all__`` below are
importable from ``golden.integer`` itself.
"""

from .arith import bfp, bitlen, from_residual, recip, rescale, to_fixed, to_residual
from .attention import IntCache, attention_int
from .format import MODE, IntFormat
from .tables import exp2_table, norm_gain, rope_table, sigmoid_table
from .units import (
    exp2_neg,
    project,
    residual_add,
    rms_norm_int,
    rope_int,
    sigmoid_int,
    silu_int,
    softmax_weights,
    swiglu_int,
)
from .vocab import ExactF32, argmax_int, embed_int, head_matvec

__all__ = [
    "MODE",
    "IntFormat",
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
    "sigmoid_int",
    "to_fixed",
    "recip",
    "project",
    "attention_int",
    "swiglu_int",
    "residual_add",
    "embed_int",
    "head_matvec",
    "ExactF32",
    "argmax_int",
]
