"""One shape for several lane arrays: the sizes that make a chip's decoder layers one circuit
apart from their ROM images (:meth:`hdl.lane_array.LaneArray.adopt`), and constants held as
one-word ROM images instead of in the Verilog."""

import numpy as np
from amaranth.hdl import Cat, Signal, signed

from golden.block_folded import ROM_WIDTH

from .arith import indexed_constant, mux_chain, pack, signed_width
from .mask_rom import RomSpec, twos_complement

__all__ = ["SharedShape", "common_shape", "word_roms", "indexed_rom_word"]


def common_shape(shapes: list[dict]) -> dict | None:
    """The smallest :meth:`hdl.lane_array.LaneArray.shape` that holds every one of
    ``shapes``, or ``None`` when they differ in kind (block offsets ``M`` in some only, or
    another code width)."""
    if len({(s["has_m"], s["elem_bits"]) for s in shapes}) != 1:
        return None
    keys = shapes[0]["bounds"]
    return shapes[0] | {
        "bounds": {k: (min(s["bounds"][k][0] for s in shapes),
                       max(s["bounds"][k][1] for s in shapes)) for k in keys},
        "d_bits": max(s["d_bits"] for s in shapes),
        "m_bits": max(s["m_bits"] for s in shapes),
        "shift": (min(s["shift"][0] for s in shapes), max(s["shift"][1] for s in shapes))}


def word_roms(values, bits: int, stem: str) -> list[RomSpec]:
    """Integers of ``bits`` bits (two's complement) packed into ROMs of one word each, at
    most :data:`ROM_WIDTH` bits, images ``<stem><k>.hex``."""
    values = [int(v) for v in values]
    per = max(1, ROM_WIDTH // bits)
    chunks = [values[a:a + per] for a in range(0, len(values), per)]
    return [RomSpec(np.array([pack(c, bits)], np.uint64), bits * len(c), f"{stem}{k}.hex")
            for k, c in enumerate(chunks)]


def indexed_rom_word(m, sel, roms: list[RomSpec], n: int, bits: int, name: str) -> Signal:
    """Value ``sel`` of the ``n`` values of :func:`word_roms` ``roms``, as a named signed
    signal. The ROMs are read from the first cycle on, so their words are there from the
    second (a value read later than that, as every use is, needs no wait)."""
    built = [spec.build() for spec in roms]
    for k, rom in enumerate(built):
        m.submodules[f"{name}{k}"] = rom
        m.d.comb += [rom.addr.eq(0), rom.en.eq(1)]
    word = Cat(*(rom.data for rom in built))
    sig = Signal(signed(bits), name=name)
    m.d.comb += sig.eq(mux_chain(sel, [word[k * bits:(k + 1) * bits].as_signed()
                                       for k in range(n)]))
    return sig


class SharedShape:
    """What a :class:`hdl.lane_array.LaneArray` needs to be sized by a shape common to
    several arrays (its ``bounds``, block-constant widths and ``shift_const``)."""

    def _shift_init(self, consts: list[int]) -> None:
        self.shift_const = consts
        #: the shift constants as ROM images (:meth:`adopt`), else in the Verilog
        self.shift_roms = []
        self._shift_bits = signed_width(min(consts + [0]), max(consts + [0]))

    def _rom(self, words, width: int, kind: str, p: int) -> RomSpec:
        image = f"{self._prefix}_{kind}{p:03d}.hex" if self._rom_images else None
        return RomSpec(twos_complement(words, width), width, image)

    def shape(self) -> dict:
        """What sizes the circuit besides the passes' shapes, all from the weights: the
        ranges of every held quantity (:func:`golden.block_folded.bounds`), the widths of the
        block constants, the parallel code width, and the range of the shift constants."""
        return {"bounds": self.bounds, "d_bits": self._d_bits, "m_bits": self._m_bits,
                "has_m": self._has_m, "elem_bits": self.elem_bits,
                "shift": (min(self.shift_const), max(self.shift_const))}

    def adopt(self, shape: dict) -> None:
        """Size the array by ``shape`` (a :func:`hdl.lane_shape.common_shape` holding its
        own), with the shift constants in ROM images when the other ROMs are: arrays of the
        same passes' shapes that adopt one shape are the same circuit apart from their ROM
        images (a chip's decoder layers; see :mod:`sim.shared`). The block constants' ROMs
        grow to the common widths."""
        own = self.shape()
        if common_shape([own, shape]) != shape:
            raise ValueError("the shape does not hold the array's own")
        self.bounds = shape["bounds"]
        self.acc_bits = signed_width(*self.bounds["acc"])
        self._s_bits = signed_width(*self.bounds["act_sum"])
        self._d_bits, self._m_bits = shape["d_bits"], shape["m_bits"]
        self.d_roms = [self._rom(self._d_img[p], self._d_bits, "d", p)
                       for p in range(self.lanes)]
        if self._has_m:
            self.m_roms = [self._rom(self._m_img[p], self._m_bits, "m", p)
                           for p in range(self.lanes)]
        lo, hi = shape["shift"]
        self._shift_bits = signed_width(min(lo, 0), max(hi, 0))
        if self._rom_images:
            self.shift_roms = word_roms(self.shift_const, self._shift_bits,
                                        f"{self._prefix}_shift")

    def _shift_const(self, m, sel):
        """``shift_const[sel]``: from constants, or from the shift ROMs' words."""
        if not self.shift_roms:
            return indexed_constant(m, sel, self.shift_const, "shift_const")
        return indexed_rom_word(m, sel, self.shift_roms, len(self.shift_const),
                                self._shift_bits, "shift_const")

