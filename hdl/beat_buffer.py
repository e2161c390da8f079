"""A vector waiting as beats in a memory while a unit makes its passes over it, and block
floating point (:func:`golden.integer.bfp`) over such a vector.

The exponent of a block-floating-point vector depends on the whole vector, so every unit that
makes matvec activations buffers it: :class:`BeatBuffer` stores the beats and ORs their
magnitudes as they arrive (``bitlen(max |v|) == bitlen(OR |v|)``); :class:`BfpBuffer` then
reads them back, rounded (``half_away``) and saturated by the vector's shift. The
:class:`hdl.bfp.BfpUnit` is nothing else; :class:`hdl.swiglu.SwigluUnit` puts its products
through one, :class:`hdl.norm.RmsNormUnit` makes its own passes over a :class:`BeatBuffer`.
"""

import operator

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory

from .arith import balanced_tree, bit_length, wired_tree
from .rounding import RoundShift

__all__ = ["BeatBuffer", "BfpBuffer", "bfp_shift"]


def bfp_shift(m: Module, bitlen, bits: int, s_max: int, name: str) -> Signal:
    """The block-floating-point shift ``max(0, bitlen - (bits - 1))`` of a vector whose
    largest magnitude has bit length ``bitlen``, as the comb signal ``name``."""
    s = Signal(range(s_max + 1), name=name)
    m.d.comb += s.eq(Mux(bitlen > bits - 1, bitlen - (bits - 1), 0))
    return s


class BeatBuffer:
    """``beats`` beats of ``beat`` elements of ``bits`` in a memory ``buf`` (one write port,
    one synchronous read port, one beat per cycle), the counters ``wr`` (beats of the next
    vector written) and ``rd`` (beats of the current pass read), and ``orv``, the OR of the
    magnitudes written."""

    def __init__(self, m: Module, beats: int, beat: int, bits: int):
        self.beats, self.beat, self.bits = beats, beat, bits
        m.submodules.buf = buf = memory.Memory(shape=unsigned(beat * bits), depth=beats,
                                               init=[])
        self.wp = buf.write_port()
        self.rp = buf.read_port(domain="sync")
        self.wr = Signal(range(beats + 1), name="wr")
        self.rd = Signal(range(beats + 1), name="rd")
        self.orv = Signal(bits, name="orv")

    def store(self, m: Module, take, data, values, *, named_nodes: bool = True):
        """Write ``data`` as beat ``wr`` when ``take``, and OR the magnitudes of its elements
        ``values`` into ``orv`` (by a tree of comb signals ``or_<level>_<i>`` with
        ``named_nodes``, else by one expression)."""
        wr, orv = self.wr, self.orv
        m.d.comb += [self.wp.addr.eq(wr), self.wp.data.eq(data), self.wp.en.eq(take)]
        magnitudes = [abs(v) for v in values]
        if named_nodes:
            # Comb trees outside any m.If (see arith.bit_length on Icarus).
            or_beat = wired_tree(m, magnitudes, operator.or_, "or")
        else:
            or_beat = balanced_tree(magnitudes, operator.or_)
        with m.If(take):
            m.d.sync += [wr.eq(wr + 1), orv.eq(orv | or_beat)]


#: Cycles from a vector's last stored beat to its first output beat in a :class:`BfpBuffer`:
#: the turn-around, the read, the read data's register, the rounding's register.
BFP_OUT_LATENCY = 4


class BfpBuffer:
    """Block floating point of a vector of beats: ``bfp(v, out_bits, ...)``.

    Two passes over a :class:`BeatBuffer`: the input pass (:meth:`store`) stores each beat
    and ORs the magnitudes; the output pass (:meth:`emit`) reads the beats back and rounds
    and saturates each element by the vector's shift ``s = max(0, bitlen - (out_bits - 1))``,
    with the exponent ``exponent(s)`` in every output beat. Input of the next vector overlaps
    the output pass: beat ``j`` is overwritten only after it has been read.

    Full rate, vectors back to back: ``beats + 1`` cycles per vector (one beat per cycle,
    one to turn the buffer around); the first output beat leaves :data:`BFP_OUT_LATENCY`
    cycles after the last input beat is stored."""

    def __init__(self, m: Module, *, beats: int, beat: int, bits: int, out_bits: int,
                 s_max: int, exp_bits: int):
        self.buf = BeatBuffer(m, beats, beat, bits)
        self.out_bits, self.s_max = out_bits, s_max
        self.active = Signal(name="active")  # the output pass is issuing reads
        self.s = Signal(range(s_max + 1), name="s")
        self.e = Signal(signed(exp_bits), name="e")
        self.v1 = Signal(name="v1")  # the read port holds a beat of the output pass

    def store(self, m: Module, valid, ready, data, values, *, named_nodes: bool = True):
        """The input pass: drive ``ready`` and store the beat ``data`` (elements ``values``)
        when ``valid``."""
        buf = self.buf
        # Beat j of the next vector may overwrite beat j once the output pass read it.
        m.d.comb += ready.eq((buf.wr < buf.beats) & (~self.active | (buf.wr < buf.rd)))
        buf.store(m, valid & ready, data, values, named_nodes=named_nodes)

    def emit(self, m: Module, y, exponent):
        """The output pass onto the stream ``y`` (``beat_layout(beat, out_bits,
        exp_bits)``); ``exponent(s)`` gives the vector's exponent from its shift."""
        buf, active, s, e, v1 = self.buf, self.active, self.s, self.e, self.v1
        nb, wr, rd, orv, rp = buf.beats, buf.wr, buf.rd, buf.orv, buf.rp
        adv = ~y.valid | y.ready
        # Turn around: the shift of the vector just written; the beat in the read port (of
        # the previous vector) must leave in this cycle, as it still uses the old shift.
        start = ~active & (wr == nb) & (~v1 | adv)
        s_new = bfp_shift(m, bit_length(m, orv, "bitlen"), self.out_bits, self.s_max, "s_new")
        e_new = exponent(s_new)
        issue = (active | start) & adv
        addr = Mux(start, 0, rd)
        m.d.comb += [rp.addr.eq(addr), rp.en.eq(adv)]
        with m.If(start):
            m.d.sync += [s.eq(s_new), e.eq(e_new), orv.eq(0), wr.eq(0), rd.eq(0),
                         active.eq(1)]
        with m.If(issue):
            m.d.sync += rd.eq(addr + 1)
            with m.If(addr == nb - 1):
                m.d.sync += active.eq(0)

        # The beat in the read port is registered off the block RAM with its shift and
        # exponent (stage 1b: a start may change s as it moves on). Then it is rounded and
        # saturated: |v| < 2**(out_bits-1+s), so the rounded value fits out_bits + 1 bits and
        # only +2**(out_bits-1) saturates. The shifted beat goes through a register (stage
        # 2, with its exponent) before the rounding add.
        data1, s1 = Signal.like(rp.data, name="rd_data1"), Signal.like(s, name="s1")
        v1b, e1 = Signal(name="v1b"), Signal.like(e, name="e1")
        with m.If(adv):
            m.d.sync += [data1.eq(rp.data), s1.eq(s), v1b.eq(v1), e1.eq(e)]
        stage2 = []

        def cut(*sigs):
            regs = [Signal(v.shape(), name=f"r2_{len(stage2) + k}") for k, v in enumerate(sigs)]
            stage2.extend(regs)
            with m.If(adv):
                m.d.sync += [a.eq(b) for a, b in zip(regs, sigs, strict=True)]
            return regs

        rs = RoundShift(m, s1, self.s_max, buf.bits, self.out_bits, "rs", bounded=True)
        bits = buf.bits
        out = Cat(*(rs(data1[i * bits:(i + 1) * bits], f"rounded_{i}", cut)
                    for i in range(buf.beat)))
        v2, e2 = Signal(name="v2"), Signal.like(e, name="e2")
        with m.If(adv):
            m.d.sync += [v1.eq(issue), v2.eq(v1b), e2.eq(e1), y.valid.eq(v2),
                         y.payload.exp.eq(e2), y.payload.elem.eq(out)]
