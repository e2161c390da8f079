"""gpt-oss (a mixture of experts) from a Hugging Face checkpoint or a llama.cpp GGUF.

The experts are hard-wired exactly as the file stores them: MXFP4 is already block-affine
(E2M1 codes, an E8M0 power-of-two scale per block of 32), decoded bit for bit
(:func:`golden.blockquant.decode_mxfp4_hf` for OpenAI's ``*_blocks``/``*_scales``, ggml's
``block_mxfp4`` for GGUF). The other projections (q/k/v/o, the router, the LM head) are
quantised by ``--quant`` when the file holds them as floats (default ``q4_1``), the embedding
by ``q8_0``; a GGUF's quantised tensors are kept. Biases, sinks and norm gains stay float32;
the integer model rounds them once.
"""


import numpy as np

from golden.blockquant import BlockAffine, decode, decode_mxfp4_hf
from golden.gpt_oss import FULL, SLIDING, Expert, GptOssConfig, MoeLayerWeights, Yarn

from ..errors import UserError
from ..limits import check_layers
from .quant import quantize, short

__all__ = ["config_from_hf", "hf_layer", "split_gate_up", "experts_from_mxfp4"]


def _layer_types(n_layers: int, given) -> tuple[str, ...]:
    """``layer_types`` of the config, else gpt-oss' default: sliding on even layers."""
    if given is None:
        return tuple(SLIDING if (i + 1) % 2 else FULL for i in range(n_layers))
    return tuple(str(t) for t in given)


def _yarn_from_hf(conf: dict) -> tuple[Yarn, float]:
    """YaRN parameters and the RoPE base from ``rope_parameters`` (transformers 5) or
    ``rope_scaling`` with ``rope_theta`` (the shipped gpt-oss configs)."""
    rp = conf.get("rope_parameters") or conf.get("rope_scaling") or {}
    if not isinstance(rp, dict):
        raise ValueError("rope_parameters is not an object")
    theta = float(rp.get("rope_theta", conf.get("rope_theta", 150000.0)))
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind not in ("yarn", "default"):
        raise ValueError(f"rope type {kind!r} is not supported; supported: yarn, default")
    if kind == "default":
        return Yarn(), theta
    af = rp.get("attention_factor")
    return Yarn(factor=float(rp["factor"]), beta_fast=float(rp.get("beta_fast") or 32),
                beta_slow=float(rp.get("beta_slow") or 1),
                truncate=bool(rp.get("truncate", True)),
                original_max_position_embeddings=int(rp["original_max_position_embeddings"]),
                attention_factor=None if af is None else float(af)), theta


def config_from_hf(conf: dict, where: str) -> GptOssConfig:
    """A :class:`golden.gpt_oss.GptOssConfig` from a ``model_type: gpt_oss`` config.json."""
    try:
        yarn, theta = _yarn_from_hf(conf)
        heads = int(conf["num_attention_heads"])
        n_layers = int(conf["num_hidden_layers"])
        check_layers(n_layers, f"{where}: num_hidden_layers")
        return GptOssConfig(
            dim=int(conf["hidden_size"]), n_heads=heads,
            n_kv_heads=int(conf.get("num_key_value_heads", heads)),
            head_dim=int(conf.get("head_dim") or int(conf["hidden_size"]) // heads),
            ffn=int(conf["intermediate_size"]),
            n_experts=int(conf.get("num_local_experts", conf.get("num_experts", 0))),
            top_k=int(conf.get("num_experts_per_tok", conf.get("experts_per_token", 0))),
            n_layers=n_layers, vocab=int(conf.get("vocab_size", 0)),
            eps=float(conf.get("rms_norm_eps", 1e-5)), theta=theta,
            sliding_window=int(conf.get("sliding_window") or 0),
            layer_types=_layer_types(n_layers, conf.get("layer_types")),
            swiglu_alpha=float(conf.get("swiglu_alpha", 1.702)),
            swiglu_limit=float(conf.get("swiglu_limit", 7.0)), yarn=yarn,
            max_ctx=int(conf.get("max_position_embeddings", 4096)))
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{where}: bad gpt-oss config ({short(e)})") from None


def split_gate_up(w: BlockAffine) -> tuple[BlockAffine, BlockAffine]:
    """The interleaved ``gate_up [2 ffn, dim]`` as ``(gate, up)``: the even and the odd
    rows (an exact row selection)."""
    rows = w.shape[0]
    return w.permute_rows(np.arange(0, rows, 2)), w.permute_rows(np.arange(1, rows, 2))


def experts_from_mxfp4(blocks: np.ndarray, scales: np.ndarray, rows: int, cols: int,
                       where: str) -> list[BlockAffine]:
    """OpenAI's MXFP4 expert tensor ``[E, rows, cols/32, 16]`` with its scales
    ``[E, rows, cols/32]``, one :class:`BlockAffine` per expert."""
    e = blocks.shape[0] if blocks.ndim == 4 else -1
    want_b, want_s = (e, rows, cols // 32, 16), (e, rows, cols // 32)
    if cols % 32 or blocks.dtype != np.uint8 or tuple(blocks.shape) != want_b:
        raise UserError(f"{where}_blocks: {blocks.dtype} {list(blocks.shape)} does not hold "
                        f"MXFP4 blocks of [experts, {rows}, {cols}] (uint8 {list(want_b)})")
    if scales.dtype != np.uint8 or tuple(scales.shape) != want_s:
        raise UserError(f"{where}_scales: {scales.dtype} {list(scales.shape)}, expected "
                        f"uint8 {list(want_s)}")
    try:
        return [decode_mxfp4_hf(blocks[i], scales[i]) for i in range(e)]
    except ValueError as ex:
        raise UserError(f"{where}: {ex}") from None


def _experts(get, raw, p: str, cfg: GptOssConfig, quant: str, where: str) -> list[Expert]:
    """Layer ``p``'s experts from a checkpoint: MXFP4 blocks as stored, or float
    ``gate_up_proj [E, dim, 2 ffn]`` / ``down_proj [E, ffn, dim]`` quantised by ``quant``."""
    d, f, n = cfg.dim, cfg.ffn, cfg.n_experts
    x = p + "mlp.experts."
    if x + "gate_up_proj_blocks" in raw:
        gu = experts_from_mxfp4(raw(x + "gate_up_proj_blocks"), raw(x + "gate_up_proj_scales"),
                                2 * f, d, where + " " + x + "gate_up_proj")
        down = experts_from_mxfp4(raw(x + "down_proj_blocks"), raw(x + "down_proj_scales"),
                                  d, f, where + " " + x + "down_proj")
    else:
        a, b = get(x + "gate_up_proj"), get(x + "down_proj")
        if a.shape != (n, d, 2 * f) or b.shape != (n, f, d):
            raise UserError(f"{where}: {x}gate_up_proj {list(a.shape)} / down_proj "
                            f"{list(b.shape)} do not fit [{n}, {d}, {2 * f}] / [{n}, {f}, {d}]")
        gu = [quantize(a[i].T.copy(), quant, f"{where}: {x}gate_up_proj[{i}]") for i in range(n)]
        down = [quantize(b[i].T.copy(), quant, f"{where}: {x}down_proj[{i}]") for i in range(n)]
    if len(gu) != n or len(down) != n:
        raise UserError(f"{where}: {x}: {len(gu)} experts, the config has {n}")
    gub, db = get(x + "gate_up_proj_bias"), get(x + "down_proj_bias")
    if gub.shape != (n, 2 * f) or db.shape != (n, d):
        raise UserError(f"{where}: {x} biases {list(gub.shape)} / {list(db.shape)} do not fit "
                        f"[{n}, {2 * f}] / [{n}, {d}]")
    out = []
    for i in range(n):
        gate, up = split_gate_up(gu[i])
        out.append(Expert(gate, up, down[i], gub[i, 0::2].copy(), gub[i, 1::2].copy(),
                          db[i].copy()))
    return out


def hf_layer(get, raw, i: int, cfg: GptOssConfig, quant: str, where: str) -> MoeLayerWeights:
    """Layer ``i`` of a gpt-oss checkpoint (``get(name)``: a float32 tensor, ``raw(name)``:
    the stored one; ``name in raw``: whether it exists)."""
    p = f"model.layers.{i}."
    a = p + "self_attn."

    def proj(name):
        w = get(a + name + ".weight")
        if w.ndim != 2:
            raise UserError(f"{where}: tensor {a}{name}.weight is not 2-D")
        return quantize(w, quant, f"{where}: layer {i} {name}")

    router = get(p + "mlp.router.weight")
    if router.ndim != 2:
        raise UserError(f"{where}: tensor {p}mlp.router.weight is not 2-D")
    return MoeLayerWeights(
        attn_norm=get(p + "input_layernorm.weight"), wq=proj("q_proj"), wk=proj("k_proj"),
        wv=proj("v_proj"), wo=proj("o_proj"), bq=get(a + "q_proj.bias"),
        bk=get(a + "k_proj.bias"), bv=get(a + "v_proj.bias"), bo=get(a + "o_proj.bias"),
        sinks=get(a + "sinks"), ffn_norm=get(p + "post_attention_layernorm.weight"),
        router=quantize(router, quant, f"{where}: layer {i} router"),
        router_bias=get(p + "mlp.router.bias"),
        experts=_experts(get, raw, p, cfg, quant, where))


def gguf_config(field, where: str) -> GptOssConfig:
    """A :class:`golden.gpt_oss.GptOssConfig` from a ``gpt-oss`` GGUF's metadata
    (``field(key, default)``). YaRN values missing from the file take llama.cpp's defaults
    (beta_fast 32, beta_slow 1); the correction range is not truncated, as gpt-oss' own
    config has it."""
    a = "gpt-oss."
    try:
        n_layers = int(field(a + "block_count"))
        check_layers(n_layers, f"{where}: {a}block_count")
        dim, heads = int(field(a + "embedding_length")), int(field(a + "attention.head_count"))
        kind = str(field(a + "rope.scaling.type", "none"))
        yarn = Yarn()
        if kind == "yarn":
            yarn = Yarn(factor=float(field(a + "rope.scaling.factor")),
                        beta_fast=float(field(a + "rope.scaling.yarn_beta_fast", 32.0)),
                        beta_slow=float(field(a + "rope.scaling.yarn_beta_slow", 1.0)),
                        truncate=False, original_max_position_embeddings=int(
                            field(a + "rope.scaling.original_context_length")))
        elif kind != "none":
            raise ValueError(f"rope scaling {kind!r} is not supported; supported: yarn")
        ffn = field(a + "expert_feed_forward_length", 0)
        return GptOssConfig(
            dim=dim, n_heads=heads,
            n_kv_heads=int(field(a + "attention.head_count_kv", heads)),
            head_dim=int(field(a + "attention.key_length", dim // heads)),
            ffn=int(ffn or field(a + "feed_forward_length")),
            n_experts=int(field(a + "expert_count")),
            top_k=int(field(a + "expert_used_count")), n_layers=n_layers,
            eps=float(field(a + "attention.layer_norm_rms_epsilon")),
            theta=float(field(a + "rope.freq_base", 150000.0)),
            sliding_window=int(field(a + "attention.sliding_window")),
            layer_types=_layer_types(n_layers, None), yarn=yarn,
            max_ctx=int(field(a + "context_length")), vocab=0)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: bad gpt-oss metadata ({short(e)})") from None


def gguf_experts(tensor, raw3d, i: int, cfg: GptOssConfig, where: str) -> list[Expert]:
    """Layer ``i``'s experts from a GGUF: ``blk.i.ffn_{gate,up,down}_exps.weight``
    (``raw3d(name, rows, cols)``: per expert a :class:`BlockAffine`) and their biases."""
    d, f, n = cfg.dim, cfg.ffn, cfg.n_experts
    b = f"blk.{i}.ffn_"
    gate, up = raw3d(b + "gate_exps.weight", f, d), raw3d(b + "up_exps.weight", f, d)
    down = raw3d(b + "down_exps.weight", d, f)
    biases = {k: tensor(b + k + "_exps.bias") for k in ("gate", "up", "down")}
    for k, want in (("gate", (n, f)), ("up", (n, f)), ("down", (n, d))):
        if isinstance(biases[k], BlockAffine) or tuple(np.shape(biases[k])) != want:
            raise UserError(f"{where}: tensor {b}{k}_exps.bias must be F32/F16 {list(want)}")
    return [Expert(gate[e], up[e], down[e], biases["gate"][e], biases["up"][e],
                   biases["down"][e]) for e in range(n)]


def split_experts(kind: str, raw: np.ndarray, n: int, rows: int, cols: int,
                  where: str) -> list[BlockAffine]:
    """A GGUF expert tensor (type ``kind``, ``n`` experts of ``[rows, cols]``) decoded per
    expert; the byte count must match the shape."""
    raw = np.asarray(raw).reshape(-1).view(np.uint8)
    if raw.size % n:
        raise UserError(f"{where}: {raw.size} bytes do not split into {n} experts")
    per = raw.reshape(n, -1)
    try:
        return [decode(kind, per[e], rows, cols) for e in range(n)]
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
