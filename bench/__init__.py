"""Benchmarks: each prints its figures and writes them under ``build/bench/``."""

import argparse
from pathlib import Path

#: Where every bench writes.
OUT = Path("build/bench")


def parser(prog: str, doc: str | None, **ints: int) -> argparse.ArgumentParser:
    """The options every model bench has: ``--model`` (default smollm2) and one integer
    option per keyword (``head_lanes=192`` is ``--head-lanes``, default 192)."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    for name, default in ints.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    return p
