"""Helpers the test files share."""

import gc
import subprocess
import time
import warnings

import pytest

__all__ = ["need", "chip_design", "collect_refused", "group_left"]


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


def group_left(pgid: int, tries: int = 100) -> list[str]:
    """The processes of group ``pgid`` still running (zombies aside), after waiting up to
    ``tries`` x 0.2 s for them to end (tools a run started end shortly after it)."""
    left = []
    for _ in range(tries):
        ps = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(pgid)], capture_output=True,
                            text=True).stdout
        left = [line for line in ps.splitlines() if not line.strip().startswith("Z")]
        if not left:
            break
        time.sleep(0.2)
    return left
