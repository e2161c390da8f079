"""The weight-error part of ``hardwire report``: each ``--quant`` format against a float
checkpoint's weights, or the formats a quantised file holds."""

from ..errors import UserError

__all__ = ["model_for", "weight_error"]


def model_for(m: dict, spec: str | None, quant: str | None):
    """The design's model, or None when it cannot be found (a file not named)."""
    from ..models import load_model, smollm2_path

    name = m.get("model")
    if spec is None:
        if name in ("tiny", "tiny-moe"):
            spec = name
        else:
            try:
                if name == smollm2_path().name:
                    spec = "smollm2"
            except UserError:
                pass
    if spec is None:
        return None
    model = load_model(spec, quant or "q4_1")
    if name is not None and model.name != name:
        raise UserError(f"--model {spec} is {model.name}, but the design was made from {name}")
    digest = m.get("weights_digest")
    if digest is not None and m["kind"] == "chip":
        from ..chip import chip_digest

        if chip_digest(model) != digest:
            raise UserError(f"--model {spec} (--quant {quant or 'q4_1'}) does not hold the "
                            "weights the design was made from (weights_digest differs)")
    return model


def weight_error(m: dict, model, spec: str | None) -> dict:
    from ..models import QUANTS
    from ..weight_error import weight_errors

    if m["kind"] == "layer" and m.get("weight_error") is not None:
        we = m["weight_error"]
        fm = we.get("formats") or {}
        rel = we.get("relative_l2")
        out = {"model": m.get("model"), "source": "manifest (hardwire layer)",
               "computable": rel is not None,
               "formats": {"layers": sorted(set(fm.values())), "per_projection": fm},
               "note": we.get("note")}
        if rel is not None:  # the layer's own format, per projection
            out["per_projection_relative_l2"] = rel
        return out
    if model is None:
        return {"model": m.get("model"), "computable": None, "formats": None,
                "note": "the model file is not known to the report: give --model FILE (and "
                        "--quant) to list its formats and, for a float checkpoint, their error"}
    layers = range(model.cfg.n_layers) if m["kind"] == "chip" else [m.get("layer", 0)]
    fmts = sorted({t.source for i in layers for t in model.layer(i).tensors().values()})
    formats = {"layers": fmts}
    if m["kind"] == "chip":
        formats |= {"embedding": model.embedding().source, "lm_head": model.lm_head().source}
    if model.float_weights(0) is None:
        return {"model": model.name, "computable": False, "formats": formats,
                "note": "the model file holds quantised weights: their error against the "
                        "unknown float original cannot be computed"}
    res = weight_errors(spec, QUANTS, layers=[0])
    return {"model": model.name, "computable": True, "formats": formats,
            "layers_compared": res["layers"],
            "quants": {q: {k: v for k, v in r.items() if k != "per_layer"}
                       for q, r in res["quants"].items()},
            "note": "relative L2 ||dequantised - float|| / ||float|| over layer 0's seven "
                    "projections, per --quant format, against the checkpoint's float32 weights"}
