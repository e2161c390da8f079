"""What every testbench here starts from: the design directory, the clock and the reset, a
:class:`~sim.handshake.StreamSource` on the input stream and a
:class:`~sim.handshake.StreamSink` on the output stream, and timeouts counted in cycles.

Environment: ``HARDWIRE_DESIGN`` (the design directory with its ``manifest.json``),
``HARDWIRE_SEED`` (every random draw of a test, payloads and pauses alike).
"""

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from sim.handshake import StreamSink, StreamSource, random_pauses

__all__ = ["PERIOD_NS", "start", "Bench"]

PERIOD_NS = 10


async def start(clk, rst, *idle):
    """Start the clock, drive ``idle`` signals low, hold reset for three cycles, and return
    at a falling edge with reset released."""
    Clock(clk, PERIOD_NS, unit="ns").start()
    for sig in idle:
        sig.value = 0
    rst.value = 1
    for _ in range(3):
        await RisingEdge(clk)
    await FallingEdge(clk)
    rst.value = 0


class Bench:
    """Clock, reset, source and sink of the design in ``HARDWIRE_DESIGN``.

    ``ports`` names the clock, the reset and the two streams (``{"clock", "reset", "in":
    {"valid", "ready", "data"}, "out": {...}}``); the manifest's own by default.
    :meth:`reset` starts the source and the sink; :meth:`stalls` sets their pauses.
    """

    def __init__(self, dut, ports: dict | None = None):
        self.dut = dut
        self.dir = Path(os.environ["HARDWIRE_DESIGN"])
        self.m = json.loads((self.dir / "manifest.json").read_text())
        self.rng = np.random.default_rng(int(os.environ.get("HARDWIRE_SEED", "1")))
        p = ports or self.m
        self.clk, self.rst = getattr(dut, p["clock"]), getattr(dut, p["reset"])

        def side(cls, name: str):
            return cls(self.clk, *(getattr(dut, p[name][k]) for k in ("valid", "ready", "data")),
                       period_ns=PERIOD_NS)

        self.source, self.sink = side(StreamSource, "in"), side(StreamSink, "out")

    def stalls(self, valid_p: float, ready_p: float) -> None:
        """Offer each new payload with probability ``valid_p`` per cycle and raise ready with
        probability ``ready_p`` per cycle (1.0: no stalls on that side)."""
        self.source.set_pause(random_pauses(self.rng, valid_p))
        self.sink.set_pause(random_pauses(self.rng, ready_p))

    async def reset(self) -> None:
        """Clock and reset (:func:`start`), then start the source and the sink."""
        await start(self.clk, self.rst, self.source.valid, self.sink.ready, self.source.data)
        self.source.start()
        self.sink.start()

    async def collect(self, n: int, cycles: int, what: str,
                      each: Callable[[int, list[int]], None] | None = None) -> list[int]:
        """The sink's next ``n`` payloads, once the source has also sent all it holds; fails
        after ``cycles`` cycles, saying how far ``what`` got. ``each(k, payloads)``, if given,
        runs as payload ``k`` (from 0) arrives."""
        got, sent = [], self.source.count

        async def run():
            while len(got) < n:
                got.append(await self.sink.recv())
                if each is not None:
                    each(len(got) - 1, got)
            await self.source.wait()

        await self.within(run(), cycles, lambda: (
            f"{what}: timeout after {cycles} cycles: {self.source.count - sent} payloads in, "
            f"{len(got)} of {n} out"))
        return got

    async def within(self, awaitable: Awaitable, cycles: int, message: Callable[[], str]):
        """``await awaitable``, failing with ``message()`` after ``cycles`` cycles."""
        try:
            return await with_timeout(awaitable, cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(message()) from None
