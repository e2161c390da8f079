"""llama.cpp GGUF files, through the ``gguf`` package: architectures ``llama`` and
``gpt-oss``."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from golden.blockquant import FORMATS, K_FORMATS, BlockAffine, decode, quantize_per_channel
from golden.gpt_oss import MoeLayerWeights
from golden.llama import LayerWeights, LlamaConfig, unpermute_qk_rows

from ..errors import UserError
from ..limits import check_layers
from .gpt_oss import gguf_config, gguf_experts, split_experts
from .model import Model
from .quant import KEEP_FLOAT, check_quant, quantize, short

__all__ = ["SUPPORTED_TYPES", "ARCHITECTURES", "load_gguf", "GgufFile"]

SUPPORTED_TYPES = ("F32", "F16", "BF16", *FORMATS, *K_FORMATS)
_FLOATS = ("F32", "F16", "BF16")
ARCHITECTURES = ("llama", "gpt-oss")

# GGUF tensor name -> LayerWeights field.
_GGUF_NAMES = {
    "attn_norm": "attn_norm", "attn_q": "wq", "attn_k": "wk", "attn_v": "wv",
    "attn_output": "wo", "ffn_norm": "ffn_norm", "ffn_gate": "w_gate", "ffn_up": "w_up",
    "ffn_down": "w_down",
}
_MISSING = object()


class GgufFile:
    """A GGUF file's metadata (:meth:`field`) and tensors (:meth:`tensor`: F32/F16 as float32
    arrays, block formats decoded exactly)."""

    def __init__(self, path: Path):
        try:
            from gguf import GGUFReader
        except ImportError:  # pragma: no cover - a set-up problem
            raise UserError("reading GGUF needs the gguf package (pip install gguf==0.19.0)") \
                from None
        self.path = path
        try:
            self.reader = GGUFReader(str(path))
        except Exception as e:  # the reader raises ValueError, struct errors, IndexError...
            raise UserError(f"{path} is not a readable GGUF file ({short(e)})") from None
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._check_layout()

    def _check_layout(self) -> None:
        """Tensor data as llama.cpp's loader requires it: in file order, each at the end of
        the one before, rounded up to the alignment (a shifted offset would read every
        weight from the wrong bytes)."""
        align, at = self.reader.alignment, 0
        for t in self.reader.tensors:
            offset = int(t.data_offset) - int(self.reader.data_offset)
            if offset != at:
                raise UserError(f"{self.path}: tensor {t.name} has data offset {offset}, "
                                f"expected {at} (tensors follow each other, aligned to "
                                f"{align} bytes)")
            at += -(-int(t.n_bytes) // align) * align

    def field(self, key, default=_MISSING):
        f = self.reader.fields.get(key)
        if f is None:
            if default is _MISSING:
                raise UserError(f"{self.path}: GGUF metadata has no {key}")
            return default
        return f.contents()

    def _get(self, name):
        t = self.tensors.get(name)
        if t is None:
            raise UserError(f"{self.path}: tensor {name} is missing")
        kind = t.tensor_type.name
        if kind not in SUPPORTED_TYPES:
            raise UserError(f"{self.path}: tensor {name} has type {kind}, which is not "
                            f"supported; supported: {', '.join(SUPPORTED_TYPES)}")
        return t, kind, [int(s) for s in t.shape]  # GGUF lists the fastest dimension first

    def tensor(self, name):
        t, kind, shape = self._get(name)
        if kind in _FLOATS:
            data = np.asarray(t.data)
            if kind == "BF16":  # the top half of a float32
                data = (data.reshape(-1).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            data = data.astype(np.float32)
            data = data.reshape(shape[::-1]) if len(shape) > 1 else data.reshape(-1)
            if not np.all(np.isfinite(data)):
                raise UserError(f"{self.path}: tensor {name} holds NaN or infinity")
            return data
        if len(shape) != 2:  # a block format holds 2-D weights only
            raise UserError(f"{self.path}: tensor {name} is {kind} of {len(shape)}-D shape; "
                            "norms and biases must be F32, F16 or BF16, block formats 2-D")
        cols, nrows = shape
        try:
            return decode(kind, np.asarray(t.data), nrows, cols)
        except ValueError as e:
            raise UserError(f"{self.path}: tensor {name}: {e}") from None

    def experts(self, name, n: int, rows: int, cols: int) -> list[BlockAffine]:
        """A 3-D expert tensor ``[n, rows, cols]`` in a block format, one tensor per
        expert."""
        t, kind, shape = self._get(name)
        if kind in _FLOATS:
            raise UserError(f"{self.path}: tensor {name} is {kind}, expected a block format")
        if list(shape[::-1]) != [n, rows, cols]:
            raise UserError(f"{self.path}: tensor {name} has shape {list(shape[::-1])}, the "
                            f"config needs [{n}, {rows}, {cols}] (experts, rows, columns)")
        return split_experts(kind, t.data, n, rows, cols, f"{self.path}: tensor {name}")

    def rows(self, name: str) -> int:
        """Rows of a 2-D tensor (0 when it is missing): the vocabulary of token_embd."""
        t = self.tensors.get(name)
        return int(t.shape[1]) if t is not None and len(t.shape) == 2 else 0

    def embedding(self, name="token_embd.weight", keep_float: bool = False):
        e = self.tensor(name)
        if not isinstance(e, BlockAffine) and e.ndim != 2:
            raise UserError(f"{self.path}: tensor {name} is not 2-D")
        if isinstance(e, BlockAffine) or keep_float:
            return e
        return quantize_per_channel(e, 8)

    def norm(self, name: str, dim: int) -> np.ndarray:
        g = self.tensor(name)
        if isinstance(g, BlockAffine) or np.shape(g) != (dim,):
            raise UserError(f"{self.path}: tensor {name} must be F32/F16 [{dim}]")
        return g

    def model(self, cfg, layer, head_quant: str | None = None) -> Model:
        """The :class:`Model` of this file with ``layer(i)``; a float ``output.weight`` is
        quantised by ``head_quant`` (else per channel, as the embedding)."""
        def tokenizer():
            from ..tokenizer import gguf_tokenizer

            return gguf_tokenizer(self.reader.fields, self.path.name)

        def head():
            w = self.tensor("output.weight")
            if head_quant is None or isinstance(w, BlockAffine) or np.ndim(w) != 2:
                return self.embedding("output.weight", keep_float=keep)
            return quantize(w, head_quant, f"{self.path}: output.weight")

        head = head if "output.weight" in self.tensors else None
        keep = head_quant == KEEP_FLOAT
        return Model(self.path.name, cfg, layer, lambda: self.embedding(keep_float=keep),
                     norm_loader=lambda: self.norm("output_norm.weight", cfg.dim),
                     head_loader=head, tokenizer_loader=tokenizer,
                     takes_quant=head_quant is not None)


def load_gguf(path: Path, quant: str = "q4_1") -> Model:
    """A GGUF file. A gpt-oss file's float projections (q/k/v/o, the router, the LM head) are
    quantised by ``quant``; its block-format tensors, and every tensor of a llama file, are
    kept as stored."""
    f = GgufFile(path)
    arch = f.field("general.architecture")
    if arch not in ARCHITECTURES:
        raise UserError(f"{path}: architecture {arch!r} is not supported; supported: "
                        f"{', '.join(ARCHITECTURES)}")
    return _gpt_oss(f, quant) if arch == "gpt-oss" else _llama(f)


def _llama(f: GgufFile) -> Model:
    path, a = f.path, "llama."
    try:
        cfg = LlamaConfig(
            dim=int(f.field(a + "embedding_length")),
            n_heads=int(f.field(a + "attention.head_count")),
            n_kv_heads=int(f.field(a + "attention.head_count_kv",
                                   f.field(a + "attention.head_count"))),
            ffn=int(f.field(a + "feed_forward_length")),
            eps=float(f.field(a + "attention.layer_norm_rms_epsilon")),
            theta=float(f.field(a + "rope.freq_base", 10000.0)),
            n_layers=int(f.field(a + "block_count")), max_ctx=int(f.field(a + "context_length")),
            vocab=int(f.field(a + "vocab_size", 0)) or f.rows("token_embd.weight"))
        rope_dims = int(f.field(a + "rope.dimension_count", cfg.head_dim))
    except (ValueError, TypeError) as e:  # TypeError: a key holding an array or a string
        raise UserError(f"{path}: bad llama metadata ({short(e)})") from None
    check_layers(cfg.n_layers, f"{path}: llama.block_count")
    if rope_dims != cfg.head_dim:
        raise UserError(f"{path}: partial RoPE ({rope_dims} of {cfg.head_dim} "
                        "dims) is not supported")
    _check_plain_llama(f, cfg)

    def layer(i):
        t = {fd: f.tensor(f"blk.{i}.{g}.weight") for g, fd in _GGUF_NAMES.items()}
        for fd in ("attn_norm", "ffn_norm"):
            if isinstance(t[fd], BlockAffine):
                raise UserError(f"{path}: layer {i} {fd} is quantised; norms must be F32/F16")
        for fd, heads, rows in (("wq", cfg.n_heads, cfg.dim),
                                ("wk", cfg.n_kv_heads, cfg.kv_dim)):
            # The shape first: the un-permutation needs whole heads of even size.
            if tuple(np.shape(t[fd])) != (rows, cfg.dim):
                raise UserError(f"{path}: layer {i} tensor {fd} has shape "
                                f"{tuple(np.shape(t[fd]))}, the config needs {(rows, cfg.dim)}")
            t[fd] = _permuted(t[fd], unpermute_qk_rows(rows, heads), path, i, fd)
        return LayerWeights(**t)

    return f.model(cfg, layer)


#: ``llama.*`` metadata hardwire reads.
_LLAMA_READ = {"embedding_length", "attention.head_count", "attention.head_count_kv",
               "feed_forward_length", "attention.layer_norm_rms_epsilon", "rope.freq_base",
               "block_count", "context_length", "vocab_size", "rope.dimension_count"}
#: Metadata outside ``llama.*`` that leaves the model as it is (the tokenizer is read on
#: its own).
_HARMLESS_PREFIXES = ("GGUF.", "general.", "tokenizer.", "quantize.", "split.", "imatrix.")


def _check_plain_llama(f: GgufFile, cfg) -> None:
    """Refuse what a plain Llama of ``cfg`` does not read (RoPE scaling, experts, other
    head sizes, metadata hardwire does not know, and tensors such as llama 3's
    ``rope_freqs`` or biases), rather than build another model than the file's."""
    plain = {"rope.scaling.type": ("none",), "expert_count": (0,), "expert_used_count": (0,),
             "attention.key_length": (cfg.head_dim,), "attention.value_length": (cfg.head_dim,),
             "rope.scaling.factor": None}  # None: any value (unused without a scaling type)
    for key in f.reader.fields:
        name = key[len("llama."):] if key.startswith("llama.") else None
        if name is None:
            if not key.startswith(_HARMLESS_PREFIXES):
                raise UserError(f"{f.path}: metadata {key} is not one hardwire knows for a "
                                "llama file; it may describe another model than hardwire "
                                "builds")
        elif name in plain:
            value = f.field(key)
            if plain[name] is not None and value not in plain[name]:
                raise UserError(f"{f.path}: {key} = {value!r} is not supported (it would be "
                                "built as another model than the file describes)")
        elif name not in _LLAMA_READ:
            raise UserError(f"{f.path}: metadata {key} is not one hardwire knows for a llama "
                            "file; it may describe another model than hardwire builds")
    def known(name) -> bool:
        m = re.fullmatch(r"blk\.(\d+)\.(.+)\.weight", name)
        return name in ("token_embd.weight", "output_norm.weight", "output.weight") or (
            bool(m) and int(m[1]) < cfg.n_layers and m[2] in _GGUF_NAMES)

    extra = sorted(n for n in f.tensors if not known(n))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{f.path}: tensor {extra[0]}{more} is not part of a Llama model of "
                        "this metadata; hardwire does not build it")


def _gpt_oss(f: GgufFile, quant: str) -> Model:
    """gpt-oss: no Q/K permutation (llama.cpp runs it with NeoX RoPE); the second norm is
    ``post_attention_norm``; the router is ``ffn_gate_inp``."""
    check_quant(quant)
    cfg = replace(gguf_config(f.field, str(f.path)), vocab=f.rows("token_embd.weight"))

    def layer(i):
        b = f"blk.{i}."
        w = {k: f.tensor(b + g) for k, g in (
            ("attn_norm", "attn_norm.weight"), ("ffn_norm", "post_attention_norm.weight"),
            ("wq", "attn_q.weight"), ("wk", "attn_k.weight"), ("wv", "attn_v.weight"),
            ("wo", "attn_output.weight"), ("bq", "attn_q.bias"), ("bk", "attn_k.bias"),
            ("bv", "attn_v.bias"), ("bo", "attn_output.bias"), ("sinks", "attn_sinks.weight"),
            ("router", "ffn_gate_inp.weight"), ("router_bias", "ffn_gate_inp.bias"))}
        for k in ("attn_norm", "ffn_norm", "bq", "bk", "bv", "bo", "sinks", "router_bias"):
            if isinstance(w[k], BlockAffine):
                raise UserError(f"{f.path}: layer {i} {k} is quantised; it must be F32/F16")
        for k in ("wq", "wk", "wv", "wo", "router"):
            if not isinstance(w[k], BlockAffine):
                if np.ndim(w[k]) != 2:
                    raise UserError(f"{f.path}: layer {i} {k} is not 2-D")
                w[k] = quantize(w[k], quant, f"{f.path}: layer {i} {k}")
        experts = gguf_experts(f.tensor, lambda name, r, c: f.experts(name, cfg.n_experts, r, c),
                               i, cfg, str(f.path))
        return MoeLayerWeights(**w, experts=experts)

    return f.model(cfg, layer, head_quant=quant)


def _permuted(w, order, path, i, name):
    if isinstance(w, BlockAffine):
        return w.permute_rows(order)
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[0] != len(order):
        raise UserError(f"{path}: layer {i} {name} has shape {w.shape}")
    return w[order]
