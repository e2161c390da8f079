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
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from sim.tb_stream import PERIOD_NS, start


class ChipTB:
    def __init__(self, dut):
        self.dut = dut
        self.dir = Path(os.environ["HARDWIRE_DESIGN"])
        self.m = json.loads((self.dir / "manifest.json").read_text())
        self.rng = np.random.default_rng(int(os.environ.get("HARDWIRE_SEED", "1")))
        i, o = self.m["in"], self.m["out"]
        self.iv, self.ir, self.idata = (getattr(dut, i[k]) for k in ("valid", "ready", "data"))
        self.ov, self.orr, self.odata = (getattr(dut, o[k]) for k in ("valid", "ready", "data"))
        self.clk, self.rst = getattr(dut, self.m["clock"]), getattr(dut, self.m["reset"])
        # A token takes the units' cycles; four times that (and some) means the chip hangs.
        self.max_cycles = 4 * self.m["cycles"]["units_sum_at_last_pos"] + 1000

    async def _rise(self, sig, what: str, pos: int):
        """Wait for ``sig`` to rise, at most :attr:`max_cycles`."""
        try:
            await with_timeout(RisingEdge(sig), self.max_cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"position {pos}: no {what} after {self.max_cycles} "
                                 "cycles") from None

    async def reset(self):
        await start(self.clk, self.rst, self.iv, self.orr, self.idata)

    def _cycle(self):
        return int(get_sim_time("ns")) // PERIOD_NS

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
        """One token at full rate, waiting on edges (no Python per cycle):
        ``(next id, logit, cycles from input to output)``."""
        await FallingEdge(self.clk)
        self.idata.value = self._payload(tok, pos)
        self.iv.value = 1
        self.orr.value = 1
        await ReadOnly()
        while self.ir.value != 1:  # ready may rise after a rising edge (out of reset)
            await self._rise(self.ir, "x.ready", pos)
            await ReadOnly()
        await RisingEdge(self.clk)  # the token is taken here
        t0 = self._cycle() - 1  # counted from the falling edge before it
        await FallingEdge(self.clk)
        self.iv.value = 0
        await ReadOnly()
        if self.ov.value != 1:
            await self._rise(self.ov, "y.valid", pos)
            await ReadOnly()
        v = int(self.odata.value)
        cycles = self._cycle() - t0 + 1
        await FallingEdge(self.clk)  # the output is taken at this edge (ready is high)
        return *self._decode(v), cycles

    async def stalled(self, ins, valid_p: float, ready_p: float) -> list[tuple[int, int]]:
        """The tokens with valid gaps and ready pauses, a Python step per cycle."""
        outs, sent, offering = [], 0, False
        budget = 4 * self.max_cycles * len(ins)
        start_cycle = self._cycle()
        while len(outs) < len(ins):
            await FallingEdge(self.clk)
            if self._cycle() - start_cycle > budget:
                raise AssertionError(f"timeout after {len(outs)} of {len(ins)} tokens")
            # One token in flight: the next is offered once its predecessor came out.
            if not offering and sent == len(outs) and sent < len(ins) \
                    and self.rng.random() < valid_p:
                self.idata.value = self._payload(ins[sent], sent)
                offering = True
            self.iv.value = int(offering)
            ready = bool(self.rng.random() < ready_p)
            self.orr.value = int(ready)
            await ReadOnly()
            if offering and self.ir.value == 1:
                sent += 1
                offering = False
            if ready and self.ov.value == 1:
                outs.append(self._decode(int(self.odata.value)))
        await FallingEdge(self.clk)
        self.iv.value = 0
        self.orr.value = 0
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
