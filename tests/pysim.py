"""Streams driven at full rate in Amaranth's own simulator (for the units' cycle counts)."""


def full_rate(dut, ins: list[int], n_out: int, limit: int = 100000):
    """Offer ``ins`` on ``dut.x`` back to back with ``dut.y.ready`` always high until
    ``n_out`` output beats are taken. Returns ``(outs, taken)``: ``(cycle, payload)`` of every
    output beat and the cycle each input beat was taken, counting the first clock edge as 0."""
    from amaranth.sim import Simulator

    outs, taken = [], []

    async def bench(ctx):
        ctx.set(dut.y.ready, 1)
        sent, cycle = 0, 0
        while len(outs) < n_out:
            ctx.set(dut.x.valid, sent < len(ins))
            if sent < len(ins):
                ctx.set(_value(dut.x.payload), ins[sent])
            xr, yv = ctx.get(dut.x.ready), ctx.get(dut.y.valid)
            yp = ctx.get(_value(dut.y.payload))
            await ctx.tick()
            if sent < len(ins) and xr:
                taken.append(cycle)
                sent += 1
            if yv:
                outs.append((cycle, yp))
            cycle += 1
            assert cycle < limit, "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outs, taken


def _value(payload):
    """A payload as a plain value (a struct view's bits, or the signal itself)."""
    return payload.as_value() if hasattr(payload, "as_value") else payload
