"""The whole model in hardware: token ids in, the next token ids out, bit for bit
:class:`golden.llama_int.IntModel` (a Llama) or :class:`golden.gpt_oss_int.IntMoeModel`
(gpt-oss).

Dataflow of a token (one token in flight; every arrow a ``lib.stream``)::

    x (id, pos) ─> embedding ROM ─> layer 0 ─> ... ─> layer N-1 ─> final RMSNorm
                   (codes, D, M)     (each its own lanes, mask ROMs and KV cache)
                      ─> LM head (a lane array, one pass) ─> argmax ─> y (id, logit)

Every decoder layer (:func:`hdl.decoder.decoder_layer`: a :class:`hdl.layer.DecoderLayer`,
or a :class:`hdl.moe_layer.MoeDecoderLayer` for gpt-oss) has its own lane array and mask
ROMs; the LM head is one more :class:`hdl.lane_array.LaneArray`; its ROMs hold the head's
codes and scales (SmolLM2 ties it to the embedding, and the embedding ROM holds the same
numbers in row order, which is what a lookup needs).
"""

from dataclasses import replace

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.arch import int_model
from golden.blockquant import lane_block, pad_rows
from golden.integer import IntFormat
from golden.llama import LlamaConfig, ModelWeights

from .argmax import ArgmaxUnit
from .blackbox import Blackbox, module_key
from .decoder import decoder_layer
from .embedding import EmbeddingUnit, token_layout
from .glue import connect_stream, registered
from .lane_array import LaneArray
from .lane_shape import common_shape
from .norm import RmsNormUnit, gain_bounds

__all__ = ["Chip", "chip_cycles"]


def chip_cycles(embed, layers: list[int], norm, head: int, argmax) -> dict:
    """A token's cycles through a chip, part by part: the embedding, each layer's
    (``layers``), the final norm, the LM head's pass (``head``) and the argmax."""
    return {"embedding": embed.cycles, **{f"layer {i}": c for i, c in enumerate(layers)},
            "final norm": norm.cycles, "LM head": head, "argmax": argmax.cycles,
            "stream registers": 2 + len(layers)}  # into each layer, the LM head, the argmax


class Chip(wiring.Component):
    """The whole model: see the module docstring.

    Parameters: the model (``cfg``, quantised :class:`golden.llama.ModelWeights`), ``ctx`` (KV
    cache positions per layer), ``lanes`` per decoder layer, ``head_lanes`` for the LM head,
    ``beat``, and ``parallel`` lanes (a block's whole codes per cycle; see
    :class:`hdl.lane_array.LaneArray`) instead of bit-serial ones, and ``lane_stages``
    pipeline registers in every lane (:mod:`hdl.lanes`). Units are emitted as
    separate modules (:attr:`modules`), each decoder layer as ``l<i>_layer`` with its own units.

    With ``gate_clocks``, each decoder layer and the head stage get their own gated clock
    (:meth:`_stage`): only the stage the token is in is clocked, as an ASIC would gate
    idle logic, and a simulator evaluates one stage per cycle instead of all of them. Inside
    a stage, the lanes of each lane array are gated again, ticking only while they work
    (``gate_lanes`` of :class:`hdl.lane_array.LaneArray`).

    Ports: ``x`` (:func:`token_layout`: id and position, one payload per token), ``y``
    (``{"id", "logit"}``: the next token and its integer logit, Q.logit_frac). One token is
    in flight: ``x`` is ready again once the previous token's ``y`` has been taken.
    """

    def __init__(self, cfg: LlamaConfig, w: ModelWeights, *, ctx: int, lanes: int,
                 head_lanes: int, beat: int, fmt: IntFormat | None = None,
                 rom_images: bool = False, gate_clocks: bool = True, progress=None,
                 parallel: bool = False, lane_stages: int = 0):
        fmt = fmt or IntFormat()
        self.gate_clocks = gate_clocks
        self.cfg, self.fmt, self.ctx, self.beat = cfg, fmt, ctx, beat
        self.lanes, self.head_lanes = lanes, head_lanes
        self.golden = int_model(cfg, w, ctx, fmt)
        self.pos_bits = max(1, (ctx - 1).bit_length())
        self.modules = {}
        self.layers = []
        units = {}  # the layers' units by module name: identical units are built once
        # Every layer's norms sized alike: with their gains in ROM images, they are one circuit.
        bounds = gain_bounds(*((L.g_attn, L.gf_attn) for L in self.golden.layers),
                             *((L.g_ffn, L.gf_ffn) for L in self.golden.layers))
        for i, lw in enumerate(w.layers):
            layer = decoder_layer(cfg, lw, index=i, ctx=ctx, lanes=lanes, beat=beat, fmt=fmt,
                                  rom_images=rom_images, prefix=f"l{i}", parallel=parallel,
                                  gate_lanes=gate_clocks, units=units, lane_stages=lane_stages,
                                  norm_bounds=bounds)
            self.layers.append(layer)
            if progress:
                progress()
        # Every layer's lane array sized alike (each holds every layer's ranges), so that the
        # layers are one circuit apart from their ROM images.
        shape = common_shape([layer.engine.shape() for layer in self.layers]) \
            if self.layers else None
        for i, layer in enumerate(self.layers):
            if shape is not None:
                layer.engine.adopt(shape)
            # Identical lanes (same widths and bounds) are one module across the layers.
            layer.engine.lane_name = module_key(layer.engine.lane_kind,
                                                 layer.engine.lane_args())
            self.modules.update(layer.modules)
            self.modules[f"l{i}_layer"] = layer
        self.embed = EmbeddingUnit(w.embedding, beat=beat, fmt=fmt, pos_bits=self.pos_bits,
                                   rom_images=rom_images)
        G = self.golden
        head_fmt = replace(fmt, abits=G.head_abits, fx_frac=fmt.logit_frac,
                           fx_bits=fmt.logit_bits)
        self.head_fmt = head_fmt
        # A vocabulary that the head's lanes do not divide is padded with zero rows, which
        # the argmax never chooses.
        self.head_rows = -(-cfg.vocab // head_lanes) * head_lanes
        head = pad_rows(w.lm_head.reblock(lane_block(w.lm_head)), self.head_rows)
        self.norm = RmsNormUnit(cfg.dim, beat, head_fmt, G.g_final, G.gf_final, G.eps_term,
                                image="final_norm" if rom_images else None)
        self.head = LaneArray([head], abits=G.head_abits, lanes=head_lanes, beat=beat,
                              fmt=head_fmt, rom_images=rom_images, prefix="head",
                              parallel=parallel, gate_lanes=gate_clocks, stages=lane_stages)
        self.head.lane_name = module_key(self.head.lane_kind, self.head.lane_args())
        self.argmax = ArgmaxUnit(cfg.vocab, beat, fmt.logit_bits, rows=self.head_rows)
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
        return (sum(layer.rom_bits for layer in self.layers) + self.head.rom_bits
                + self.embed.rom_bits)

    @property
    def ram_bits(self) -> int:
        return sum(layer.ram_bits for layer in self.layers)

    def roms(self):
        out = []
        for layer in self.layers:
            out += layer.roms()
        return out + self.head.roms() + self.embed.roms() + self.norm.roms()

    def unit_cycles(self, pos: int) -> dict:
        """Where a token's cycles go, from the units' formulas."""
        return chip_cycles(self.embed, [sum(layer.unit_cycles(pos).values())
                                        for layer in self.layers],
                           self.norm, self.head.cycles_per_vector, self.argmax)

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
        resets, inputs = [rst], []
        for i, b in enumerate(layers):  # gated by busy | input offered or held
            offered = Signal(name=f"l{i}_offered")
            b.clock, b.reset = self._stage(m, f"l{i}", b.busy | b.x.valid | offered, rst)
            resets.append(b.reset)
            # Each layer's input is a registered boundary on the layer's clock: no
            # combinational path runs from one layer into the next, either way.
            inputs.append(registered(m, f"r_l{i}", b.x,
                                     domain=f"l{i}_g" if self.gate_clocks else "sync",
                                     reset=b.reset if self.gate_clocks else None))
            m.d.comb += offered.eq(inputs[-1].valid)
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
        for i, (b, dst) in enumerate(zip(layers, inputs, strict=True)):
            if i == 0:
                connect_stream(m, src, dst)
            else:
                m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                             dst.payload.elem.eq(src.payload.elem), dst.payload.pos.eq(pos)]
            src = b.y
        if not layers:
            m.d.comb += [norm.x.valid.eq(src.valid), src.ready.eq(norm.x.ready),
                         norm.x.payload.elem.eq(src.payload.elem)]
        else:
            connect_stream(m, src, norm.x)
        # the head stage's units meet at registered boundaries, on its clock
        head_domain = "head_g" if self.gate_clocks else "sync"
        for name, src, dst in (("r_head", norm.y, head.x), ("r_argmax", head.y, amax.x)):
            connect_stream(m, src, registered(m, name, dst, domain=head_domain,
                                              reset=head_rst))
        connect_stream(m, amax.y, self.y)
        return m
