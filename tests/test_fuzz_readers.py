"""The model readers under crafted files: a small valid GGUF and a safetensors checkpoint,
mutated (truncated at every section boundary, seeded byte flips in the header, metadata and
tensor infos, huge counts, lengths and dimensions; for safetensors the header length, a
header that is not JSON, offsets out of range, dtype and shape mismatches). Every case runs
through the command line in one process capped at 2 GB of address space
(``tests/fuzz_child.py``): each must end in one ``hardwire: error:`` line and exit 2 (or, for a
byte flip that leaves a valid file, exit 0), never a traceback, never an allocation beyond the
cap, and never an output directory.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.sweep import write_llama_checkpoint

LIMIT = 2 << 30
ROOT = Path(__file__).resolve().parent.parent


def _run(cases: list[dict], tmp_path) -> list[dict]:
    """Each case's result; first checks that the cap is in force (an allocation of 3 GB
    fails)."""
    cases = [{"what": "3 GB", "alloc": 3 << 30}] + cases
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "tests.fuzz_child", str(tmp_path / "cases.json"),
                        str(LIMIT)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(cases), p.stderr[-2000:]
    assert "MemoryError" in (out[0]["traceback"] or ""), "the address-space cap is not in force"
    return out[1:]


def _check(cases, results, may_pass=False) -> None:
    bad = []
    for case, r in zip(cases, results, strict=True):
        lines = r["err"].strip().splitlines()
        if r["traceback"]:
            bad.append(f"{case['what']}: traceback {r['traceback'].strip().splitlines()[-1]}")
        elif r["code"] == 0 and (may_pass or case.get("may_pass")):
            continue
        elif r["code"] != 2 or len(lines) != 1 or not lines[0].startswith("hardwire: error:"):
            bad.append(f"{case['what']}: exit {r['code']}, stderr {r['err'][-300:]!r}")
        elif "out" in case and Path(case["out"]).exists():
            bad.append(f"{case['what']}: left {case['out']}")
    assert not bad, f"{len(bad)} of {len(cases)} cases:\n" + "\n".join(bad[:20])


# GGUF ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    from gen.models import load_model
    from tests.test_forward import write_gguf

    t = load_model("tiny")
    path = tmp_path_factory.mktemp("fuzz") / "tiny.gguf"
    return write_gguf(path, t, extra={"output_norm.weight": t.weights().final_norm})


def _layout(path):
    """``(header fields, kv fields, tensor-info fields, data offset, tensors)`` as
    ``(offset, part sizes)`` lists, from gguf's own reader."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    fields = [(f.offset, [int(p.nbytes) for p in f.parts]) for f in r.fields.values()]
    infos = [(t.field.offset, [int(p.nbytes) for p in t.field.parts]) for t in r.tensors]
    return fields[:3], fields[3:], infos, r.data_offset, [int(t.data_offset) for t in r.tensors]


def _put(raw: bytes, at: int, fmt: str, value) -> bytes:
    return raw[:at] + struct.pack("<" + fmt, value) + raw[at + struct.calcsize(fmt):]


def _gguf_cases(src: Path, d: Path) -> list[dict]:
    raw = src.read_bytes()
    head, kvs, infos, data_at, tensor_at = _layout(src)
    cases = []

    def case(what, data, command="generate", may_pass=False):
        path = d / f"c{len(cases)}.gguf"
        path.write_bytes(data)
        c = {"what": what, "may_pass": may_pass}
        if command == "generate":
            c["args"] = ["generate", "--model", str(path), "--prompt-ids", "1,2", "--tokens",
                         "1", "--backend", "golden"]
        else:
            c["out"] = str(d / f"out{len(cases)}")
            c["args"] = ["layer", "--model", str(path), "--layer", "1", "--out", c["out"]]
        cases.append(c)

    # truncated at every section boundary: inside the header, before and inside every field
    # and tensor info, at the data, at and inside every tensor
    cuts = {0, 2, 4, 8, 16, 24, data_at, len(raw) - 1}
    for off, parts in kvs + infos:
        cuts |= {off, off + parts[0], off + sum(parts) - 1}
    cuts |= set(tensor_at) | {t + 3 for t in tensor_at}
    for n, cut in enumerate(sorted(c for c in cuts if c < len(raw))):
        case(f"truncated at byte {cut}", raw[:cut], "layer" if n % 4 == 0 else "generate")
    # huge counts, lengths and dimensions
    case("tensor count 2**60", _put(raw, 8, "Q", 1 << 60), "layer")
    case("kv count 2**60", _put(raw, 16, "Q", 1 << 60))
    case("version 99", _put(raw, 4, "I", 99))
    case("wrong magic", b"GGML" + raw[4:])
    for off, parts in kvs:  # every u32 count in the metadata (layers, heads, ...) at 2**31:
        if parts[2:] == [4, 4]:  # refused, or harmless (a context length the run stays under)
            case(f"metadata at byte {off}: 2**31", _put(raw, off + sum(parts[:3]), "I", 1 << 31),
                 may_pass=True)
    off, parts = kvs[0]
    case("key length 2**62", _put(raw, off, "Q", 1 << 62))
    case("value type 99", _put(raw, off + parts[0] + parts[1], "I", 99))
    case("string length 2**62", _put(raw, off + sum(parts[:3]), "Q", 1 << 62))
    for k, (off, parts) in enumerate(infos[:3] + infos[-1:]):
        dims_at = off + parts[0] + parts[1] + parts[2]
        case(f"tensor {k}: name length 2**40", _put(raw, off, "Q", 1 << 40))
        case(f"tensor {k}: 2**31 dimensions", _put(raw, off + parts[0] + parts[1], "I", 1 << 31))
        case(f"tensor {k}: dimension 2**40", _put(raw, dims_at, "Q", 1 << 40))
        case(f"tensor {k}: dimensions 2**31 x 2**31", _put(_put(raw, dims_at, "Q", 1 << 31),
                                                           dims_at + 8, "Q", 1 << 31))
        case(f"tensor {k}: dimension 0", _put(raw, dims_at, "Q", 0))
        case(f"tensor {k}: type 255", _put(raw, dims_at + parts[3], "I", 255))
        case(f"tensor {k}: type Q6_K", _put(raw, dims_at + parts[3], "I", 14))
        case(f"tensor {k}: offset 2**62", _put(raw, dims_at + parts[3] + 4, "Q", 1 << 62))
        case(f"tensor {k}: offset +1", _put(raw, dims_at + parts[3] + 4, "Q", 1 + int(
            np.frombuffer(raw, "<u8", 1, dims_at + parts[3] + 4)[0])))
    # seeded byte flips in the header, metadata and tensor infos
    rng = np.random.default_rng(15)
    for k in range(48):
        b = bytearray(raw)
        for at in rng.integers(0, data_at, int(rng.integers(1, 5))):
            b[at] ^= int(rng.integers(1, 256))
        case(f"flip {k}", bytes(b))
    return cases


def test_gguf_reader_fuzz(gguf_file, tmp_path):
    cases = _gguf_cases(gguf_file, tmp_path)
    structural = [c for c in cases if not c["what"].startswith("flip")]
    results = _run(cases, tmp_path)
    assert len(structural) >= 60
    _check(structural, results[:len(structural)])
    # a flip may leave a valid file (a different but legal epsilon, say): exit 0 is allowed
    _check(cases[len(structural):], results[len(structural):], may_pass=True)


# safetensors -------------------------------------------------------------------------------

def _safetensors_dir(d: Path) -> tuple[Path, dict, bytes]:
    from safetensors.numpy import save_file

    ckpt = write_llama_checkpoint(d, dict(dim=32, heads=2, kv=1, ffn=64, max_ctx=16), 3)
    arrays = dict(np.load(ckpt))
    ckpt.unlink()
    save_file(arrays, str(d / "model.safetensors"))
    raw = (d / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return d / "model.safetensors", json.loads(raw[8:8 + n]), raw[8 + n:]


def _with_header(header, data: bytes) -> bytes:
    text = (header if isinstance(header, bytes) else json.dumps(header).encode())
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def _safetensors_cases(d: Path) -> list[dict]:
    _, header, data = _safetensors_dir(d / "base")
    name = "model.layers.0.self_attn.q_proj.weight"
    cases = []

    def case(what, raw, config=None, may_pass=False):
        """``layer`` on a damaged file; with ``config`` edits, ``generate`` (golden), which
        reads every tensor (``may_pass``: the edit is harmless)."""
        c = d / f"c{len(cases)}"
        c.mkdir()
        conf = json.loads((d / "base" / "config.json").read_text()) | (config or {})
        (c / "config.json").write_text(json.dumps(conf))
        (c / "model.safetensors").write_bytes(raw)
        out = d / f"out{len(cases)}"
        model = str(c / "model.safetensors")
        cases.append({"what": what, "out": str(out), "may_pass": may_pass,
                      "args": ["generate", "--model", model, "--prompt-ids", "1,2", "--tokens",
                               "1", "--backend", "golden"] if config else
                      ["layer", "--model", model, "--layer", "0", "--out", str(out)]})

    def edit(what, **change):
        h = json.loads(json.dumps(header))
        h[name].update(change)
        case(what, _with_header(h, data))

    good = _with_header(header, data)
    n = int.from_bytes(good[:8], "little")
    for what, length in [("header length 0", 0), ("header length 7", 7),
                         ("header length 2**63", 1 << 63), ("header length 2**40", 1 << 40),
                         ("header length beyond the file", len(good) - 7)]:
        case(what, length.to_bytes(8, "little") + good[8:])
    case("4 bytes", good[:4])
    case("header cut", good[:8 + n // 2])
    case("data cut", good[:8 + n + len(data) // 2])
    case("header not JSON", _with_header(b"{not json", data))
    case("header a JSON array", _with_header(b"[1, 2]", data))
    case("header not UTF-8", _with_header(b'{"\xff\xfe": 1}', data))
    lo, hi = header[name]["data_offsets"]
    edit("offsets beyond the data", data_offsets=[lo, len(data) + 4])
    edit("offsets 2**62", data_offsets=[1 << 62, (1 << 62) + hi - lo])
    edit("negative offset", data_offsets=[-4, hi - lo - 4])
    edit("offsets reversed", data_offsets=[hi, lo])
    edit("offsets not numbers", data_offsets=["a", "b"])
    edit("dtype F64 on F32 bytes", dtype="F64")
    edit("dtype unknown", dtype="Q4_X")
    edit("dtype a number", dtype=7)
    edit("dtype I32 (an integer projection)", dtype="I32")
    edit("shape 2**31 x 2**31", shape=[1 << 31, 1 << 31])
    edit("shape negative", shape=[-32, -32])
    edit("shape 3-D", shape=header[name]["shape"] + [1])
    edit("shape wrong", shape=[16, 64])
    edit("shape a string", shape="32x32")
    h = json.loads(json.dumps(header))
    h["model.layers.0.self_attn.q_proj.weight_renamed"] = h.pop(name)
    case("a projection missing", _with_header(h, data))
    nan = bytearray(data)
    at = header["model.layers.0.input_layernorm.weight"]["data_offsets"][0]
    nan[at:at + 4] = np.float32(np.nan).tobytes()
    case("NaN in a norm", _with_header(header, bytes(nan)))
    for key, value in [("num_hidden_layers", 10 ** 9), ("num_hidden_layers", 10 ** 18),
                       ("hidden_size", 10 ** 9), ("num_attention_heads", 10 ** 9),
                       ("intermediate_size", 10 ** 12), ("vocab_size", 10 ** 12),
                       ("max_position_embeddings", 10 ** 15), ("num_hidden_layers", -1),
                       ("hidden_size", "64"), ("rms_norm_eps", "x")]:
        # a model context of 10**15 is harmless: the run's own context is 3
        case(f"config {key} {value!r}", good, {key: value}, key == "max_position_embeddings")
    return cases


def test_safetensors_reader_fuzz(tmp_path):
    pytest.importorskip("safetensors", reason="safetensors not installed (make setup)")
    cases = _safetensors_cases(tmp_path)
    _check(cases, _run(cases, tmp_path))
