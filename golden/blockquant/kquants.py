"""llama.cpp's k-quants (``ggml-common.h``, ``dequantize_row_q4_K`` / ``_q6_K``), decoded
exactly into the block-affine form. hardwire decodes them but does not encode them.

- **Q4_K**: 144-byte super-blocks of 256: f16 ``d``, f16 ``dmin``, 12 bytes of 6-bit
  scales ``sc`` and mins ``m`` for 8 blocks of 32 (``get_scale_min_k4``), then 128 bytes of
  nibbles: 32 bytes per pair of blocks, the first block in the low nibbles.
  ``w = d*sc * q - dmin*m`` with ``q`` in 0..15, so ``c = q - 8``, ``D = d*sc``,
  ``M = 8*D - dmin*m``.
- **Q6_K**: 210-byte super-blocks: 128 bytes of low nibbles ``ql``, 64 bytes of high bit
  pairs ``qh``, 16 int8 scales (one per block of 16), f16 ``d``.
  ``w = d*sc * (q - 32)``: ``c = q - 32`` (6-bit signed), ``D = d*sc``, ``M = 0``.
"""

import numpy as np

from .affine import BlockAffine, common_exponent, f16_exact_parts, to_common

__all__ = ["K_FORMATS", "decode_k", "decode_q4_k", "decode_q6_k"]

#: llama.cpp k-quants: name -> (super-block elements, bytes per super-block, code bits, block
#: of the block-affine form). Decoded exactly (:func:`golden.blockquant.decode`).
K_FORMATS = {
    "Q4_K": (256, 144, 4, 32),
    "Q6_K": (256, 210, 6, 16),
}

# The super-block layouts, checked on import as ggml's static_asserts check them:
# sizeof(block_q4_K) == 2*sizeof(ggml_half) + K_SCALE_SIZE + QK_K/2, and
# sizeof(block_q6_K) == sizeof(ggml_half) + QK_K/16 + 3*QK_K/4.
if K_FORMATS["Q4_K"][1] != 2 * 2 + 12 + 256 // 2:
    raise AssertionError("Q4_K: f16 d, f16 dmin, 12 scale bytes and 128 nibble bytes")
if K_FORMATS["Q6_K"][1] != 2 + 256 // 16 + 3 * 256 // 4:
    raise AssertionError("Q6_K: 128 ql bytes, 64 qh bytes, 16 int8 scales and f16 d")


def decode_k(fmt: str, b: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """A k-quant tensor from its super-blocks ``b`` (``uint8 [rows, cols / 256, bytes]``)."""
    if fmt == "Q4_K":
        return decode_q4_k(b, rows, cols)
    return decode_q6_k(b, rows, cols)


def decode_q4_k(b: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """Q4_K super-blocks ``b`` (``uint8 [rows, cols / 256, 144]``) exactly."""
    _, _, bits, block = K_FORMATS["Q4_K"]
    ns = b.shape[1]
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
    exp = common_exponent((d_m, d_e), (m_m, m_e))
    scale = to_common(d_m, d_e, exp).reshape(rows, -1)
    offset = to_common(m_m, m_e, exp).reshape(rows, -1) + 8 * scale
    return BlockAffine(codes, scale, offset, exp, block, bits, "Q4_K")


def decode_q6_k(b: np.ndarray, rows: int, cols: int) -> BlockAffine:
    """Q6_K super-blocks ``b`` (``uint8 [rows, cols / 256, 210]``) exactly."""
    _, _, bits, block = K_FORMATS["Q6_K"]
    ns = b.shape[1]
    ql, qh = b[:, :, 0:128].reshape(rows, ns, 2, 64), b[:, :, 128:192].reshape(rows, ns, 2, 32)
    sc = b[:, :, 192:208].copy().view(np.int8).astype(np.int64)  # [rows, ns, 16]
    dm, de = f16_exact_parts(b[:, :, 208:210].copy().view(np.float16)[:, :, 0])
    low = np.concatenate([ql[..., :32] & 0xF, ql[..., 32:] & 0xF, ql[..., :32] >> 4,
                          ql[..., 32:] >> 4], axis=3)  # 128 elements per half
    high = np.concatenate([(qh >> k) & 3 for k in (0, 2, 4, 6)], axis=3)
    codes = ((low | (high << 4)).astype(np.int8) - 32).reshape(rows, cols)
    d_m = dm[:, :, None] * sc
    d_e = np.broadcast_to(de[:, :, None], sc.shape)
    exp = common_exponent((d_m, d_e))
    scale = to_common(d_m, d_e, exp).reshape(rows, -1)
    offset = np.zeros_like(scale)
    return BlockAffine(codes, scale, offset, exp, block, bits, "Q6_K")
