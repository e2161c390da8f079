"""Block-quantised weights as exact integers: llama.cpp Q4_0 / Q4_1 / Q8_0, OCP MXFP4, intN
per channel and per group, and ternary.

Every supported weight format is rewritten, losslessly, as one *block-affine* integer form::

    w[r, j] = (D[r, b] * c[r, j] + M[r, b]) * 2**exp        with b = j // block

``c`` are signed integer codes (``bits`` wide), ``D`` and ``M`` are signed integers, one per row
and block, and ``exp`` is one power of two for the whole tensor. Nothing is rounded: a float16
scale is an integer times ``2**(e - 10)``, so choosing ``exp`` as the smallest such ``e - 10``
over the tensor makes every ``D`` and ``M`` an exact integer.

- **Q4_0**: 18-byte blocks of 32: f16 ``d``, 16 bytes of nibbles ``q`` (0..15).
  ``w = d * (q - 8)``, so ``c = q - 8``, ``D = d``, ``M = 0``.
- **Q4_1**: 20-byte blocks: f16 ``d``, f16 ``m``, 16 bytes of nibbles. ``w = d * q + m``. The
  codes are made signed with ``c = q - 8`` and the offset moves into the min:
  ``M = m + 8 d`` (still exact). 4-bit signed codes suit the sign-plane-first folded engine.
- **Q8_0**: 34-byte blocks: f16 ``d``, 32 int8 ``q``. ``c = q``, ``D = d``, ``M = 0``.
- **MXFP4** (OCP Microscaling Formats v1.0): blocks of 32 E2M1 elements (``±{0, 0.5, 1, 1.5,
  2, 3, 4, 6}``) and one E8M0 scale ``2**s`` each. Doubling the elements makes them integers:
  ``c = 2 * element`` (``±{0, 1, 2, 3, 4, 6, 8, 12}``, 5-bit codes), ``D = 2**(s - s_min)``,
  ``M = 0``, ``exp = s_min - 1`` (``s_min``: the smallest scale of a block that is not all
  zero; all-zero blocks get ``D = 0``). See :func:`mxfp4_elements` for the quantiser and the
  byte layout.
- **intN per channel** (``block == cols``): ``c`` in ``[-2**(N-1), 2**(N-1))`` and an integer
  scale per row (:func:`quantize_per_channel`).
- **intN per group** (``block == 32``): the same codes with one float16 scale per group of 32
  columns, ``M = 0`` (:func:`quantize_per_group`).
- **ternary** (BitNet b1.58 absmean): ``c`` in ``{-1, 0, 1}`` (2-bit codes), one scale for
  the whole tensor (:func:`quantize_ternary`).

In a nibble block, byte ``i`` holds element ``i`` in its low nibble and element ``i + 16`` in
its high nibble (llama.cpp's layout). A product with activations ``a`` (one exponent ``e_a``)
is then ``sum_b D[r,b] * P[r,b] + M[r,b] * S[b]`` with the block partial sums
``P[r,b] = sum_{j in b} c[r,j] a[j]`` and the block activation sums ``S[b] = sum_{j in b} a[j]``
(see :func:`block_matvec`), an exact integer in units of ``2**(exp + e_a)``.

Modules: :mod:`~golden.blockquant.affine` (the type and its exact arithmetic),
:mod:`~golden.blockquant.gguf` (GGUF bytes: decode and encode), :mod:`~golden.blockquant.kquants`,
:mod:`~golden.blockquant.mxfp4`, :mod:`~golden.blockquant.quantizers` (from float weights).
The names in ``__all__`` below are importable from ``golden.blockquant`` itself.
"""

from .affine import (
    BlockAffine,
    block_matvec,
    f16_exact_parts,
    interleave_rows,
    lane_block,
    pad_rows,
    stack,
)
from .gguf import FORMATS, decode, encode
from .kquants import K_FORMATS
from .mxfp4 import (
    E2M1_HALVES,
    decode_mxfp4_hf,
    encode_mxfp4_hf,
    mxfp4_elements,
    quantize_mxfp4,
)
from .quantizers import quantize_per_channel, quantize_per_group, quantize_ternary

__all__ = [
    "FORMATS",
    "K_FORMATS",
    "lane_block",
    "BlockAffine",
    "decode",
    "encode",
    "block_matvec",
    "quantize_per_channel",
    "quantize_per_group",
    "quantize_ternary",
    "quantize_mxfp4",
    "decode_mxfp4_hf",
    "encode_mxfp4_hf",
    "mxfp4_elements",
    "E2M1_HALVES",
    "f16_exact_parts",
    "stack",
    "interleave_rows",
    "pad_rows",
]
