"""Tiny random gpt-oss models made with transformers, written as the files hardwire reads: an
OpenAI-style checkpoint (MXFP4 expert blocks and scales, bfloat16 elsewhere) and a llama.cpp
GGUF of the same weights (ggml's MXFP4 blocks for the experts, F32 elsewhere).

Every weight of the transformers model is set to exactly what the files hold (the experts to
their MXFP4 values, the rest to bfloat16 values), so that transformers and hardwire run the
same numbers."""

import json
from pathlib import Path

import numpy as np

from golden.blockquant import encode_mxfp4_hf
from golden.blockquant.mxfp4 import mxfp4_elements, pack_mxfp4

#: A shape with more positions than the window, both layer types, 8 experts and top-2.
SHAPE = dict(vocab_size=97, hidden_size=64, intermediate_size=32, head_dim=16,
             num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
             num_local_experts=8, num_experts_per_tok=2, sliding_window=4,
             max_position_embeddings=256)
YARN = {"rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "truncate": False, "original_max_position_embeddings": 32, "rope_theta": 150000.0}


def hf_model(seed: int = 0, std: float = 0.3, **shape):
    """A float32 ``GptOssForCausalLM`` with seeded weights: experts MXFP4-exact, the other
    tensors bfloat16-exact; eager attention and eager experts."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    conf = GptOssConfig(**(SHAPE | {"rope_parameters": dict(YARN), "tie_word_embeddings": False}
                           | shape))
    conf._attn_implementation = "eager"
    torch.manual_seed(seed)
    m = GptOssForCausalLM(conf).float().eval()
    m.set_experts_implementation("eager")
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.normal_(0, std)
            if name.endswith("norm.weight"):
                p.add_(1.0)
            if name.endswith("gate_up_proj") or name.endswith("down_proj"):
                w = p.numpy()  # [E, in, out]: quantise each expert's [out, in]
                for e in range(w.shape[0]):
                    b, s = encode_mxfp4_hf(w[e].T)
                    w[e] = _dequant_hf(b, s).T
            else:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return m


def _dequant_hf(blocks, scales) -> np.ndarray:
    from golden.blockquant import decode_mxfp4_hf

    return decode_mxfp4_hf(blocks, scales).dequantize()


def _expert_blocks(w: np.ndarray):
    """HF ``[E, in, out]`` experts as OpenAI's ``(blocks [E, out, in/32, 16], scales)``."""
    parts = [encode_mxfp4_hf(w[e].T) for e in range(w.shape[0])]
    return np.stack([b for b, _ in parts]), np.stack([s for _, s in parts])


def write_checkpoint(m, out: Path) -> Path:
    """``out/config.json`` and ``out/model.safetensors`` as OpenAI ships gpt-oss: the experts
    as ``*_blocks``/``*_scales`` (uint8), every other tensor bfloat16. Returns the
    safetensors path."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, p in m.state_dict().items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            b, s = _expert_blocks(p.numpy())
            tensors[name + "_blocks"] = torch.from_numpy(np.ascontiguousarray(b))
            tensors[name + "_scales"] = torch.from_numpy(np.ascontiguousarray(s))
        else:
            tensors[name] = p.detach().to(torch.bfloat16).contiguous()
    save_file(tensors, str(out / "model.safetensors"))
    conf = m.config.to_dict()
    conf["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(conf, indent=1))
    return out / "model.safetensors"


def write_gguf(m, path: Path, *, arch_keys: dict | None = None, drop: tuple = (),
               float_experts: bool = False) -> Path:
    """A llama.cpp GGUF (architecture ``gpt-oss``) of the same weights: the experts split
    into ``ffn_{gate,up,down}_exps`` in ggml's MXFP4 blocks, everything else F32. ``drop``:
    tensor names to leave out; ``arch_keys``: metadata to replace (None values drop a key);
    ``float_experts``: the experts as F32 (which hardwire refuses)."""
    import gguf

    c = m.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "gpt-oss")
    keys = {"block_count": c.num_hidden_layers, "context_length": c.max_position_embeddings,
            "embedding_length": c.hidden_size, "feed_forward_length": c.intermediate_size,
            "expert_feed_forward_length": c.intermediate_size,
            "attention.head_count": c.num_attention_heads,
            "attention.head_count_kv": c.num_key_value_heads,
            "attention.key_length": c.head_dim, "attention.value_length": c.head_dim,
            "attention.layer_norm_rms_epsilon": c.rms_norm_eps,
            "rope.freq_base": c.rope_parameters["rope_theta"],
            "expert_count": c.num_local_experts, "expert_used_count": c.num_experts_per_tok,
            "attention.sliding_window": c.sliding_window,
            "rope.scaling.type": "yarn", "rope.scaling.factor": c.rope_parameters["factor"],
            "rope.scaling.original_context_length":
                c.rope_parameters["original_max_position_embeddings"]}
    keys |= arch_keys or {}
    for k, v in keys.items():
        if v is None:
            continue
        key = f"gpt-oss.{k}"
        if isinstance(v, str):
            w.add_string(key, v)
        elif isinstance(v, float):
            w.add_float32(key, v)
        else:
            w.add_uint32(key, int(v))

    def add(name, a):
        if name not in drop:
            w.add_tensor(name, np.ascontiguousarray(a, np.float32))

    def add_experts(name, ws):  # [E, out, in] floats (MXFP4-exact)
        if name in drop:
            return
        if float_experts:
            w.add_tensor(name, np.ascontiguousarray(ws, np.float32))
            return
        blocks = []
        for e in range(ws.shape[0]):
            blocks.append(pack_mxfp4(*mxfp4_elements(ws[e])).reshape(ws.shape[1], -1))
        w.add_tensor(name, np.stack(blocks), raw_dtype=gguf.GGMLQuantizationType.MXFP4)

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    add("output_norm.weight", sd["model.norm.weight"])
    add("output.weight", sd["lm_head.weight"])
    for i in range(c.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        add(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        add(b + "post_attention_norm.weight", sd[p + "post_attention_layernorm.weight"])
        for hf, g in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                      ("o_proj", "attn_output")):
            add(b + g + ".weight", sd[p + f"self_attn.{hf}.weight"])
            add(b + g + ".bias", sd[p + f"self_attn.{hf}.bias"])
        add(b + "attn_sinks.weight", sd[p + "self_attn.sinks"])
        add(b + "ffn_gate_inp.weight", sd[p + "mlp.router.weight"])
        add(b + "ffn_gate_inp.bias", sd[p + "mlp.router.bias"])
        gu = sd[p + "mlp.experts.gate_up_proj"].transpose(0, 2, 1)  # [E, 2 ffn, dim]
        gub = sd[p + "mlp.experts.gate_up_proj_bias"]
        add_experts(b + "ffn_gate_exps.weight", gu[:, 0::2])
        add_experts(b + "ffn_up_exps.weight", gu[:, 1::2])
        add_experts(b + "ffn_down_exps.weight", sd[p + "mlp.experts.down_proj"].transpose(0, 2, 1))
        add(b + "ffn_gate_exps.bias", gub[:, 0::2])
        add(b + "ffn_up_exps.bias", gub[:, 1::2])
        add(b + "ffn_down_exps.bias", sd[p + "mlp.experts.down_proj_bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def hf_run(m, ids: list[int]):
    """transformers' output of every decoder layer ``[layers][positions, dim]`` and the
    logits ``[positions, vocab]``."""
    import torch

    layers = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: layers.append(
        (out[0] if isinstance(out, tuple) else out)[0].detach().numpy().copy()))
        for layer in m.model.layers]
    try:
        with torch.no_grad():
            logits = m(torch.tensor([ids])).logits[0].numpy()
    finally:
        for h in hooks:
            h.remove()
    return layers, logits
