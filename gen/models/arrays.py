"""Tensors of a checkpoint file: safetensors (read here, with bfloat16) and ``.npz``.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every
tensor's dtype, shape and byte range, then the data. The header is checked against the file
before anything is read (its size, each range inside the data and of the size its dtype and
shape need), so a malformed header is one error line and never a large allocation; the data
is memory-mapped and each tensor copied out only when asked for.
"""

import json
import math
from pathlib import Path

import numpy as np

from ..errors import UserError
from .quant import short

__all__ = ["read_arrays", "Arrays"]

#: safetensors dtype -> numpy dtype; BF16 is read as uint16 and widened to float32.
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
#: A header larger than this is not a real one.
_MAX_HEADER = 100 << 20


class Arrays:
    """Name -> numpy array of one checkpoint file (``in``, ``[]``, ``keys``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tensors: dict = {}
        self._mm = None
        if self.path.suffix.lower() == ".npz":
            try:
                self._npz = dict(np.load(self.path, allow_pickle=False))
            except Exception as e:
                raise UserError(f"{self.path} is not a readable npz file ({short(e)})") \
                    from None
        else:
            self._npz = None
            self._read_header()

    def _fail(self, why: str):
        raise UserError(f"{self.path} is not a readable safetensors file ({why})")

    def _read_header(self) -> None:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                self._fail("shorter than its 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > min(_MAX_HEADER, size - 8):
                self._fail(f"a header of {n} bytes in a file of {size}")
            try:
                header = json.loads(f.read(n))
            except ValueError as e:
                self._fail(f"header is not JSON: {short(e)}")
        if not isinstance(header, dict):
            self._fail("header is not a JSON object")
        base, data = 8 + n, size - 8 - n
        for name, t in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype, shape = _DTYPES[t["dtype"]], [int(s) for s in t["shape"]]
                lo, hi = (int(v) for v in t["data_offsets"])
            except (KeyError, TypeError, ValueError):
                self._fail(f"tensor {name}: bad dtype, shape or data_offsets")
            need = math.prod(shape) * np.dtype(dtype).itemsize
            if any(s < 0 for s in shape) or not 0 <= lo <= hi <= data or hi - lo != need:
                self._fail(f"tensor {name}: {t['dtype']} {shape} does not fit bytes "
                           f"{lo}..{hi} of {data}")
            self._tensors[name] = (t["dtype"], dtype, shape, base + lo)

    def keys(self):
        return (self._npz or self._tensors).keys()

    def __contains__(self, name) -> bool:
        return name in (self._npz if self._npz is not None else self._tensors)

    def __getitem__(self, name: str) -> np.ndarray:
        if self._npz is not None:
            return self._npz[name]
        kind, dtype, shape, at = self._tensors[name]
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        n = math.prod(shape) * np.dtype(dtype).itemsize
        a = np.frombuffer(self._mm[at:at + n], dtype=dtype).reshape(shape)
        if kind == "BF16":  # the top half of a float32
            return (a.astype(np.uint32) << 16).view(np.float32)
        return np.array(a)


def read_arrays(path: Path) -> Arrays:
    """The tensors of a ``.safetensors`` or ``.npz`` file."""
    return Arrays(path)
