"""A gpt-oss (mixture-of-experts) decoder layer in hardware: one token in, one token out, bit
for bit :func:`golden.gpt_oss_int.moe_layer_step`.

Dataflow of a token (every arrow is a ``lib.stream`` of beats)::

    x (h, pos) ─┬─> FIFO h ─────────────────────────────────────────────┐
                └─> RMSNorm ─> [q|k|v] ─┬─ q|k ─> RoPE ─┐                 │
                                        └─ v ───────────┴─> attention ─> BFP ─> [o] ─> + h
          (sinks; a ring of `sliding_window` slots on sliding layers)                 │
    h1 ─┬─> FIFO h1 ────────────────────────────────────────────────────────────┐    │
        └─> RMSNorm ─> replay (top_k + 1 times) ─> [router] ─> top-k ─> (id, w) │
                            └─> k times: [gate/up of expert id] ─> clamped SwiGLU ─> [down of
                                expert id] ─> weighted sum (w) ─> + h1 ─> y

Every bracket is a pass of one :class:`hdl.lane_array.LaneArray` in ``select`` mode: its mask
ROMs hold q|k|v, o, the router (padded to whole lanes) and every expert's gate/up and down;
the :class:`hdl.tagger.PassTagger` names each vector's pass, the selected expert's for its
gate/up and down, so only ``top_k`` of the experts are read per token: the expert index is
part of the ROM address. Every pass's output gets its bias (:class:`hdl.bias.BiasAdd`).

Ports as :class:`hdl.layer.DecoderLayer`'s (``x``, ``y``, ``busy``).
"""

import numpy as np
from amaranth.hdl import Module

from golden.blockquant import interleave_rows, lane_block, pad_rows, stack
from golden.gpt_oss import EXPERT_PROJECTIONS, GptOssConfig, MoeLayerWeights
from golden.gpt_oss_int import IntMoeLayer
from golden.integer import IntFormat

from .attention import AttentionUnit
from .bfp import BfpUnit
from .bias import BiasAdd
from .combine import CombineUnit
from .glue import BeatFifo, Fork, Merge, Pairer, Route, connect_stream, registered
from .lane_array import LaneArray
from .layer import LayerBase, join_residual
from .replay import ReplayBuffer
from .residual import ResidualAdd
from .rope import RopeUnit
from .router import RouterUnit
from .swiglu import SwigluUnit
from .tagger import PassTagger
from .vector import beat_layout

__all__ = ["MoeDecoderLayer", "moe_passes", "moe_units", "moe_cycles"]


def _interleave(a: np.ndarray, b: np.ndarray, group: int) -> np.ndarray:
    """Bias vectors in :func:`golden.blockquant.interleave_rows`' row order."""
    n = len(a)
    return np.stack([a, b]).reshape(2, n // group, group).swapaxes(0, 1).reshape(-1)


def moe_passes(cfg: GptOssConfig, w: MoeLayerWeights, L: IntMoeLayer, lanes: int, beat: int):
    """The lane array's passes (q|k|v, o, the router padded to whole lanes, then per expert
    gate/up interleaved by beat and down) and each pass's bias vector (Q.fx)."""
    tensors = [w.wq, w.wk, w.wv, w.wo, w.router] + [getattr(ex, n) for ex in w.experts
                                                    for n in EXPERT_PROJECTIONS]
    lb = lane_block(*tensors)
    rb = -(-cfg.n_experts // lanes) * lanes
    passes = [stack([w.wq.reblock(lb), w.wk.reblock(lb), w.wv.reblock(lb)]), w.wo.reblock(lb),
              pad_rows(w.router.reblock(lb), rb)]
    b = L.bias
    biases = [np.concatenate([b["bq"], b["bk"], b["bv"]]), b["bo"],
              np.concatenate([b["router"], np.zeros(rb - cfg.n_experts, np.int64)])]
    for ex, eb in zip(w.experts, L.expert_bias, strict=True):
        passes.append(interleave_rows(ex.w_gate.reblock(lb), ex.w_up.reblock(lb), beat))
        passes.append(ex.w_down.reblock(lb))
        biases += [_interleave(eb["w_gate"], eb["w_up"], beat), eb["w_down"]]
    return passes, biases


def moe_units(unit, cfg: GptOssConfig, L, ctx: int, beat: int, fmt: IntFormat,
              router_rows: int) -> None:
    """``unit(attr, cls, *args, **kwargs)`` for every unit of a layer beside its lane array
    and biases, with the constants of ``L`` (:class:`golden.gpt_oss_int.IntMoeLayer`'s)."""
    d, hd, nh, nkv, k = cfg.dim, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.top_k
    unit("rope", RopeUnit, nh + nkv, hd, ctx, beat, fmt, L.cos, L.sin)
    unit("attn", AttentionUnit, nh, nkv, hd, ctx, beat, fmt, L.score_const, L.exp_table,
         sinks=L.sinks, window=L.window)
    unit("bfp", BfpUnit, cfg.q_dim, beat, fmt.fx_bits, fmt.fx_frac, fmt.abits,
         fmt.exp_bits)
    unit("swiglu", SwigluUnit, cfg.ffn, beat, fmt, L.sig_table, clamp=(L.limit, L.alpha))
    unit("router", RouterUnit, cfg.n_experts, k, router_rows, beat, fmt, L.exp_table,
         L.log2e)
    unit("combine", CombineUnit, d, beat, k, cfg.n_experts, fmt)
    unit("add1", ResidualAdd, d, beat, fmt)
    unit("add2", ResidualAdd, d, beat, fmt)


def moe_cycles(u, passes: dict, beats: int, top_k: int, pos: int) -> dict:
    """A token's cycles at ``pos``, unit by unit: ``u`` has the units (``norm1``, ``rope``,
    ``attn``, ``bfp``, ``add1``, ``norm2``, ``router``, ``swiglu``, ``combine``, ``add2``) and
    ``passes`` the lane array's cycles per pass kind (``qkv``, ``o``, ``router``,
    ``gate_up``, ``down``); ``top_k`` experts run one after the other."""
    k = top_k
    return {
        "input": beats, "rmsnorm (attn)": u.norm1.cycles,
        "q|k|v pass": passes["qkv"], "rope": u.rope.cycles,
        "attention": u.attn.cycles(pos), "bfp": u.bfp.cycles,
        "o pass": passes["o"], "residual add": u.add1.cycles,
        "rmsnorm (ffn)": u.norm2.cycles, "router pass": passes["router"],
        "router": u.router.cycles, "gate/up passes": k * passes["gate_up"],
        "swiglu": k * u.swiglu.cycles, "down passes": k * passes["down"],
        "weighted sum": u.combine.latency, "residual add 2": u.add2.cycles,
        # registered boundaries crossed one after the other: into norm1, attention, bfp,
        # add1, norm2, the router, add2 and out; into swiglu and the weighted sum per
        # expert; into the lane array, the biases and out of them in each pass
        "stream registers": 8 + 2 * k + 3 * (3 + 2 * k),
    }


class MoeDecoderLayer(LayerBase):
    #: how :meth:`ideal_cycles` counts (for a manifest)
    IDEAL_NOTE = ("the weight bits a token reads (attention, router and top_k experts) / "
                  "(lanes * block bits per cycle) + attention's own work (2 * (min(pos, "
                  "window - 1) + 1) * n_heads)")

    def __init__(self, cfg: GptOssConfig, w: MoeLayerWeights, *, ctx: int, lanes: int,
                 beat: int, fmt: IntFormat | None = None, rom_images: bool = False,
                 prefix: str = "layer", parallel: bool = False, gate_lanes: bool = False,
                 units: dict | None = None, index: int = 0, lane_stages: int = 0,
                 norm_bounds: tuple | None = None):
        fmt = fmt or IntFormat()
        for name, n in (("dim", cfg.dim), ("q_dim", cfg.q_dim), ("kv_dim", cfg.kv_dim),
                        ("ffn", cfg.ffn), ("head_dim", cfg.head_dim)):
            if n % beat:
                raise ValueError(f"beat {beat} does not divide {name} ({n})")
        self.cfg, self.fmt, self.ctx, self.beat, self.lanes = cfg, fmt, ctx, beat, lanes
        self.golden = L = IntMoeLayer(cfg, w, ctx, fmt, index=index)
        self.passes, biases = moe_passes(cfg, w, L, lanes, beat)
        self.router_rows = self.passes[2].shape[0]
        self.engine = LaneArray(self.passes, abits=fmt.abits, lanes=lanes, beat=beat, fmt=fmt,
                                rom_images=rom_images, prefix=prefix, parallel=parallel,
                                gate_lanes=gate_lanes, select=True, stages=lane_stages)
        self.bias = BiasAdd(biases, [p.shape[0] for p in self.passes], beat, fmt,
                            rom_images=rom_images, prefix=f"{prefix}_bias")
        self._begin(units)
        self._norms(L, rom_images, prefix, norm_bounds)
        moe_units(self._unit, cfg, L, ctx, beat, fmt, self.router_rows)
        for attr in ("engine", "bias"):
            self._own(attr, getattr(self, attr), f"{prefix}_{attr}")
        self._ports(ctx, beat, fmt)

    # -- figures ------------------------------------------------------------------------------
    @property
    def rom_bits(self) -> int:
        return self.engine.rom_bits + self.bias.rom_bits

    def roms(self) -> list:
        """Every mask ROM image of the layer: the lanes', the biases' and the norms'."""
        return self.engine.roms() + self.bias.roms + self.norm1.roms() + self.norm2.roms()

    def rom_parts(self) -> dict:
        """ROM bits by part: the attention's projections, the router's, every expert's, and
        the biases."""
        e = self.engine.pass_rom_bits
        return {"attention": e[0] + e[1], "router": e[2], "experts": sum(e[3:]),
                "biases": self.bias.rom_bits}

    def read_bits(self) -> int:
        """The ROM bits one token reads: the attention's and the router's passes and biases,
        and ``top_k`` experts' (every expert's passes are alike in size)."""
        e, k = self.engine.pass_rom_bits, self.cfg.top_k
        rows, bb = self.bias.rows, self.bias.bias_bits
        return (e[0] + e[1] + e[2] + k * (e[3] + e[4])
                + bb * (rows[0] + rows[1] + rows[2] + k * (rows[3] + rows[4])))

    def _pass(self, kind: str) -> int:
        """The cycles of one pass of a kind (every expert's are alike in shape)."""
        return self.engine.pass_cycles[{"qkv": 0, "o": 1, "router": 2, "gate_up": 3,
                                        "down": 4}[kind]]

    def ideal_cycles(self, pos: int) -> float:
        """The weight bits a token reads over the lanes' throughput (the attention's and the
        router's, and ``top_k`` experts'), plus the attention's own work."""
        e = self.engine.layouts
        k = self.cfg.top_k
        reads = e[0].ideal_cycles + e[1].ideal_cycles + e[2].ideal_cycles + k * (
            e[3].ideal_cycles + e[4].ideal_cycles)
        last = pos if self.attn.window is None else min(pos, self.attn.window - 1)
        return reads + 2 * (last + 1) * self.cfg.n_heads

    def unit_cycles(self, pos: int) -> dict:
        """Where a token's cycles go, unit by unit, from the units' own formulas."""
        kinds = ("qkv", "o", "router", "gate_up", "down")
        return moe_cycles(self, {k: self._pass(k) for k in kinds}, self.beats,
                          self.cfg.top_k, pos)

    # -- circuit ------------------------------------------------------------------------------
    def circuit(self, platform):
        m = Module()
        cfg, fmt, B, K = self.cfg, self.fmt, self.beat, self.cfg.top_k
        hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        nb, nq, nf, nr = self.beats, cfg.q_dim // B, cfg.ffn // B, self.router_rows // B
        names = ("engine", "bias", "norm1", "norm2", "rope", "attn", "bfp", "swiglu", "router",
                 "combine", "add1", "add2")
        box = self._boxes(m, names)
        act_beat = beat_layout(B, fmt.abits, fmt.exp_bits)
        fx_beat = beat_layout(B, fmt.fx_bits)
        pos, fifo_h, fifo_h1 = self._front(m, box["norm1"])

        # -- into the lane array: the vectors in a fixed order of kinds, each named --------
        m.submodules.replay = replay = ReplayBuffer(act_beat, nb, K + 1)
        m.submodules.to_engine = to_engine = Merge(
            act_beat, [(0, nb), (1, nq), (2, nb)] + [(2, nb), (3, nf)] * K, 4)
        for k, src in enumerate((box["norm1"].y, box["bfp"].y, replay.y, box["swiglu"].y)):
            connect_stream(m, src, getattr(to_engine, f"i{k}"))
        connect_stream(m, box["norm2"].y, replay.x)
        # the router's choices: to the tagger and to the weighted sum, each with a FIFO
        m.submodules.fork_r = fork_r = Fork(self.router.out_layout, 2)
        m.submodules.ids = ids = BeatFifo(self.router.out_layout, K)
        m.submodules.weights = weights = BeatFifo(self.router.out_layout, K)
        connect_stream(m, box["router"].y, fork_r.i)
        connect_stream(m, fork_r.o0, ids.i)
        connect_stream(m, fork_r.o1, weights.i)
        m.submodules.tagger = tagger = PassTagger(
            act_beat, self.router.out_layout,
            [(0, nb), (1, nq), (2, nb)] + [(("gate_up", 3), nb), (("down", 4), nf)] * K,
            self.engine.pass_bits)
        connect_stream(m, to_engine.o, tagger.x)
        connect_stream(m, ids.o, tagger.ids)
        connect_stream(m, tagger.y, registered(m, "r_engine", box["engine"].x))
        connect_stream(m, box["engine"].y, registered(m, "r_bias", box["bias"].x))

        # -- out of it, by kind ---------------------------------------------------------------
        qk, v = (nh + nkv) * hd // B, nkv * hd // B
        m.submodules.from_engine = route = Route(
            fx_beat, [(0, qk), (1, v), (2, nb), (3, nr)] + [(4, 2 * nf), (5, nb)] * K, 6)
        connect_stream(m, box["bias"].y, registered(m, "r_bias_y", route.i))
        self._attention(m, route.o0, route.o1, box["rope"], box["attn"], box["bfp"], pos)
        self._h1(m, fifo_h, route.o2, box["add1"], fifo_h1, box["norm2"])
        connect_stream(m, route.o3, registered(m, "r_router", box["router"].x))
        m.submodules.pairer = pairer = Pairer(fx_beat, self.swiglu.x.payload.shape())
        connect_stream(m, route.o4, pairer.i)
        connect_stream(m, pairer.o, registered(m, "r_swiglu", box["swiglu"].x))
        connect_stream(m, route.o5, registered(m, "r_combine", box["combine"].x))
        connect_stream(m, weights.o, box["combine"].w)
        join_residual(m, fifo_h1.o, box["combine"].y, registered(m, "r_add2", box["add2"].x))
        connect_stream(m, box["add2"].y, registered(m, "r_y", self.y))
        return m
