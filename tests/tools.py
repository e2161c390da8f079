"""Helpers the test files share."""

import gc
import warnings

import pytest

__all__ = ["need", "chip_design", "collect_refused"]


def need(simulator: str) -> None:
    """Skip, saying why, when ``simulator`` cannot run here (CI installs both)."""
    from sim.runner import simulator_available

    why = simulator_available(simulator)
    if why:
        pytest.skip(why)


def chip_design(tmp_path_factory, model: str, name: str, **kwargs):
    """``hardwire chip`` of ``model`` into a fresh directory (``kwargs``: generate_chip's)."""
    from gen.chip import generate_chip

    d = tmp_path_factory.mktemp("chip") / name
    generate_chip(model, d, log=None, **kwargs)
    return d


def collect_refused() -> None:
    """Collect the components a refused build had begun (they warn that they were never
    elaborated)."""
    from amaranth.hdl import UnusedElaboratable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()
