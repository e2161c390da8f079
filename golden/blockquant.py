"""Block-quantised weights as exact integers: llama.cpp Q4_0 / Q4_1 / Q8_0 and per-channel intN.

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
- **intN per channel** (``block == cols``): ``c`` in ``[-2**(N-1), 2**(N-1))`` and an integer
  scale per row.

In a nibble block, byte ``i`` holds element ``i`` in its low nibble and element ``i + 16`` in
its high nibble (llama.cpp's layout). A product with activations ``a`` (one exponent ``e_a``)
is then ``sum_b D[r,b] * P[r,b] + M[r,b] * S[b]`` with the block partial sums
``P[r,b] = sum_{j in b} c[r,j] a[j]`` and the block activation sums ``S[b] = sum_{j in b} a[j]``
(see :func:`block_matvec`), an exact integer in units of ``2**(exp + e_a)``.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FORMATS",
    "BlockAffine",
    "decode",
    "encode",
    "block_matvec",
    "quantize_per_channel",
    "f16_exact_parts",
    "stack",
    "interleave_rows",
]

#: Supported GGUF tensor formats: name -> (block elements, bytes per block, code bits).
FORMATS = {
    "Q4_0": (32, 18, 4),
    "Q4_1": (32, 20, 4),
    "Q8_0": (32, 34, 8),
}


@dataclass(frozen=True, eq=False)
class BlockAffine:
    """``w = (D * c + M) * 2**exp`` per block of ``block`` columns (see the module doc)."""

    codes: np.ndarray  # int8 [rows, cols]
    scale: np.ndarray  # int64 [rows, nblocks]  (D)
    offset: np.ndarray  # int64 [rows, nblocks]  (M)
    exp: int
    block: int
    bits: int
    source: str  # "Q4_0" | "Q4_1" | "Q8_0" | "int<N>"

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    @property
    def nblocks(self) -> int:
        return self.codes.shape[1] // self.block

    def dequantize(self) -> np.ndarray:
        """The weights as float32: the exact value, rounded once (exact in float64 first)."""
        rows, cols = self.codes.shape
        c = self.codes.astype(np.int64).reshape(rows, self.nblocks, self.block)
        v = c * self.scale[:, :, None] + self.offset[:, :, None]
        return np.ldexp(v.astype(np.float64), self.exp).reshape(rows, cols).astype(np.float32)

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


def decode(fmt: str, raw: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """Decode raw GGUF bytes (``uint8``, ``rows * cols / block * bytes`` of them) exactly."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported tensor type {fmt}; supported: F32, F16, "
                         + ", ".join(FORMATS))
    block, nbytes, bits = FORMATS[fmt]
    if cols % block:
        raise ValueError(f"{fmt} tensor has {cols} columns, not a multiple of {block}")
    nb = cols // block
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != rows * nb * nbytes:
        raise ValueError(f"{fmt} tensor of {rows}x{cols} needs {rows * nb * nbytes} bytes, "
                         f"has {raw.size}")
    blocks = raw.reshape(rows, nb, nbytes)
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


def encode(fmt: str, w: np.ndarray) -> np.ndarray:
    """Quantise float weights ``[rows, cols]`` to raw GGUF bytes the way llama.cpp's reference
    quantiser does (``quantize_row_*_ref``). Used to build the seeded ``tiny`` model and tests."""
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


def block_matvec(wq: BlockAffine, a: np.ndarray) -> np.ndarray:
    """Exact ``sum_b D*P + M*S`` for integer activations ``a`` (``[..., cols]``), in units of
    ``2**(wq.exp + e_a)``. int64 throughout; callers keep the bound below 2**62."""
    rows, cols = wq.shape
    a = np.asarray(a, dtype=np.int64)
    nb, blk = wq.nblocks, wq.block
    ab = a.reshape(*a.shape[:-1], nb, blk)
    c = wq.codes.astype(np.int64).reshape(rows, nb, blk)
    partial = np.einsum("rbj,...bj->...rb", c, ab)  # P[..., r, b]
    sums = ab.sum(axis=-1)  # S[..., b]
    return (partial * wq.scale).sum(axis=-1) + (sums[..., None, :] * wq.offset).sum(axis=-1)


def stack(ws: list[BlockAffine]) -> BlockAffine:
    """Row-concatenate tensors with the same columns, block and code bits, exactly: every
    ``D``/``M`` moves to the smallest exponent (a left shift). The engine runs q, k and v as
    one pass this way (and gate with up)."""
    first = ws[0]
    for w in ws[1:]:
        if (w.shape[1], w.block, w.bits) != (first.shape[1], first.block, first.bits):
            raise ValueError("stacked tensors need the same columns, block and code bits")
    exp = min(w.exp for w in ws)
    scale = np.concatenate([w.scale << np.int64(w.exp - exp) for w in ws])
    offset = np.concatenate([w.offset << np.int64(w.exp - exp) for w in ws])
    codes = np.concatenate([w.codes for w in ws])
    src = "+".join(sorted({w.source for w in ws}))
    return BlockAffine(codes, scale, offset, exp, first.block, first.bits, src)


def interleave_rows(a: BlockAffine, b: BlockAffine, group: int) -> BlockAffine:
    """Rows ``a[0:g], b[0:g], a[g:2g], b[g:2g], ...`` (``g = group``), stacked exactly: a
    beat of ``a``'s outputs is followed by the same rows of ``b``."""
    rows = a.shape[0]
    if b.shape[0] != rows or rows % group:
        raise ValueError(f"interleaving needs equal row counts divisible by {group}")
    s = stack([a, b])
    order = np.arange(2 * rows).reshape(2, rows // group, group).swapaxes(0, 1).reshape(-1)
    return s.permute_rows(order)
