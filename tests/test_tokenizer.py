"""Tokenizers from the model file: SmolLM2's GGUF tokenizer against transformers' own reading
of the same file, the byte tokenizer of tiny, tokenizer.json beside a checkpoint, and the
errors."""

import json

import numpy as np
import pytest

from gen.errors import UserError
from gen.models import load_model, smollm2_path
from gen.tokenizer import ByteTokenizer, gguf_tokenizer

PROMPTS = [
    "The capital of France is",
    "Hello, world!  Two  spaces\tand a tab\nand a newline",
    " leading space and trailing space ",
    "naïve café — ünïcödé 日本語 😀 Ελληνικά",
    "1234567 3.14159 x=42; 2024-06-01",
    "it's we're I'll they'd",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "   ",
    "a\n\n\nb\r\nc",
]


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = smollm2_path()
    except UserError as e:
        pytest.skip(str(e))
    return path, load_model(str(path)).tokenizer()


def test_france_prompt_ids(smollm2):
    _, tok = smollm2
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    assert tok.vocab_size == 49152


def test_smollm2_equals_transformers_gguf_tokenizer(smollm2):
    """transformers builds its own tokenizer from the same GGUF metadata; our ids equal its
    ids (without special tokens: the file says add_bos_token false), and both decode back to
    the text."""
    pytest.importorskip("transformers", reason="transformers not installed (pip install "
                        "-e '.[hf]')")
    from transformers import AutoTokenizer

    path, tok = smollm2
    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in PROMPTS:
        ids = tok.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False), text
        assert ids == hf.encode(text), text  # no BOS either way
        assert tok.decode(ids) == text == hf.decode(ids)


def test_smollm2_splits_like_llama_cpp(smollm2):
    """tokenizer.ggml.pre = smollm: digits one by one, then GPT-2's expression; control
    tokens stay whole."""
    _, tok = smollm2
    pieces = [p for p, _ in tok.tok.pre_tokenizer.pre_tokenize_str("x=42 abc's")]
    assert pieces == ["x", "=", "4", "2", "Ġabc", "'s"]
    assert tok.encode("<|im_end|>") == [2]
    assert tok.decode([2]) == "<|im_end|>"  # decoding keeps special tokens as text


def test_byte_tokenizer():
    tok = load_model("tiny").tokenizer()
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 256
    text = "héllo 😀"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and max(ids) < 256
    assert tok.decode(ids) == text
    assert tok.decode([104, 0xC3]) == "h\ufffd"  # a cut UTF-8 character


class _Field:
    def __init__(self, v):
        self.v = v

    def contents(self):
        return self.v


def _fields(**kw):
    base = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt2",
            "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"],
            "tokenizer.ggml.token_type": [1, 1, 1]}
    base.update(kw)
    return {k: _Field(v) for k, v in base.items() if v is not None}


def test_gguf_tokenizer_from_fields():
    tok = gguf_tokenizer(_fields(), "m.gguf")
    assert tok.encode("ab") == [2] and tok.encode("ba") == [1, 0]
    bytes_only = gguf_tokenizer(_fields(**{"tokenizer.ggml.merges": None}), "m.gguf")
    assert bytes_only.encode("ab") == [0, 1]


@pytest.mark.parametrize("kw, msg", [
    ({"tokenizer.ggml.model": "llama"}, "tokenizer model 'llama' is not supported"),
    ({"tokenizer.ggml.model": "bert"}, "tokenizer model 'bert' is not supported"),
    ({"tokenizer.ggml.model": None}, "has no tokenizer"),
    ({"tokenizer.ggml.pre": "qwen2"}, "pre-tokenizer 'qwen2' is not supported"),
    ({"tokenizer.ggml.tokens": None}, "no token list"),
    ({"tokenizer.ggml.merges": "a b"}, "bad merge list"),
    ({"tokenizer.ggml.merges": ["a b c"]}, "bad GGUF merge"),
    ({"tokenizer.ggml.tokens": ["a", "a", "ab"]}, "duplicate"),
    ({"tokenizer.ggml.merges": ["a c"]}, "not in the vocabulary"),
    ({"tokenizer.ggml.merges": ["b a"]}, "not in the vocabulary"),
])
def test_gguf_tokenizer_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        gguf_tokenizer(_fields(**kw), "m.gguf")


def _checkpoint(tmp_path):
    from .test_forward import _hf_checkpoint

    return _hf_checkpoint(tmp_path, load_model("tiny"), "npz")


def test_checkpoint_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = _checkpoint(tmp_path)
    t = Tokenizer(models.WordLevel({"hello": 7, "world": 9, "[UNK]": 0}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(path.parent / "tokenizer.json"))
    tok = load_model(str(path)).tokenizer()
    assert tok.encode("hello world") == [7, 9]


def test_checkpoint_without_tokenizer(tmp_path):
    path = _checkpoint(tmp_path)
    with pytest.raises(UserError, match="no tokenizer.json beside it"):
        load_model(str(path)).tokenizer()
    (path.parent / "tokenizer.json").write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(UserError, match="not a readable tokenizer.json"):
        load_model(str(path)).tokenizer()


def test_tiny_vocab_is_bytes():
    m = load_model("tiny")
    assert m.cfg.vocab == 256 == m.tokenizer().vocab_size
    assert np.shape(m.lm_head().codes) == (256, m.cfg.dim)
