"""The shipped synthetic models, seeded and deterministic."""

from functools import lru_cache

import numpy as np

from golden.blockquant import decode, encode
from golden.llama import LayerWeights, LlamaConfig

from .model import Model

__all__ = ["TINY", "TINY_MOE", "tiny_model", "tiny_moe_model"]

#: The shipped synthetic model: Llama-shaped, seeded, Q4_1 projections like SmolLM2's.
TINY = dict(dim=64, n_heads=4, n_kv_heads=2, ffn=128, eps=1e-5, theta=10000.0, n_layers=2,
            max_ctx=16, vocab=256)


@lru_cache(maxsize=4)
def tiny_model(seed: int = 0) -> Model:
    """The shipped synthetic model: seeded Gaussian weights quantised to Q4_1 by llama.cpp's
    reference rule, norms near 1 with spread, a Q8_0 embedding that is also the LM head (tied),
    and a byte tokenizer (token ``i`` is byte ``i``). Deterministic."""
    cfg = LlamaConfig(**TINY)
    rng = np.random.default_rng([seed, 0x7417])
    tensors = {}
    for i in range(cfg.n_layers):
        t = {}
        for field, (rows, cols) in _proj_shapes(cfg).items():
            w = rng.standard_normal((rows, cols)).astype(np.float32) / np.float32(np.sqrt(cols))
            t[field] = decode("Q4_1", encode("Q4_1", w), rows, cols)
        for field in ("attn_norm", "ffn_norm"):
            t[field] = (1 + 0.3 * rng.standard_normal(cfg.dim)).astype(np.float32)
        tensors[i] = t
    emb = rng.standard_normal((cfg.vocab, cfg.dim)).astype(np.float32) * np.float32(0.5)
    embedding = decode("Q8_0", encode("Q8_0", emb), cfg.vocab, cfg.dim)
    final_norm = (1 + 0.3 * rng.standard_normal(cfg.dim)).astype(np.float32)  # drawn last
    from ..tokenizer import ByteTokenizer

    # Tied LM head (no head_loader): the embedding.
    return Model("tiny", cfg, lambda i: LayerWeights(**tensors[i]), lambda: embedding,
                 norm_loader=lambda: final_norm, tokenizer_loader=ByteTokenizer)


def _proj_shapes(cfg: LlamaConfig) -> dict:
    return {"wq": (cfg.dim, cfg.dim), "wk": (cfg.kv_dim, cfg.dim), "wv": (cfg.kv_dim, cfg.dim),
            "wo": (cfg.dim, cfg.dim), "w_gate": (cfg.ffn, cfg.dim), "w_up": (cfg.ffn, cfg.dim),
            "w_down": (cfg.dim, cfg.ffn)}


#: The shipped synthetic mixture of experts, in gpt-oss' shape: 8 experts, top-2, a sliding
#: layer (window 4) then a full one, sinks, YaRN RoPE, MXFP4 experts.
TINY_MOE = dict(dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=64, n_experts=8, top_k=2,
                n_layers=2, vocab=256, eps=1e-5, theta=150000.0, sliding_window=4,
                max_ctx=16)


@lru_cache(maxsize=4)
def tiny_moe_model(seed: int = 0, layer_types: tuple | None = None, **shape) -> Model:
    """The shipped synthetic gpt-oss: seeded Gaussian weights, the experts quantised to MXFP4
    (llama.cpp's rounding), attention and router to Q8_0, a Q8_0 embedding and an untied Q8_0
    LM head, float biases, sinks and norm gains; a byte tokenizer. Deterministic.
    ``shape`` overrides fields of :data:`TINY_MOE` and ``layer_types`` the sliding/full
    pattern (default sliding, then full), for other shapes of the same kind of model."""
    from golden.blockquant import quantize_mxfp4
    from golden.gpt_oss import FULL, SLIDING, Expert, GptOssConfig, MoeLayerWeights, Yarn

    from ..tokenizer import ByteTokenizer

    name = "tiny-moe" + (f"({', '.join(f'{k}={v}' for k, v in shape.items())})"
                         if shape or layer_types else "")
    shape = TINY_MOE | shape
    types = layer_types or (SLIDING, FULL) * (shape["n_layers"] // 2) + (SLIDING,) * (
        shape["n_layers"] % 2)
    cfg = GptOssConfig(**shape, layer_types=tuple(types),
                       yarn=Yarn(factor=2.0, original_max_position_embeddings=8,
                                 truncate=False))
    rng = np.random.default_rng([seed, 0x70E])

    def mat(rows, cols, fmt="Q8_0"):
        w = rng.standard_normal((rows, cols)).astype(np.float32) / np.float32(np.sqrt(cols))
        return quantize_mxfp4(w) if fmt == "MXFP4" else decode(fmt, encode(fmt, w), rows, cols)

    def vec(n, scale=0.1, around=0.0):
        return (around + scale * rng.standard_normal(n)).astype(np.float32)

    d, q, kv, f = cfg.dim, cfg.q_dim, cfg.kv_dim, cfg.ffn
    layers = []
    for _ in range(cfg.n_layers):
        experts = [Expert(mat(f, d, "MXFP4"), mat(f, d, "MXFP4"), mat(d, f, "MXFP4"),
                          vec(f), vec(f), vec(d)) for _ in range(cfg.n_experts)]
        layers.append(MoeLayerWeights(
            attn_norm=vec(d, 0.3, 1.0), wq=mat(q, d), wk=mat(kv, d), wv=mat(kv, d),
            wo=mat(d, q), bq=vec(q), bk=vec(kv), bv=vec(kv), bo=vec(d),
            sinks=vec(cfg.n_heads, 1.0),
            ffn_norm=vec(d, 0.3, 1.0), router=mat(cfg.n_experts, d),
            router_bias=vec(cfg.n_experts), experts=experts))
    emb = rng.standard_normal((cfg.vocab, d)).astype(np.float32) * np.float32(0.5)
    embedding = decode("Q8_0", encode("Q8_0", emb), cfg.vocab, d)
    head = mat(cfg.vocab, d)
    final_norm = vec(d, 0.3, 1.0)
    return Model(name, cfg, lambda i: layers[i], lambda: embedding,
                 norm_loader=lambda: final_norm, head_loader=lambda: head,
                 tokenizer_loader=ByteTokenizer)
