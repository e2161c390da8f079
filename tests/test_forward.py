"""``hardwire forward``: GGUF / safetensors / npz sources give back the tiny model exactly, the
float and golden backends agree, and every bad input gets one line, exit 2, nothing written."""

import json
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest

from gen.models import QUANTS, load_model
from golden.llama import permute_qk_rows

from .conftest import hardwire

Q = gguf.GGMLQuantizationType
PROJ = {"attn_q": "wq", "attn_k": "wk", "attn_v": "wv", "attn_output": "wo",
        "ffn_gate": "w_gate", "ffn_up": "w_up", "ffn_down": "w_down"}
HF_PROJ = {"self_attn.q_proj": "wq", "self_attn.k_proj": "wk", "self_attn.v_proj": "wv",
           "self_attn.o_proj": "wo", "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up",
           "mlp.down_proj": "w_down"}
T = 8


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def _raw(w) -> np.ndarray:
    """A Q4_1 / Q8_0 :class:`BlockAffine` back to its raw GGUF bytes ``[rows, bytes/row]``,
    rebuilt from the codes (the float16 ``d`` and ``m`` are exact by construction)."""
    rows, cols = w.shape
    c = w.codes.reshape(rows, cols // w.block, w.block)
    d = np.ldexp(w.scale.astype(np.float64), w.exp)
    head = [d]
    if w.source == "Q8_0":
        body = c.astype(np.int8).view(np.uint8)
    else:
        assert w.source == "Q4_1"
        head.append(np.ldexp((w.offset - 8 * w.scale).astype(np.float64), w.exp))
        q = (c + 8).astype(np.uint8)
        body = q[:, :, :16] | (q[:, :, 16:] << 4)  # element i low nibble, i + 16 high
    parts = []
    for v in head:
        h = v.astype(np.float16)
        assert np.array_equal(h.astype(np.float64), v)  # exact
        parts.append(h[:, :, None].view(np.uint8))
    return np.concatenate([*parts, body], axis=2).reshape(rows, -1)


def llama_keys(cfg) -> dict:
    """The ``llama.*`` metadata of a config, without the prefix."""
    return {"embedding_length": cfg.dim, "block_count": cfg.n_layers,
            "feed_forward_length": cfg.ffn, "attention.head_count": cfg.n_heads,
            "attention.head_count_kv": cfg.n_kv_heads, "context_length": cfg.max_ctx,
            "vocab_size": cfg.vocab, "rope.dimension_count": cfg.head_dim,
            "attention.layer_norm_rms_epsilon": cfg.eps, "rope.freq_base": cfg.theta}


def add_llama_keys(w, keys: dict) -> None:
    """Write ``keys`` (:func:`llama_keys`) to a GGUFWriter: floats as float32, lists as
    arrays, strings as strings, ints as uint32; ``None`` drops a key."""
    for k, v in keys.items():
        if isinstance(v, list):
            w.add_array("llama." + k, v)
        elif isinstance(v, str):
            w.add_string("llama." + k, v)
        elif v is not None:
            (w.add_float32 if isinstance(v, float) else w.add_uint32)("llama." + k, v)


def write_gguf(path, model, arch="llama", meta=None, override=None, permute=True,
               extra=None):
    """``model`` as a llama.cpp GGUF: Q8_0 embedding, F32 norms, Q4_1 projections with the
    Q/K rows permuted as llama.cpp's converter does. ``meta`` overrides (or, with None,
    drops) llama.* keys; ``override`` maps a tensor name to ``(raw uint8 [rows, bytes],
    type)``; ``extra`` adds F32 tensors."""
    cfg = model.cfg
    keys = llama_keys(cfg) | (meta or {})
    override = override or {}
    w = gguf.GGUFWriter(str(path), arch)
    add_llama_keys(w, keys)

    def add(name, arr, kind=None):
        if name in override:
            arr, kind = override[name]
        w.add_tensor(name, arr, raw_dtype=kind)

    add("token_embd.weight", _raw(model.embedding()), Q.Q8_0)
    for i in range(cfg.n_layers):
        L = model.layer(i)
        add(f"blk.{i}.attn_norm.weight", np.asarray(L.attn_norm, np.float32))
        add(f"blk.{i}.ffn_norm.weight", np.asarray(L.ffn_norm, np.float32))
        for g, f in PROJ.items():
            t = getattr(L, f)
            if permute and f in ("wq", "wk"):
                heads = cfg.n_heads if f == "wq" else cfg.n_kv_heads
                t = t.permute_rows(permute_qk_rows(t.shape[0], heads))  # new[i] = old[o[i]]
            add(f"blk.{i}.{g}.weight", _raw(t), Q.Q4_1)
    for name, a in (extra or {}).items():
        add(name, np.asarray(a, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny, tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", tiny)


@pytest.fixture(scope="module")
def xs(tiny):
    """T embedding rows: realistic hidden states for layer 0."""
    rng = np.random.default_rng(3)
    return tiny.embedding().dequantize()[rng.integers(0, tiny.cfg.vocab, T)]


@pytest.fixture
def x_file(tmp_path, xs):
    p = tmp_path / "x.npy"
    np.save(p, xs)
    return p


def forward(tmp_path, model, x, backend, layers="0:2", name="y.npy", *extra):
    out = tmp_path / name
    assert hardwire("forward", "--model", model, "--layers", layers, "--input", x,
                    "--backend", backend, "--out", out, *extra) == 0
    y = np.load(out)
    assert y.dtype == np.float32
    return y


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _same_weights(a, b):
    for f in PROJ.values():
        wa, wb = getattr(a, f), getattr(b, f)
        assert (wa.exp, wa.block, wa.bits, wa.source) == (wb.exp, wb.block, wb.bits, wb.source)
        for k in ("codes", "scale", "offset"):
            np.testing.assert_array_equal(getattr(wa, k), getattr(wb, k), err_msg=f"{f}.{k}")
    for f in ("attn_norm", "ffn_norm"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


# --- sources ---------------------------------------------------------------------------------

def test_gguf_gives_back_tiny(tiny, tiny_gguf):
    m = load_model(str(tiny_gguf))
    c, t = m.cfg, tiny.cfg
    for f in ("dim", "n_heads", "n_kv_heads", "ffn", "theta", "n_layers", "max_ctx", "vocab"):
        assert getattr(c, f) == getattr(t, f), f
    # GGUF stores eps as float32; every use of it rounds the same way
    assert np.float32(c.eps) == np.float32(t.eps)
    for i in range(t.n_layers):
        _same_weights(m.layer(i), tiny.layer(i))
    e, te = m.embedding(), tiny.embedding()
    assert e.source == "Q8_0" and e.exp == te.exp
    np.testing.assert_array_equal(e.codes, te.codes)
    np.testing.assert_array_equal(e.scale, te.scale)


@pytest.mark.parametrize("backend", ["float", "golden"])
def test_gguf_forward_equals_tiny(tmp_path, tiny_gguf, x_file, backend):
    y_tiny = forward(tmp_path, "tiny", x_file, backend, "0:2", "a.npy")
    y_gguf = forward(tmp_path, tiny_gguf, x_file, backend, "0:2", "b.npy")
    np.testing.assert_array_equal(y_gguf, y_tiny)


def test_unpermuted_qk_would_be_caught(tmp_path, tiny, x_file):
    """Q/K rows written in HF order (the converter's permutation forgotten) change the
    result: the equality above really checks the un-permutation."""
    bad = write_gguf(tmp_path / "hf_order.gguf", tiny, permute=False)
    y_tiny = forward(tmp_path, "tiny", x_file, "float", "0", "a.npy")
    y_bad = forward(tmp_path, bad, x_file, "float", "0", "b.npy")
    assert _rel(y_bad, y_tiny) > 1e-3


def _hf_checkpoint(tmp_path, tiny, kind):
    """tiny's dequantised float weights under HF names, with a config.json beside them."""
    cfg = tiny.cfg
    d = tmp_path / kind
    d.mkdir()
    arrays = {"model.embed_tokens.weight": tiny.embedding().dequantize()}
    for i in range(cfg.n_layers):
        L = tiny.layer(i)
        pre = f"model.layers.{i}."
        arrays[pre + "input_layernorm.weight"] = np.asarray(L.attn_norm, np.float32)
        arrays[pre + "post_attention_layernorm.weight"] = np.asarray(L.ffn_norm, np.float32)
        for hf, f in HF_PROJ.items():
            arrays[pre + hf + ".weight"] = L.dense(f)
    if kind == "safetensors":
        from safetensors.numpy import save_file
        path = d / "model.safetensors"
        save_file(arrays, str(path))
    else:
        path = d / "model.npz"
        np.savez(path, **arrays)
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": cfg.dim, "intermediate_size": cfg.ffn,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "num_hidden_layers": cfg.n_layers, "rms_norm_eps": cfg.eps,
        "rope_theta": cfg.theta, "max_position_embeddings": cfg.max_ctx,
        "vocab_size": cfg.vocab}))
    return path


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_checkpoint_requantised_equals_tiny(tmp_path, tiny, x_file, kind):
    """llama.cpp's Q4_1 rule maps its own dequantised output back to the same codes, scales
    and mins (block min and max are grid points, so d and m come back exactly), so the
    re-quantised checkpoint is tiny bit for bit and both backends agree exactly."""
    path = _hf_checkpoint(tmp_path, tiny, kind)
    m = load_model(str(path), "q4_1")
    assert m.cfg == tiny.cfg
    for i in range(tiny.cfg.n_layers):
        _same_weights(m.layer(i), tiny.layer(i))
    for backend in ("golden", "float"):
        y_tiny = forward(tmp_path, "tiny", x_file, backend, "0:2", "a.npy")
        y = forward(tmp_path, path, x_file, backend, "0:2", "b.npy", "--quant", "q4_1")
        np.testing.assert_array_equal(y, y_tiny)
    # y_tiny is now the float result. The default --quant is q4_1 too; q8_0 of the same
    # floats is a finer grid: close, not equal
    np.testing.assert_array_equal(forward(tmp_path, path, x_file, "float", "0:2", "c.npy"),
                                  y_tiny)
    y8 = forward(tmp_path, path, x_file, "float", "0:2", "d.npy", "--quant", "q8_0")
    assert 0 < _rel(y8, y_tiny) < 5e-2  # measured 1.1%


def test_transformers_5_config_gives_the_same_model(tmp_path, tiny):
    """transformers 5 writes RoPE's base only under ``rope_parameters``: it is read from
    there (it was taken as the default 10000 before, silently)."""
    p = _edited({"rope_theta": None, "rope_parameters": {"rope_type": "default",
                                                           "rope_theta": 50000.0}})(tiny, tmp_path)
    assert load_model(str(p), "q4_1").cfg.theta == 50000.0


# --- backends and options --------------------------------------------------------------------

def test_float_and_golden_agree(tmp_path, x_file, capsys):
    yf = forward(tmp_path, "tiny", x_file, "float")
    yg = forward(tmp_path, "tiny", x_file, "golden", "0:2", "g.npy")
    assert yf.shape == yg.shape == (T, 64)
    assert _rel(yg, yf) < 0.01
    out, err = capsys.readouterr()
    assert err == ""  # stderr is not a TTY here: no progress bar
    assert out.splitlines() == [
        f"forward: tiny layers 0:2, {T} positions, backend float -> {tmp_path / 'y.npy'}",
        f"forward: tiny layers 0:2, {T} positions, backend golden -> {tmp_path / 'g.npy'}"]
    assert sorted(os.listdir(tmp_path)) == ["g.npy", "x.npy", "y.npy"]  # no temporaries


@pytest.mark.parametrize("backend", ["float", "golden"])
def test_layers_compose(tmp_path, x_file, backend):
    """0:2 == layer 0 then layer 1 (the golden residual round-trips exactly through float32
    at these magnitudes); ':' and '0:' mean all layers."""
    both = forward(tmp_path, "tiny", x_file, backend, "0:2", "a.npy")
    y0 = forward(tmp_path, "tiny", x_file, backend, "0", "b.npy")
    y1 = forward(tmp_path, "tiny", tmp_path / "b.npy", backend, "1:2", "c.npy")
    np.testing.assert_array_equal(y1, both)
    assert not np.array_equal(y0, both)
    np.testing.assert_array_equal(forward(tmp_path, "tiny", x_file, backend, ":", "d.npy"), both)
    # a longer KV cache than the input needs changes nothing
    np.testing.assert_array_equal(
        forward(tmp_path, "tiny", x_file, backend, "0:", "e.npy", "--ctx", "16"), both)


def test_input_dtypes_and_causality(tmp_path, xs):
    """float16/float64 inputs are cast to float32; position t only sees positions 0..t."""
    np.save(tmp_path / "x32.npy", xs)
    np.save(tmp_path / "x64.npy", xs.astype(np.float64))
    np.save(tmp_path / "x16.npy", xs.astype(np.float16))
    np.save(tmp_path / "x3.npy", xs[:3])
    y32 = forward(tmp_path, "tiny", tmp_path / "x32.npy", "golden", "0:2", "a.npy")
    np.testing.assert_array_equal(
        forward(tmp_path, "tiny", tmp_path / "x64.npy", "golden", "0:2", "b.npy"), y32)
    y16 = forward(tmp_path, "tiny", tmp_path / "x16.npy", "golden", "0:2", "c.npy")
    assert _rel(y16, y32) < 1e-2
    np.testing.assert_array_equal(
        forward(tmp_path, "tiny", tmp_path / "x3.npy", "golden", "0:2", "d.npy"), y32[:3])


def test_progress_bar_on_a_tty(tmp_path, x_file, monkeypatch, capsys):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    forward(tmp_path, "tiny", x_file, "float")
    assert f"/{2 * T}" in err.getvalue()  # layers x positions
    assert capsys.readouterr().out.startswith("forward: tiny layers 0:2")


def test_golden_saturation_warns(tmp_path, xs, capsys):
    """Inputs beyond the Q19.12 residual saturate in the golden backend: a warning, not an
    error (the hardware does the same)."""
    x = xs.copy()
    x[2, 7] = 1e6
    np.save(tmp_path / "x.npy", x)
    forward(tmp_path, "tiny", tmp_path / "x.npy", "golden")
    err = capsys.readouterr().err
    assert err.startswith("hardwire: warning: 1 input value lies outside +-524288")
    assert err.count("\n") == 1


def test_replaces_existing_output(tmp_path, x_file):
    (tmp_path / "y.npy").write_bytes(b"old")
    forward(tmp_path, "tiny", x_file, "float")
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]


def test_help_and_console_script(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gen.cli", "forward", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--layers" in r.stdout and "golden" in r.stdout
    assert ", ".join(QUANTS) in " ".join(r.stdout.split())  # the --quant list is current
    r = subprocess.run([sys.executable, "-m", "gen.cli", "--help"], capture_output=True,
                       text=True)
    assert "hardwire forward --model tiny" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gen.cli", "forward", "--model", "tiny",
                        "--layers", "7", "--input", "x.npy", "--backend", "float", "--out",
                        str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "layers 0..1" in r.stderr and not os.listdir(tmp_path)


# --- bad input -------------------------------------------------------------------------------

def _gguf_with(tiny, tmp_path, **kw):
    return write_gguf(tmp_path / "m.gguf", tiny, **kw)


def _truncated(tiny, tmp_path):
    full = write_gguf(tmp_path / "full.gguf", tiny)
    p = tmp_path / "m.gguf"
    p.write_bytes(full.read_bytes()[:1000])
    full.unlink()
    return p


def _bad_magic(tiny, tmp_path):
    p = _gguf_with(tiny, tmp_path)
    p.write_bytes(b"GGXF" + p.read_bytes()[4:])
    return p


def _q5_0(tiny, tmp_path):
    block, size = gguf.constants.GGML_QUANT_SIZES[Q.Q5_0]
    raw = np.zeros((tiny.cfg.dim, tiny.cfg.dim // block * size), np.uint8)
    return _gguf_with(tiny, tmp_path, override={"blk.1.attn_q.weight": (raw, Q.Q5_0)})


def _short_wq(tiny, tmp_path):
    """attn_q with 36 rows instead of 64: 9 per head does not split into RoPE halves."""
    raw = _raw(tiny.layer(0).wq)[:36]
    return _gguf_with(tiny, tmp_path, override={"blk.0.attn_q.weight": (raw, Q.Q4_1)})


def _no_config(tiny, tmp_path):
    p = _hf_checkpoint(tmp_path, tiny, "safetensors")
    (p.parent / "config.json").unlink()
    return p


def _config_list(tiny, tmp_path):
    p = _hf_checkpoint(tmp_path, tiny, "npz")
    (p.parent / "config.json").write_text("[1, 2]")
    return p


def _edited(config=None, tensors=None):
    """A checkpoint of tiny with config keys set (a value None drops the key) or tensors
    added."""
    def make(tiny, tmp_path):
        p = _hf_checkpoint(tmp_path, tiny, "npz")
        conf = json.loads((p.parent / "config.json").read_text())
        for k, v in (config or {}).items():
            if v is None:
                conf.pop(k)
            else:
                conf[k] = v
        (p.parent / "config.json").write_text(json.dumps(conf))
        if tensors:
            np.savez(p, **dict(np.load(p)), **tensors)
        return p
    return make


_LAUREL = {"model.layers.0.laurel.linear_left.weight": np.zeros((4, 64), np.float32),
           "model.layers.0.laurel.linear_right.weight": np.zeros((64, 4), np.float32)}


def _npy(arr):
    def make(tiny, tmp_path):
        p = tmp_path / "bad.npy"
        np.save(p, arr)
        return p
    return make


def _text(tiny, tmp_path):
    p = tmp_path / "bad.npy"
    p.write_text("0.5, 1.5\n")
    return p


def _truncated_npy(tiny, tmp_path):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((T, 64), np.float32))
    p.write_bytes(p.read_bytes()[:300])
    return p


def _npz(tiny, tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, x=np.zeros((2, 64), np.float32))
    return p


_OK = np.zeros((T, 64), np.float32)
_NAN = _OK.copy()
_NAN[3, 5] = np.nan
_INF = _OK.astype(np.float64)
_INF[0, 0] = 1e300  # finite in float64, infinite in float32

# (model maker or name, input maker or None, extra args, message fragments)
BAD = {
    "truncated gguf": (_truncated, None, [], ["not a readable GGUF file"]),
    "bad magic": (_bad_magic, None, [], ["not a readable GGUF file"]),
    "qwen2": (lambda t, p: _gguf_with(t, p, arch="qwen2"), None, [],
              ["architecture 'qwen2' is not supported", "supported: llama"]),
    "unsupported tensor type": (_q5_0, None, [],
                                ["blk.1.attn_q.weight has type Q5_0",
                                 "supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0"]),
    "heads do not divide": (lambda t, p: _gguf_with(t, p, meta={"attention.head_count_kv": 3}),
                            None, [], ["n_heads 4 is not divisible by n_kv_heads 3"]),
    "missing metadata": (lambda t, p: _gguf_with(t, p, meta={"embedding_length": None}),
                         None, [], ["no llama.embedding_length"]),
    "metadata array": (lambda t, p: _gguf_with(t, p, meta={"context_length": [16, 16]}),
                       None, [], ["bad llama metadata"]),
    "partial rope": (lambda t, p: _gguf_with(t, p, meta={"rope.dimension_count": 8}),
                     None, [], ["partial RoPE (8 of 16 dims)"]),
    "nan eps gguf": (lambda t, p: _gguf_with(t, p, meta={
        "attention.layer_norm_rms_epsilon": float("nan")}), None, [],
        ["bad llama metadata (the RMS norm epsilon must be a positive finite number, not nan)"]),
    "negative eps": (_edited({"rms_norm_eps": -1e-5}), None, [],
                     ["the RMS norm epsilon must be a positive finite number, not -1e-05"]),
    "zero theta": (_edited({"rope_theta": 0.0}), None, [],
                   ["the RoPE base theta must be a positive finite number, not 0.0"]),
    # a header's word and an option do not make the run allocate gigabytes
    "huge ctx": (lambda t, p: _gguf_with(t, p, meta={"context_length": 10**9}), None,
                 ["--ctx", "1000000000"], ["--ctx 1000000000 needs about", "GiB of memory"]),
    "q8_0 norm": (lambda t, p: _gguf_with(t, p, override={"blk.0.attn_norm.weight": (
        gguf.quants.quantize(np.ones(64, np.float32), Q.Q8_0), Q.Q8_0)}), None, [],
        ["blk.0.attn_norm.weight is Q8_0 of 1-D shape; norms and biases must be F32"]),
    "rope scaling gguf": (lambda t, p: _gguf_with(t, p, meta={"rope.scaling.type": "linear"}),
                          None, [], ["llama.rope.scaling.type = 'linear' is not supported"]),
    "experts gguf": (lambda t, p: _gguf_with(t, p, meta={"expert_count": 4}), None, [],
                     ["llama.expert_count = 4 is not supported"]),
    "key length gguf": (lambda t, p: _gguf_with(t, p, meta={"attention.key_length": 8}),
                        None, [], ["llama.attention.key_length = 8 is not supported"]),
    "unknown llama key gguf": (lambda t, p: _gguf_with(t, p, meta={
        "attention.layer_norm_epsilon": 1e-5}), None, [],
        ["metadata llama.attention.layer_norm_epsilon is not one hardwire knows"]),
    "rope_freqs gguf": (lambda t, p: _gguf_with(t, p, extra={"rope_freqs.weight": np.ones(8)}),
                        None, [], ["tensor rope_freqs.weight is not part of a Llama model"]),
    "bias gguf": (lambda t, p: _gguf_with(t, p, extra={"blk.0.attn_q.bias": np.zeros(64),
                                                       "blk.1.attn_q.bias": np.zeros(64)}),
                  None, [], ["tensor blk.0.attn_q.bias (and 1 more) is not part"]),
    "wq rows": (_short_wq, None, [], ["layer 0", "wq has shape (36, 64)", "(64, 64)"]),
    "layer out of range": ("tiny", None, ["--layers", "2:3"],
                           ["--layers 2:3 is out of range", "layers 0..1"]),
    "layer index": ("tiny", None, ["--layers", "5"], ["out of range", "layers 0..1"]),
    "empty range": ("tiny", None, ["--layers", "1:1"], ["is empty", "layers 0..1"]),
    "layers syntax": ("tiny", None, ["--layers", "0-2"], ["not N or A:B"]),
    "past context": ("tiny", _npy(np.zeros((5, 64), np.float32)), ["--ctx", "4"],
                     ["position 4", "context length 4", "raise --ctx, up to 16"]),
    "past model context": ("tiny", _npy(np.zeros((17, 64), np.float32)), [],
                           ["17 positions", "context length of 16"]),
    "ctx above model": ("tiny", None, ["--ctx", "32"], ["--ctx 32 exceeds", "16"]),
    "ctx zero": ("tiny", None, ["--ctx", "0"], ["at least 1"]),
    "wrong dim": ("tiny", _npy(np.zeros((T, 32), np.float32)), [],
                  ["shape [8, 32]", "dim is 64"]),
    "nan": ("tiny", _npy(_NAN), [], ["NaN"]),
    "beyond float32": ("tiny", _npy(_INF), [], ["float32 range"]),
    "integer input": ("tiny", _npy(np.zeros((T, 64), np.int32)), [], ["int32", "floating"]),
    "1-D input": ("tiny", _npy(np.zeros(64, np.float32)), [], ["2-D"]),
    "no positions": ("tiny", _npy(np.zeros((0, 64), np.float32)), [], ["no positions"]),
    "not npy": ("tiny", _text, [], ["not a .npy file"]),
    "truncated npy": ("tiny", _truncated_npy, [], ["not a readable .npy array"]),
    "npz input": ("tiny", _npz, [], ["not one .npy array"]),
    "missing input": ("tiny", lambda t, p: p / "none.npy", [], ["does not exist"]),
    "unwritable out": ("tiny", None, ["--out", "{file}/y.npy"],
                       ["cannot write --out", "is not a directory"]),
    "out is a directory": ("tiny", None, ["--out", "{dir}"], ["is a directory"]),
    "quant on tiny": ("tiny", None, ["--quant", "q4_0"], ["--quant applies to"]),
    "bad quant": (_no_config, None, ["--quant", "q3_k"], ["unknown --quant 'q3_k'"]),
    "no config.json": (_no_config, None, [], ["no config.json"]),
    "config not an object": (_config_list, None, [], ["expected a JSON object"]),
    # A file that describes another model than a plain Llama is refused, not misread.
    "laurel config": (_edited({"laurel_rank": 4}, _LAUREL), None, [],
                      ["laurel_rank = 4 is not supported for a Llama model"]),
    "laurel tensors": (_edited(tensors=_LAUREL), None, [],
                       ["tensor model.layers.0.laurel.linear_left.weight (and 1 more) is not "
                        "part of a Llama model"]),
    "attention bias": (_edited({"attention_bias": True}), None, [],
                       ["attention_bias = True is not supported"]),
    "llama3 rope": (_edited({"rope_parameters": {"rope_type": "llama3", "factor": 8.0,
                                                 "rope_theta": 5e5}}), None, [],
                    ["rope_type 'llama3' is not supported"]),
    "rope scaling": (_edited({"rope_scaling": {"type": "linear", "factor": 2.0}}), None, [],
                     ["rope_scaling = {'type': 'linear', 'factor': 2.0} is not supported"]),
    "partial rotary": (_edited({"partial_rotary_factor": 0.5}), None, [],
                       ["partial_rotary_factor = 0.5 is not supported"]),
    "gelu": (_edited({"hidden_act": "gelu"}), None, [], ["hidden_act = 'gelu' is not supported"]),
    "unknown config key": (_edited({"qk_layernorm": True}), None, [],
                           ["config key 'qk_layernorm' is not one hardwire knows"]),
    "untied without a head": (_edited({"tie_word_embeddings": False}), None, [],
                              ["tie_word_embeddings is false but there is no lm_head.weight"]),
    "missing model": (lambda t, p: p / "none.gguf", None, [],
                      ["not 'tiny', 'tiny-moe', 'smollm2'"]),
    "bad backend": ("tiny", None, ["--backend", "int8"], ["invalid choice: 'int8'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(tmp_path, tiny, xs, capsys, case):
    make_model, make_input, extra, msgs = BAD[case]
    src = tmp_path / "src"
    src.mkdir()
    model = make_model if isinstance(make_model, str) else make_model(tiny, src)
    x = src / "x.npy"
    np.save(x, xs)
    if make_input is not None:
        x = make_input(tiny, src)
    (src / "file").write_text("")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.npy").write_bytes(b"untouched")
    args = {"--model": model, "--layers": "0:2", "--input": x, "--backend": "golden",
            "--out": out_dir / "y.npy"}
    rest = []
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        v = v.format(file=src / "file", dir=out_dir)
        if k in args:
            args[k] = v
        else:
            rest += [k, v]
    argv = [a for kv in args.items() for a in kv] + rest
    before = sorted(os.listdir(src))
    assert hardwire("forward", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardwire: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for m in msgs:
        assert m in err, (m, err)
    assert sorted(os.listdir(out_dir)) == ["keep.npy"]  # nothing written, nothing left
    assert (out_dir / "keep.npy").read_bytes() == b"untouched"
    assert sorted(os.listdir(src)) == before


def test_error_keeps_existing_output(tmp_path, x_file, capsys):
    """A failing run leaves a previous result in place."""
    y = forward(tmp_path, "tiny", x_file, "float")
    assert hardwire("forward", "--model", "tiny", "--layers", "0:9", "--input", x_file,
                    "--backend", "float", "--out", tmp_path / "y.npy") == 2
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), y)
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]
