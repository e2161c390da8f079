"""Tokenizers, taken from the model file itself.

- **GGUF** (``tokenizer.ggml.model == "gpt2"``): byte-level BPE built by the ``tokenizers``
  library from the file's own vocabulary (``tokenizer.ggml.tokens``) and merges
  (``tokenizer.ggml.merges``). Text is split first the way llama.cpp does for the file's
  ``tokenizer.ggml.pre`` (its regular expressions, applied one after the other, each keeping
  matches and the text between them), then mapped to the byte alphabet. Tokens the file marks
  as control (``<|im_start|>``...) are special tokens: they match whole in the text. No BOS is
  added (SmolLM2's file says ``add_bos_token = false``; llama.cpp does the same).
- **Checkpoints** (``.safetensors``/``.npz``): the ``tokenizer.json`` beside the file,
  through ``tokenizers.Tokenizer.from_file``, encoding without special tokens (no BOS).
- **No tokenizer** (a checkpoint without ``tokenizer.json``, a GGUF without tokenizer
  metadata): prompts are given as ids (``--prompt-ids``) and ids show as ``[id]``.
- **tiny** (vocabulary 256): bytes. Token ``i`` is the byte ``i``: text is encoded as its
  UTF-8 bytes, and ids decode back to bytes, invalid UTF-8 shown as U+FFFD.

Every problem raises :class:`gen.errors.UserError` with one line.
"""

from pathlib import Path

from .errors import UserError

__all__ = ["Tokenizer", "ByteTokenizer", "BpeTokenizer", "IdTokenizer", "gguf_tokenizer",
           "json_tokenizer", "PRE_SPLITS"]

# llama.cpp's pre-tokenizer expressions (llama-vocab.cpp, llm_tokenizer_bpe), by the name in
# tokenizer.ggml.pre. Each splits every piece the previous ones left.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
PRE_SPLITS = {
    "gpt2": (_GPT2,), "mpt": (_GPT2,), "olmo": (_GPT2,),
    # digits one by one, then GPT-2's expression
    "smollm": (r"\p{N}", _GPT2), "starcoder": (r"\p{N}", _GPT2), "refact": (r"\p{N}", _GPT2),
}


class Tokenizer:
    """Text to token ids and back."""

    #: Number of ids the tokenizer knows.
    vocab_size: int
    name: str

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError


class ByteTokenizer(Tokenizer):
    """The ``tiny`` model's tokenizer: token ``i`` is the byte ``i`` (UTF-8 text)."""

    vocab_size = 256
    name = "bytes"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class IdTokenizer(Tokenizer):
    """For a model file without a tokenizer, given token ids (``--prompt-ids``): ids show as
    ``[id]`` text; text cannot be encoded."""

    name = "ids"

    def __init__(self, why: str):
        self.why = why

    def encode(self, text: str) -> list[int]:
        raise UserError(self.why)

    def decode(self, ids) -> str:
        return "".join(f"[{int(i)}]" for i in ids)


class BpeTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer``: encode without added special tokens, decode keeping them
    (``<|im_end|>`` shows as text)."""

    def __init__(self, tok, name: str):
        self.tok = tok
        self.name = name
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


def gguf_tokenizer(fields: dict, where: str) -> BpeTokenizer:
    """The tokenizer a GGUF's metadata describes. ``fields`` maps keys to their
    ``ReaderField`` (``GGUFReader.fields``)."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTok

    def get(key, default=None):
        f = fields.get(key)
        return default if f is None else f.contents()

    kind = get("tokenizer.ggml.model")
    if kind is None:
        raise UserError(f"{where}: the GGUF has no tokenizer (tokenizer.ggml.model)")
    if kind != "gpt2":
        raise UserError(f"{where}: tokenizer model {kind!r} is not supported; supported: gpt2 "
                        "(byte-level BPE)")
    pre = get("tokenizer.ggml.pre", "gpt2")
    if pre not in PRE_SPLITS:
        raise UserError(f"{where}: pre-tokenizer {pre!r} is not supported; supported: "
                        f"{', '.join(sorted(PRE_SPLITS))}")
    tokens = get("tokenizer.ggml.tokens")
    # No merges key: a vocabulary of bytes alone (gguf's writer drops an empty list).
    merges = get("tokenizer.ggml.merges", [])
    if not isinstance(tokens, list) or not tokens or not isinstance(merges, list):
        raise UserError(f"{where}: the GGUF tokenizer has no token list or a bad merge list")
    types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UserError(f"{where}: the GGUF token list has duplicate tokens")
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            raise UserError(f"{where}: bad GGUF merge {m!r} (expected two tokens)")
        # Checked here: tokenizers panics (a BaseException) on a merge outside the vocabulary.
        if parts[0] not in vocab or parts[1] not in vocab or "".join(parts) not in vocab:
            raise UserError(f"{where}: GGUF merge {m!r} uses or makes a token that is not in "
                            "the vocabulary")
        pairs.append(tuple(parts))
    try:
        tok = HFTok(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    except Exception as e:  # tokenizers raises Exception subclasses of its own
        raise UserError(f"{where}: cannot build the BPE tokenizer ({e})") from None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_SPLITS[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(tokens, types, strict=False) if ty == 3]  # 3: CONTROL
    if control:
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    user = [t for t, ty in zip(tokens, types, strict=False) if ty == 4]  # 4: USER_DEFINED
    if user:
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
    return BpeTokenizer(tok, f"{where} ({kind}/{pre} BPE)")


def json_tokenizer(path: Path) -> BpeTokenizer:
    """A Hugging Face ``tokenizer.json``."""
    from tokenizers import Tokenizer as HFTok

    try:
        tok = HFTok.from_file(str(path))
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable tokenizer.json ({text[:160]})") from None
    return BpeTokenizer(tok, str(path))
