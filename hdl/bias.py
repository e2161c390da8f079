"""Per-pass biases after a lane array, :func:`golden.gpt_oss_int.add_bias`, bit for bit."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import IntFormat

from .arith import signed_width
from .mask_rom import RomSpec, twos_complement
from .rounding import saturate
from .vector import beat_count, beat_layout, element

__all__ = ["BiasAdd"]


class BiasAdd(wiring.Component):
    """``saturate(y + b, fx_bits)`` on the beats of a lane array's passes, each pass with its
    own bias vector (the pass is named by every beat: ``sel``, as
    :class:`hdl.lane_array.LaneArray` with ``select`` writes it).

    The biases are mask ROMs, one per element of a beat (``sum rows / beat`` words of the
    biases' exact signed width each), read synchronously: the unit is one register stage,
    :attr:`latency` 1 cycle, one beat per cycle at full rate. Pass ``k``'s beat ``t`` adds
    ``biases[k][t * beat : (t + 1) * beat]``; a pass without biases (``None``) adds zeros.

    Ports: ``x`` payload ``{elem: beat * fx_bits, sel: pass_bits}``; ``y`` payload
    ``beat_layout(beat, fx_bits)``.
    """

    def __init__(self, biases: list, rows: list[int], beat: int, fmt: IntFormat, *,
                 rom_images: bool = False, prefix: str = "bias"):
        if len(biases) != len(rows) or not rows:
            raise ValueError("one bias vector (or None) per pass is needed")
        self.beat, self.fmt, self.rows = beat, fmt, list(rows)
        self.counts = [beat_count(r, beat) for r in rows]
        vecs = []
        for b, r in zip(biases, rows, strict=True):
            v = np.zeros(r, np.int64) if b is None else np.asarray(b, np.int64).ravel()
            if v.shape != (r,):
                raise ValueError(f"a bias vector has {v.size} entries, its pass {r} rows")
            vecs.append(v)
        allb = np.concatenate(vecs)
        lim = 1 << (fmt.fx_bits - 1)
        if allb.size and (int(allb.min()) < -lim or int(allb.max()) >= lim):
            raise ValueError("biases must fit fx_bits")
        self.bias_bits = signed_width(min(int(allb.min()), 0), max(int(allb.max()), 0))
        self.base = np.cumsum([0] + self.counts)[:-1].tolist()
        words = allb.reshape(-1, beat)  # one row per beat, passes one after the other
        self.roms = [RomSpec(twos_complement(words[:, j], self.bias_bits), self.bias_bits,
                             f"{prefix}{j:03d}.hex" if rom_images else None)
                     for j in range(beat)]
        self.pass_bits = max(1, (len(rows) - 1).bit_length())
        x = data.StructLayout({"elem": unsigned(beat * fmt.fx_bits),
                               "sel": unsigned(self.pass_bits)})
        super().__init__({"x": In(stream.Signature(x)),
                          "y": Out(stream.Signature(beat_layout(beat, fmt.fx_bits)))})

    @property
    def latency(self) -> int:
        return 1

    @property
    def rom_bits(self) -> int:
        return sum(len(r.words) * r.width for r in self.roms)

    def elaborate(self, platform):
        m = Module()
        fx, B = self.fmt.fx_bits, self.beat
        x, y = self.x, self.y
        held, elem = Signal(), Signal(B * fx)
        adv = Signal()
        m.d.comb += [adv.eq(~held | y.ready), x.ready.eq(adv)]
        fire = x.valid & x.ready
        # the beat within its pass, and the ROM word of the incoming beat
        off = Signal(range(max(self.counts) + 1))
        n = self.counts[-1] - 1
        b = self.base[-1]
        for k in range(len(self.counts) - 2, -1, -1):
            n = Mux(x.payload.sel == k, self.counts[k] - 1, n)
            b = Mux(x.payload.sel == k, self.base[k], b)
        last, base = Signal(), Signal(range(max(sum(self.counts), 2)))
        m.d.comb += [last.eq(off == n), base.eq(b)]
        with m.If(fire):
            m.d.sync += off.eq(Mux(last, 0, off + 1))
        with m.If(adv):
            m.d.sync += [held.eq(x.valid), elem.eq(x.payload.elem)]
        outs = []
        for j, spec in enumerate(self.roms):
            rom = spec.build()
            m.submodules[f"bias{j}"] = rom
            m.d.comb += [rom.addr.eq(base + off), rom.en.eq(adv)]
            s = Signal(signed(fx + 1), name=f"sum{j}")
            m.d.comb += s.eq(element(elem, j, fx) + rom.data.as_signed())
            outs.append(saturate(m, s, fx, f"sum{j}"))
        m.d.comb += [y.valid.eq(held), y.payload.elem.eq(Cat(*outs))]
        return m
