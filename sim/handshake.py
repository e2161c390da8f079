"""One stream source and one stream sink for every cocotb testbench: Amaranth's valid, ready
and payload handshake, each side with an optional pause generator (cocotbext-axi's
``AxiStreamSource`` / ``AxiStreamSink`` take one the same way, for instance
``itertools.cycle([1, 1, 1, 0])``: paused three cycles of four).

Both drive their signals at the falling edge of the clock and sample in the ``ReadOnly``
phase after it, so a handshake seen there happens at the next rising edge; its cycle number
(sim time over the clock period) is recorded. A side without a pause generator does not wake
every cycle while it waits: it sleeps until the DUT raises the signal it waits for. The chip
and layer tests spend most of their cycles waiting.
"""

import itertools
from collections import deque
from collections.abc import Iterable, Iterator

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, First, ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "random_pauses"]


def random_pauses(rng: np.random.Generator, rate: float) -> Iterator[bool] | None:
    """A pause generator that goes ahead with probability ``rate`` and pauses otherwise, one
    draw from ``rng`` per decision; ``None`` (never pause) when ``rate >= 1``."""
    if rate >= 1:
        return None
    return (bool(rng.random() >= rate) for _ in itertools.count())


class _Side:
    """What the source and the sink share.

    Parameters
    ----------
    clk, valid, ready, data
        The clock and the stream's signals (cocotb handles).
    period_ns : int
        The clock period, to number cycles (sim time // period).
    pause : iterator or None
        Pause flags (true: pause); ``None`` never pauses. :meth:`set_pause` replaces it.
    """

    def __init__(self, clk, valid, ready, data, *, period_ns: int,
                 pause: Iterator | None = None):
        self.clk, self.valid, self.ready, self.data = clk, valid, ready, data
        self.period_ns = period_ns
        self.pause = pause
        #: Cycle numbers of the handshakes so far, in order.
        self.cycles: list[int] = []
        self._queue: deque[int] = deque()  # to send, or taken and not yet received
        self._more = Event()  # the queue grew
        self._repause = Event()  # set_pause was called

    def start(self) -> None:
        """Start driving (after reset, at a falling edge)."""
        cocotb.start_soon(self._run())

    def set_pause(self, pause: Iterator | None) -> None:
        """Pause by ``pause`` from now on (``None``: never)."""
        self.pause = pause
        self._repause.set()

    @property
    def count(self) -> int:
        """Handshakes so far."""
        return len(self.cycles)

    async def _run(self):
        raise NotImplementedError

    def _cycle(self) -> int:
        return int(get_sim_time("ns")) // self.period_ns

    async def _until_high(self, sig, *also) -> bool:
        """Sleep until ``sig`` rises; return ``True`` in the ``ReadOnly`` phase of the last
        timestep before a rising edge with ``sig`` high, or ``False`` when one of ``also``
        (events) fires first. Called in such a phase with ``sig`` low."""
        while True:
            edge = RisingEdge(sig)
            if also and await First(edge, *(e.wait() for e in also)) is not edge:
                return False
            if not also:
                await edge
            if self.clk.value == 1:  # the DUT changed it after a rising edge: sample later
                await FallingEdge(self.clk)  # (after the drivers of this falling edge)
            await ReadOnly()
            if sig.value == 1:
                return True


class StreamSource(_Side):
    """Drives ``valid`` and ``data``: each payload :meth:`send` queued is offered, and stays
    offered until ``ready`` takes it (the stream rules). Before a new payload the pause
    generator, if any, is asked once per cycle whether to wait; a true answer holds
    ``valid`` low for that cycle.
    """

    def __init__(self, clk, valid, ready, data, *, period_ns: int,
                 pause: Iterator | None = None):
        super().__init__(clk, valid, ready, data, period_ns=period_ns, pause=pause)
        self._idle = Event()  # every payload sent was taken

    def send(self, payloads: Iterable[int]) -> None:
        """Queue ``payloads`` (integers) to be offered in order."""
        self._queue.extend(int(p) for p in payloads)
        if self._queue:
            self._idle.clear()
            self._more.set()

    async def wait(self) -> None:
        """Until every queued payload has been taken."""
        if self._queue or not self._idle.is_set():
            await self._idle.wait()

    async def _run(self):
        self._idle.set()
        while True:
            await FallingEdge(self.clk)
            if not self._queue:
                self.valid.value = 0
                self._more.clear()
                await self._more.wait()
                continue
            if self.pause is not None and next(self.pause):
                self.valid.value = 0
                continue
            self.data.value = self._queue[0]
            self.valid.value = 1
            await ReadOnly()
            if self.ready.value != 1:
                await self._until_high(self.ready)
            self._queue.popleft()
            self.cycles.append(self._cycle())
            if not self._queue:
                self._idle.set()


class StreamSink(_Side):
    """Drives ``ready``: high unless the pause generator, asked every cycle, says to pause.
    Every payload taken is queued for :meth:`recv`. A sink asleep without a pause
    generator wakes to a new one given by :meth:`set_pause`.
    """

    async def recv(self) -> int:
        """The next payload taken, waiting for it if need be."""
        while not self._queue:
            self._more.clear()
            await self._more.wait()
        return self._queue.popleft()

    async def _run(self):
        while True:
            await FallingEdge(self.clk)
            self._repause.clear()
            paused = self.pause is not None and bool(next(self.pause))
            self.ready.value = int(not paused)
            if paused:
                continue
            await ReadOnly()
            if self.valid.value != 1 and (self.pause is not None
                                          or not await self._until_high(self.valid,
                                                                        self._repause)):
                continue
            self._queue.append(int(self.data.value))
            self.cycles.append(self._cycle())
            self._more.set()
