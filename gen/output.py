"""Atomic outputs: a design directory or a result file appears complete or not at all."""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

__all__ = ["atomic_directory", "atomic_file", "read_json_object", "check_output_directory",
           "exclusive"]

#: The file that marks a directory as one hardwire wrote (:mod:`gen.design`).
_MARK = "manifest.json"


def read_json_object(path: Path, bad: Callable[[Exception], str], not_object: str) -> dict:
    """A JSON file that must hold an object; ``bad(error)`` is the message when it cannot be
    read or parsed, ``not_object`` when it holds something else."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(bad(e)) from None
    if not isinstance(value, dict):
        raise UserError(not_object)
    return value


def check_output_directory(out) -> None:
    """Refuse, in one line, an output directory that writing would lose data in, or cannot
    be made: the working directory or one that holds it, an existing directory that is not
    empty and holds no ``manifest.json`` (hardwire never wrote it), a file, or a path under
    a file. Cheap: the generators call it before their work."""
    out = Path(out)
    if str(out) in ("", "."):
        raise UserError(f"--out {str(out)!r} is the working directory; give a directory of "
                        "its own")
    res, cwd = out.resolve(), Path.cwd().resolve()
    if res == cwd or res in cwd.parents:
        raise UserError(f"--out {out} is the working directory or holds it; give a directory "
                        "of its own")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"output path {out} exists and is not a directory")
    if out.is_dir() and not (out / _MARK).is_file() and any(out.iterdir()):
        raise UserError(f"--out {out} exists and is not a hardwire design (no {_MARK}); "
                        "remove it or give another directory")
    up = res.parent
    while not up.exists():
        up = up.parent
    if not up.is_dir():
        raise UserError(f"cannot write output directory {out}: {up} is not a directory")


@contextlib.contextmanager
def atomic_directory(out: Path):
    """Yield a temporary directory beside ``out``; on success it replaces ``out`` (a design
    directory hardwire wrote, or an empty one: :func:`check_output_directory`), on any error
    it is removed and ``out`` is left as it was."""
    out = Path(out)
    check_output_directory(out)
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


@contextlib.contextmanager
def atomic_file(out: Path, what: str = "output file"):
    """Yield a binary file open on a temporary name beside ``out``; on success it is renamed
    onto ``out`` (replacing it), on any error it is removed and ``out`` is left as it was.

    The parent directory must exist: nothing is created that an error would leave behind."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"cannot write {what} {out}: it is a directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise UserError(f"cannot write {what} {out}: {out.parent} {why}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UserError(f"cannot write {what} {out}: {e.strerror or e}") from None
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        try:
            os.replace(tmp, out)
        except OSError as e:
            raise UserError(f"cannot write {what} {out}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive(lock: Path, waiting: Callable[[], None] | None = None):
    """Hold an exclusive ``flock`` on the file ``lock`` (made if missing) for the block: one
    process at a time builds a shared cache entry, the others wait (``waiting()`` is called
    once when they have to). The kernel drops the lock when its holder ends, Ctrl-C or
    ``kill -9`` included, so a dead holder never blocks the next run."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
