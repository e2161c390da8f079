"""Packing of element vectors into stream payloads, as the manifest's ``packing`` states:
element ``i`` in bits ``[i*bits, (i+1)*bits)``, two's complement. Vectorised with numpy."""

import numpy as np

from golden.numerics import wrap

__all__ = ["pack", "unpack", "beats", "unbeat"]


def pack(x, bits: int) -> int:
    x = np.asarray(x, dtype=np.int64).ravel()
    u = (x & ((1 << bits) - 1)).astype(np.uint64)
    planes = ((u[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return int.from_bytes(np.packbits(planes.ravel(), bitorder="little").tobytes(), "little")


def unpack(value: int, count: int, bits: int) -> np.ndarray:
    nbytes = -(-count * bits // 8)
    raw = np.frombuffer(int(value).to_bytes(nbytes, "little"), dtype=np.uint8)
    planes = np.unpackbits(raw, bitorder="little")[: count * bits].reshape(count, bits)
    u = (planes.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)
    return wrap(u, bits)


def beats(vec, beat: int, bits: int, exp: int | None = None, exp_bits: int = 8) -> list[int]:
    """A vector as stream beats (see :mod:`hdl.vector`): ``len(vec) / beat`` payloads, each
    ``beat`` elements of ``bits`` packed from bit 0, and, for a block-floating-point vector,
    its exponent as a signed ``exp_bits`` field above them in every beat."""
    vec = np.asarray(vec, dtype=np.int64).ravel()
    if len(vec) % beat:
        raise ValueError(f"vector of {len(vec)} is not a whole number of {beat}-element beats")
    out = []
    for b in range(len(vec) // beat):
        p = pack(vec[b * beat:(b + 1) * beat], bits)
        if exp is not None:
            p |= (int(exp) & ((1 << exp_bits) - 1)) << (beat * bits)
        out.append(p)
    return out


def unbeat(payloads, beat: int, bits: int, exp_bits: int | None = None):
    """Inverse of :func:`beats`: ``(vector, exponents per beat or None)``."""
    vec = np.concatenate([unpack(p & ((1 << (beat * bits)) - 1), beat, bits) for p in payloads])
    if exp_bits is None:
        return vec, None
    ex = [int(wrap(np.int64(p >> (beat * bits)), exp_bits)) for p in payloads]
    return vec, ex
