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
"""

import math
import weakref
from dataclasses import dataclass

import numpy as np

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
    "mxfp4_elements",
    "E2M1_HALVES",
    "f16_exact_parts",
    "stack",
    "interleave_rows",
]

#: Supported GGUF tensor formats: name -> (block elements, bytes per block, code bits).
FORMATS = {
    "Q4_0": (32, 18, 4),
    "Q4_1": (32, 20, 4),
    "Q8_0": (32, 34, 8),
    "MXFP4": (32, 17, 5),
}

#: llama.cpp k-quants: name -> (super-block elements, bytes per super-block, code bits, block
#: of the block-affine form). Decoded exactly (:func:`decode`); hardwire does not encode them.
K_FORMATS = {
    "Q4_K": (256, 144, 4, 32),
    "Q6_K": (256, 210, 6, 16),
}

#: E2M1 magnitudes in halves (``2 * |element|``) by the low three bits of the nibble; bit 3 is
#: the sign. OCP MX v1.0, table "FP4 (E2M1)": exponent bias 1, one mantissa bit, no inf/NaN.
E2M1_HALVES = np.array([0, 1, 2, 3, 4, 6, 8, 12], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class BlockAffine:
    """``w = (D * c + M) * 2**exp`` per block of ``block`` columns (see the module doc)."""

    codes: np.ndarray  # int8 [rows, cols]
    scale: np.ndarray  # int64 [rows, nblocks]  (D)
    offset: np.ndarray  # int64 [rows, nblocks]  (M)
    exp: int
    block: int
    bits: int
    source: str  # "Q4_0" | "Q4_1" | "Q8_0" | "MXFP4" | "int<N>" | "int<N>g" | "ternary"

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    @property
    def nblocks(self) -> int:
        return self.codes.shape[1] // self.block

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        """The weights as ``dtype``: the exact value, rounded once (exact in float64 first, as
        long as ``D * c + M`` stays below ``2**53``)."""
        rows, cols = self.codes.shape
        c = self.codes.astype(np.int64).reshape(rows, self.nblocks, self.block)
        v = c * self.scale[:, :, None] + self.offset[:, :, None]
        return np.ldexp(v.astype(np.float64), self.exp).reshape(rows, cols).astype(dtype)

    def permute_rows(self, order: np.ndarray) -> "BlockAffine":
        """The same tensor with its rows reordered (``new[i] = old[order[i]]``)."""
        return BlockAffine(self.codes[order], self.scale[order], self.offset[order], self.exp,
                           self.block, self.bits, self.source)

    def reblock(self, block: int) -> "BlockAffine":
        """The same tensor with blocks of ``block`` columns (``block`` divides the current
        block): each block's ``D`` and ``M`` repeat over its sub-blocks. Exact; per-channel
        tensors (one block per row) become lane-sized blocks this way."""
        if block == self.block:
            return self
        if self.block % block:
            raise ValueError(f"block {block} does not divide the tensor's block {self.block}")
        k = self.block // block
        return BlockAffine(self.codes, np.repeat(self.scale, k, axis=1),
                           np.repeat(self.offset, k, axis=1), self.exp, block, self.bits,
                           self.source)

    def rows_slice(self, lo: int, hi: int) -> "BlockAffine":
        return BlockAffine(self.codes[lo:hi], self.scale[lo:hi], self.offset[lo:hi], self.exp,
                           self.block, self.bits, self.source)


def lane_block(*tensors: "BlockAffine") -> int:
    """Columns per lane ROM word: the largest block that divides 32 and every tensor's
    block, so that each word has one ``D`` and ``M`` (:meth:`BlockAffine.reblock`)."""
    return math.gcd(32, *(t.block for t in tensors))


def f16_exact_parts(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float16 values as exact ``(mantissa, exponent)`` int64 pairs: ``h = m * 2**e``.

    Normal numbers have an 11-bit mantissa and ``e = E - 25``; subnormals ``e = -24``. Infinity
    and NaN raise ``ValueError``.
    """
    bits = np.asarray(h, dtype=np.float16).view(np.uint16).astype(np.int64)
    sign = np.where(bits >> 15, -1, 1)
    e_field = (bits >> 10) & 0x1F
    frac = bits & 0x3FF
    if np.any(e_field == 0x1F):
        raise ValueError("a float16 scale is infinite or NaN")
    mant = np.where(e_field == 0, frac, frac | 0x400)
    exp = np.where(e_field == 0, -24, e_field - 25)
    return sign * mant, exp


def _common_exponent(*parts) -> int:
    """Smallest exponent over all nonzero mantissas (0 if every value is zero)."""
    lows = [e[m != 0].min() for m, e in parts if np.any(m != 0)]
    return int(min(lows)) if lows else 0


def _to_common(m: np.ndarray, e: np.ndarray, exp: int) -> np.ndarray:
    shift = np.where(m != 0, e - exp, 0)
    if np.any(shift > 40):
        raise ValueError("float16 scales span too many octaves for one fixed-point exponent")
    return m << shift


def _raw_blocks(fmt: str, raw: np.ndarray, rows: int, cols: int, block: int,
                nbytes: int) -> np.ndarray:
    """Raw bytes as ``[rows, cols / block, nbytes]``, checking the sizes."""
    if cols % block:
        raise ValueError(f"{fmt} tensor has {cols} columns, not a multiple of {block}")
    nb = cols // block
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != rows * nb * nbytes:
        raise ValueError(f"{fmt} tensor of {rows}x{cols} needs {rows * nb * nbytes} bytes, "
                         f"has {raw.size}")
    return raw.reshape(rows, nb, nbytes)


def decode(fmt: str, raw: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """Decode raw GGUF bytes (``uint8``, ``rows * cols / block * bytes`` of them) exactly."""
    if fmt in K_FORMATS:
        return _decode_k(fmt, raw, rows, cols)
    if fmt not in FORMATS:
        raise ValueError(f"unsupported tensor type {fmt}; supported: F32, F16, "
                         + ", ".join([*FORMATS, *K_FORMATS]))
    block, nbytes, bits = FORMATS[fmt]
    blocks = _raw_blocks(fmt, raw, rows, cols, block, nbytes)
    if fmt == "MXFP4":
        return _decode_mxfp4(blocks[:, :, 0], blocks[:, :, 1:])
    d = blocks[:, :, 0:2].copy().view(np.float16)[:, :, 0]
    dm, de = f16_exact_parts(d)
    if fmt == "Q8_0":
        codes = blocks[:, :, 2:].copy().view(np.int8).reshape(rows, cols)
        exp = _common_exponent((dm, de))
        scale = _to_common(dm, de, exp)
        offset = np.zeros_like(scale)
    else:
        qstart = 2 if fmt == "Q4_0" else 4
        q = blocks[:, :, qstart:]
        nib = np.concatenate([q & 0x0F, q >> 4], axis=2)  # elements 0..15, then 16..31
        codes = (nib.astype(np.int8) - 8).reshape(rows, cols)
        if fmt == "Q4_0":
            exp = _common_exponent((dm, de))
            scale = _to_common(dm, de, exp)
            offset = np.zeros_like(scale)
        else:
            m = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0]
            mm, me = f16_exact_parts(m)
            exp = _common_exponent((dm, de), (mm, me))
            scale = _to_common(dm, de, exp)
            offset = _to_common(mm, me, exp) + 8 * scale
    return BlockAffine(codes, scale, offset, exp, block, bits, fmt)


def _decode_k(fmt: str, raw: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """llama.cpp's k-quants (``ggml-common.h``, ``dequantize_row_q4_K`` / ``_q6_K``), exactly.

    - **Q4_K**: 144-byte super-blocks of 256: f16 ``d``, f16 ``dmin``, 12 bytes of 6-bit
      scales ``sc`` and mins ``m`` for 8 blocks of 32 (``get_scale_min_k4``), then 128 bytes of
      nibbles: 32 bytes per pair of blocks, the first block in the low nibbles.
      ``w = d*sc * q - dmin*m`` with ``q`` in 0..15, so ``c = q - 8``, ``D = d*sc``,
      ``M = 8*D - dmin*m``.
    - **Q6_K**: 210-byte super-blocks: 128 bytes of low nibbles ``ql``, 64 bytes of high bit
      pairs ``qh``, 16 int8 scales (one per block of 16), f16 ``d``.
      ``w = d*sc * (q - 32)``: ``c = q - 32`` (6-bit signed), ``D = d*sc``, ``M = 0``.
    """
    sblock, nbytes, bits, block = K_FORMATS[fmt]
    b = _raw_blocks(fmt, raw, rows, cols, sblock, nbytes)
    ns = b.shape[1]
    if fmt == "Q4_K":
        dm, de = f16_exact_parts(b[:, :, 0:2].copy().view(np.float16)[:, :, 0])
        mm, me = f16_exact_parts(b[:, :, 2:4].copy().view(np.float16)[:, :, 0])
        s = b[:, :, 4:16].astype(np.int64)
        lo, hi, mix = s[:, :, 0:4], s[:, :, 4:8], s[:, :, 8:12]
        sc = np.concatenate([lo & 63, (mix & 0xF) | ((lo >> 6) << 4)], axis=2)  # [rows, ns, 8]
        mn = np.concatenate([hi & 63, (mix >> 4) | ((hi >> 6) << 4)], axis=2)
        q = b[:, :, 16:].reshape(rows, ns, 4, 32)
        nib = np.stack([q & 0x0F, q >> 4], axis=3)  # [rows, ns, 4 pairs, 2, 32]
        codes = (nib.astype(np.int8) - 8).reshape(rows, cols)
        d_m, m_m = dm[:, :, None] * sc, -mm[:, :, None] * mn  # exact integer mantissas
        d_e, m_e = np.broadcast_to(de[:, :, None], sc.shape), np.broadcast_to(me[:, :, None],
                                                                           sc.shape)
        exp = _common_exponent((d_m, d_e), (m_m, m_e))
        scale = _to_common(d_m, d_e, exp).reshape(rows, -1)
        offset = _to_common(m_m, m_e, exp).reshape(rows, -1) + 8 * scale
    else:
        ql, qh = b[:, :, 0:128].reshape(rows, ns, 2, 64), b[:, :, 128:192].reshape(rows, ns, 2, 32)
        sc = b[:, :, 192:208].copy().view(np.int8).astype(np.int64)  # [rows, ns, 16]
        dm, de = f16_exact_parts(b[:, :, 208:210].copy().view(np.float16)[:, :, 0])
        low = np.concatenate([ql[..., :32] & 0xF, ql[..., 32:] & 0xF, ql[..., :32] >> 4,
                              ql[..., 32:] >> 4], axis=3)  # 128 elements per half
        high = np.concatenate([(qh >> k) & 3 for k in (0, 2, 4, 6)], axis=3)
        codes = ((low | (high << 4)).astype(np.int8) - 32).reshape(rows, cols)
        d_m = dm[:, :, None] * sc
        d_e = np.broadcast_to(de[:, :, None], sc.shape)
        exp = _common_exponent((d_m, d_e))
        scale = _to_common(d_m, d_e, exp).reshape(rows, -1)
        offset = np.zeros_like(scale)
    return BlockAffine(codes, scale, offset, exp, block, bits, fmt)


def encode(fmt: str, w: np.ndarray) -> np.ndarray:
    """Quantise float weights ``[rows, cols]`` to raw GGUF bytes the way llama.cpp's reference
    quantiser does (``quantize_row_*_ref``). Used to build the seeded ``tiny`` model and tests.
    MXFP4 follows the OCP spec instead (:func:`mxfp4_elements`)."""
    if fmt == "MXFP4":
        e8m0, nib = mxfp4_elements(w)
        rows, nb = e8m0.shape
        nib = nib.reshape(rows, nb, 32)
        return np.concatenate([e8m0[:, :, None], nib[:, :, :16] | (nib[:, :, 16:] << 4)],
                              axis=2).reshape(-1)
    block, nbytes, _ = FORMATS[fmt]
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    x = w.reshape(rows, cols // block, block)
    out = np.zeros((rows, cols // block, nbytes), dtype=np.uint8)
    if fmt == "Q8_0":
        amax = np.abs(x).max(axis=2)
        d = amax / 127.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = np.round(x * inv[:, :, None]).astype(np.int8)
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:] = q.view(np.uint8)
    elif fmt == "Q4_0":
        idx = np.abs(x).argmax(axis=2)
        mx = np.take_along_axis(x, idx[:, :, None], axis=2)[:, :, 0]
        d = mx / -8.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = np.clip(np.trunc(x * inv[:, :, None] + 8.5), 0, 15).astype(np.uint8)
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    elif fmt == "Q4_1":
        lo = x.min(axis=2)
        hi = x.max(axis=2)
        d = (hi - lo) / 15.0
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
        q = np.clip(np.trunc((x - lo[:, :, None]) * inv[:, :, None] + 0.5), 0, 15).astype(np.uint8)
        out[:, :, 0:2] = d.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 2:4] = lo.astype(np.float16)[:, :, None].view(np.uint8)
        out[:, :, 4:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    else:
        raise ValueError(f"unsupported tensor type {fmt}")
    return out.reshape(-1)


def quantize_per_channel(w: np.ndarray, bits: int, scale_bits: int = 16) -> BlockAffine:
    """Symmetric per-row intN: ``c = round(w / s)``, ``s = max|w_row| / (2**(bits-1) - 1)``.

    The scale is stored with ``scale_bits`` significant bits at one tensor-wide exponent, so
    that ``D`` is an integer like every other format."""
    if not 2 <= bits <= 8:
        raise ValueError(f"per-channel bits must be in 2..8, not {bits}")
    w = np.asarray(w, dtype=np.float64)
    rows, cols = w.shape
    qmax = (1 << (bits - 1)) - 1
    s = np.abs(w).max(axis=1) / qmax
    s = np.where(s > 0, s, 1.0)
    exp = int(np.floor(np.log2(s.max()))) - scale_bits + 2
    scale = np.maximum(np.round(np.ldexp(s, -exp)).astype(np.int64), 1)
    s_eff = np.ldexp(scale.astype(np.float64), exp)
    codes = np.clip(np.round(w / s_eff[:, None]), -qmax - 1, qmax).astype(np.int8)
    return BlockAffine(codes, scale[:, None], np.zeros((rows, 1), np.int64), exp, cols, bits,
                       f"int{bits}")


# --- quantisers for float checkpoints ---------------------------------------------------------
#
# All three take float weights ``[rows, cols]``, round them to float32 first (what the
# checkpoint loader hands over), and compute in float64, where every step below is exact or
# rounds exactly once. A float32 (24-bit significand) divided by a scale with an 11-bit
# significand is either exactly a rounding tie or at least ``2**-24`` of its magnitude away
# from one, far more than float64's rounding error (``2**-53`` of it), so ``np.rint`` (IEEE
# round half to even) of the float64 quotient is the round half to even of the exact quotient.


def _float_matrix(w, what: str) -> np.ndarray:
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{what} needs a 2-D weight matrix, not shape {w.shape}")
    if w.dtype.kind not in "fiu":
        raise ValueError(f"{what} needs float weights, not dtype {w.dtype}")
    with np.errstate(over="ignore"):
        w = w.astype(np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: weights hold NaN or infinity (or exceed float32)")
    return w.astype(np.float64)


def _groups(w: np.ndarray, block: int, what: str) -> np.ndarray:
    rows, cols = w.shape
    if cols % block:
        raise ValueError(f"{what} needs columns in groups of {block}, not {cols}")
    return w.reshape(rows, cols // block, block)


def quantize_per_group(w: np.ndarray, bits: int, block: int = 32) -> BlockAffine:
    """Symmetric intN with one float16 scale per group of ``block`` columns (``M = 0``).

    As llama.cpp's Q4_0 does for 4 bits, the weight of largest magnitude in a group (the first
    one, on equal magnitudes) ``mx`` maps to the code ``-2**(N-1)``, so all ``2**N`` codes are
    used:

    - ``d = float16(mx / -2**(N-1))`` (round to nearest even; a scale beyond float16's range
      raises ``ValueError``, a tiny one becomes a float16 subnormal or zero);
    - ``c = clip(round_half_even(w / d), -2**(N-1), 2**(N-1) - 1)``, computed against the
      float16 ``d`` itself (llama.cpp divides by the unrounded scale); ``c = 0`` where
      ``d = 0``;
    - ``w ~ d * c``: ``D`` is ``d``'s exact float16 mantissa at the tensor's smallest float16
      exponent (:func:`f16_exact_parts`), like Q4_0/Q8_0.

    On SmolLM2's layer-0 projections this has about 0.6x the relative error of the symmetric
    grid ``amax / (2**(N-1) - 1)`` at 2 bits and 0.86x at 4 bits. ``source`` is ``int<N>g``.
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"per-group bits must be in 2..8, not {bits}")
    x = _groups(_float_matrix(w, "per-group intN"), block, "per-group intN")
    rows, nb, _ = x.shape
    top = 1 << (bits - 1)
    idx = np.abs(x).argmax(axis=2)[:, :, None]
    mx = np.take_along_axis(x, idx, axis=2)[:, :, 0]
    with np.errstate(over="ignore"):
        d16 = (mx / -top).astype(np.float16)  # mx / 2**k is exact; one rounding to float16
    if not np.all(np.isfinite(d16)):
        raise ValueError(f"a group's scale exceeds float16 (|w| up to {np.abs(mx).max():g})")
    dm, de = f16_exact_parts(d16)
    d = np.ldexp(dm.astype(np.float64), de)[:, :, None]
    q = np.divide(x, d, out=np.zeros_like(x), where=d != 0)
    codes = np.clip(np.rint(q), -top, top - 1).astype(np.int8).reshape(rows, nb * block)
    exp = _common_exponent((dm, de))
    scale = _to_common(dm, de, exp)
    return BlockAffine(codes, scale, np.zeros_like(scale), exp, block, bits, f"int{bits}g")


#: Significant bits of the ternary tensor scale: float16's precision, without its range.
TERNARY_SCALE_BITS = 11


def quantize_ternary(w: np.ndarray) -> BlockAffine:
    """BitNet b1.58's absmean ternary quantiser, with **one scale for the whole tensor**:

    - ``gamma = mean(|w|)`` over every weight of the tensor (float64), then rounded to
      ``TERNARY_SCALE_BITS`` = 11 significant bits (round half to even): ``gamma = D * 2**exp``
      exactly, ``D`` odd (trailing zeros move into ``exp``);
    - ``c = clip(round_half_even(w / gamma), -1, 1)`` against that rounded ``gamma`` (BitNet
      divides by ``gamma + eps``; an all-zero tensor here simply gets ``c = 0``, ``D = 0``).

    2-bit codes, ``M = 0``, one block per row (``block = cols``, ``D`` repeated per row, as
    per-channel tensors: the layer splits them into lane blocks). ``source`` is ``ternary``.
    """
    w = _float_matrix(w, "ternary")
    rows, cols = w.shape
    gamma = float(np.abs(w).mean()) if w.size else 0.0
    if gamma > 0:
        m, e = np.frexp(gamma)  # gamma = m * 2**e, 0.5 <= m < 1
        D = int(np.rint(np.ldexp(m, TERNARY_SCALE_BITS)))
        exp = int(e) - TERNARY_SCALE_BITS
        while D % 2 == 0:
            D, exp = D // 2, exp + 1
        codes = np.clip(np.rint(w / np.ldexp(float(D), exp)), -1, 1).astype(np.int8)
    else:
        D, exp, codes = 0, 0, np.zeros((rows, cols), np.int8)
    scale = np.full((rows, 1), D, np.int64)
    return BlockAffine(codes, scale, np.zeros_like(scale), exp, cols, 2, "ternary")


#: The E8M0 scale exponents (byte - 127) an MXFP4 block may get; byte 0xFF is NaN.
E8M0_MIN, E8M0_MAX = -127, 127
#: E2M1's largest exponent (``emax_elem`` in OCP MX v1.0: 6 = 1.5 * 2**2).
E2M1_EMAX = 2
#: A tensor's MXFP4 block scales may span at most this many octaves (``D`` < 2**41).
MXFP4_MAX_SPAN = 40


def mxfp4_elements(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OCP MX v1.0 quantisation (section 6.3) of ``w [rows, cols]`` to MXFP4, blocks of 32
    consecutive columns. Returns ``(e8m0 uint8 [rows, cols/32], nibbles uint8 [rows, cols])``.

    - ``shared_exp = floor(log2(max |w|)) - E2M1_EMAX``, with ``floor(log2)`` taken exactly
      from the float's exponent (``np.frexp``, no ``log2`` rounding), clamped to E8M0's
      ``[-127, 127]``; an all-zero block gets -127 (byte 0x00, as the spec's reference
      microxcaling code and llama.cpp do). Float32 weights never reach the upper clamp
      (``floor(log2) <= 127``, so ``shared_exp <= 125``); blocks of tiny weights below
      ``2**-125`` are clamped to ``2**-127`` and their elements round to zero or subnormals.
    - element = ``w / 2**shared_exp`` rounded to the nearest E2M1 value, ties to the value
      with an even mantissa bit, saturating to ±6. On the grid in halves this is
      ``rint(2v)`` below 2, ``2 rint(v)`` in ``[2, 4)`` and ``4 rint(v / 2)`` above, with ``v``
      exact (a power-of-two scaling) and ``np.rint`` IEEE half-even.
    - nibble = sign bit (3) | E2M1 magnitude code (bits 0-2, :data:`E2M1_HALVES`); a zero is
      written +0 (0x0), as llama.cpp's quantiser writes it.

    The spec fixes the element and scale encodings but not how packed elements sit in bytes;
    :func:`encode` ``("MXFP4", w)`` uses llama.cpp's ``block_mxfp4`` (GGUF type MXFP4): per
    block the E8M0 byte, then 16 bytes with element ``i`` in the low nibble of byte ``i`` and
    element ``i + 16`` in its high nibble.
    """
    x = _groups(_float_matrix(w, "MXFP4"), 32, "MXFP4")
    rows, nb, _ = x.shape
    amax = np.abs(x).max(axis=2)
    _, e = np.frexp(amax)  # amax = m * 2**e, 0.5 <= m < 1: floor(log2 amax) = e - 1
    shared = np.where(amax > 0, e - 1 - E2M1_EMAX, E8M0_MIN)
    shared = np.clip(shared, E8M0_MIN, E8M0_MAX).astype(np.int64)
    v = np.ldexp(np.abs(x), -shared[:, :, None])  # exact
    halves = np.where(v < 2, np.rint(2 * v),
                      np.where(v < 4, 2 * np.rint(v), 4 * np.rint(v / 2)))
    halves = np.minimum(halves, 12).astype(np.int64)  # saturate to 6
    lut = np.zeros(13, np.uint8)
    lut[E2M1_HALVES] = np.arange(8, dtype=np.uint8)
    mag = lut[halves]
    nib = np.where((x < 0) & (mag != 0), mag | 8, mag).astype(np.uint8)
    return (shared + 127).astype(np.uint8), nib.reshape(rows, nb * 32)


def _decode_mxfp4(e8m0: np.ndarray, qs: np.ndarray) -> BlockAffine:
    """MXFP4 blocks (E8M0 bytes ``[rows, nb]``, packed nibbles ``[rows, nb, 16]``) exactly."""
    if np.any(e8m0 == 0xFF):
        raise ValueError("an MXFP4 block scale is NaN (E8M0 0xFF)")
    rows, nb = e8m0.shape
    nib = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.int64)  # elements 0..15, 16..31
    codes = np.where(nib & 8, -1, 1) * E2M1_HALVES[nib & 7]  # 2 * element
    shared = e8m0.astype(np.int64) - 127
    live = np.any(codes != 0, axis=2)
    s_min = int(shared[live].min()) if np.any(live) else 0
    span = int(shared[live].max()) - s_min if np.any(live) else 0
    if span > MXFP4_MAX_SPAN:
        raise ValueError(f"MXFP4 block scales span {span} octaves; one fixed-point exponent "
                         f"holds at most {MXFP4_MAX_SPAN}")
    scale = np.where(live, np.int64(1) << np.where(live, shared - s_min, 0), 0)
    return BlockAffine(codes.astype(np.int8).reshape(rows, nb * 32), scale,
                       np.zeros_like(scale), s_min - 1, 32, 5, "MXFP4")


def quantize_mxfp4(w: np.ndarray) -> BlockAffine:
    """MXFP4 (:func:`mxfp4_elements`) in the exact block-affine form: the bytes :func:`encode`
    writes, decoded by :func:`decode`."""
    raw = encode("MXFP4", w)
    rows, cols = np.shape(w)
    return decode("MXFP4", raw, rows, cols)


_FLOAT_CODES: "weakref.WeakKeyDictionary[BlockAffine, np.ndarray]" = weakref.WeakKeyDictionary()


def _block_partials(wq: BlockAffine, ab: np.ndarray) -> np.ndarray:
    """``P[..., r, b] = sum_j c[r, b, j] * ab[..., b, j]``, exactly.

    When ``block * max|c| * max|a| < 2**53`` every product and every partial sum, in any
    order, is an integer that float64 holds exactly, so one float64 BLAS product per block
    gives ``P`` exactly (the float64 codes ``[nblocks, rows, block]`` are kept per tensor);
    otherwise int64."""
    rows = wq.shape[0]
    nb, blk = wq.nblocks, wq.block
    amax = int(np.abs(ab).max(initial=0))
    cmax = int(np.abs(wq.codes).max(initial=0))
    if blk * cmax * amax < 1 << 53:
        c = _FLOAT_CODES.get(wq)
        if c is None:
            c = np.ascontiguousarray(
                wq.codes.reshape(rows, nb, blk).transpose(1, 0, 2), dtype=np.float64)
            _FLOAT_CODES[wq] = c
        p = np.matmul(c, ab.astype(np.float64)[..., None])[..., 0]  # [..., nb, rows]
        return np.swapaxes(p, -1, -2).astype(np.int64)
    c = wq.codes.astype(np.int64).reshape(rows, nb, blk)
    return np.einsum("rbj,...bj->...rb", c, ab)


def block_matvec(wq: BlockAffine, a: np.ndarray) -> np.ndarray:
    """Exact ``sum_b D*P + M*S`` for integer activations ``a`` (``[..., cols]``), in units of
    ``2**(wq.exp + e_a)``. Exact integers throughout (:func:`_block_partials`); callers keep
    the bound below 2**62."""
    a = np.asarray(a, dtype=np.int64)
    nb, blk = wq.nblocks, wq.block
    ab = a.reshape(*a.shape[:-1], nb, blk)
    partial = _block_partials(wq, ab)  # P[..., r, b]
    sums = ab.sum(axis=-1)  # S[..., b]
    return (partial * wq.scale).sum(axis=-1) + (sums[..., None, :] * wq.offset).sum(axis=-1)


def stack(ws: list[BlockAffine]) -> BlockAffine:
    """Row-concatenate tensors with the same columns and block, exactly: every ``D``/``M``
    moves to the smallest exponent (a left shift), and narrower codes take the widest code
    bits (a signed code fits any wider signed code: Q4_K's beside Q6_K's). The engine runs
    q, k and v as one pass this way (and gate with up)."""
    first = ws[0]
    for w in ws[1:]:
        if (w.shape[1], w.block) != (first.shape[1], first.block):
            raise ValueError("stacked tensors need the same columns and block")
    exp = min(w.exp for w in ws)
    scale = np.concatenate([w.scale << np.int64(w.exp - exp) for w in ws])
    offset = np.concatenate([w.offset << np.int64(w.exp - exp) for w in ws])
    codes = np.concatenate([w.codes for w in ws])
    src = "+".join(sorted({w.source for w in ws}))
    return BlockAffine(codes, scale, offset, exp, first.block, max(w.bits for w in ws), src)


def interleave_rows(a: BlockAffine, b: BlockAffine, group: int) -> BlockAffine:
    """Rows ``a[0:g], b[0:g], a[g:2g], b[g:2g], ...`` (``g = group``), stacked exactly: a
    beat of ``a``'s outputs is followed by the same rows of ``b``."""
    rows = a.shape[0]
    if b.shape[0] != rows or rows % group:
        raise ValueError(f"interleaving needs equal row counts divisible by {group}")
    s = stack([a, b])
    order = np.arange(2 * rows).reshape(2, rows // group, group).swapaxes(0, 1).reshape(-1)
    return s.permute_rows(order)
