"""gpt-oss (mixture of experts): the float golden against transformers' own
``GptOssForCausalLM``, the files hardwire reads (OpenAI's MXFP4 checkpoint, llama.cpp's GGUF),
the integer golden against the float one, and bad input."""

import json
import shutil

import numpy as np
import pytest

from gen.cli import main
from gen.models import load_model
from golden.blockquant import decode_mxfp4_hf, encode_mxfp4_hf
from golden.gpt_oss import GptOssModel
from golden.gpt_oss_int import IntMoeModel, clamped_swiglu_int, moe_layer_step, route_int
from golden.integer import (
    IntFormat,
    exp2_table,
    from_residual,
    sigmoid_table,
    to_fixed,
    to_residual,
)

pytest.importorskip("transformers", reason="transformers (the hf extra) is not installed")
torch = pytest.importorskip("torch", reason="torch (the hf extra) is not installed")

from .gpt_oss_files import hf_model, hf_run, write_checkpoint, write_gguf  # noqa: E402

IDS = [3, 50, 7, 7, 90, 1, 2, 44, 13, 5, 60, 61]  # 12 positions, window 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny random gpt-oss (transformers) and its checkpoint and GGUF."""
    d = tmp_path_factory.mktemp("gptoss")
    m = hf_model(seed=1)
    return m, write_checkpoint(m, d / "ck"), write_gguf(m, d / "m.gguf")


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("source", ["checkpoint", "gguf"])
def test_float_golden_equals_transformers(files, source):
    """Every layer (one sliding, one full; more positions than the window) within 1e-5
    relative L2 of transformers' own layers, and the same greedy token at every position."""
    hf, ck, gg = files
    m = load_model(str(ck if source == "checkpoint" else gg), "none")
    assert m.cfg.layer_types == ("sliding_attention", "full_attention")
    assert m.cfg.sliding_window < len(IDS)
    layers, logits = hf_run(hf, IDS)
    g = GptOssModel(m.cfg, m.weights(), len(IDS))
    worst = 0.0
    for pos, tok in enumerate(IDS):
        trace = {}
        lg, nxt = g.step(tok, pos, trace)
        for i in range(m.cfg.n_layers):
            worst = max(worst, _rel(trace["layers"][i], layers[i][pos]))
        assert _rel(lg, logits[pos]) <= 1e-5
        assert nxt == int(np.argmax(logits[pos]))
    print(f"{source}: worst layer relative L2 {worst:.2e}")
    assert worst <= 1e-5


def test_transformers_reads_the_checkpoint_as_hardwire_does(files):
    """transformers' own MXFP4 loader (dequantized) gives exactly the weights of the model
    the checkpoint was written from, which hardwire decodes the same way."""
    from transformers import GptOssForCausalLM, Mxfp4Config

    hf, ck, _ = files
    back = GptOssForCausalLM.from_pretrained(
        str(ck.parent), quantization_config=Mxfp4Config(dequantize=True),
        dtype=torch.float32)
    ours, theirs = hf.state_dict(), back.state_dict()
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k].float()), k
    m = load_model(str(ck), "none")
    ex = m.layer(1).experts[3]
    gu = ours["model.layers.1.mlp.experts.gate_up_proj"][3].numpy().T  # [2 ffn, dim]
    assert np.array_equal(ex.w_gate.dequantize(), gu[0::2])
    assert np.array_equal(ex.w_up.dequantize(), gu[1::2])
    assert ex.w_gate.source == "MXFP4" and ex.w_gate.bits == 5


def test_mxfp4_hf_layout_equals_transformers():
    """OpenAI's nibble order (element 2j low, 2j+1 high) and E8M0 bias 127, decoded exactly as
    transformers' own dequantization; every nibble value and a wide scale range."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (3, 6, 4, 16), dtype=np.uint8)
    scales = rng.integers(110, 145, (3, 6, 4), dtype=np.uint8)
    ref = convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales),
                                     dtype=torch.float32).numpy()  # [E, in, out]
    for e in range(3):
        assert np.array_equal(decode_mxfp4_hf(blocks[e], scales[e]).dequantize(), ref[e].T)
    w = rng.standard_normal((6, 128)).astype(np.float32)
    b, s = encode_mxfp4_hf(w)
    assert b.shape == (6, 4, 16) and s.shape == (6, 4)


def test_checkpoint_and_gguf_give_the_same_tokens(files, tmp_path):
    """The same weights as a checkpoint and as a GGUF: identical greedy tokens from the float
    and the integer model (both quantise the float projections with the default q4_1)."""
    _, ck, gg = files
    out = {}
    for src in (ck, gg):
        for backend in ("float", "golden"):
            f = tmp_path / f"{src.suffix}_{backend}.json"
            rc = _run_json(["generate", "--model", src, "--prompt-ids", "3,50,7,7,90",
                            "--tokens", "10", "--backend", backend], f)
            assert rc == 0
            out[src.suffix, backend] = json.loads(f.read_text())["ids"]
    assert out[".safetensors", "float"] == out[".gguf", "float"]
    assert out[".safetensors", "golden"] == out[".gguf", "golden"]
    print(out)


def _run_json(args, path):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([str(a) for a in args] + ["--json"])
    path.write_text(buf.getvalue())
    return rc


def test_generate_float_equals_transformers_generate(files):
    """``hardwire generate --backend float --quant none`` on the checkpoint gives the tokens of
    transformers' own greedy ``generate``."""
    hf, ck, _ = files
    prompt = [3, 50, 7, 7]
    with torch.no_grad():
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0]
    m = load_model(str(ck), "none")
    g = GptOssModel(m.cfg, m.weights(), 12)
    ids, tok = [], prompt[0]
    for pos in range(len(prompt) + 8 - 1):
        _, nxt = g.step(tok, pos)
        tok = prompt[pos + 1] if pos + 1 < len(prompt) else nxt
        if pos + 1 >= len(prompt):
            ids.append(nxt)
    assert ids == want[len(prompt):].tolist()


@pytest.mark.parametrize("model", ["tiny-moe", "hf"])
def test_integer_golden_per_layer_within_2_percent(files, model):
    """Each integer layer, fed the float model's input to it, within 2 % relative L2 of the
    float layer, at every position (more than the window)."""
    spec = "tiny-moe" if model == "tiny-moe" else str(files[1])
    m = load_model(spec, "q8_0")
    ctx = 16 if model == "tiny-moe" else len(IDS)
    f, g = GptOssModel(m.cfg, m.weights(), ctx), IntMoeModel(m.cfg, m.weights(), ctx)
    ids = np.random.default_rng(3).integers(0, m.cfg.vocab, ctx)
    worst = 0.0
    for pos, tok in enumerate(ids):
        trace = {}
        f.step(int(tok), pos, trace)
        xs = [f.w.embed(int(tok))] + trace["layers"]
        for i, L in enumerate(g.layers):
            y = moe_layer_step(L, to_residual(xs[i], g.fmt), pos, g.caches[i])
            worst = max(worst, _rel(from_residual(y, g.fmt), xs[i + 1]))
    print(f"{model}: worst integer layer relative L2 {worst:.2e}")
    assert worst <= 0.02


def test_router_ties_and_weights():
    """Top-k takes the larger logit first and the lower expert on equal logits; the k weights
    sum to one (Q.prob_frac, within the reciprocal's rounding); one expert gets 1.0."""
    fmt, table = IntFormat(), exp2_table(IntFormat())
    log2e = round(np.log2(np.e) * 2**16)
    order, w = route_int(np.array([5, 9, 9, 1, 9]), 2, table, log2e, fmt)
    assert order.tolist() == [1, 2] and w[0] == w[1] == 1 << 15
    order, w = route_int(np.array([0, 3 << 12, 0]), 1, table, log2e, fmt)
    assert order.tolist() == [1] and w.tolist() == [1 << 16]
    order, w = route_int(np.array([1 << 12, 0, -(1 << 12), 2 << 12]), 3, table, log2e, fmt)
    assert order.tolist() == [3, 0, 1]
    ref = np.exp([0.0, -1.0, -2.0])
    assert np.allclose(w / 2**16, ref / ref.sum(), atol=2e-4)


def test_clamped_swiglu_limits_and_fixed_point_ties():
    fmt = IntFormat()
    lim, alpha = int(to_fixed(7.0, 12, 32)), round(1.702 * 4096)
    sig = sigmoid_table(fmt)
    # gate above the limit acts as the limit; up is clipped on both sides
    a1, e1 = clamped_swiglu_int([100 << 12], [0], lim, alpha, sig, fmt)
    a2, e2 = clamped_swiglu_int([7 << 12], [0], lim, alpha, sig, fmt)
    assert (a1 * 2.0**e1).tolist() == (a2 * 2.0**e2).tolist()
    a3, e3 = clamped_swiglu_int([1 << 12], [-(50 << 12)], lim, alpha, sig, fmt)
    a4, e4 = clamped_swiglu_int([1 << 12], [-(7 << 12)], lim, alpha, sig, fmt)
    assert (a3 * 2.0**e3).tolist() == (a4 * 2.0**e4).tolist()
    g = 1.0  # (up + 1) * g * sigmoid(1.702 g) at up = 0
    a, e = clamped_swiglu_int([1 << 12], [0], lim, alpha, sig, fmt)
    assert abs(float(a[0] * 2.0**e) - g / (1 + np.exp(-1.702 * g))) < 1e-3
    # half away from zero on the ties
    assert to_fixed([0.5, -0.5, 2.5, -2.5, 0.49], 0, 32).tolist() == [1, -1, 3, -3, 0]


def _one_line_error(args, *match):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in args])
    text = err.getvalue()
    assert rc == 2 and text.startswith("hardwire: error: ") and text.count("\n") == 1, text
    for m in match:
        assert m in text, text
    return text


def _edit_config(ck, tmp_path, name, **changes):
    d = tmp_path / name
    shutil.copytree(ck.parent, d)
    conf = json.loads((d / "config.json").read_text())
    conf.update(changes)
    (d / "config.json").write_text(json.dumps(conf))
    return d / "model.safetensors"


def test_bad_input(files, tmp_path):
    """Each bad model file: one line, exit 2, and no output file."""
    hf, ck, _ = files
    out = tmp_path / "y.npy"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 64), np.float32))

    def forward(model, *match):
        _one_line_error(["forward", "--model", model, "--layers", "0", "--input", x,
                         "--backend", "float", "--out", out], *match)
        assert not out.exists()

    forward(_edit_config(ck, tmp_path, "k", num_experts_per_tok=9),
            "experts_per_tok 9 is more than the 8 experts")
    forward(_edit_config(ck, tmp_path, "w", sliding_window=0), "sliding_window must be positive")
    forward(_edit_config(ck, tmp_path, "t", model_type="mixtral"),
            "model_type 'mixtral' is not supported; supported: llama, gpt_oss")
    forward(write_gguf(hf, tmp_path / "drop.gguf", drop=("blk.0.ffn_up_exps.weight",)),
            "tensor blk.0.ffn_up_exps.weight is missing")
    forward(write_gguf(hf, tmp_path / "bias.gguf", drop=("blk.0.ffn_down_exps.bias",)),
            "tensor blk.0.ffn_down_exps.bias is missing")
    forward(write_gguf(hf, tmp_path / "k.gguf", arch_keys={"expert_used_count": 12}),
            "experts_per_tok 12 is more than the 8 experts")
    forward(write_gguf(hf, tmp_path / "f32.gguf", float_experts=True),
            "tensor blk.0.ffn_gate_exps.weight is F32, expected a block format")
    forward(write_gguf(hf, tmp_path / "e7.gguf", arch_keys={"expert_count": 7}),
            "tensor blk.0.ffn_gate_exps.weight has shape [8, 32, 64], the config needs "
            "[7, 32, 64]")
    # MXFP4 blocks whose bytes do not fit the shape
    from safetensors.torch import load_file, save_file

    d = tmp_path / "blocks"
    shutil.copytree(ck.parent, d)
    t = load_file(str(d / "model.safetensors"))
    name = "model.layers.0.mlp.experts.down_proj_blocks"
    t[name] = t[name][:, :, :-1].contiguous()
    save_file(t, str(d / "model.safetensors"))
    forward(d / "model.safetensors", "down_proj_blocks", "does not hold MXFP4 blocks")
    forward(tmp_path / "nope.safetensors", "is not 'tiny', 'tiny-moe', 'smollm2'")
