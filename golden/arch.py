"""The float and integer models of a configuration's architecture: one place that tells a
Llama (:mod:`golden.llama`, :mod:`golden.llama_int`) from a gpt-oss mixture of experts
(:mod:`golden.gpt_oss`, :mod:`golden.gpt_oss_int`)."""

from golden.gpt_oss import GptOssModel, is_moe
from golden.gpt_oss_int import IntMoeLayer, IntMoeModel
from golden.integer import IntFormat
from golden.llama import FloatModel
from golden.llama_int import IntLayer, IntModel

__all__ = ["is_moe", "float_model", "int_model", "int_layer"]


def float_model(cfg, w, ctx: int) -> FloatModel:
    """The whole model's float reference."""
    return (GptOssModel if is_moe(cfg) else FloatModel)(cfg, w, ctx)


def int_model(cfg, w, ctx: int, fmt: IntFormat | None = None) -> IntModel:
    """The whole model's integer golden."""
    return (IntMoeModel if is_moe(cfg) else IntModel)(cfg, w, ctx, fmt)


def int_layer(cfg, w, ctx: int, fmt: IntFormat | None = None, index: int = 0):
    """Layer ``index``'s integer constants (its ``step`` runs a decode step; its ``slots``
    size the KV cache)."""
    fmt = fmt or IntFormat()
    if is_moe(cfg):
        return IntMoeLayer(cfg, w, ctx, fmt, index=index)
    return IntLayer(cfg, w, ctx, fmt)
