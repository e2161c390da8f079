"""Hugging Face checkpoints: ``config.json`` with ``model.safetensors`` (or an ``.npz``)
beside it."""

import re
from pathlib import Path

import numpy as np

from golden.llama import LayerWeights, LlamaConfig

from ..errors import UserError
from ..limits import check_layers
from ..output import read_json_object
from .arrays import read_arrays
from .gpt_oss import config_from_hf, hf_layer
from .model import Model
from .quant import KEEP_FLOAT, check_quant, quantize, short

__all__ = ["load_checkpoint", "MODEL_TYPES"]


class _Raw:
    """The stored tensors by name (``raw(name)``, ``name in raw``)."""

    def __init__(self, arrays, get):
        self.arrays, self.get = arrays, get

    def __call__(self, name):
        return self.get(name)

    def __contains__(self, name) -> bool:
        return name in self.arrays

# HF tensor name (after "model.layers.N.") -> LayerWeights field.
_HF_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "wq", "self_attn.k_proj": "wk",
    "self_attn.v_proj": "wv", "self_attn.o_proj": "wo", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up", "mlp.down_proj": "w_down",
}


#: A layer's tensor name: its index and its name in the layer.
_LAYER_TENSOR = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")

#: ``model_type`` values of config.json that hardwire reads.
MODEL_TYPES = ("llama", "gpt_oss")

#: Llama config keys hardwire reads (``head_dim`` and ``rope_parameters`` are checked).
_LLAMA_READ = {"model_type", "hidden_size", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "rms_norm_eps", "rope_theta", "num_hidden_layers",
               "max_position_embeddings", "vocab_size", "head_dim", "rope_parameters",
               "tie_word_embeddings"}
#: Llama config keys that describe another model than hardwire builds unless they hold one
#: of these values (absent is fine): read as a plain Llama, the file would be misread.
_LLAMA_PLAIN = {"attention_bias": (False,), "mlp_bias": (False,), "laurel_rank": (None, 0),
                "hc_mult": (None, 1), "rope_scaling": (None,), "num_local_experts": (None,),
                "num_experts": (None,), "sliding_window": (None,), "hidden_act": ("silu",),
                "partial_rotary_factor": (None, 1, 1.0), "use_sliding_window": (False,),
                "rope_interleaved": (False,), "quantization_config": (None,),
                "auto_map": (None,), "layer_types": (None,)}
#: Llama config keys known to leave the model as it is: bookkeeping, token ids, training-only
#: settings, generation defaults, and ``pretraining_tp`` (a split of the same matrix
#: products). Keys starting with ``_`` are transformers' own.
_LLAMA_HARMLESS = {
    "architectures", "torch_dtype", "dtype", "transformers_version", "bos_token_id",
    "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "initializer_range",
    "use_cache", "attention_dropout", "pretraining_tp", "is_llama_config", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
    "is_decoder", "add_cross_attention", "tie_encoder_decoder", "finetuning_task", "id2label",
    "label2id", "num_labels", "tokenizer_class", "prefix", "task_specific_params",
    "problem_type", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
    "temperature", "top_k", "top_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "num_return_sequences", "typical_p", "cross_attention_hidden_size"}


def _check_plain_llama(conf: dict, conf_path: Path) -> None:
    """Refuse a Llama config that changes the architecture in a way hardwire does not
    build (biases, LAuReL, hyper-connections, RoPE scaling or partial RoPE, experts, sliding
    windows, another activation, quantisation, custom code), and any key hardwire does not
    know: it may do the same."""
    for key, plain in _LLAMA_PLAIN.items():
        if key in conf and conf[key] not in plain:
            raise UserError(f"{conf_path}: {key} = {conf[key]!r} is not supported for a "
                            "Llama model (it would be built as another model than the file "
                            "describes)")
    rope = conf.get("rope_parameters")
    if isinstance(rope, dict) and rope.get("rope_type", "default") != "default":
        raise UserError(f"{conf_path}: rope_parameters rope_type {rope['rope_type']!r} is "
                        "not supported for a Llama model (only 'default')")
    if isinstance(rope, dict) and rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise UserError(f"{conf_path}: rope_parameters partial_rotary_factor "
                        f"{rope['partial_rotary_factor']!r} is not supported (only full RoPE)")
    unknown = sorted(k for k in conf if k not in _LLAMA_READ | set(_LLAMA_PLAIN)
                     | _LLAMA_HARMLESS and not k.startswith("_"))
    if unknown:
        raise UserError(f"{conf_path}: config key {unknown[0]!r} is not one hardwire knows for "
                        "a Llama model; it may describe another model than hardwire builds")


def _rope_theta(conf: dict) -> float:
    """RoPE's base: ``rope_theta`` at the top (transformers 4) or in ``rope_parameters``
    (transformers 5 writes it only there)."""
    if "rope_theta" in conf:
        return float(conf["rope_theta"])
    rope = conf.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        return float(rope["rope_theta"])
    return 10000.0


def _check_llama_tensors(path: Path, names, cfg: LlamaConfig) -> None:
    """Every stored tensor is one a Llama of ``cfg`` reads (the rotary buffers aside): a
    tensor of another architecture (``laurel.*``, say) is refused, not ignored."""
    def known(name) -> bool:
        if name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight") or \
                name.endswith("rotary_emb.inv_freq"):
            return True
        m = _LAYER_TENSOR.fullmatch(name)
        return bool(m) and int(m[1]) < cfg.n_layers and m[2] in _HF_NAMES

    extra = sorted(n for n in names if not known(n))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{path}: tensor {extra[0]}{more} is not part of a Llama model of "
                        "this config; hardwire does not build it")


def _llama_config(conf: dict, conf_path: Path) -> LlamaConfig:
    _check_plain_llama(conf, conf_path)
    try:
        cfg = LlamaConfig(
            dim=int(conf["hidden_size"]), n_heads=int(conf["num_attention_heads"]),
            n_kv_heads=int(conf.get("num_key_value_heads", conf["num_attention_heads"])),
            ffn=int(conf["intermediate_size"]), eps=float(conf.get("rms_norm_eps", 1e-6)),
            theta=_rope_theta(conf),
            n_layers=int(conf["num_hidden_layers"]),
            max_ctx=int(conf.get("max_position_embeddings", 2048)),
            vocab=int(conf.get("vocab_size", 0)))
        if conf.get("head_dim", cfg.head_dim) != cfg.head_dim:
            raise ValueError(f"head_dim {conf['head_dim']} != hidden_size / heads")
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{conf_path}: bad Llama config ({short(e)})") from None
    check_layers(cfg.n_layers, f"{conf_path}: num_hidden_layers")
    return cfg


def load_checkpoint(path: Path, quant: str) -> Model:
    """A Llama or gpt-oss checkpoint: ``config.json`` (its ``model_type``) beside the tensor
    file."""
    check_quant(quant)
    conf_path = path.parent / "config.json"
    if not conf_path.is_file():
        raise UserError(f"{path}: no config.json beside it (HF Llama config expected)")
    conf = read_json_object(conf_path, lambda e: f"{conf_path}: not valid JSON ({short(e)})",
                            f"{conf_path}: expected a JSON object (HF Llama config)")
    kind = conf.get("model_type", "llama")
    if kind not in MODEL_TYPES:
        raise UserError(f"{conf_path}: model_type {kind!r} is not supported; "
                        f"supported: {', '.join(MODEL_TYPES)}")
    if kind == "gpt_oss":
        cfg = config_from_hf(conf, str(conf_path))
    else:
        cfg = _llama_config(conf, conf_path)
    arrays = read_arrays(path)
    if kind == "llama":
        _check_llama_tensors(path, arrays.keys(), cfg)

    def get(name):
        if name not in arrays:
            raise UserError(f"{path}: tensor {name} is missing")
        a = np.asarray(arrays[name])
        if a.dtype.kind != "f":
            raise UserError(f"{path}: tensor {name} has dtype {a.dtype}, expected float")
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise UserError(f"{path}: tensor {name} holds NaN or infinity")
        return a

    def raw(name):
        if name not in arrays:
            raise UserError(f"{path}: tensor {name} is missing")
        return np.asarray(arrays[name])

    def layer(i):
        if kind == "gpt_oss":
            return hf_layer(get, _Raw(arrays, raw), i, cfg, quant, str(path))
        t = {}
        for hf, f in _HF_NAMES.items():
            a = get(f"model.layers.{i}.{hf}.weight")
            if f.endswith("norm"):
                t[f] = a.reshape(-1)
            else:
                if a.ndim != 2:
                    raise UserError(f"{path}: tensor {hf} of layer {i} is not 2-D")
                t[f] = quantize(a, quant, f"{path}: layer {i} {hf}")
        return LayerWeights(**t)

    def float_weights(i):
        return {f: get(f"model.layers.{i}.{hf}.weight") for hf, f in _HF_NAMES.items()
                if not f.endswith("norm")}

    if kind == "llama":
        layer.float_weights = float_weights  # read by Model.float_weights

    def embedding():
        e = get("model.embed_tokens.weight")
        if e.ndim != 2:
            raise UserError(f"{path}: tensor model.embed_tokens.weight is not 2-D")
        return quantize(e, KEEP_FLOAT if quant == KEEP_FLOAT else "q8_0",
                        f"{path}: embed_tokens")

    def final_norm():
        return get("model.norm.weight").reshape(-1)

    def lm_head():
        a = get("lm_head.weight")
        if a.ndim != 2:
            raise UserError(f"{path}: tensor lm_head.weight is not 2-D")
        return quantize(a, quant, f"{path}: lm_head")

    def tokenizer():
        from ..tokenizer import json_tokenizer

        tj = path.parent / "tokenizer.json"
        if not tj.is_file():
            raise UserError(f"{path}: no tokenizer.json beside it; generating text needs one "
                            "(or give token ids with --prompt-ids)")
        return json_tokenizer(tj)

    # Tied (no lm_head.weight, or tie_word_embeddings): the LM head is the embedding. A
    # config that says the head is its own needs the tensor (transformers would draw it).
    tied = "lm_head.weight" not in arrays or conf.get("tie_word_embeddings") is True
    if kind == "llama" and conf.get("tie_word_embeddings") is False and \
            "lm_head.weight" not in arrays:
        raise UserError(f"{path}: tie_word_embeddings is false but there is no lm_head.weight")
    return Model(path.name, cfg, layer, embedding, norm_loader=final_norm,
                 head_loader=None if tied else lm_head, tokenizer_loader=tokenizer,
                 takes_quant=True)
