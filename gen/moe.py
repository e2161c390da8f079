"""What a mixture-of-experts design's manifest says about its ROM: the bits by part (experts
apart) and the share one token reads (``top_k`` of the experts, all of the rest)."""

__all__ = ["layer_moe", "chip_moe"]


def _share(read: int, total: int) -> float:
    return float(f"{read / total:.6g}") if total else 0.0


def layer_moe(layer) -> dict:
    """The manifest's ``moe`` entry of a :class:`hdl.moe_layer.MoeDecoderLayer`."""
    cfg = layer.cfg
    read, total = layer.read_bits(), layer.rom_bits
    return {"experts": cfg.n_experts, "top_k": cfg.top_k, "rom_bits": layer.rom_parts(),
            "read_bits_per_token": read, "read_share": _share(read, total),
            "note": "the ROM bits one token reads (the attention's and the router's, top_k "
                    "experts', their biases) over the layer's ROM bits"}


def chip_moe(chip) -> dict | None:
    """The manifest's ``moe`` entry of a chip of mixture-of-experts layers (``None`` for a
    dense chip): the layers' parts summed, the LM head (read whole) and the embedding (one
    row read)."""
    from hdl.moe_layer import MoeDecoderLayer

    if not chip.layers or not isinstance(chip.layers[0], MoeDecoderLayer):
        return None
    parts: dict = {}
    read = 0
    for layer in chip.layers:
        for k, v in layer.rom_parts().items():
            parts[k] = parts.get(k, 0) + v
        read += layer.read_bits()
    parts |= {"lm_head": chip.head.rom_bits, "embedding": chip.embed.rom_bits}
    read += chip.head.rom_bits + chip.embed.rom_bits // chip.cfg.vocab
    cfg = chip.cfg
    return {"experts": cfg.n_experts, "top_k": cfg.top_k, "rom_bits": parts,
            "read_bits_per_token": read, "read_share": _share(read, chip.rom_bits),
            "note": "the ROM bits one token reads (every layer's attention and router, top_k "
                    "experts' and their biases; the whole LM head; one embedding row) over "
                    "the chip's ROM bits"}
