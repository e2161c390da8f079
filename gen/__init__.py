"""The generators, the ``hardwire`` command line and the synthesis, flow and report drivers."""

import os


def set_tool_environment() -> None:
    """What every entry point (the command line, ``python -m gen.flow``, the benches, the
    tests) sets once: Amaranth converts with its bundled yosys, never a system one, so that
    the same inputs give byte-identical Verilog on every machine."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
