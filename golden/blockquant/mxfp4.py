"""OCP MXFP4 (Microscaling Formats v1.0): blocks of 32 E2M1 elements and one E8M0 scale each.
The quantiser (:func:`mxfp4_elements`, llama.cpp's rounding), llama.cpp's ``block_mxfp4`` bytes
(:func:`pack_mxfp4`) and their exact decoding into the block-affine form
(:func:`decode_mxfp4`): ``c = 2 * element``, ``D = 2**(s - s_min)``, ``M = 0``,
``exp = s_min - 1``.
"""

import numpy as np

from .affine import BlockAffine
from .quantizers import column_groups, float_matrix

__all__ = ["E2M1_HALVES", "mxfp4_elements", "pack_mxfp4", "decode_mxfp4", "decode_mxfp4_hf",
           "encode_mxfp4_hf", "decode_mxfp4_parts", "quantize_mxfp4"]

#: E2M1 magnitudes in halves (``2 * |element|``) by the low three bits of the nibble; bit 3 is
#: the sign. OCP MX v1.0, table "FP4 (E2M1)": exponent bias 1, one mantissa bit, no inf/NaN.
E2M1_HALVES = np.array([0, 1, 2, 3, 4, 6, 8, 12], dtype=np.int64)

# The table from the E2M1 fields, checked on import: exponent e (bits 1-2), mantissa m (bit 0);
# e == 0 is subnormal (m * 0.5, so m halves), else 1.m * 2**(e - 1), which is (2 + m) << (e - 1)
# halves.
_e, _m = np.arange(8) >> 1, np.arange(8) & 1
if not np.array_equal(E2M1_HALVES, np.where(_e == 0, _m, (2 + _m) << np.maximum(_e - 1, 0))):
    raise AssertionError("E2M1_HALVES does not match the E2M1 encoding")
del _e, _m

#: The E8M0 scale exponents (byte - 127) an MXFP4 block may get; byte 0xFF is NaN.
E8M0_MIN, E8M0_MAX = -127, 127
#: E2M1's largest exponent (``emax_elem`` in OCP MX v1.0: 6 = 1.5 * 2**2).
E2M1_EMAX = 2
#: A tensor's MXFP4 block scales may span at most this many octaves (``D`` < 2**41).
MXFP4_MAX_SPAN = 40


def mxfp4_elements(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MXFP4 quantisation of ``w [rows, cols]``, blocks of 32 consecutive columns, as
    llama.cpp's reference quantiser (``quantize_row_mxfp4_ref``) does it. Returns ``(e8m0
    uint8 [rows, cols/32], nibbles uint8 [rows, cols])``.

    - ``shared_exp = floorf(log2f(max |w|)) - E2M1_EMAX``: OCP MX v1.0's rule, with the
      logarithm taken in float32 as llama.cpp takes it (for a block maximum just below a
      power of two, ``log2f`` rounds up to the integer and the exponent is one higher than
      the exact ``floor(log2)``). Clamped to E8M0's ``[-127, 127]``; an all-zero block gets
      -127 (byte 0x00), as llama.cpp writes it. Float32 weights never reach the upper clamp
      (``shared_exp <= 125``); blocks of tiny weights below ``2**-125`` (where llama.cpp's
      cast to ``uint8_t`` is undefined) are clamped to ``2**-127`` and their elements round
      to zero or subnormals.
    - element = ``w / 2**shared_exp`` rounded to the nearest E2M1 value, **ties to the
      smaller magnitude** (llama.cpp picks the first of equal candidates in ``kvalues_mxfp4``
      order, which runs up in magnitude), saturating to ±6. On the grid in halves this is
      ``ceil(2v - 1/2)`` below 2, ``2 ceil(v - 1/2)`` in ``[2, 4)`` and ``4 ceil(v/2 - 1/2)``
      above, with ``v`` exact (a power-of-two scaling). The OCP spec leaves the rounding to
      the implementation; half-to-even would differ from llama.cpp's bytes on every tie.
    - nibble = sign bit (3) | E2M1 magnitude code (bits 0-2, :data:`E2M1_HALVES`); a zero is
      written +0 (0x0), as llama.cpp's quantiser writes it.

    Float weights are read as :mod:`golden.blockquant.quantizers` describes. The spec fixes
    the element and scale encodings but not how packed elements sit in bytes;
    :func:`golden.blockquant.encode` ``("MXFP4", w)`` uses llama.cpp's ``block_mxfp4`` (GGUF
    type MXFP4, :func:`pack_mxfp4`): per block the E8M0 byte, then 16 bytes with element ``i``
    in the low nibble of byte ``i`` and element ``i + 16`` in its high nibble.
    """
    x = column_groups(float_matrix(w, "MXFP4"), 32, "MXFP4")
    rows, nb, _ = x.shape
    amax = np.abs(x).max(axis=2)
    with np.errstate(divide="ignore"):
        log2 = np.floor(np.log2(amax.astype(np.float32)))  # llama.cpp: floorf(log2f(amax))
    shared = np.where(amax > 0, log2 - E2M1_EMAX, E8M0_MIN)
    shared = np.clip(shared, E8M0_MIN, E8M0_MAX).astype(np.int64)
    v = np.ldexp(np.abs(x), -shared[:, :, None])  # exact
    halves = np.where(v < 2, np.ceil(2 * v - 0.5),
                      np.where(v < 4, 2 * np.ceil(v - 0.5), 4 * np.ceil(v / 2 - 0.5)))
    halves = np.minimum(halves, 12).astype(np.int64)  # saturate to 6
    lut = np.zeros(13, np.uint8)
    lut[E2M1_HALVES] = np.arange(8, dtype=np.uint8)
    mag = lut[halves]
    nib = np.where((x < 0) & (mag != 0), mag | 8, mag).astype(np.uint8)
    return (shared + 127).astype(np.uint8), nib.reshape(rows, nb * 32)


def pack_mxfp4(e8m0: np.ndarray, nib: np.ndarray) -> np.ndarray:
    """:func:`mxfp4_elements`' result as ``block_mxfp4`` bytes, ``uint8 [rows, cols/32, 17]``:
    the E8M0 byte, then element ``i`` in the low nibble of byte ``i`` and element ``i + 16``
    in its high nibble."""
    rows, nb = e8m0.shape
    nib = nib.reshape(rows, nb, 32)
    return np.concatenate([e8m0[:, :, None], nib[:, :, :16] | (nib[:, :, 16:] << 4)], axis=2)


def decode_mxfp4(blocks: np.ndarray) -> BlockAffine:
    """MXFP4 blocks (``uint8 [rows, nb, 17]``: the E8M0 byte, then 16 bytes of packed
    nibbles, llama.cpp's ``block_mxfp4``) exactly."""
    qs = blocks[:, :, 1:]
    # elements 0..15 in the low nibbles, 16..31 in the high ones
    return decode_mxfp4_parts(blocks[:, :, 0], np.concatenate([qs & 0x0F, qs >> 4], axis=2))


def decode_mxfp4_hf(blocks: np.ndarray, scales: np.ndarray) -> BlockAffine:
    """MXFP4 as OpenAI ships gpt-oss' experts (``*_blocks uint8 [rows, nb, 16]`` and
    ``*_scales uint8 [rows, nb]``, E8M0 with bias 127) exactly: byte ``j`` of a block holds
    element ``2j`` in its low nibble and element ``2j + 1`` in its high nibble."""
    rows, nb, _ = blocks.shape
    nib = np.stack([blocks & 0x0F, blocks >> 4], axis=3).reshape(rows, nb, 32)
    return decode_mxfp4_parts(scales, nib)


def encode_mxfp4_hf(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w [rows, cols]`` quantised by :func:`mxfp4_elements`, in the layout
    :func:`decode_mxfp4_hf` reads: ``(blocks uint8 [rows, cols/32, 16], scales uint8
    [rows, cols/32])``."""
    e8m0, nib = mxfp4_elements(w)
    rows, nb = e8m0.shape
    nib = nib.reshape(rows, nb, 16, 2)
    return (nib[..., 0] | (nib[..., 1] << 4)).astype(np.uint8), e8m0


def decode_mxfp4_parts(e8m0: np.ndarray, nib: np.ndarray) -> BlockAffine:
    """E8M0 scales ``[rows, nb]`` and E2M1 nibbles ``[rows, nb, 32]`` (in element order)
    exactly in the block-affine form."""
    if np.any(e8m0 == 0xFF):
        raise ValueError("an MXFP4 block scale is NaN (E8M0 0xFF)")
    rows, nb = e8m0.shape
    nib = np.asarray(nib, np.int64)
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
    """MXFP4 (:func:`mxfp4_elements`) in the exact block-affine form: the bytes
    :func:`golden.blockquant.encode` writes, decoded as :func:`golden.blockquant.decode`
    decodes them."""
    return decode_mxfp4(pack_mxfp4(*mxfp4_elements(w)))
