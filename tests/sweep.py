"""Random configurations for ``tests/test_sweep.py``: one seed gives one configuration,
drawn from the options a user may pass (odd sizes, one lane, lanes that do not divide, tiny
beats, every weight format), and sometimes one option out of its range, which must be refused.

Each ``draw_*(rng, share)`` (``share`` scales the chance of Verilator) returns ``(options,
refusal)``, and :func:`draw` ``(kind, options, refusal)``: ``refusal`` is ``None`` for a
configuration the generator must accept, else a fragment of the one-line error it must give.
"""

import json

import numpy as np

from hdl import MAX_LANE_STAGES

__all__ = ["KINDS", "kind_of", "draw", "write_llama_checkpoint", "LANE_FORMATS"]

#: One cycle of configuration kinds: seed ``s`` is of kind ``KINDS[s % len(KINDS)]``.
KINDS = ("matvec",) * 8 + ("lanes",) * 7 + ("layer",) * 4 + ("moe",)

#: Lane-array weight formats: every ``--quant`` and every GGUF type hardwire reads.
LANE_FORMATS = ("q4_0", "q4_1", "q8_0", "mxfp4", "int2", "int3", "int4", "int8", "int2g",
                "int3g", "int4g", "int8g", "ternary", "Q4_0", "Q4_1", "Q8_0", "MXFP4", "Q4_K",
                "Q6_K")

ROUNDINGS = ("floor", "trunc_zero", "half_up", "half_down", "half_away", "half_even")


def kind_of(seed: int) -> str:
    return KINDS[seed % len(KINDS)]


#: Seeds below this are ``make test``'s, which runs Verilator (builds of 10-60 s) on fewer.
FAST = 20


def draw(seed: int) -> tuple[str, dict, str | None]:
    rng = np.random.default_rng([seed, 0x5EED])
    kind = kind_of(seed)
    return kind, *DRAW[kind](rng, 0.25 if seed < FAST else 1.0)


def _sim(rng, p: float, share: float) -> str:
    """Icarus or Verilator, Verilator with probability ``p * share``."""
    return "verilator" if rng.random() < p * share else "icarus"


def _bad(rng, options: dict, mutations: list) -> str | None:
    """With probability 1/6, one mutation ``(option, value, message fragment)`` applied."""
    if rng.random() >= 1 / 6:
        return None
    opt, value, why = mutations[rng.integers(len(mutations))]
    options[opt] = value
    return why


def draw_matvec(rng, share: float) -> tuple[dict, str | None]:
    """``hardwire matvec`` options (then ``hardwire sim``)."""
    strategy = str(rng.choice(["serial", "folded", "parallel"]))
    small = rng.random() < 0.3
    rows, cols = (int(rng.integers(1, 9 if small else 97)) for _ in range(2))
    if strategy == "parallel":  # unrolled: keep the Icarus run short
        rows, cols = min(rows, 48), min(cols, 48)
    ternary = bool(rng.random() < 0.15)
    o = dict(rows=rows, cols=cols, wbits=2 if ternary else int(rng.integers(2, 9)),
             abits=int(rng.integers(2, 9)), ternary=ternary, strategy=strategy,
             seed=int(rng.integers(1 << 16)), vectors=8)
    if strategy == "serial":
        o["digit"] = int(rng.choice([1, 2, 4]))
    elif strategy == "folded":
        o["lanes"] = int(rng.integers(1, min(rows, 12) + 1))
        o["word"] = int(rng.integers(1, 65))
        o["rom_images"] = str(rng.choice(["inline", "files"]))
    else:
        o["stage_levels"] = int(rng.integers(0, 4))
    if rng.random() < 0.35:
        o["requant"] = True
        o["rounding"] = str(rng.choice(ROUNDINGS))
        if rng.random() < 0.5:
            o["requant_scale"] = float(10 ** rng.uniform(-6, 0))
    bad = [("wbits", 9, "--wbits"), ("abits", 1, "--abits"), ("rows", 0, "--rows"),
           ("cols", 70000, "--cols"), ("digit", 3, "--digit"), ("word", 65, "--word"),
           ("lanes", 0, "--lanes"), ("rounding", "nearest", "rounding"),
           ("stage_levels", -1, "--stage-levels")]
    if strategy == "serial":
        bad = [b for b in bad if b[0] not in ("word", "lanes", "stage_levels")]
    elif strategy == "folded":
        bad = [b for b in bad if b[0] not in ("digit", "stage_levels")]
    else:
        bad = [b for b in bad if b[0] not in ("digit", "word", "lanes")]
    if not o.get("requant"):
        bad = [b for b in bad if b[0] != "rounding"]
    why = _bad(rng, o, bad)
    o["simulator"] = _sim(rng, 0.25, share)
    return o, why


def draw_lanes(rng, share: float) -> tuple[dict, str | None]:
    """A lane array (``hdl.lane_array.LaneArray``) of 1-3 stacked passes in one format."""
    fmt = str(rng.choice(LANE_FORMATS))
    per_channel = fmt in ("int2", "int3", "int4", "int8", "ternary")
    if fmt in ("Q4_K", "Q6_K"):
        block, cols = (32 if fmt == "Q4_K" else 16), 256
    elif per_channel:
        block = cols = int(rng.choice([8, 16, 24, 32, 48, 64]))
    else:
        block, cols = 32, 32 * int(rng.integers(1, 4))
    beat = int(rng.choice([b for b in (1, 2, 4, 8, 16) if block % b == 0]))
    parallel = bool(rng.random() < 0.5)
    # at most one beat per cycle leaves: lanes / beat <= cycles per row (one in ten draws
    # may break that, and must be refused)
    most = 16 // beat if rng.random() < 0.1 else (cols // block) * (1 if parallel else 2)
    lanes = beat * int(rng.integers(1, max(1, min(most, 16 // beat)) + 1))
    n_pass = int(rng.integers(1, 4))
    rows = [int(rng.integers(1, 40)) for _ in range(n_pass)]
    o = dict(fmt=fmt, cols=cols, rows=rows, lanes=lanes, beat=beat,
             abits=int(rng.integers(2, 13)), parallel=parallel,
             gated=bool(rng.random() < 0.3), stages=int(rng.integers(0, MAX_LANE_STAGES + 1)),
             seed=int(rng.integers(1 << 16)), simulator=_sim(rng, 0.25, share))
    why = _bad(rng, o, [("stages", MAX_LANE_STAGES + 1, "stages"), ("beat", 3, "beat 3")])
    return o, why


def draw_layer(rng, share: float) -> tuple[dict, str | None]:
    """``hardwire layer`` of a random Llama checkpoint (then ``hardwire sim``)."""
    quant = str(rng.choice(["q4_0", "q4_1", "q8_0", "mxfp4", "int3", "int4", "int8", "int2g",
                            "int4g", "ternary"]))
    head_dim = int(rng.choice([8, 16, 32]))
    heads = int(rng.choice([h for h in (1, 2, 3, 4) if (h * head_dim) % 32 == 0] or [4]))
    kv = int(rng.choice([k for k in range(1, heads + 1) if heads % k == 0]))
    dim, ffn = heads * head_dim, 32 * int(rng.integers(1, 5))
    shape = dict(dim=dim, heads=heads, kv=kv, ffn=ffn, max_ctx=16)
    kv_dim = kv * head_dim
    g = np.gcd.reduce([dim, kv_dim, ffn, 32])
    o = dict(shape=shape, quant=quant, ctx=int(rng.integers(1, 6)),
             lane_stages=int(rng.integers(0, MAX_LANE_STAGES + 1)), seed=int(rng.integers(1 << 16)),
             simulator=_sim(rng, 0.2, share))
    if rng.random() < 0.7:
        o["lanes"] = int(rng.choice([d for d in range(1, g + 1) if g % d == 0]))
    if rng.random() < 0.5:
        lanes = o.get("lanes", g)
        o["beat"] = int(rng.choice([b for b in range(1, lanes + 1) if np.gcd.reduce(
            [dim, kv_dim, ffn, head_dim, 32, lanes]) % b == 0]))
    why = _bad(rng, o, [("ctx", 17, "--ctx"), ("lane_stages", MAX_LANE_STAGES + 1, "--lane-stages"),
                        ("lanes", 7, "--lanes"), ("quant", "q9_9", "--quant")])
    return o, why


def draw_moe(rng, share: float) -> tuple[dict, str | None]:
    """``hardwire layer`` of a random gpt-oss model (``tiny_moe_model`` reshaped)."""
    head_dim = int(rng.choice([8, 16]))
    heads = int(rng.choice([4, 8] if head_dim == 8 else [2, 4]))  # q_dim: whole Q8_0 blocks
    experts = int(rng.integers(2, 9))
    n_layers = int(rng.integers(1, 3))
    types = tuple(str(rng.choice(["sliding_attention", "full_attention"]))
                  for _ in range(n_layers))
    shape = dict(dim=32 * int(rng.integers(1, 3)), n_heads=heads,
                 n_kv_heads=int(rng.choice([1, 2])),
                 head_dim=head_dim, ffn=32 * int(rng.integers(1, 3)), n_experts=experts,
                 top_k=int(rng.integers(1, min(4, experts) + 1)),
                 sliding_window=int(rng.integers(1, 9)), n_layers=n_layers)
    o = dict(shape=shape, layer_types=types, layer=int(rng.integers(n_layers)),
             ctx=int(rng.integers(1, 4)), lane_stages=int(rng.integers(0, MAX_LANE_STAGES + 1)),
             seed=int(rng.integers(1 << 16)), simulator=_sim(rng, 0.15, share))
    why = _bad(rng, o, [("ctx", 17, "--ctx"), ("lane_stages", MAX_LANE_STAGES + 2, "--lane-stages"),
                        ("layer", n_layers, "layer")])
    return o, why


DRAW = {"matvec": draw_matvec, "lanes": draw_lanes, "layer": draw_layer, "moe": draw_moe}


def write_llama_checkpoint(d, shape: dict, seed: int):
    """A float Llama checkpoint (``.npz`` and ``config.json``) of one layer in ``d``, with
    the embedding tied to the LM head."""
    rng = np.random.default_rng(seed)
    dim, heads, kv, ffn = shape["dim"], shape["heads"], shape["kv"], shape["ffn"]
    kv_dim = kv * dim // heads
    shapes = {"self_attn.q_proj": (dim, dim), "self_attn.k_proj": (kv_dim, dim),
              "self_attn.v_proj": (kv_dim, dim), "self_attn.o_proj": (dim, dim),
              "mlp.gate_proj": (ffn, dim), "mlp.up_proj": (ffn, dim),
              "mlp.down_proj": (dim, ffn)}
    arrays = {f"model.layers.0.{k}.weight":
              (rng.standard_normal(s) * rng.uniform(0.2, 2, (s[0], 1)) / np.sqrt(s[1]))
              .astype(np.float32) for k, s in shapes.items()}
    for k in ("input_layernorm", "post_attention_layernorm"):
        arrays[f"model.layers.0.{k}.weight"] = (1 + 0.3 * rng.standard_normal(dim)) \
            .astype(np.float32)
    arrays["model.embed_tokens.weight"] = (0.5 * rng.standard_normal((256, dim))) \
        .astype(np.float32)
    arrays["model.norm.weight"] = (1 + 0.3 * rng.standard_normal(dim)).astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "ckpt.npz", **arrays)
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": dim, "intermediate_size": ffn,
        "num_attention_heads": heads, "num_key_value_heads": kv, "num_hidden_layers": 1,
        "rms_norm_eps": float(10 ** rng.uniform(-6, -4)),
        "rope_theta": float(rng.choice([10000.0, 500000.0])),
        "max_position_embeddings": shape["max_ctx"], "vocab_size": 256}))
    return d / "ckpt.npz"
