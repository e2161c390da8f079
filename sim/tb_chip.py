"""cocotb testbench for a generated chip (``hardwire chip``): token ids in, next ids out.

The manifest's golden sequence (the integer model's greedy run, filling the KV caches) is fed
one token per position; every output id and its logit must equal golden's. ``generate``
(when ``HARDWIRE_PROMPT_IDS`` is set) is the RTL backend of ``hardwire generate``: it feeds a
prompt, then the chip's own outputs. Environment: ``HARDWIRE_DESIGN``, ``HARDWIRE_SEED``.
"""

import json
import os
import time
from pathlib import Path

import cocotb

from sim.bench import Bench


class ChipTB(Bench):
    def __init__(self, dut):
        super().__init__(dut)
        # A token takes the units' cycles; four times that (and some) means the chip hangs.
        self.max_cycles = 4 * self.m["cycles"]["units_sum_at_last_pos"] + 1000

    def _payload(self, tok: int, pos: int) -> int:
        return int(tok) | pos << self.m["in"]["pos_lo"]

    def _decode(self, v: int) -> tuple[int, int]:
        o = self.m["out"]
        ident = v & ((1 << o["id_bits"]) - 1)
        lg = (v >> o["logit_lo"]) & ((1 << o["logit_bits"]) - 1)
        if lg >> (o["logit_bits"] - 1):
            lg -= 1 << o["logit_bits"]
        return ident, lg

    async def step(self, tok: int, pos: int) -> tuple[int, int, int]:
        """One token, waiting on edges (no Python per cycle at full rate):
        ``(next id, logit, cycles from input to output)``."""
        self.source.send([self._payload(tok, pos)])
        await self.within(self.source.wait(), self.max_cycles,
                          lambda: f"position {pos}: no x.ready after {self.max_cycles} cycles")
        v = await self.within(self.sink.recv(), self.max_cycles,
                              lambda: f"position {pos}: no y.valid after {self.max_cycles} "
                                      "cycles")
        return *self._decode(v), self.sink.cycles[-1] - self.source.cycles[-1] + 1

    async def stalled(self, ins, valid_p: float, ready_p: float) -> list[tuple[int, int]]:
        """The tokens with valid gaps and ready pauses, one token in flight: the next is
        offered once its predecessor came out."""
        self.stalls(valid_p, ready_p)
        outs = []

        async def run():
            for pos, tok in enumerate(ins):
                i, lg, _ = await self.step(tok, pos)
                outs.append((i, lg))

        budget = 4 * self.max_cycles * len(ins)
        await self.within(run(), budget, lambda: f"timeout after {len(outs)} of {len(ins)} "
                                                 f"tokens ({budget} cycles)")
        return outs

    def check(self, what, got, want_ids, want_logits):
        for p, ((i, lg), wi, wl) in enumerate(zip(got, want_ids, want_logits, strict=True)):
            if (i, lg) != (wi, wl):
                raise AssertionError(f"{what}: position {p}: got id {i} (logit {lg}), golden "
                                     f"id {wi} (logit {wl})")


@cocotb.test()
async def tokens(dut):
    """The golden sequence at full rate; records cycles per token (``cycles_tokens.json``)."""
    tb = ChipTB(dut)
    await tb.reset()
    v = tb.m["vectors"]["tokens"]
    got, cycles = [], []
    t0 = time.perf_counter()
    for pos, tok in enumerate(v["in"]):
        i, lg, c = await tb.step(tok, pos)
        got.append((i, lg))
        cycles.append(c)
    wall = time.perf_counter() - t0
    tb.check("tokens", got, v["out"], v["logit"])
    (tb.dir / "cycles_tokens.json").write_text(json.dumps(
        {"cycles": cycles, "wall_seconds": round(wall, 3)}))
    dut._log.info("tokens: %d bit-exact; cycles per token first %d, last %d; %.2f tokens/s",
                  len(cycles), cycles[0], cycles[-1], len(cycles) / wall)


@cocotb.test()
async def stalls_both_sides(dut):
    """The golden sequence again with valid gaps and ready pauses (50/50)."""
    tb = ChipTB(dut)
    await tb.reset()
    v = tb.m["vectors"]["tokens"]
    n = min(len(v["in"]), int(os.environ.get("HARDWIRE_STALL_TOKENS", "4")))
    got = await tb.stalled(v["in"][:n], 0.5, 0.5)
    tb.check("stalls", got, v["out"][:n], v["logit"][:n])


@cocotb.test(skip=os.environ.get("HARDWIRE_PROMPT_IDS") is None)
async def generate(dut):
    """``HARDWIRE_PROMPT_IDS`` (comma-separated), then ``HARDWIRE_TOKENS`` greedy tokens fed
    back; writes ``{"ids", "logits", "cycles", "wall_seconds"}`` to ``HARDWIRE_GENERATE_OUT``
    (one line per token to ``HARDWIRE_GENERATE_STREAM`` as it is produced, if set)."""
    tb = ChipTB(dut)
    await tb.reset()
    prompt = [int(t) for t in os.environ["HARDWIRE_PROMPT_IDS"].split(",")]
    n = int(os.environ["HARDWIRE_TOKENS"])
    stream = os.environ.get("HARDWIRE_GENERATE_STREAM")
    ids, logits, cycles = [], [], []
    tok = prompt[0]
    t0 = time.perf_counter()
    fh = open(stream, "a") if stream else None  # noqa: SIM115 (closed below)
    try:
        for pos in range(len(prompt) + n - 1):
            i, lg, c = await tb.step(tok, pos)
            cycles.append(c)
            if pos + 1 < len(prompt):
                tok = prompt[pos + 1]
                continue
            ids.append(i)
            logits.append(lg)
            if fh:
                fh.write(f"{i}\n")
                fh.flush()
            tok = i
    finally:
        if fh:
            fh.close()
    Path(os.environ["HARDWIRE_GENERATE_OUT"]).write_text(json.dumps(
        {"ids": ids, "logits": logits, "cycles": cycles,
         "wall_seconds": round(time.perf_counter() - t0, 3)}))
