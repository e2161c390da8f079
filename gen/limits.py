"""What a run may allocate: estimates checked before the work, so that a header's word (a
huge context length) or a large option ends in one line, not in gigabytes and a
MemoryError."""

import os

from .errors import UserError

__all__ = ["physical_memory", "check_memory", "ctx_bytes", "MAX_LAYERS", "check_layers"]

#: the share of physical memory a run may plan to hold
MEMORY_SHARE = 0.75
#: More decoder layers than any model has (the largest have a few hundred): a layer count
#: above it is a damaged header, refused before anything is made per layer.
MAX_LAYERS = 4096


def physical_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(need: int, what: str) -> None:
    """Refuse ``what`` when its estimate ``need`` (bytes) passes :data:`MEMORY_SHARE` of the
    machine's memory."""
    have = physical_memory()
    if need > MEMORY_SHARE * have:
        raise UserError(f"{what} needs about {need / 2**30:,.1f} GiB, more than this machine "
                        f"can hold ({have / 2**30:,.1f} GiB of memory)")


def ctx_bytes(cfg, ctx: int) -> int:
    """A lower estimate of what ``ctx`` positions cost the golden models: every layer's
    K and V cache (int64 and float32 copies) and the RoPE tables (float64 cos and sin), once
    each; the hardware's own tables and caches are larger still."""
    return ctx * (cfg.n_layers * 2 * cfg.kv_dim * (8 + 4) + 2 * cfg.head_dim * 8)


def check_layers(n: int, where: str) -> None:
    """Refuse a layer count of ``n`` beyond :data:`MAX_LAYERS` (``where`` names the key)."""
    if n > MAX_LAYERS:
        raise UserError(f"{where} = {n} layers is more than any model has (hardwire takes up "
                        f"to {MAX_LAYERS})")
