"""A Llama decoder layer in hardware: one token in, one token out, bit for bit
:func:`golden.llama_int.int_layer_step`.

Dataflow of a token (every arrow is a ``lib.stream`` of beats, :mod:`hdl.vector`)::

    x (h, pos) ─┬─> FIFO h ───────────────────────────┐
                └─> RMSNorm ─> [pass 0: q|k|v] ─┬─ q|k ─> RoPE ─┐
                                                └─ v ───────────┴─> attention (KV cache RAM)
          ┌──────────────────────────────────────────────────────────┘
          └─> BFP ─> [pass 1: o] ─> + h ─┬─> FIFO h1 ───────────────────────┐
                                         └─> RMSNorm ─> [pass 2: gate/up] ─> SwiGLU
                                                          ─> [pass 3: down] ─> + h1 ─> y

The four passes run on one :class:`hdl.lane_array.LaneArray`: its lanes' mask ROMs hold
every projection of the layer, so the lanes are busy in every pass. One token is in flight at
a time; the next token's first beat is accepted after the last output beat.

Ports
-----
x : In(stream)
    ``StructLayout({"elem": unsigned(beat * res_bits), "pos": unsigned(pos_bits)})``:
    the residual ``h`` (int32 Q.res_frac), ``dim / beat`` beats per token, each carrying the
    token's position (``pos < ctx``).
y : Out(stream)
    ``beat_layout(beat, res_bits)``: the new residual, ``dim / beat`` beats.
busy : Out(1)
    A token is inside the layer. While ``busy`` and ``x.valid`` are both low, no register
    of the layer changes, so a chip may stop its clock (:class:`hdl.chip.Chip`).
"""

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Module,
    ResetSignal,
    Signal,
    Value,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.blockquant import interleave_rows, lane_block, stack
from golden.integer import IntFormat
from golden.llama import PROJECTIONS, LayerWeights, LlamaConfig
from golden.llama_int import IntLayer

from .attention import AttentionUnit
from .bfp import BfpUnit
from .blackbox import Blackbox, module_key
from .glue import BeatFifo, Fork, Merge, Pairer, Route, connect_stream, registered
from .lane_array import LaneArray
from .norm import RmsNormUnit, gain_bounds
from .residual import ResidualAdd
from .rope import RopeUnit
from .swiglu import SwigluUnit
from .vector import beat_layout

__all__ = ["LayerBase", "DecoderLayer", "one_token_at_a_time", "join_residual",
           "dense_cycles"]


def one_token_at_a_time(m, layer, nb: int, res_beat):
    """A layer's input: one token (``nb`` beats) at a time, its position latched from the
    first beat, into a :class:`hdl.glue.Fork` of two (returned, with the position). ``busy``
    is high from a token's first input beat to its last output beat."""
    accepting = Signal(init=1)
    in_cnt = Signal(range(nb + 1))
    out_cnt = Signal(range(nb + 1))
    pos = Signal(layer.pos_bits)
    m.submodules.fork_in = fork_in = Fork(res_beat, 2)
    # Nothing is taken while the layer's own reset register (:meth:`LayerBase.elaborate`)
    # still holds it in reset.
    live = accepting & ~layer.rst_q
    m.d.comb += [fork_in.i.valid.eq(layer.x.valid & live),
                 layer.x.ready.eq(fork_in.i.ready & live),
                 fork_in.i.payload.elem.eq(layer.x.payload.elem)]
    with m.If(layer.x.valid & layer.x.ready):
        with m.If(in_cnt == 0):
            m.d.sync += pos.eq(layer.x.payload.pos)
        with m.If(in_cnt == nb - 1):
            m.d.sync += [in_cnt.eq(0), accepting.eq(0)]
        with m.Else():
            m.d.sync += in_cnt.eq(in_cnt + 1)
    # A token is inside (between its first input beat and its last output beat); with
    # none inside and no input offered, no register of the layer changes.
    m.d.comb += layer.busy.eq(~accepting | (in_cnt != 0) | layer.rst_q)
    with m.If(layer.y.valid & layer.y.ready):
        with m.If(out_cnt == nb - 1):
            m.d.sync += [out_cnt.eq(0), accepting.eq(1)]
        with m.Else():
            m.d.sync += out_cnt.eq(out_cnt + 1)
    return fork_in, pos


def join_residual(m, a, b, dst) -> None:
    """Beats of ``a`` (the residual, ``h``) and ``b`` (the update, ``y``) side by side into a
    :class:`hdl.residual.ResidualAdd` input ``dst``."""
    fire = dst.valid & dst.ready
    m.d.comb += [dst.valid.eq(a.valid & b.valid), a.ready.eq(fire), b.ready.eq(fire),
                 dst.payload.h.eq(a.payload.elem), dst.payload.y.eq(b.payload.elem)]


def dense_cycles(u, passes: list[int], beats: int, pos: int) -> dict:
    """A token's cycles at ``pos``, unit by unit: ``u`` has the units (``norm1``, ``rope``,
    ``attn``, ``bfp``, ``add1``, ``norm2``, ``swiglu``, ``add2``) and ``passes`` the lane
    array's cycles of q|k|v, o, gate/up and down."""
    return {
        "input": beats,
        "rmsnorm (attn)": u.norm1.cycles,
        "q|k|v pass": passes[0],
        "rope": u.rope.cycles,
        "attention": u.attn.cycles(pos),
        "bfp": u.bfp.cycles,
        "o pass": passes[1],
        "residual add": u.add1.cycles,
        "rmsnorm (ffn)": u.norm2.cycles,
        "gate/up pass": passes[2],
        "swiglu": u.swiglu.cycles,
        "down pass": passes[3],
        "residual add 2": u.add2.cycles,
        # a cycle per registered boundary a token's vectors cross one after the other: into
        # norm1, attention, bfp, add1, norm2, swiglu, add2 and out; into and out of the
        # lane array in each pass
        "stream registers": 8 + 2 * len(passes),
    }


class LayerBase(wiring.Component):
    """What every decoder layer shares: its units, each a separately emitted module by name
    (:attr:`modules`), its ports (``x``, ``y``, ``busy``: see the module text) and figures.

    Units with the same parameters are one module, within the layer (both residual adds) and
    across the layers that share ``units`` (a chip's): built once, so that every unit built is
    also converted."""

    def _begin(self, units: dict | None) -> None:
        #: module name -> component, for every unit emitted as its own Verilog module
        self.modules, self._module_of = {}, {}
        self._units = {} if units is None else units

    def _unit(self, attr: str, cls, *args, **kwargs) -> None:
        name = module_key(cls.__name__, *args, **kwargs)
        if name not in self._units:
            self._units[name] = cls(*args, **kwargs)
        self._own(attr, self._units[name], name)

    def _norms(self, L, rom_images: bool, prefix: str, bounds: tuple | None) -> None:
        """The two RMSNorm units, of ``L``'s gain tables (its ``g_attn``, ``gf_attn``,
        ``g_ffn``, ``gf_ffn``). Sized by ``bounds`` (:func:`hdl.norm.gain_bounds`; by default
        the two tables') and, with ``rom_images``, holding their tables in ROM images: then
        every layer of a chip has the same norms apart from their images."""
        tables = [(L.g_attn, L.gf_attn), (L.g_ffn, L.gf_ffn)]
        bounds = bounds or gain_bounds(*tables)
        for attr, (g, gf) in zip(("norm1", "norm2"), tables, strict=True):
            self._unit(attr, RmsNormUnit, self.cfg.dim, self.beat, self.fmt, g, gf, L.eps_term,
                       bounds=bounds, image=f"{prefix}_{attr}" if rom_images else None)

    def units(self) -> dict:
        """The layer's units by attribute (``norm1``, ``attn``, ``engine``, ...)."""
        return {attr: getattr(self, attr) for attr in self._module_of}

    def _own(self, attr: str, comp, name: str) -> None:
        self.modules[name] = comp
        self._module_of[attr] = name
        setattr(self, attr, comp)

    def _ports(self, ctx: int, beat: int, fmt: IntFormat) -> None:
        #: the reset of the layer's circuit: its port's, registered (:meth:`elaborate`)
        self.rst_q = Signal(init=1, reset_less=True, name="rst_q")
        self.pos_bits = max(1, (ctx - 1).bit_length())
        self.in_layout = data.StructLayout({"elem": unsigned(beat * fmt.res_bits),
                                            "pos": unsigned(self.pos_bits)})
        super().__init__({"x": In(stream.Signature(self.in_layout)),
                          "y": Out(stream.Signature(beat_layout(beat, fmt.res_bits))),
                          "busy": Out(1)})

    @property
    def beats(self) -> int:
        return self.cfg.dim // self.beat

    @property
    def ram_bits(self) -> int:
        return self.attn.ram_bits

    # -- the circuit both layers share ---------------------------------------------------------
    def elaborate(self, platform):
        """The layer's circuit (:meth:`circuit`) behind its own reset register: every
        register's next state depends on the reset, so a reset straight from the port would
        make all of that logic depend on an input, which a simulator re-evaluates whenever
        an input changes (Verilator compiles a chip's layer as a block of its own, whose
        ports are such inputs; :mod:`sim.shared`). The layer is ``busy``, and takes no input,
        until that register is out of reset, one cycle after the port."""
        m = Module()
        m.d.sync += self.rst_q.eq(ResetSignal("sync"))
        m.domains.core = core = ClockDomain(local=True)
        m.d.comb += [core.clk.eq(ClockSignal("sync")), core.rst.eq(self.rst_q)]
        m.submodules.core = DomainRenamer("core")(self.circuit(platform))
        return m

    def _boxes(self, m, names) -> dict:
        """The units ``names`` as instances of their separately emitted modules."""
        boxes = {n: Blackbox(getattr(self, n), self._module_of[n]) for n in names}
        for n, box in boxes.items():
            m.submodules[n] = box
        return boxes

    def _front(self, m, norm1):
        """One token at a time in, to the FIFO of ``h`` and the first norm; returns the
        position and the FIFOs of ``h`` and ``h1``."""
        res_beat = beat_layout(self.beat, self.fmt.res_bits)
        nb = self.beats
        fork_in, pos = one_token_at_a_time(m, self, nb, res_beat)
        m.submodules.fifo_h = fifo_h = BeatFifo(res_beat, nb)
        m.submodules.fifo_h1 = fifo_h1 = BeatFifo(res_beat, nb)
        connect_stream(m, fork_in.o0, fifo_h.i)
        connect_stream(m, fork_in.o1, registered(m, "r_norm1", norm1.x))
        return pos, fifo_h, fifo_h1

    def _attention(self, m, qk, v, rope, attn, bfp, pos) -> None:
        """q|k beats -> RoPE; RoPE's then the v beats -> attention, each beat tagged with the
        position; attention -> BFP."""
        B, fx = self.beat, self.fmt.fx_bits
        cfg = self.cfg
        n_qk, n_v = (cfg.n_heads + cfg.n_kv_heads) * cfg.head_dim // B, cfg.kv_dim // B
        m.d.comb += [rope.x.valid.eq(qk.valid), qk.ready.eq(rope.x.ready),
                     rope.x.payload.elem.eq(qk.payload.elem), rope.x.payload.pos.eq(pos)]
        m.submodules.to_attn = to_attn = Merge(self.attn.in_layout, [(0, n_qk), (1, n_v)], 2)
        for src, dst in ((rope.y, to_attn.i0), (v, to_attn.i1)):
            m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                         dst.payload.elem.eq(Value.cast(src.payload)[:B * fx]),
                         dst.payload.pos.eq(pos)]
        connect_stream(m, to_attn.o, registered(m, "r_attn", attn.x))
        connect_stream(m, attn.y, registered(m, "r_bfp", bfp.x))

    def _h1(self, m, fifo_h, o, add1, fifo_h1, norm2) -> None:
        """o + h -> h1, to its FIFO and the second norm."""
        join_residual(m, fifo_h.o, o, registered(m, "r_add1", add1.x))
        m.submodules.fork_h1 = fork_h1 = Fork(beat_layout(self.beat, self.fmt.res_bits), 2)
        connect_stream(m, add1.y, fork_h1.i)
        connect_stream(m, fork_h1.o0, fifo_h1.i)
        connect_stream(m, fork_h1.o1, registered(m, "r_norm2", norm2.x))


class DecoderLayer(LayerBase):
    #: how :meth:`ideal_cycles` counts (for a manifest)
    IDEAL_NOTE = ("all weight bits / (lanes * block bits per cycle) + attention's own work "
                  "(2 * (pos+1) * n_heads)")

    def __init__(self, cfg: LlamaConfig, w: LayerWeights, *, ctx: int, lanes: int, beat: int,
                 fmt: IntFormat | None = None, rom_images: bool = False,
                 prefix: str = "layer", parallel: bool = False, gate_lanes: bool = False,
                 units: dict | None = None, lane_stages: int = 0,
                 norm_bounds: tuple | None = None):
        fmt = fmt or IntFormat()
        for name, n in (("dim", cfg.dim), ("kv_dim", cfg.kv_dim), ("ffn", cfg.ffn)):
            if n % beat:
                raise ValueError(f"beat {beat} does not divide {name} ({n})")
        self.cfg, self.fmt, self.ctx, self.beat, self.lanes = cfg, fmt, ctx, beat, lanes
        self.golden = L = IntLayer(cfg, w, ctx, fmt)
        # Lanes read one block of every pass per word, at most 32 columns: per-channel
        # tensors (one block per row), and tensors of a larger block than another's (Q4_K's 32
        # beside Q6_K's 16), are split into such blocks exactly.
        lb = lane_block(*(getattr(w, n) for n in PROJECTIONS))
        blk = {n: getattr(w, n).reblock(lb) for n in PROJECTIONS}
        self.passes = [stack([blk["wq"], blk["wk"], blk["wv"]]), blk["wo"],
                       interleave_rows(blk["w_gate"], blk["w_up"], beat), blk["w_down"]]
        self.engine = LaneArray(self.passes, abits=fmt.abits, lanes=lanes, beat=beat, fmt=fmt,
                                rom_images=rom_images, prefix=prefix, parallel=parallel,
                                gate_lanes=gate_lanes, stages=lane_stages)
        d, hd, nh, nkv = cfg.dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self._begin(units)
        unit = self._unit
        self._norms(L, rom_images, prefix, norm_bounds)
        unit("rope", RopeUnit, nh + nkv, hd, ctx, beat, fmt, L.cos, L.sin)
        unit("attn", AttentionUnit, nh, nkv, hd, ctx, beat, fmt, L.score_const, L.exp_table)
        unit("bfp", BfpUnit, d, beat, fmt.fx_bits, fmt.fx_frac, fmt.abits, fmt.exp_bits)
        unit("swiglu", SwigluUnit, cfg.ffn, beat, fmt, L.sig_table)
        unit("add1", ResidualAdd, d, beat, fmt)
        unit("add2", ResidualAdd, d, beat, fmt)
        self._own("engine", self.engine, f"{prefix}_engine")
        self._ports(ctx, beat, fmt)

    # -- figures ------------------------------------------------------------------------------
    @property
    def rom_bits(self) -> int:
        return self.engine.rom_bits

    def roms(self) -> list:
        """Every mask ROM image of the layer (:class:`hdl.mask_rom.RomSpec`): its weights' and
        its norms' gains."""
        return self.engine.roms() + self.norm1.roms() + self.norm2.roms()

    def ideal_cycles(self, pos: int) -> float:
        """All weight bits over the lanes' throughput (``lanes * block`` per cycle), plus the
        attention's own work for a token at ``pos``: one cached position per cycle for the
        scores and again for the weighted sum, per query head."""
        return self.engine.ideal_cycles + 2 * (pos + 1) * self.cfg.n_heads

    def unit_cycles(self, pos: int) -> dict:
        """Where the cycles of a token go, unit by unit, from the units' own formulas."""
        return dense_cycles(self, self.engine.pass_cycles, self.beats, pos)

    # -- circuit ------------------------------------------------------------------------------
    def circuit(self, platform):
        m = Module()
        cfg, fmt, B = self.cfg, self.fmt, self.beat
        hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        nb = self.beats
        # The units are instances of separately emitted modules (:attr:`modules`).
        names = ("engine", "norm1", "norm2", "rope", "attn", "bfp", "swiglu", "add1", "add2")
        e, norm1, norm2, rope, attn, bfp, swiglu, add1, add2 = self._boxes(m, names).values()
        act_beat = beat_layout(B, fmt.abits, fmt.exp_bits)
        fx_beat = beat_layout(B, fmt.fx_bits)
        pos, fifo_h, fifo_h1 = self._front(m, norm1)

        # -- the lane array's input, pass by pass ---------------------------------------------
        m.submodules.to_engine = to_engine = Merge(
            act_beat, [(0, nb), (1, nb), (2, nb), (3, cfg.ffn // B)], 4)
        connect_stream(m, norm1.y, to_engine.i0)
        connect_stream(m, bfp.y, to_engine.i1)
        connect_stream(m, norm2.y, to_engine.i2)
        connect_stream(m, swiglu.y, to_engine.i3)
        connect_stream(m, to_engine.o, registered(m, "r_engine", e.x))

        # -- and its output -----------------------------------------------------------------
        qk, v = (nh + nkv) * hd // B, nkv * hd // B
        m.submodules.from_engine = route = Route(
            fx_beat, [(0, qk), (1, v), (2, nb), (3, 2 * cfg.ffn // B), (4, nb)], 5)
        connect_stream(m, e.y, registered(m, "r_engine_y", route.i))

        self._attention(m, route.o0, route.o1, rope, attn, bfp, pos)
        self._h1(m, fifo_h, route.o2, add1, fifo_h1, norm2)

        # gate/up beats pair up for SwiGLU; down + h1 -> y
        m.submodules.pairer = pairer = Pairer(fx_beat, swiglu.x.payload.shape())
        connect_stream(m, route.o3, pairer.i)
        connect_stream(m, pairer.o, registered(m, "r_swiglu", swiglu.x))
        join_residual(m, fifo_h1.o, route.o4, registered(m, "r_add2", add2.x))
        connect_stream(m, add2.y, registered(m, "r_y", self.y))
        return m
