"""Atomic output directories: a design appears complete or not at all."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

__all__ = ["atomic_directory"]


@contextlib.contextmanager
def atomic_directory(out: Path):
    """Yield a temporary directory beside ``out``; on success it replaces ``out``, on any
    error it is removed and ``out`` is left as it was."""
    out = Path(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as e:
        raise UserError(f"cannot write output directory {out}: {e.strerror or e}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out.is_dir() and not out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.rename(out, old / "d")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        elif out.exists():
            raise UserError(f"output path {out} exists and is not a directory")
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
