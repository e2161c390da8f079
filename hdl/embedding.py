"""The token embedding: row ``id`` of a block-affine embedding into the residual,
:func:`golden.integer.embed_int`, bit for bit."""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.blockquant import BlockAffine
from golden.integer import MODE, IntFormat
from golden.numerics import rounding_bias_terms, signed_range

from .arith import signed_width
from .mask_rom import RomSpec, twos_complement

__all__ = ["EmbeddingUnit", "token_layout"]


def token_layout(vocab: int, pos_bits: int) -> data.StructLayout:
    """A token id and its position: the embedding's (and the chip's) input."""
    return data.StructLayout({"id": unsigned(max(1, (vocab - 1).bit_length())),
                              "pos": unsigned(pos_bits)})


def _pack(fields: np.ndarray, width: int) -> np.ndarray:
    """Rows of signed ``width``-bit fields ``[n, k]`` as uint64 words, field 0 lowest."""
    f = twos_complement(fields, width)
    shifts = (np.arange(f.shape[1], dtype=np.uint64) * np.uint64(width))
    return np.bitwise_or.reduce(f << shifts, axis=1)


class EmbeddingUnit(wiring.Component):
    """Row ``id`` of a block-affine embedding into the residual,
    :func:`golden.integer.embed_int` exactly: ``rescale(D*c + M, -(exp + res_frac),
    res_bits)`` with the golden rounding mode (``half_away``), saturated.

    ROMs: the codes, ``dim / beat`` words per token, split into ROMs of at most 64 bits; and
    ``D`` (and ``M``) per row and block. Each beat takes three cycles (address, the word on
    the output, ``D*c + M`` in its registers), so a token leaves in ``3 * dim / beat`` cycles.

    Ports: ``x`` (:func:`token_layout`), ``y`` (``{"elem": beat * res_bits, "pos"}``, the
    decoder layer's input).
    """

    def __init__(self, emb: BlockAffine, *, beat: int, fmt: IntFormat, pos_bits: int,
                 rom_images: bool = False, prefix: str = "emb"):
        vocab, dim = emb.shape
        if dim % beat or emb.block % beat:
            raise ValueError(f"beat {beat} must divide the embedding's width ({dim}) and its "
                             f"block ({emb.block})")
        self.vocab, self.dim, self.beat, self.fmt = vocab, dim, beat, fmt
        self.nb, self.bpb, self.nblocks = dim // beat, emb.block // beat, emb.nblocks
        self.bits = emb.bits
        self.shift = -(emb.exp + fmt.res_frac)
        if self.shift > 0:
            # The hardware adds golden's bias terms; only constant and per-sign terms exist.
            self.bias = rounding_bias_terms(min(self.shift, 62), MODE)
            if self.bias[2]:
                raise ValueError(f"the embedding rounds {MODE}, which needs a per-bit bias")
        self.d_bits = signed_width(min(0, int(emb.scale.min())), max(0, int(emb.scale.max())))
        self.has_m = bool(np.any(emb.offset))
        self.m_bits = signed_width(min(0, int(emb.offset.min())),
                                   max(0, int(emb.offset.max()))) if self.has_m else 0
        per = max(1, 64 // self.bits)  # codes per ROM word
        self.groups = [(g, min(beat, g + per)) for g in range(0, beat, per)]
        codes = emb.codes.reshape(vocab * self.nb, beat)

        def image(kind):
            return f"{prefix}_{kind}.hex" if rom_images else None

        self.code_roms = [RomSpec(_pack(codes[:, a:b], self.bits), (b - a) * self.bits,
                                  image(f"code{k}")) for k, (a, b) in enumerate(self.groups)]
        sc = [emb.scale.reshape(-1, 1)] + ([emb.offset.reshape(-1, 1)] if self.has_m else [])
        widths = [self.d_bits] + ([self.m_bits] if self.has_m else [])
        if sum(widths) <= 64:
            words = _pack(sc[0], widths[0])
            if self.has_m:
                words |= _pack(sc[1], widths[1]) << np.uint64(widths[0])
            self.scale_roms = [RomSpec(words, sum(widths), image("scale"))]
        else:
            self.scale_roms = [RomSpec(_pack(s, w), w, image(f"scale{k}"))
                               for k, (s, w) in enumerate(zip(sc, widths, strict=True))]
        self.pos_bits = pos_bits
        self.out_layout = data.StructLayout({"elem": unsigned(beat * fmt.res_bits),
                                             "pos": unsigned(pos_bits)})
        super().__init__({"x": In(stream.Signature(token_layout(vocab, pos_bits))),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def cycles(self) -> int:
        """Cycles per token: three per beat (the ROM read, ``D*c + M`` registered, the beat on
        ``y``), and one to take the token."""
        return 3 * self.nb + 1

    @property
    def rom_bits(self) -> int:
        return sum(r.width * len(r.words) for r in self.code_roms + self.scale_roms)

    def roms(self):
        return self.code_roms + self.scale_roms

    def elaborate(self, platform):
        m = Module()
        nb = self.nb
        busy = Signal()
        shown = Signal()  # the ROM words of beat k are on the ROM outputs
        held = Signal()  # beat k's D*c + M are in their registers
        k = Signal(range(nb))
        sub = Signal(range(max(2, self.bpb)))  # beat within its block
        code_addr = Signal(range(self.vocab * nb))
        scale_addr = Signal(range(self.vocab * self.nblocks))
        pos = Signal(self.pos_bits)
        fetch = busy & ~shown & ~held
        roms = []
        for n, r in enumerate(self.code_roms + self.scale_roms):
            rom = r.build()
            m.submodules[f"rom{n}"] = rom
            addr = code_addr if n < len(self.code_roms) else scale_addr
            m.d.comb += [rom.addr.eq(addr), rom.en.eq(fetch)]
            roms.append(rom)
        code_word = Cat(*(rom.data for rom in roms[:len(self.code_roms)]))
        scale_word = Cat(*(rom.data for rom in roms[len(self.code_roms):]))

        m.d.comb += self.x.ready.eq(~busy)
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [busy.eq(1), shown.eq(0), k.eq(0), sub.eq(0), pos.eq(self.x.payload.pos),
                         code_addr.eq(self.x.payload.id * nb),
                         scale_addr.eq(self.x.payload.id * self.nblocks)]
        with m.If(fetch):
            m.d.sync += shown.eq(1)
        with m.If(shown):
            m.d.sync += [shown.eq(0), held.eq(1)]
        m.d.comb += self.y.valid.eq(busy & held)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += [held.eq(0), k.eq(k + 1), code_addr.eq(code_addr + 1)]
            with m.If(sub == self.bpb - 1):
                m.d.sync += [sub.eq(0), scale_addr.eq(scale_addr + 1)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
            with m.If(k == nb - 1):
                m.d.sync += busy.eq(0)

        out = self._residual(m, code_word, scale_word, shown)
        m.d.comb += [self.y.payload.elem.eq(Cat(*out)), self.y.payload.pos.eq(pos)]
        return m

    def _residual(self, m, code_word, scale_word, shown) -> list:
        """Per lane, ``rescale(D*c + M, shift, res_bits)`` of the code in the ROM word: ``D*c
        + M`` is registered when ``shown``, then rounded and saturated."""
        res_bits = self.fmt.res_bits
        d = scale_word[:self.d_bits].as_signed()
        mm = scale_word[self.d_bits:self.d_bits + self.m_bits].as_signed() if self.has_m else 0
        lo, hi = signed_range(res_bits)
        out = []
        vw = max(self.d_bits + self.bits, self.m_bits) + 1
        for i in range(self.beat):
            c = code_word[i * self.bits:(i + 1) * self.bits].as_signed()
            v = Signal(signed(vw), name=f"v{i}")
            with m.If(shown):
                m.d.sync += v.eq(d * c + mm)
            if self.shift >= vw:  # |v| < 2**(shift-1): golden rounds every v to 0
                r = Const(0, signed(2))
            elif self.shift > 0:
                const, per_neg, _ = self.bias
                r = Signal(signed(vw + 1), name=f"r{i}")
                bias = Mux(v[-1], const + per_neg, const)
                m.d.comb += r.eq((v + bias) >> self.shift)
            else:
                r = Signal(signed(vw - self.shift), name=f"r{i}")
                m.d.comb += r.eq(v << -self.shift)
            o = Signal(signed(res_bits), name=f"h{i}")
            with m.If(r > hi):
                m.d.comb += o.eq(hi)
            with m.Elif(r < lo):
                m.d.comb += o.eq(lo)
            with m.Else():
                m.d.comb += o.eq(r)
            out.append(o)
        return out
