"""The decoder layer a model's architecture needs, and what its lane array asks of the
lane count: one place that tells a Llama from a gpt-oss (mixture-of-experts) layer."""

import math

from golden.arch import is_moe

from .layer import DecoderLayer
from .moe_layer import MoeDecoderLayer

__all__ = ["decoder_layer", "pass_rows", "default_lanes", "default_beat"]


def decoder_layer(cfg, w, *, index: int = 0, **kwargs):
    """Layer ``index`` of the model: a :class:`hdl.moe_layer.MoeDecoderLayer` for gpt-oss,
    else a :class:`hdl.layer.DecoderLayer` (the keyword arguments are theirs)."""
    if is_moe(cfg):
        return MoeDecoderLayer(cfg, w, index=index, **kwargs)
    return DecoderLayer(cfg, w, **kwargs)


def pass_rows(cfg) -> list[int]:
    """The rows of each lane-array pass whose row count the lanes must divide (a MoE
    router's pass is padded to whole lanes instead)."""
    if is_moe(cfg):
        return [cfg.q_dim + 2 * cfg.kv_dim, cfg.dim, 2 * cfg.ffn]
    return [cfg.dim + 2 * cfg.kv_dim, cfg.dim, 2 * cfg.ffn]


def default_beat(cfg, lanes: int, block: int = 32) -> int:
    """The widest beat (elements per cycle between units) that divides every vector length,
    the head, the block and the lane count."""
    q_dim = getattr(cfg, "q_dim", cfg.dim)
    return math.gcd(cfg.dim, q_dim, cfg.kv_dim, cfg.ffn, cfg.head_dim, block, lanes)


def default_lanes(cfg, *, parallel: bool = False, block: int = 32) -> int:
    """Lanes per decoder layer when none are asked for: at most 64, dividing every pass;
    with ``parallel`` lanes (a block per cycle), halved while the lanes would finish their
    rows faster than beats can leave (a pass of ``cols / block`` cycles per row must take at
    least ``lanes / beat``, :class:`hdl.lane_array.LaneArray`)."""
    if is_moe(cfg):
        lanes = math.gcd(64, *pass_rows(cfg))
    else:
        lanes = math.gcd(64, cfg.dim, cfg.kv_dim, cfg.ffn)
    if parallel:
        blocks = min(cfg.dim, getattr(cfg, "q_dim", cfg.dim), cfg.ffn) // block
        while lanes % 2 == 0 and lanes // default_beat(cfg, lanes, block) > blocks:
            lanes //= 2
    return lanes
