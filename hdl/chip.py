"""The whole model in hardware: token ids in, the next token ids out, bit for bit
:class:`golden.llama_int.IntModel`.

Dataflow of a token (one token in flight; every arrow a ``lib.stream``)::

    x (id, pos) ─> embedding ROM ─> layer 0 ─> ... ─> layer N-1 ─> final RMSNorm
                   (codes, D, M)     (each its own lanes, mask ROMs and KV cache)
                      ─> LM head (a lane array, one pass) ─> argmax ─> y (id, logit)

Every decoder layer is a :class:`hdl.layer.DecoderLayer` with its own lane array and mask
ROMs; the LM head is one more :class:`hdl.block_matvec.LaneArray`; its ROMs hold the head's
codes and scales (SmolLM2 ties it to the embedding, and the embedding ROM holds the same
numbers in row order, which is what a lookup needs).
"""

from dataclasses import replace

import numpy as np
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    Module,
    ResetSignal,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.blockquant import BlockAffine, lane_block
from golden.llama import LlamaConfig, ModelWeights
from golden.llama_int import MODE, IntFormat, IntModel
from golden.numerics import rounding_bias_terms, signed_range, signed_width

from .blackbox import Blackbox, module_key
from .block_matvec import LaneArray
from .layer import DecoderLayer
from .mask_rom import MaskRom, hex_image
from .norm import RmsNormUnit
from .vector import beat_layout

__all__ = ["EmbeddingUnit", "ArgmaxUnit", "Chip", "token_layout"]


def token_layout(vocab: int, pos_bits: int) -> data.StructLayout:
    """The chip's input: a token id and its position."""
    return data.StructLayout({"id": unsigned(max(1, (vocab - 1).bit_length())),
                              "pos": unsigned(pos_bits)})


def _connect(m, src, dst):
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                 Value.cast(dst.payload).eq(Value.cast(src.payload))]


class _Rom:
    """Contents of one ROM and its image file name; the :class:`MaskRom` is made at
    elaboration, like :class:`hdl.block_matvec.RomSpec`."""

    def __init__(self, words: np.ndarray, width: int, image: str | None):
        self.words, self.width, self.image = words.astype(np.uint64), width, image

    def build(self) -> MaskRom:
        return MaskRom(self.words, self.width, image=self.image)

    def image_text(self) -> bytes:
        return hex_image(self.words, self.width)


def _pack(fields: np.ndarray, width: int) -> np.ndarray:
    """Rows of signed ``width``-bit fields ``[n, k]`` as uint64 words, field 0 lowest."""
    mask = np.uint64((1 << width) - 1)
    f = fields.astype(np.int64).view(np.uint64) & mask
    shifts = (np.arange(f.shape[1], dtype=np.uint64) * np.uint64(width))
    return np.bitwise_or.reduce(f << shifts, axis=1)


class EmbeddingUnit(wiring.Component):
    """Row ``id`` of a block-affine embedding into the residual,
    :func:`golden.llama_int.embed_int` exactly: ``rescale(D*c + M, -(exp + res_frac),
    res_bits)`` with the golden rounding mode (``half_away``), saturated.

    ROMs: the codes, ``dim / beat`` words per token, split into ROMs of at most 64 bits; and
    ``D`` (and ``M``) per row and block. Each beat takes two cycles (address, then the word
    on the output), so a token leaves in ``2 * dim / beat`` cycles.

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
        self.d_bits = int(signed_width(min(0, int(emb.scale.min())), max(0, int(emb.scale.max()))))
        self.has_m = bool(np.any(emb.offset))
        self.m_bits = int(signed_width(min(0, int(emb.offset.min())),
                                       max(0, int(emb.offset.max())))) if self.has_m else 0
        per = max(1, 64 // self.bits)  # codes per ROM word
        self.groups = [(g, min(beat, g + per)) for g in range(0, beat, per)]
        codes = emb.codes.reshape(vocab * self.nb, beat)

        def image(kind):
            return f"{prefix}_{kind}.hex" if rom_images else None

        self.code_roms = [_Rom(_pack(codes[:, a:b], self.bits), (b - a) * self.bits,
                               image(f"code{k}")) for k, (a, b) in enumerate(self.groups)]
        sc = [emb.scale.reshape(-1, 1)] + ([emb.offset.reshape(-1, 1)] if self.has_m else [])
        widths = [self.d_bits] + ([self.m_bits] if self.has_m else [])
        if sum(widths) <= 64:
            words = _pack(sc[0], widths[0])
            if self.has_m:
                words |= _pack(sc[1], widths[1]) << np.uint64(widths[0])
            self.scale_roms = [_Rom(words, sum(widths), image("scale"))]
        else:
            self.scale_roms = [_Rom(_pack(s, w), w, image(f"scale{k}"))
                               for k, (s, w) in enumerate(zip(sc, widths, strict=True))]
        self.pos_bits = pos_bits
        self.out_layout = data.StructLayout({"elem": unsigned(beat * fmt.res_bits),
                                             "pos": unsigned(pos_bits)})
        super().__init__({"x": In(stream.Signature(token_layout(vocab, pos_bits))),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def cycles(self) -> int:
        return 2 * self.nb + 1

    @property
    def rom_bits(self) -> int:
        return sum(r.width * len(r.words) for r in self.code_roms + self.scale_roms)

    def roms(self):
        return self.code_roms + self.scale_roms

    def elaborate(self, platform):
        m = Module()
        fmt, B, nb = self.fmt, self.beat, self.nb
        busy = Signal()
        shown = Signal()  # the ROM words of beat k are on the ROM outputs
        k = Signal(range(nb))
        sub = Signal(range(max(2, self.bpb)))  # beat within its block
        code_addr = Signal(range(self.vocab * nb))
        scale_addr = Signal(range(self.vocab * self.nblocks))
        pos = Signal(self.pos_bits)
        fetch = busy & ~shown
        roms = []
        for n, r in enumerate(self.code_roms + self.scale_roms):
            rom = r.build()
            m.submodules[f"rom{n}"] = rom
            addr = code_addr if n < len(self.code_roms) else scale_addr
            m.d.comb += [rom.addr.eq(addr), rom.en.eq(fetch)]
            roms.append(rom)
        code_word = Cat_(roms[:len(self.code_roms)])
        scale_word = Cat_(roms[len(self.code_roms):])

        m.d.comb += self.x.ready.eq(~busy)
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [busy.eq(1), shown.eq(0), k.eq(0), sub.eq(0), pos.eq(self.x.payload.pos),
                         code_addr.eq(self.x.payload.id * nb),
                         scale_addr.eq(self.x.payload.id * self.nblocks)]
        with m.If(fetch):
            m.d.sync += shown.eq(1)
        m.d.comb += self.y.valid.eq(busy & shown)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += [shown.eq(0), k.eq(k + 1), code_addr.eq(code_addr + 1)]
            with m.If(sub == self.bpb - 1):
                m.d.sync += [sub.eq(0), scale_addr.eq(scale_addr + 1)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
            with m.If(k == nb - 1):
                m.d.sync += busy.eq(0)

        d = scale_word[:self.d_bits].as_signed()
        mm = scale_word[self.d_bits:self.d_bits + self.m_bits].as_signed() if self.has_m else 0
        lo, hi = signed_range(fmt.res_bits)
        out = []
        vw = max(self.d_bits + self.bits, self.m_bits) + 1
        for i in range(B):
            c = code_word[i * self.bits:(i + 1) * self.bits].as_signed()
            v = Signal(signed(vw), name=f"v{i}")
            m.d.comb += v.eq(d * c + mm)
            if self.shift >= vw:  # |v| < 2**(shift-1): golden rounds every v to 0
                r = Const(0, signed(2))
            elif self.shift > 0:
                const, per_neg, _ = self.bias
                r = Signal(signed(vw + 1), name=f"r{i}")
                bias = Mux_(v[-1], const + per_neg, const)
                m.d.comb += r.eq((v + bias) >> self.shift)
            else:
                r = Signal(signed(vw - self.shift), name=f"r{i}")
                m.d.comb += r.eq(v << -self.shift)
            o = Signal(signed(fmt.res_bits), name=f"h{i}")
            with m.If(r > hi):
                m.d.comb += o.eq(hi)
            with m.Elif(r < lo):
                m.d.comb += o.eq(lo)
            with m.Else():
                m.d.comb += o.eq(r)
            out.append(o)
        m.d.comb += [self.y.payload.elem.eq(Cat_(out)), self.y.payload.pos.eq(pos)]
        return m


def Cat_(parts):
    """``Cat`` of ROMs' data outputs or of signals."""
    from amaranth.hdl import Cat

    return Cat(*[p.data if isinstance(p, MaskRom) else p for p in parts])


class ArgmaxUnit(wiring.Component):
    """The index of the largest of ``n`` signed values arriving in beats, and that value;
    equal maxima go to the lowest index (:func:`golden.llama_int.argmax_int`).

    Ports: ``x`` (``beat_layout(beat, bits)``, ``n / beat`` beats), ``y`` (``{"id",
    "logit"}``, one payload per vector, a cycle after the last beat)."""

    def __init__(self, n: int, beat: int, bits: int):
        if n % beat:
            raise ValueError(f"beat {beat} does not divide {n}")
        self.n, self.beat, self.bits = n, beat, bits
        self.id_bits = max(1, (n - 1).bit_length())
        self.out_layout = data.StructLayout({"id": unsigned(self.id_bits),
                                             "logit": signed(bits)})
        super().__init__({"x": In(stream.Signature(beat_layout(beat, bits))),
                          "y": Out(stream.Signature(self.out_layout))})

    @property
    def cycles(self) -> int:
        return self.n // self.beat + 1

    def elaborate(self, platform):
        m = Module()
        B, W, nb = self.beat, self.bits, self.n // self.beat
        # The beat's maximum by a tree; the left (lower index) wins a tie.
        level = [(self.x.payload.elem[i * W:(i + 1) * W].as_signed(), Const(i, range(B)))
                 for i in range(B)]
        depth = 0
        while len(level) > 1:
            nxt = []
            for j in range(0, len(level) - 1, 2):
                (va, ia), (vb, ib) = level[j], level[j + 1]
                v = Signal(signed(W), name=f"mx{depth}_{j // 2}")
                i = Signal(range(B), name=f"ix{depth}_{j // 2}")
                take_b = vb > va
                m.d.comb += [v.eq(Mux_(take_b, vb, va)), i.eq(Mux_(take_b, ib, ia))]
                nxt.append((v, i))
            if len(level) % 2:
                nxt.append(level[-1])
            level, depth = nxt, depth + 1
        bv, bi = level[0]
        cnt = Signal(range(nb))
        best = Signal(signed(W))
        best_id = Signal(self.id_bits)
        full = Signal()
        here = Signal(self.id_bits)
        m.d.comb += here.eq(cnt * B + bi)
        take = (cnt == 0) | (bv > best)
        m.d.comb += [self.x.ready.eq(~full), self.y.valid.eq(full),
                     self.y.payload.id.eq(best_id), self.y.payload.logit.eq(best)]
        with m.If(self.x.valid & self.x.ready):
            with m.If(take):
                m.d.sync += [best.eq(bv), best_id.eq(here)]
            with m.If(cnt == nb - 1):
                m.d.sync += [cnt.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += full.eq(0)
        return m


def Mux_(sel, a, b):
    from amaranth.hdl import Mux

    return Mux(sel, a, b)


class Chip(wiring.Component):
    """The whole model: see the module docstring.

    Parameters: the model (``cfg``, quantised :class:`golden.llama.ModelWeights`), ``ctx`` (KV
    cache positions per layer), ``lanes`` per decoder layer, ``head_lanes`` for the LM head,
    ``beat``, and ``parallel`` lanes (a block's whole codes per cycle; see
    :class:`hdl.block_matvec.LaneArray`) instead of bit-serial ones. Units are emitted as
    separate modules (:attr:`modules`), each decoder layer as ``l<i>_layer`` with its own units.

    With ``gate_clocks``, each decoder layer and the head stage get their own gated clock
    (:meth:`_stage`): only the stage the token is in is clocked, as an ASIC would gate
    idle logic, and a simulator evaluates one stage per cycle instead of all of them. Inside
    a stage, the lanes of each lane array are gated again, ticking only while they work
    (``gate_lanes`` of :class:`hdl.block_matvec.LaneArray`).

    Ports: ``x`` (:func:`token_layout`: id and position, one payload per token), ``y``
    (``{"id", "logit"}``: the next token and its integer logit, Q.logit_frac). One token is
    in flight: ``x`` is ready again once the previous token's ``y`` has been taken.
    """

    def __init__(self, cfg: LlamaConfig, w: ModelWeights, *, ctx: int, lanes: int,
                 head_lanes: int, beat: int, fmt: IntFormat | None = None,
                 rom_images: bool = False, gate_clocks: bool = True, progress=None,
                 parallel: bool = False):
        fmt = fmt or IntFormat()
        self.gate_clocks = gate_clocks
        self.cfg, self.fmt, self.ctx, self.beat = cfg, fmt, ctx, beat
        self.lanes, self.head_lanes = lanes, head_lanes
        self.golden = IntModel(cfg, w, ctx, fmt)
        self.pos_bits = max(1, (ctx - 1).bit_length())
        self.modules = {}
        self.layers = []
        for i, lw in enumerate(w.layers):
            layer = DecoderLayer(cfg, lw, ctx=ctx, lanes=lanes, beat=beat, fmt=fmt,
                                 rom_images=rom_images, prefix=f"l{i}", parallel=parallel,
                                 gate_lanes=gate_clocks)
            # Identical lanes (same widths and bounds) are one module across the layers.
            layer.engine.lane_name = module_key(layer.engine.lane_kind,
                                                 layer.engine.lane_args())
            self.layers.append(layer)
            self.modules.update(layer.modules)
            self.modules[f"l{i}_layer"] = layer
            if progress:
                progress()
        self.embed = EmbeddingUnit(w.embedding, beat=beat, fmt=fmt, pos_bits=self.pos_bits,
                                   rom_images=rom_images)
        G = self.golden
        head_fmt = replace(fmt, abits=G.head_abits, fx_frac=fmt.logit_frac,
                           fx_bits=fmt.logit_bits)
        self.head_fmt = head_fmt
        head = w.lm_head.reblock(lane_block(w.lm_head))
        self.norm = RmsNormUnit(cfg.dim, beat, head_fmt, G.g_final, G.gf_final, G.eps_term)
        self.head = LaneArray([head], abits=G.head_abits, lanes=head_lanes, beat=beat,
                              fmt=head_fmt, rom_images=rom_images, prefix="head",
                              parallel=parallel, gate_lanes=gate_clocks)
        self.head.lane_name = module_key(self.head.lane_kind, self.head.lane_args())
        self.argmax = ArgmaxUnit(cfg.vocab, beat, fmt.logit_bits)
        for name, comp in (("embedding", self.embed), ("final_norm", self.norm),
                           ("head_engine", self.head), ("argmax", self.argmax)):
            self.modules[f"chip_{name}"] = comp
        self.in_layout = token_layout(cfg.vocab, self.pos_bits)
        super().__init__({"x": In(stream.Signature(self.in_layout)),
                          "y": Out(stream.Signature(self.argmax.out_layout))})

    def derived_modules(self) -> dict:
        """``{name: (source, renames)}``: each decoder layer after the first is the first's
        Verilog with its own unit and lane-array module names (the glue is the same)."""
        first = self.layers[0] if self.layers else None
        out = {}
        for i, layer in enumerate(self.layers[1:], start=1):
            renames = {"l0_layer": f"l{i}_layer"}
            for attr, name in first._module_of.items():
                if layer._module_of[attr] != name:
                    renames[name] = layer._module_of[attr]
            out[f"l{i}_layer"] = ("l0_layer", renames)
        return out

    # -- figures ------------------------------------------------------------------------------
    def engines(self) -> list[LaneArray]:
        return [layer.engine for layer in self.layers] + [self.head]

    def lane_modules(self) -> dict:
        """Lane module name -> its lane array (one per distinct lane)."""
        return {e.lane_name: e for e in self.engines()}

    @property
    def rom_bits(self) -> int:
        return sum(e.rom_bits for e in self.engines()) + self.embed.rom_bits

    @property
    def ram_bits(self) -> int:
        return sum(layer.ram_bits for layer in self.layers)

    def roms(self):
        out = []
        for e in self.engines():
            out += e.roms()
        return out + self.embed.roms()

    def unit_cycles(self, pos: int) -> dict:
        """Where a token's cycles go, from the units' formulas."""
        out = {"embedding": self.embed.cycles}
        for i, layer in enumerate(self.layers):
            out[f"layer {i}"] = sum(layer.unit_cycles(pos).values())
        out["final norm"] = self.norm.cycles
        out["LM head"] = self.head.cycles_per_vector
        out["argmax"] = self.argmax.cycles
        return out

    def ideal_cycles(self, pos: int) -> float:
        """All weight bits over each array's lane throughput, plus each layer's attention."""
        return sum(layer.ideal_cycles(pos) for layer in self.layers) + self.head.ideal_cycles

    # -- circuit ------------------------------------------------------------------------------
    def _stage(self, m, name: str, enable, rst):
        """The clock and reset of a stage (a decoder layer, or the head stage).

        With :attr:`gate_clocks`, the clock is ``clk`` stopped while ``enable`` is low: the
        enable is latched while ``clk`` is low (a negative-edge flop) and ANDed with ``clk``,
        so the gated clock has no glitch, like a clock-gating cell. The stage's reset is then
        ``rst`` registered again on that clock (the clock runs until it has been seen low), so
        that the stage's logic depends on its own clock's registers only: Verilator then
        evaluates it only when that clock ticks. Otherwise ``(None, rst)``."""
        if not self.gate_clocks:
            return None, rst
        cd = ClockDomain(f"{name}_en", clk_edge="neg", reset_less=True)
        m.domains += cd
        m.d.comb += cd.clk.eq(ClockSignal("sync"))
        en = Signal(name=f"{name}_en_q")
        srst = Signal(init=1, reset_less=True, name=f"{name}_rst")
        m.d[cd.name] += en.eq(enable | rst | srst)
        gclk = Signal(name=f"{name}_gclk")
        m.d.comb += gclk.eq(ClockSignal("sync") & en)
        gd = ClockDomain(f"{name}_g", reset_less=True)
        m.domains += gd
        m.d.comb += gd.clk.eq(gclk)
        m.d[gd.name] += srst.eq(rst)
        return gclk, srst

    def elaborate(self, platform):
        m = Module()
        # Every unit is reset by a register of ``rst``, not by the port: Verilator evaluates
        # logic that depends on an input combinationally at every input change (its "ico"
        # region), whatever the clocks, and every unit's next state depends on its reset.
        rst = Signal(init=1, reset_less=True, name="rst_q")
        m.d.sync += rst.eq(ResetSignal("sync"))
        emb = Blackbox(self.embed, "chip_embedding", reset=rst)
        layers = [Blackbox(layer, f"l{i}_layer") for i, layer in enumerate(self.layers)]
        resets = [rst]
        for i, b in enumerate(layers):  # gated by busy | input offered
            b.clock, b.reset = self._stage(m, f"l{i}", b.busy | b.x.valid, rst)
            resets.append(b.reset)
        # The head stage (final norm, LM head, argmax) runs from the last layer's first
        # output beat until the chip's output is taken.
        head_on = Signal()
        last_y = layers[-1].y if layers else emb.y
        clk, head_rst = self._stage(m, "head", head_on | last_y.valid, rst)
        resets.append(head_rst)
        norm = Blackbox(self.norm, "chip_final_norm", clk, head_rst)
        head = Blackbox(self.head, "chip_head_engine", clk, head_rst)
        amax = Blackbox(self.argmax, "chip_argmax", clk, head_rst)
        with m.If(last_y.valid):
            m.d.sync += head_on.eq(1)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += head_on.eq(0)
        m.submodules.embedding = emb
        for i, b in enumerate(layers):
            m.submodules[f"layer{i}"] = b
        m.submodules.final_norm, m.submodules.head, m.submodules.argmax = norm, head, amax

        # One token in flight: the layers share its position (and the next token depends on
        # this one's output anyway).
        pos = Signal(self.pos_bits)
        busy = Signal()
        in_reset = Cat(*resets).any()  # until every stage is out of reset
        m.d.comb += [emb.x.valid.eq(self.x.valid & ~busy & ~in_reset),
                     self.x.ready.eq(emb.x.ready & ~busy & ~in_reset),
                     emb.x.payload.eq(self.x.payload)]
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [pos.eq(self.x.payload.pos), busy.eq(1)]
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += busy.eq(0)
        src = emb.y
        for i, b in enumerate(layers):
            if i == 0:
                _connect(m, src, b.x)
            else:
                m.d.comb += [b.x.valid.eq(src.valid), src.ready.eq(b.x.ready),
                             b.x.payload.elem.eq(src.payload.elem), b.x.payload.pos.eq(pos)]
            src = b.y
        if not layers:
            m.d.comb += [norm.x.valid.eq(src.valid), src.ready.eq(norm.x.ready),
                         norm.x.payload.elem.eq(src.payload.elem)]
        else:
            _connect(m, src, norm.x)
        _connect(m, norm.y, head.x)
        _connect(m, head.y, amax.x)
        _connect(m, amax.y, self.y)
        return m
