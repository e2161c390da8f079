"""Amaranth components to Verilog text, through Amaranth's built-in yosys (a WebAssembly
build): a yosys failure becomes the one-line error, not a traceback."""

import contextlib

from .errors import UserError

__all__ = ["to_verilog", "yosys_errors"]


def to_verilog(comp, name: str, **kwargs) -> str:
    """``amaranth.back.verilog.convert(comp, name=name, emit_src=False,
    strip_internal_attrs=True, **kwargs)``, under :func:`yosys_errors`."""
    from amaranth.back import verilog

    with yosys_errors(name):
        return verilog.convert(comp, name=name, emit_src=False, strip_internal_attrs=True,
                               **kwargs)


@contextlib.contextmanager
def yosys_errors(name: str):
    """Amaranth's yosys failing inside the block, as one line naming ``name``. The
    WebAssembly yosys reserves about 4 GiB of address space up front; under a lower
    ``ulimit -v`` it cannot start, and the error says so."""
    from amaranth._toolchain.yosys import YosysError

    try:
        yield
    except YosysError as e:
        text = str(e)
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else "no message"
        if "allocate memory" in text or "mmap failed" in text:
            why = ("it could not reserve its memory (Amaranth's built-in yosys needs about 4 "
                   "GiB of address space; is ulimit -v set lower?)")
        raise UserError(f"converting {name} to Verilog failed: {why}") from None
