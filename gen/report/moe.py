"""The mixture-of-experts part of ``hardwire report`` (``moe`` in report.json, ``DIR/moe.png``).

hardwire builds a gpt-oss layer as one lane array whose mask ROMs hold every expert, the
expert index part of the ROM address (:class:`hdl.moe_layer.MoeDecoderLayer`): a token reads
``top_k`` of the ``E`` experts' rows, one expert after the other, and the rest of the ROM
sits idle. Beside the built design, two designs of the same weights that hardwire does not
build, from the same cycle formulas (:func:`hdl.moe_layer.moe_cycles`,
:func:`hdl.layer.dense_cycles`, :func:`hdl.chip.chip_cycles`: the units built with the
shape's tables) and pass schedules (:class:`golden.block_folded.BlockFoldedLayout`):

- **per-expert lanes**: ``E`` lane groups of ``G`` lanes, each holding one expert's rows;
  a token's ``top_k`` groups run at once (with ``top_k`` clamped SwiGLUs), the attention and
  the router keep the shared array;
- **dense, equal ROM**: the same attention and one FFN of ``E * ffn`` rows in the experts'
  format, every weight read for every token.

The same three for the real gpt-oss-20b and gpt-oss-120b shapes (their public
``config.json``; no weights), beside HNLPU's published figure. ROM bits of the shapes are
nominal: each weight's lane code bits and each block's constants at their stored width
(:data:`FORMATS`); biases apart.
"""

from types import SimpleNamespace

import numpy as np

from .calibration import design_fmax
from .speed import rate

__all__ = ["REFERENCE", "HNLPU", "FORMATS", "moe_part", "shape_figures", "reference_shapes"]

#: The public configs (``config.json`` on the Hugging Face hub) of the two gpt-oss models.
_GPT_OSS = {"hidden_size": 2880, "intermediate_size": 2880, "num_attention_heads": 64,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 201088,
            "sliding_window": 128, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "num_experts_per_tok": 4, "swiglu_limit": 7.0,
            "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                             "beta_slow": 1.0, "truncate": False,
                             "original_max_position_embeddings": 4096},
            "rope_theta": 150000}
REFERENCE = {"gpt-oss-20b": _GPT_OSS | {"num_hidden_layers": 24, "num_local_experts": 32},
             "gpt-oss-120b": _GPT_OSS | {"num_hidden_layers": 36, "num_local_experts": 128}}

#: HNLPU (arXiv 2508.16151): gpt-oss-120B hard-wired on 16 chips at 5 nm.
HNLPU = {"model": "gpt-oss-120b", "tokens_per_s": 249960, "chips": 16, "process": "5 nm",
         "source": "arXiv 2508.16151"}

#: ``(lane code bits, block constant bits)`` per weight group of a shape without weights:
#: the experts MXFP4 as stored (a sign and 4 magnitude bits in the lanes; an E8M0 scale per
#: 32), the attention, router and LM head by the default --quant q4_1 (two fp16 constants
#: per 32), the embedding q8_0 (one fp16 per 32).
FORMATS = {"experts": (5, 8), "attention": (4, 32), "router": (4, 32), "lm_head": (4, 32),
           "embedding": (8, 16)}

BLOCK = 32
#: Positions of the reference shapes' figures: one sliding window, and YaRN's original
#: context.
REFERENCE_POSITIONS = (127, 4095)


def _tables(cfg, ctx: int, fmt, index: int) -> SimpleNamespace:
    """A layer's constants for its units' sizes and cycle formulas, without weights: unit
    norm gains and zero sinks (neither changes a unit's schedule)."""
    from golden.gpt_oss_int import moe_shape_tables
    from golden.integer import norm_gain
    from golden.llama_int import shape_tables

    g, gf = norm_gain(np.ones(cfg.dim, np.float32), cfg.dim, fmt)
    return SimpleNamespace(g_attn=g, gf_attn=gf, g_ffn=g, gf_ffn=gf,
                           sinks=np.zeros(cfg.n_heads, np.int64),
                           **shape_tables(cfg, fmt), **moe_shape_tables(cfg, ctx, fmt, index))


def _units(cfg, ctx: int, beat: int, fmt, index: int, router_rows: int) -> SimpleNamespace:
    from hdl.moe_layer import moe_units
    from hdl.norm import RmsNormUnit

    L = _tables(cfg, ctx, fmt, index)
    u = SimpleNamespace(norm1=RmsNormUnit(cfg.dim, beat, fmt, L.g_attn, L.gf_attn, L.eps_term))
    u.norm2 = u.norm1
    moe_units(lambda attr, cls, *a, **k: setattr(u, attr, cls(*a, **k)), cfg, L, ctx, beat,
              fmt, router_rows)
    return u


def _layout(rows, cols, bits, lanes, parallel):
    from golden.block_folded import BlockFoldedLayout

    return BlockFoldedLayout(rows, cols, bits, BLOCK, lanes, parallel)


def _rom(L, fmts, parallel) -> int:
    code, const = fmts
    return L.rom_bits(BLOCK * code if parallel else BLOCK, const)


def _layer(cfg, u, index, *, lanes, group, beat, pos, fmts, parallel, variant, stages):
    """One layer's figures: cycles at ``pos`` (and their weight-reading part, each pass with
    the lanes' ``stages`` of latency), nominal ROM bits and the bits one token reads, lanes,
    and the lane-cycles that read a weight."""
    from hdl import not_elaborated
    from hdl.lane_array import pass_latency
    from hdl.layer import dense_cycles
    from hdl.moe_layer import moe_cycles

    d, q, kv, f, E, k = cfg.dim, cfg.q_dim, cfg.kv_dim, cfg.ffn, cfg.n_experts, cfg.top_k
    att, rt, ex = fmts["attention"], fmts["router"], fmts["experts"]
    qkv, o = _layout(q + 2 * kv, d, att[0], lanes, parallel), _layout(d, q, att[0], lanes,
                                                                      parallel)
    beats = d // beat
    fixed = _rom(qkv, att, parallel) + _rom(o, att, parallel)
    if variant == "dense":
        gu, dn = (_layout(2 * E * f, d, ex[0], lanes, parallel),
                  _layout(d, E * f, ex[0], lanes, parallel))
        from hdl.swiglu import SwigluUnit

        t = _tables(cfg, 1, u.swiglu.fmt, index)
        dense_u = SimpleNamespace(**vars(u))
        dense_u.swiglu = SwigluUnit(E * f, beat, u.swiglu.fmt, t.sig_table,
                                    clamp=(t.limit, t.alpha))
        not_elaborated(dense_u.swiglu)  # built for its cycle formula
        reads = [L.cycles_per_vector for L in (qkv, o, gu, dn)]
        passes = [r + pass_latency(stages) for r in reads]
        cycles = dense_cycles(dense_u, passes, beats, pos)
        rom = fixed + _rom(gu, ex, parallel) + _rom(dn, ex, parallel)
        return {"cycles": sum(cycles.values()), "weight_cycles": sum(passes),
                "rom_bits": rom, "read_bits": rom, "lanes": lanes,
                "busy_lane_cycles": lanes * sum(reads), "attention": cycles["attention"]}
    router = _layout(-(-E // lanes) * lanes, d, rt[0], lanes, parallel)
    g = lanes if variant == "shared" else group
    gu, dn = _layout(2 * f, d, ex[0], g, parallel), _layout(d, f, ex[0], g, parallel)
    kinds = {"qkv": qkv, "o": o, "router": router, "gate_up": gu, "down": dn}
    reads = {n: L.cycles_per_vector for n, L in kinds.items()}
    passes = {n: r + pass_latency(stages) for n, r in reads.items()}
    expert = _rom(gu, ex, parallel) + _rom(dn, ex, parallel)
    rom = fixed + _rom(router, rt, parallel) + E * expert
    read = fixed + _rom(router, rt, parallel) + k * expert
    shared = passes["qkv"] + passes["o"] + passes["router"]
    shared_reads = reads["qkv"] + reads["o"] + reads["router"]
    if variant == "shared":
        cycles = moe_cycles(u, passes, beats, k, pos)
        weight = shared + k * (passes["gate_up"] + passes["down"])
        busy = shared_reads + k * (reads["gate_up"] + reads["down"])
        return {"cycles": sum(cycles.values()), "weight_cycles": weight, "rom_bits": rom,
                "read_bits": read, "lanes": lanes, "busy_lane_cycles": lanes * busy,
                "attention": cycles["attention"]}
    # per-expert lane groups: the top_k experts at once
    cycles = moe_cycles(u, passes, beats, 1, pos)
    ex_cycles = passes["gate_up"] + passes["down"]
    return {"cycles": sum(cycles.values()), "weight_cycles": shared + ex_cycles,
            "rom_bits": rom, "read_bits": read, "lanes": lanes + E * g,
            "busy_lane_cycles": lanes * shared_reads + k * g * (reads["gate_up"]
                                                                + reads["down"]),
            "attention": cycles["attention"]}


def shape_figures(cfg, *, lanes: int, beat: int, ctx: int, pos: int, fmt, fmts: dict,
                  parallel: bool = False, variant: str = "shared", group: int | None = None,
                  head_lanes: int | None = None, stages: int = 0) -> dict:
    """A whole chip of shape ``cfg`` (:class:`golden.gpt_oss.GptOssConfig`), ``variant``
    ``shared`` (as hardwire builds it), ``per-expert`` (``group`` lanes per expert) or
    ``dense`` (equal ROM): cycles per token at ``pos`` by part, ROM bits and bits read per
    token (nominal, ``fmts``), lanes, and the lanes' utilisation (the share of lane-cycles
    that read a weight); ``stages``: the lanes' pipeline registers (:mod:`hdl.lanes`)."""
    from dataclasses import replace

    from golden.blockquant import BlockAffine
    from hdl import not_elaborated
    from hdl.argmax import ArgmaxUnit
    from hdl.chip import chip_cycles
    from hdl.embedding import EmbeddingUnit
    from hdl.lane_array import pass_latency
    from hdl.norm import RmsNormUnit

    head_lanes = head_lanes or lanes
    router_rows = -(-cfg.n_experts // lanes) * lanes
    built, layers = [], []
    cache = {}
    for i in range(cfg.n_layers):
        w = cfg.window(i)
        if w not in cache:  # layers alike but for their window
            u = _units(cfg, ctx, beat, fmt, i, router_rows)
            built += list(vars(u).values())
            cache[w] = _layer(cfg, u, i, lanes=lanes, group=group, beat=beat, pos=pos,
                              fmts=fmts, parallel=parallel, variant=variant, stages=stages)
        layers.append(cache[w])
    hf = fmts["lm_head"]
    rows = -(-cfg.vocab // head_lanes) * head_lanes
    head = _layout(rows, cfg.dim, hf[0], head_lanes, parallel)
    t = _tables(cfg, ctx, fmt, 0)
    head_fmt = replace(fmt, abits=fmt.head_abits or fmt.abits, fx_frac=fmt.logit_frac,
                       fx_bits=fmt.logit_bits)
    norm = RmsNormUnit(cfg.dim, beat, head_fmt, t.g_attn, t.gf_attn, t.eps_term)
    z = np.zeros((1, cfg.dim // BLOCK), np.int64)
    row = BlockAffine(np.zeros((1, cfg.dim), np.int8), z + 1, z, 0, BLOCK, 8, "Q8_0")
    emb = EmbeddingUnit(row, beat=beat, fmt=fmt, pos_bits=max(1, (ctx - 1).bit_length()))
    argmax = ArgmaxUnit(cfg.vocab, beat, fmt.logit_bits, rows=rows)
    not_elaborated(norm, emb, argmax, *built)
    head_cycles = head.cycles_per_vector + pass_latency(stages)
    parts = chip_cycles(emb, [ly["cycles"] for ly in layers], norm, head_cycles, argmax)
    total = sum(parts.values())
    ef = fmts["embedding"]
    emb_rom = cfg.vocab * (cfg.dim * ef[0] + cfg.dim // BLOCK * ef[1])
    head_rom = _rom(head, hf, parallel)
    rom = sum(ly["rom_bits"] for ly in layers) + head_rom + emb_rom
    read = sum(ly["read_bits"] for ly in layers) + head_rom + emb_rom // cfg.vocab
    n_lanes = sum(ly["lanes"] for ly in layers) + head_lanes
    busy = sum(ly["busy_lane_cycles"] for ly in layers) + head_lanes * head.cycles_per_vector
    return {
        "variant": variant, "lanes_per_layer": layers[0]["lanes"], "group_lanes": group,
        "lanes": n_lanes, "beat": beat, "position": pos,
        "cycles_per_token": total,
        "cycles_parts": {"reading weights": sum(ly["weight_cycles"] for ly in layers)
                         + head_cycles,
                         "attention": sum(ly["attention"] for ly in layers),
                         "other units": total - sum(ly["weight_cycles"] + ly["attention"]
                                                    for ly in layers)
                         - head_cycles},
        "rom_bits": rom, "read_bits_per_token": read,
        "read_share": float(f"{read / rom:.4g}"),
        "lane_utilisation": float(f"{busy / (n_lanes * total):.4g}"),
    }


def reference_shapes(fmt, *, lanes: int = 64, parallel: bool = False, stages: int = 0) -> dict:
    """The three variants for gpt-oss-20b and gpt-oss-120b at :data:`REFERENCE_POSITIONS`,
    ``lanes`` per layer (``G = lanes`` per expert) of a kind and pipeline depth, tokens/s at
    the built-in Fmax of such a lane."""
    from hdl.decoder import default_beat

    from ..models.gpt_oss import config_from_hf

    mhz = design_fmax({"lane": "parallel" if parallel else "serial", "lane_stages": stages})
    out = {}
    for name, conf in REFERENCE.items():
        cfg = config_from_hf(conf, name)
        beat = default_beat(cfg, lanes, BLOCK)
        ctx = REFERENCE_POSITIONS[-1] + 1
        rows = []
        for variant in ("shared", "per-expert", "dense"):
            for pos in REFERENCE_POSITIONS:
                f = shape_figures(cfg, lanes=lanes, beat=beat, ctx=ctx, pos=pos, fmt=fmt,
                                  fmts=FORMATS, parallel=parallel, variant=variant,
                                  group=lanes if variant == "per-expert" else None,
                                  stages=stages)
                rows.append(f | {"tokens_per_s": rate(mhz, f["cycles_per_token"])})
        out[name] = {"layers": cfg.n_layers, "experts": cfg.n_experts, "top_k": cfg.top_k,
                     "dim": cfg.dim, "vocab": cfg.vocab, "points": rows}
    return out


def _actual_rom(f: dict, m: dict) -> None:
    """A design point's ROM bits and read share as the design has them (its manifest's): the
    per-expert variant holds the same words; the dense one drops the router and reads all
    but the embedding (one row of it)."""
    moe, rom = m["moe"], m["rom_bits"]
    if f["variant"] == "dense":
        rb = moe["rom_bits"]
        rom -= rb["router"]
        emb = rb.get("embedding", 0)
        read = rom - emb + emb // m["config"]["vocab"]
        f["rom_bits"], f["read_bits_per_token"] = rom, read
        f["read_share"] = float(f"{read / rom:.4g}")
    else:
        f["rom_bits"], f["read_bits_per_token"] = rom, moe["read_bits_per_token"]
        f["read_share"] = float(f"{moe['read_share']:.4g}")
    f["rom_source"] = "the design's manifest"


def _design_points(m: dict, model, fmt, lane_logic) -> list[dict]:
    """The built design (its own manifest's figures) and the variants of its weights at
    the design's lanes and beat, per-expert lanes for every group size that fits."""
    cfg, lanes, beat, ctx = model.cfg, m["lanes"], m["beat"], m["ctx"]
    parallel = m.get("lane") == "parallel"
    lw = model.layer(0)
    fmts = dict(FORMATS)
    # the design's own code bits (the block constants stay nominal)
    fmts["attention"] = (lw.wq.bits, FORMATS["attention"][1])
    fmts["router"] = (lw.router.bits, FORMATS["router"][1])
    fmts["experts"] = (lw.experts[0].w_gate.bits, FORMATS["experts"][1])
    fmts["lm_head"] = (model.lm_head().bits, FORMATS["lm_head"][1])
    mhz = design_fmax(m)
    groups = [g for g in (8, 16, 32, 64, 128, 256) if g <= lanes and g % beat == 0
              and (2 * cfg.ffn) % g == 0 and cfg.dim % g == 0]
    pts = []
    for variant, gs in (("shared", [None]), ("per-expert", groups), ("dense", [None])):
        for g in gs:
            try:
                f = shape_figures(cfg, lanes=lanes, beat=beat, ctx=ctx, pos=ctx - 1, fmt=fmt,
                                  fmts=fmts, parallel=parallel, variant=variant, group=g,
                                  head_lanes=m.get("head_lanes"),
                                  stages=m.get("lane_stages", 0))
            except ValueError:
                continue
            f["tokens_per_s"] = rate(mhz, f["cycles_per_token"])
            _actual_rom(f, m)
            f["lane_logic"] = None if lane_logic is None else round(f["lanes"] * lane_logic)
            pts.append(f)
    return pts


def moe_part(m: dict, model, lane_logic: float | None) -> dict | None:
    """The report's ``moe`` part of an MoE design (``None`` for a dense one): the design's
    ROM by part and the share a token reads (from its manifest), the variants of its weights
    (``model`` given; ``lane_logic``: one lane's calibrated logic, for the lanes' logic of
    each point) and the reference shapes."""
    moe = m.get("moe")
    if moe is None:
        return None
    from golden.integer import IntFormat

    fmt = IntFormat(**m["format_int"])
    out = {"design": moe, "fmax_mhz": design_fmax(m), "points": None,
           "reference": reference_shapes(fmt, parallel=m.get("lane") == "parallel",
                                         stages=m.get("lane_stages", 0)), "hnlpu": HNLPU,
           "note": "points: the design's weights as built (shared lane array), with per-expert "
                   "lane groups (E groups of G lanes, top_k at once) and as a dense model of "
                   "equal ROM; cycles from the units' own formulas; ROM bits the design's "
                   "(the dense one without the router); tokens/s at the built-in Fmax; "
                   "lane_logic = lanes x one lane's calibrated logic. reference: the public "
                   "gpt-oss shapes, ROM bits nominal (lane code bits and stored block "
                   "constants, biases apart)"}
    if model is not None and m["kind"] == "chip":
        out["points"] = _design_points(m, model, fmt, lane_logic)
        # the shape model's cycles of the built variant are the design's own formulas'
        units = sum(m["cycles"]["units_at_last_pos"].values())
        out["points"][0]["matches_design"] = out["points"][0]["cycles_per_token"] == units
    return out
