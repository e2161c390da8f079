"""Packing of element vectors into stream payloads, as the manifest's ``packing`` states:
element ``i`` in bits ``[i*bits, (i+1)*bits)``, two's complement. Vectorised with numpy."""

import numpy as np

from golden.numerics import wrap

__all__ = ["pack", "unpack"]


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
