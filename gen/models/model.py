"""The loaded model: the config and its tensors, each decoded on first use."""

import numpy as np

from golden.blockquant import BlockAffine
from golden.llama import ModelWeights

from ..errors import UserError

__all__ = ["Model"]


class Model:
    """A loaded model. ``layer(i)`` decodes layer ``i`` on first use."""

    @property
    def is_moe(self) -> bool:
        """Whether the model is a gpt-oss mixture of experts."""
        from golden.gpt_oss import is_moe

        return is_moe(self.cfg)

    def check_quant_given(self, quant: str | None) -> None:
        """``--quant`` given for a model it does not shape is an error."""
        if quant is not None and not self.takes_quant:
            raise UserError("--quant applies to .safetensors/.npz checkpoints and to a "
                            "gpt-oss GGUF's float tensors; tiny, smollm2 and llama GGUF "
                            "files keep their own quantisation")

    def __init__(self, name: str, cfg, layer_loader, embed_loader, *,
                 norm_loader=None, head_loader=None, tokenizer_loader=None,
                 takes_quant: bool = False):
        self.name = name
        self.cfg = cfg
        #: whether ``--quant`` shapes this model (float tensors in the file)
        self.takes_quant = takes_quant
        self._layer_loader = layer_loader
        self._embed_loader = embed_loader
        self._norm_loader = norm_loader
        self._head_loader = head_loader
        self._tokenizer_loader = tokenizer_loader
        self._layers = {}
        self._cache = {}

    def layer(self, i: int):
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

    def tokenizer(self, ids_ok: bool = False):
        """The model's :class:`gen.tokenizer.Tokenizer`; with ``ids_ok``, a file without one
        gets :class:`gen.tokenizer.IdTokenizer` (ids in, ids shown)."""
        try:
            return self._once("tokenizer", self._tokenizer_loader)
        except UserError as e:
            if not ids_ok:
                raise
            from ..tokenizer import IdTokenizer

            return IdTokenizer(str(e))

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
