"""How far quantised weights are from the float weights they came from.

For a float checkpoint (``.safetensors``/``.npz``) the error of every ``--quant`` format is
computable: ``||dequantised - float||_2 / ||float||_2`` (relative L2), in float64 on the
exact dequantised values. A GGUF file (or ``tiny``) holds weights that are already quantised;
the float original is unknown, so only the format names are reported for it.
"""

import re

import numpy as np

from golden.blockquant import BlockAffine
from golden.llama import PROJECTIONS
from golden.numerics import signed_width

from .errors import UserError
from .models import QUANTS, Model, load_model, quantize

__all__ = ["STORAGE_BITS", "relative_l2", "layer_weight_error", "weight_errors"]

#: Nominal bits per weight of each ``--quant`` format as a file would store it (codes plus
#: block scales), for a row of ``cols`` weights. The lanes read ``BlockAffine.bits`` code bits
#: per weight instead (5 for MXFP4, whose doubled E2M1 elements need a sign and 4 magnitude
#: bits; 2 for ternary).
STORAGE_BITS = {
    "q4_0": lambda cols: 4 + 16 / 32, "q4_1": lambda cols: 4 + 32 / 32,
    "q8_0": lambda cols: 8 + 16 / 32, "mxfp4": lambda cols: 4 + 8 / 32,
    **{f"int{n}": (lambda cols, n=n: n + 16 / cols) for n in (2, 3, 4, 8)},
    **{f"int{n}g": (lambda cols, n=n: n + 16 / 32) for n in (2, 3, 4, 8)},
    "ternary": lambda cols: np.log2(3),
}


def relative_l2(q: BlockAffine, ref: np.ndarray) -> float:
    """``||q - ref|| / ||ref||`` in float64 (0 for an all-zero ``ref`` equal to ``q``)."""
    ref = np.asarray(ref, np.float64)
    diff = float(np.linalg.norm(q.dequantize(np.float64) - ref))
    norm = float(np.linalg.norm(ref))
    return diff / norm if norm else (0.0 if diff == 0 else float("inf"))


def _formats(w) -> dict:
    """Each weight matrix's format by name; a mixture of experts' as ``experts.<projection>``,
    its experts' formats joined by ``/`` where they differ."""
    out = {}
    for name, t in w.tensors().items():
        key = re.sub(r"^experts\.\d+\.", "experts.", name)
        out.setdefault(key, set()).add(t.source if isinstance(t, BlockAffine) else "float")
    return {k: "/".join(sorted(v)) for k, v in out.items()}


def layer_weight_error(model: Model, i: int) -> dict:
    """The ``weight_error`` entry of a layer manifest: each projection's format and, for a
    float checkpoint, its relative L2 error against the checkpoint's float32 weights."""
    w = model.layer(i)
    floats = model.float_weights(i)
    if floats is None:
        return {"formats": _formats(w), "relative_l2": None,
                "note": "the model file holds quantised weights: their error against the "
                        "unknown float original cannot be computed"}
    return {"formats": _formats(w),
            "relative_l2": {p: float(f"{relative_l2(getattr(w, p), floats[p]):.6g}")
                            for p in PROJECTIONS},
            "note": "||dequantised - float||_2 / ||float||_2 per projection, against the "
                    "checkpoint's float32 weights"}


def weight_errors(model_path, quants=QUANTS, layers=None) -> dict:
    """Every format in ``quants`` applied to the same float checkpoint (layers ``layers``,
    default all), compared with the float weights.

    Returns ``{"model", "layers", "quants": {q: {...}}}`` where each format has
    ``relative_l2`` (over all the layers' projections together), ``per_layer``
    (``{layer: {projection: relative L2}}``), ``code_bits`` (what the lanes read per weight),
    ``storage_bits`` (per weight, as a file stores it, for the first projection's width) and
    ``d_bits``/``m_bits`` (signed widths of the block constants ``D`` and ``M``; 0 when all
    ``M`` are 0). Raises :class:`UserError` for anything but a ``.safetensors``/``.npz``
    checkpoint, and for unknown format names (listing the known ones)."""
    quants = list(quants)
    bad = [q for q in quants if q not in QUANTS]
    if bad:
        raise UserError(f"unknown --quant {bad[0]!r}; known: {', '.join(QUANTS)}")
    m = load_model(str(model_path), quants[0] if quants else "q4_1")
    layers = list(range(m.cfg.n_layers)) if layers is None else list(layers)
    floats = {}
    for i in layers:
        m.layer(i)  # range and shape checks
        f = m.float_weights(i)
        if f is None:
            raise UserError(f"{m.name} holds quantised weights; weight errors need a float "
                            "checkpoint (.safetensors/.npz with config.json)")
        floats[i] = f
    out = {"model": m.name, "layers": layers, "quants": {}}
    for q in quants:
        per_layer, num, den = {}, 0.0, 0.0
        d_rng, m_rng, bits = [0, 0], [0, 0], 0
        for i in layers:
            per_layer[i] = {}
            for p in PROJECTIONS:
                ref = floats[i][p]
                wq = quantize(ref, q, f"{m.name}: layer {i} {p}")
                diff = wq.dequantize(np.float64) - ref.astype(np.float64)
                e2, r2 = float(np.sum(diff * diff)), float(np.sum(ref.astype(np.float64) ** 2))
                num, den = num + e2, den + r2
                per_layer[i][p] = float(f"{np.sqrt(e2 / r2) if r2 else 0.0:.6g}")
                d_rng = [min(d_rng[0], int(wq.scale.min())), max(d_rng[1], int(wq.scale.max()))]
                m_rng = [min(m_rng[0], int(wq.offset.min())),
                         max(m_rng[1], int(wq.offset.max()))]
                bits = wq.bits
        cols = floats[layers[0]]["wq"].shape[1] if layers else 0
        out["quants"][q] = {
            "relative_l2": float(f"{np.sqrt(num / den) if den else 0.0:.6g}"),
            "per_layer": per_layer, "code_bits": bits,
            "storage_bits": float(f"{STORAGE_BITS[q](cols):.4g}") if cols else None,
            "d_bits": int(signed_width(*d_rng)),
            "m_bits": int(signed_width(*m_rng)) if m_rng != [0, 0] else 0,
        }
    return out
