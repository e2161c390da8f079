"""A vector of beats, taken once and given ``times`` times: a mixture of experts feeds the
same normed token to its router and to each selected expert."""

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import counter

__all__ = ["ReplayBuffer"]


class ReplayBuffer(wiring.Component):
    """Takes a vector of ``beats`` payloads, then sends it ``times`` times, then takes the
    next. The payloads pass unchanged (a memory of ``beats`` words; synchronous reads with
    the output registered). Per vector at full rate: ``beats`` cycles in, ``times * beats``
    out (:attr:`cycles`), the first output beat two cycles after the last input beat."""

    def __init__(self, shape, beats: int, times: int):
        if beats < 1 or times < 1:
            raise ValueError(f"beats and times must be positive, not {beats}, {times}")
        self.shape, self.beats, self.times = shape, beats, times
        super().__init__({"x": In(stream.Signature(shape)), "y": Out(stream.Signature(shape))})

    @property
    def cycles(self) -> int:
        return (1 + self.times) * self.beats

    def elaborate(self, platform):
        m = Module()
        width = len(Value.cast(self.x.payload))
        mem = memory.Memory(shape=width, depth=self.beats, init=[])
        m.submodules.mem = mem
        wp, rp = mem.write_port(), mem.read_port()
        filling = Signal(init=1)
        wa, ra, rep = counter(self.beats, "wa"), counter(self.beats, "ra"), counter(self.times,
                                                                                   "rep")
        fire_in = self.x.valid & self.x.ready
        m.d.comb += [self.x.ready.eq(filling), wp.addr.eq(wa), wp.data.eq(Value.cast(
            self.x.payload)), wp.en.eq(fire_in)]
        with m.If(fire_in):
            with m.If(wa == self.beats - 1):
                m.d.sync += [wa.eq(0), filling.eq(0)]
            with m.Else():
                m.d.sync += wa.eq(wa + 1)
        # Output: the read port's data register is the output stage. It reads the next word
        # whenever the stage is empty or being taken, and holds (en low) otherwise.
        take = Signal()
        m.d.comb += [take.eq(~self.y.valid | self.y.ready), rp.addr.eq(ra), rp.en.eq(take),
                     Value.cast(self.y.payload).eq(rp.data)]
        with m.If(take):
            m.d.sync += self.y.valid.eq(~filling)
            with m.If(~filling):
                with m.If(ra == self.beats - 1):
                    m.d.sync += ra.eq(0)
                    with m.If(rep == self.times - 1):
                        m.d.sync += [rep.eq(0), filling.eq(1)]
                    with m.Else():
                        m.d.sync += rep.eq(rep + 1)
                with m.Else():
                    m.d.sync += ra.eq(ra + 1)
        return m
