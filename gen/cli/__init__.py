"""The ``hardwire`` command line.

Every bad input ends in one line ``hardwire: error: ...`` on stderr and exit code 2. Each
subcommand has a function that adds its parser (``add_<name>``) and one that runs it
(``run_<name>``), in :mod:`.designs` (``matvec``, ``layer``, ``chip``), :mod:`.tools`
(``sim``, ``synth``, ``asic``, ``report``) and :mod:`.run` (``forward``, ``generate``).
"""

import argparse
import sys

from sim.errors import SimError

from .. import set_tool_environment
from ..errors import UserError
from . import designs, run, tools
from .options import Parser

__all__ = ["main"]

EXAMPLES = """\
examples:
  hardwire matvec --rows 16 --cols 16 --wbits 4 --strategy parallel --out build/mv
  hardwire sim build/mv --simulator verilator --vectors 200
  hardwire synth build/mv --target ecp5
  hardwire forward --model tiny --layers 0:2 --input x.npy --backend golden --out y.npy
  hardwire generate --model smollm2 --prompt "The capital of France is" --tokens 8
  hardwire layer --model tiny --layer 0 --out build/layer
  hardwire sim build/layer --simulator verilator
"""

#: The subcommands' modules, in the order ``--help`` lists them.
MODULES = {designs: ("matvec", "layer", "chip"), tools: ("sim", "synth", "asic", "report"),
           run: ("forward", "generate")}


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="hardwire", description="Hard-wire quantised weights into Verilog: "
               "constant matrix-vector engines, proven bit-exact against a numpy golden model.",
               epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module, names in MODULES.items():
        for name in names:
            add = getattr(module, f"add_{name}")
            add(sub).set_defaults(run=getattr(module, f"run_{name}"))
    return p


def one_line(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\x0c``, ``\\n``, ...): a name
    read from a damaged file cannot break the error into several lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv=None) -> int:
    set_tool_environment()
    p = parser()
    try:
        a = p.parse_args(argv)
        if a.command is None:
            p.print_help()
            return 2
        return a.run(a)
    except (UserError, SimError) as e:
        print(f"hardwire: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hardwire: interrupted", file=sys.stderr)
        return 130
