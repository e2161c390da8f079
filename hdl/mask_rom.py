"""Read-only memory with constant contents: the mask ROM beside each lane."""

import numpy as np
from amaranth.hdl import ClockSignal, Instance, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.block_folded import ROM_WIDTH

__all__ = ["MaskRom", "RomSpec", "ROM_PRIMITIVE", "ROM_PRIMITIVE_NAME", "hex_image",
           "twos_complement"]

ROM_PRIMITIVE_NAME = "hardwire_rom"

#: A ROM whose contents come from a ``$readmemh`` image. Yosys infers block RAM from it, and
#: Icarus, Verilator and yosys all load the image, so the Verilog stays the same size whatever
#: the model. Amaranth cannot emit ``$readmemh``, hence this one fixed primitive.
ROM_PRIMITIVE = f"""\
// Synchronous ROM loaded from a $readmemh image (relative to the working directory).
module {ROM_PRIMITIVE_NAME} #(
    parameter WIDTH = 8,
    parameter DEPTH = 16,
    parameter ABITS = 4,
    parameter INIT = "rom.hex"
) (
    input  wire             clk,
    input  wire             en,
    input  wire [ABITS-1:0] addr,
    output reg  [WIDTH-1:0] data
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    initial $readmemh(INIT, mem);
    always @(posedge clk)
        if (en)
            data <= mem[addr];
endmodule
"""


def hex_image(words: np.ndarray, width: int) -> bytes:
    """``$readmemh`` text for ``uint64`` words: one word per line, ``ceil(width / 4)`` hex
    digits, built with numpy (no per-word Python)."""
    words = np.ascontiguousarray(words, dtype=">u8")
    digits = -(-width // 4)
    text = np.frombuffer(words.tobytes().hex().encode(), dtype="S1").reshape(-1, 16)
    lines = np.concatenate([text[:, 16 - digits:], np.full((len(words), 1), b"\n")], axis=1)
    return lines.tobytes()


def twos_complement(values, width: int) -> np.ndarray:
    """Integers as ``uint64`` ROM words of ``width`` bits: signed values as their two's
    complement (``uint64`` values as they are), cut to ``width`` bits."""
    words = np.asarray(values)
    if words.dtype != np.uint64:
        words = words.astype(np.int64).view(np.uint64)
    if width < 64:
        words = words & np.uint64((1 << width) - 1)
    return words


class RomSpec:
    """A ROM's contents and image file name (``None``: contents in the Verilog). The
    :class:`MaskRom` is made by :meth:`build` at elaboration, so that a design converted in
    another process leaves no unused ROM objects behind."""

    def __init__(self, words, width: int, image: str | None):
        self.words = np.asarray(words, dtype=np.uint64)
        self.width, self.image = width, image

    def build(self) -> "MaskRom":
        return MaskRom(self.words, self.width, image=self.image)

    def image_text(self) -> bytes:
        return hex_image(self.words, self.width)


class MaskRom(wiring.Component):
    """Synchronous ROM: ``data`` shows word ``addr`` one cycle after a cycle with ``en`` high,
    and holds while ``en`` is low.

    Parameters
    ----------
    words : ndarray of uint64
        Contents.
    width : int
        Word width in bits, 1..64.
    image : str or None
        ``None`` puts the contents into the Verilog (``lib.memory.Memory`` init). A file name
        instead instantiates :data:`ROM_PRIMITIVE`, which loads that ``$readmemh`` image; the
        caller writes :meth:`image_text` to it.
    """

    def __init__(self, words, width: int, *, image: str | None = None):
        words = np.asarray(words, dtype=np.uint64)
        if words.ndim != 1 or len(words) < 1:
            raise ValueError(f"ROM contents must be a non-empty 1-D array, not shape {words.shape}")
        if not 1 <= width <= ROM_WIDTH:
            raise ValueError(f"ROM width must be 1..{ROM_WIDTH} bits, not {width!r}")
        if width < 64 and np.any(words >> np.uint64(width)):
            raise ValueError(f"ROM contents do not fit in {width} bits")
        self._words, self._width, self.image = words, width, image
        self.depth = len(words)
        self.addr_width = max(1, (self.depth - 1).bit_length())
        super().__init__({"addr": In(self.addr_width), "en": In(1), "data": Out(width)})

    def image_text(self) -> bytes:
        return hex_image(self._words, self._width)

    def elaborate(self, platform):
        m = Module()
        if self.image is None:
            m.submodules.mem = mem = Memory(shape=self._width, depth=self.depth,
                                            init=self._words.tolist())
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en), self.data.eq(port.data)]
        else:
            m.submodules.rom = Instance(
                ROM_PRIMITIVE_NAME,
                p_WIDTH=self._width, p_DEPTH=self.depth, p_ABITS=self.addr_width,
                p_INIT=self.image,
                i_clk=ClockSignal("sync"), i_en=self.en, i_addr=self.addr, o_data=self.data,
            )
        return m

