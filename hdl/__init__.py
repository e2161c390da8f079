"""Amaranth 0.5 components. Weights are constructor arguments (constants), never ports."""

__all__ = ["not_elaborated", "MAX_LANE_STAGES"]

#: The most pipeline registers a lane takes (:mod:`hdl.lanes`), here so that the command
#: line can name it without importing Amaranth.
MAX_LANE_STAGES = 6


def not_elaborated(*components) -> None:
    """Mark components that are built only for their figures (cycle formulas, ROM bits) or
    converted elsewhere (in a worker process), so that Amaranth does not warn that they were
    created but never used."""
    for c in components:
        c._MustUse__silence = True
