"""Vector units that make matvec activations: RMSNorm of the residual
(:func:`golden.llama_int.rms_norm_int`) and block floating point of an integer vector
(:func:`golden.llama_int.bfp`), bit for bit.

Both take a vector as beats on ``x`` and give beats of ``(mantissas, exponent)`` on ``y``
(:mod:`hdl.vector`). Both buffer the vector in a ``lib.memory`` Memory of beats (synchronous
read, one beat per cycle) because the exponent depends on the whole vector, and both use
``beat`` lanes, one element of a beat per lane.

Widths are derived from bounds: the format (:class:`golden.llama_int.IntFormat`), the vector
length and the actual gain table. Some products are wider than 64 bits; Amaranth does not
care.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.llama_int import IntFormat

from .vector import beat_layout

__all__ = ["RmsNormUnit", "BfpUnit"]


def _signed_width(lo: int, hi: int) -> int:
    """Two's complement width holding ``[lo, hi]`` (Python integers of any size)."""
    need = lambda v: (v if v >= 0 else -v - 1).bit_length() + 1  # noqa: E731
    return max(need(int(lo)), need(int(hi)), 1)


def _wire(m: Module, expr, name: str) -> Signal:
    """``expr`` as a named comb signal: an expression used more than once would otherwise be
    written out (and simulated) once per use."""
    sig = Signal(expr.shape(), name=name)
    m.d.comb += sig.eq(expr)
    return sig


def _tree(m: Module, values, op, name: str):
    """Balanced reduction (Python's ``sum`` would build a chain), every node a signal."""
    values, level = list(values), 0
    while len(values) > 1:
        nxt = [_wire(m, op(values[i], values[i + 1]), f"{name}_{level}_{i // 2}")
               for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values, level = nxt, level + 1
    return values[0]


def _max(a, b):
    return Mux(a > b, a, b)


def _bitlen(m: Module, v, name: str) -> Signal:
    """Bit length of the unsigned ``v`` (0 for 0): the leading-one detector, as a balanced
    tree (``bitlen(hi:lo) = len(lo) + bitlen(hi)`` if ``hi`` has a one, else ``bitlen(lo)``).

    A plain expression, no ``m.If`` in the comb domain: Icarus does not run an ``always @*``
    block at time 0, so a comb process whose inputs never change would stay ``x``."""
    def tree(lo: int, n: int):
        if n == 1:
            return v[lo]
        h = n // 2
        hi = v[lo + h:lo + n]
        return Mux(hi.any(), h + tree(lo + h, n - h), tree(lo, h))

    bl = Signal(range(len(v) + 1), name=name)
    m.d.comb += bl.eq(tree(0, len(v)))
    return bl


class RoundShift:
    """``saturate(round_shift(v, s, "half_away"), bits)`` of signed lane values ``v`` (up to
    ``width`` bits) for one variable shift ``0 <= s <= s_max`` shared by the lanes.

    No operator is as wide as ``v`` (Amaranth's netlist checks cost output bits times input
    bits per operator, and a wide shifter and adders per lane dominated the conversion):

    - ``t = floor(v / 2**(s-1))`` (``2 * v`` for ``s == 0``) is a ``bits + 1`` bit slice at
      offset ``s`` of ``v`` with a zero below it and the sign above (``bit_select``);
    - ``round_shift`` is ``(t + 1 - (v < 0 and v % 2**(s-1) == 0)) >> 1`` (the bias
      ``2**(s-1) - (v < 0)`` of :func:`golden.numerics.rounding_bias_terms` added after the
      shift): the low bits of ``v`` are tested with the mask ``k < s - 1``;
    - the rounded value fits ``bits + 1`` bits when ``t`` fits: ``v[k]`` equals the sign for
      ``k >= s + bits - 1`` (mask ``high``); otherwise it saturates by the sign.

    The masks come from one thermometer code ``2**s - 1`` shared by the lanes (a comb
    signal). ``bounded``: the caller guarantees ``|v| < 2**(bits-1+s)`` (``s`` from the bit
    length of the largest ``|v|``), so the rounded value lies in ``[-2**(bits-1),
    2**(bits-1)]`` and the range test is left out."""

    def __init__(self, m: Module, s, s_max: int, width: int, bits: int, name: str, *,
                 bounded: bool = False):
        self.m, self.s, self.s_max, self.bits = m, s, s_max, bits
        self.nl = min(width, s_max - 1)  # v[k] below the rounding bit: k < s - 1
        self.nh = 0 if bounded else max(0, width - (bits - 1))  # v[k], k >= bits - 1 ...
        tw = max(self.nl + 1, self.nh)
        self.low = self.high = None
        if tw > 0:
            thermo = Signal(tw, name=f"{name}_thermo")  # bit k: k < s
            m.d.comb += thermo.eq((Const(1, 1) << s) - 1)
            if self.nl > 0:
                self.low = thermo[1:self.nl + 1]
            if self.nh > 0:  # ... that must equal the sign: k >= s + bits - 1
                self.high = Signal(self.nh, name=f"{name}_high")
                m.d.comb += self.high.eq(~thermo)

    def __call__(self, v, name: str) -> Signal:
        """The rounded, saturated ``v`` (a signal or a slice of one: it is used several times)
        as a comb signal ``name``; call outside any ``m.If``."""
        m, bits = self.m, self.bits
        v = v.as_signed()
        w, sign = len(v), v[-1]
        # The sign above v, explicitly: the simulator reads bits above an expression as 0.
        ext = Cat(Const(0, 1), v, sign.replicate(max(0, self.s_max + bits - w)))
        t = _wire(m, ext.bit_select(self.s, bits + 1).as_signed(), f"{name}_t")
        exact = Const(1, 1)  # v % 2**(s-1) == 0
        if self.low is not None:
            nl = min(w, self.nl)
            exact = (v[:nl] & self.low[:nl]) == 0
        u = _wire(m, t + ~(sign & exact), f"{name}_u")
        r = u[1:].as_signed()  # in [-2**(bits-1), 2**(bits-1)] when t fits
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        out = Mux(r > hi, hi, r[:bits].as_signed())  # r >= lo when t fits
        if self.high is not None and w > bits - 1:
            nh = min(w - (bits - 1), self.nh)
            high = self.high[:nh]
            vh = _wire(m, v[bits - 1:bits - 1 + nh] & high, f"{name}_vh")
            over = Mux(sign, vh != high, vh != 0)
            out = Mux(over, Mux(sign, lo, hi), out)
        res = Signal(signed(bits), name=name)
        m.d.comb += res.eq(out)
        return res


def _check_beats(n: int, beat: int) -> int:
    if beat < 1 or n < 1 or n % beat:
        raise ValueError(f"a vector of {n} is not a whole number of {beat}-element beats")
    return n // beat


class BfpUnit(wiring.Component):
    """Block floating point of an integer vector: ``golden.llama_int.bfp(v, out_bits, in_frac)``.

    Two passes over a buffer of beats: the input pass stores each beat and ORs the element
    magnitudes (``bitlen(max|v|) == bitlen(OR |v|)``); the output pass reads the beats back
    and rounds (``half_away``) and saturates each element by the vector's shift
    ``s = max(0, bitlen - (out_bits - 1))``; every output beat carries ``e = s - in_frac``.
    Input of the next vector overlaps the output pass: beat ``j`` is overwritten only after
    it has been read.

    Timing at full rate, vectors back to back: ``cycles = n / beat + 1`` per vector (one beat
    per cycle plus one cycle to turn the buffer around); latency of the first output beat
    after the last input beat: 3 cycles.

    Ports: ``x`` beats of ``beat`` elements of ``in_bits`` (``beat_layout(beat, in_bits)``),
    ``y`` beats of ``beat_layout(beat, out_bits, exp_bits)``.
    """

    def __init__(self, n: int, beat: int, in_bits: int, in_frac: int, out_bits: int,
                 exp_bits: int = 8):
        self.beats = _check_beats(n, beat)
        if out_bits < 2 or in_bits < 1 or exp_bits < 2:
            raise ValueError("widths too small")
        self.n, self.beat, self.in_bits, self.in_frac = n, beat, in_bits, in_frac
        self.out_bits, self.exp_bits = out_bits, exp_bits
        self.smax = max(0, in_bits - (out_bits - 1))  # bitlen(|v|) <= in_bits
        super().__init__({"x": In(stream.Signature(beat_layout(beat, in_bits))),
                          "y": Out(stream.Signature(beat_layout(beat, out_bits, exp_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back: ``n / beat + 1``."""
        return self.beats + 1

    @property
    def latency(self) -> int:
        """Cycles from the last input beat of a vector (into an idle unit) to its first
        output beat: 3."""
        return 3

    def elaborate(self, platform):
        m = Module()
        nb, B, W, ob = self.beats, self.beat, self.in_bits, self.out_bits
        x, y = self.x, self.y

        m.submodules.buf = buf = memory.Memory(shape=unsigned(B * W), depth=nb, init=[])
        wp = buf.write_port()
        rp = buf.read_port(domain="sync")

        wr = Signal(range(nb + 1))  # beats of the next vector written
        rd = Signal(range(nb + 1))  # beats of the current vector read
        active = Signal()  # the output pass is issuing reads
        orv = Signal(W)  # OR of |v| over the beats written
        s = Signal(range(self.smax + 1))
        e = Signal(signed(self.exp_bits))
        v1 = Signal()  # the read port holds a beat of the output pass

        adv = ~y.valid | y.ready

        # Input: beat j of the next vector may overwrite beat j once the output pass read it.
        m.d.comb += x.ready.eq((wr < nb) & (~active | (wr < rd)))
        take = x.valid & x.ready
        elems = [x.payload.elem[i * W:(i + 1) * W].as_signed() for i in range(B)]
        m.d.comb += [wp.addr.eq(wr), wp.data.eq(x.payload.elem), wp.en.eq(take)]
        # Comb trees outside any m.If (see _bitlen on Icarus).
        or_beat = _tree(m, [abs(v) for v in elems], lambda a, b: a | b, "or")
        with m.If(take):
            m.d.sync += [wr.eq(wr + 1), orv.eq(orv | or_beat)]

        # Turn around: the shift of the vector just written; the beat in the read port (of
        # the previous vector) must leave in this cycle, as it still uses the old shift.
        start = ~active & (wr == nb) & (~v1 | adv)
        bl = _bitlen(m, orv, "bitlen")
        s_new = Signal.like(s)
        m.d.comb += s_new.eq(Mux(bl > ob - 1, bl - (ob - 1), 0))
        e_new = Signal(signed(max(self.exp_bits, _signed_width(-self.in_frac, self.smax)) + 1))
        m.d.comb += e_new.eq(s_new - self.in_frac)  # unsigned - unsigned is signed, exact

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

        # Output stage: round and saturate the beat in the read port.
        rs = RoundShift(m, s, self.smax, W, ob, "rs", bounded=True)
        out = Cat(*(rs(rp.data[i * W:(i + 1) * W], f"rounded_{i}") for i in range(B)))
        with m.If(adv):
            m.d.sync += [v1.eq(issue), y.valid.eq(v1), y.payload.exp.eq(e), y.payload.elem.eq(out)]
        return m


class RmsNormUnit(wiring.Component):
    """RMSNorm of the residual into matvec activations:
    ``golden.llama_int.rms_norm_int(h, gain, gf, eps_term, fmt)``.

    The vector waits in a buffer of beats while the unit makes its passes. ``beat`` lanes,
    one element each, in a four-stage pipeline (buffer and gain ROM read; ``x = h >> s``;
    ``x * G``; the wide product), with two multipliers per lane: ``x * G`` (``norm_bits`` by
    the gain width) and a wide one that forms ``x * x`` in the sum-of-squares pass and
    ``(x * G) * q`` in the output pass. The gains are a ROM of beats.

    1. *Input*: store the beats, OR the magnitudes ``|h|``; ``s = max(0, bitlen -
       (norm_bits - 1))``.
    2. *Sum of squares*: read every beat, ``x = h >> s``; the lane multiplier gives ``x * x``
       (balanced adder tree, accumulator ``T``); ``M = max |x * G|`` on the side.
    3. ``T + (eps_term >> 2s)`` (at least 1) goes through a bit-by-bit square root (two
       radicand bits per cycle; the ``2 * isqrt_frac`` appended zero bits are fed in, not
       stored) and a restoring divider for ``q = floor(2**k / r)``: ``r`` is normalised to
       its leading one, so the dividend is the constant ``2**(rw - 1 + recip_bits)``.
    4. The bfp shift needs ``bitlen(max |x * G * q|) == bitlen(q * M)`` as ``q > 0``: lane 0's
       multiplier forms ``q * M`` once, so no pass computes a maximum of products.
    5. *Output*: read every beat again, ``y = (x * G) * q`` in the lane multipliers, rounded
       (``half_away``) and saturated to ``abits``; every beat carries the exponent
       ``e = sy - k - gf + isqrt_frac``.

    The next vector's input overlaps the output pass (beat ``j`` is overwritten once read).

    Timing at full rate, vectors back to back (see :attr:`cycles`): ``2 * n / beat + 14 +
    isqrt_steps + recip_bits`` cycles per vector, where ``isqrt_steps`` (:attr:`isqrt_steps`)
    is half the even width of the largest ``T`` plus ``isqrt_frac`` (35 for dim 64, 36 for
    dim 576: 81 and 110 cycles with beats of 16 and 32). :attr:`latency` is the time from
    the last input beat to the first output beat.

    Ports: ``x`` beats of ``beat_layout(beat, fmt.res_bits)``; ``y`` beats of
    ``beat_layout(beat, fmt.abits, fmt.exp_bits)``.
    """

    def __init__(self, dim: int, beat: int, fmt: IntFormat, gain, gf: int, eps_term: int):
        self.beats = _check_beats(dim, beat)
        gain = np.asarray(gain, np.int64).ravel()
        if gain.shape != (dim,):
            raise ValueError(f"gain has {gain.size} elements, not dim = {dim}")
        if eps_term < 0:
            raise ValueError("eps_term must be non-negative")
        self.dim, self.beat, self.fmt = dim, beat, fmt
        self.gain, self.gf, self.eps_term = gain, int(gf), int(eps_term)

        # Bounds. x = h >> s has |x| <= 2**(xw-1) (floor of a negative reaches -2**(xw-1)).
        R, NB = fmt.res_bits, fmt.norm_bits
        self.xw = min(NB, R)
        self.smax = max(0, R - (NB - 1))
        xlo, xhi = -(1 << (self.xw - 1)), (1 << (self.xw - 1)) - 1
        gmin, gmax = min(int(gain.min()), 0), max(int(gain.max()), 0)
        self.gw = _signed_width(gmin, gmax)
        corners = [a * b for a in (xlo, xhi) for b in (gmin, gmax)]
        self.xglo, self.xghi = min(corners), max(corners)
        self.xgw = _signed_width(self.xglo, self.xghi)
        self.mmax = max(-self.xglo, self.xghi)  # bound of M = max|x * G|
        self.sqmax = xlo * xlo
        qmax = 1 << fmt.recip_bits
        self.yw = _signed_width(min(self.xglo * qmax, 0),
                                max(self.xghi * qmax, self.mmax * qmax, self.sqmax))
        self.accw = (dim * self.sqmax).bit_length()
        tw = (dim * self.sqmax + self.eps_term).bit_length()
        self.tw = max(tw + (tw & 1), 2)  # radicand bits fed two at a time
        self.isqrt_steps = self.tw // 2 + fmt.isqrt_frac  # also the width of r
        if self.isqrt_steps < 2:
            raise ValueError("the square root needs at least 2 bits")
        self.symax = max(0, (self.mmax * qmax).bit_length() - (fmt.abits - 1))

        super().__init__({
            "x": In(stream.Signature(beat_layout(beat, R))),
            "y": Out(stream.Signature(beat_layout(beat, fmt.abits, fmt.exp_bits)))})

    @property
    def cycles(self) -> int:
        """Cycles per vector at full rate, vectors back to back:
        ``2 * n/beat + isqrt_steps + recip_bits + 14``: the output pass (``n/beat``; the next
        input overlaps it), 5 to drain the pipeline and start, the sum-of-squares pass
        (``n/beat``), 5 to drain it and load the square root, the square root
        (``isqrt_steps``), 1 to normalise, the divider (``recip_bits + 1``), 2 for the bfp
        shift."""
        return 2 * self.beats + self.isqrt_steps + self.fmt.recip_bits + 14

    @property
    def latency(self) -> int:
        """Cycles from the last input beat of a vector (into an idle unit) to its first
        output beat: ``n/beat + isqrt_steps + recip_bits + 16``."""
        return self.beats + self.isqrt_steps + self.fmt.recip_bits + 16

    def _rom_init(self) -> list[int]:
        mask, out = (1 << self.gw) - 1, []
        for b in range(self.beats):
            word = 0
            for i, g in enumerate(self.gain[b * self.beat:(b + 1) * self.beat].tolist()):
                word |= (g & mask) << (i * self.gw)
            out.append(word)
        return out

    def elaborate(self, platform):
        m = Module()
        fmt, nb, B = self.fmt, self.beats, self.beat
        R, A, F, RB, NB = fmt.res_bits, fmt.abits, fmt.isqrt_frac, fmt.recip_bits, fmt.norm_bits
        xw, gw, yw, rw = self.xw, self.gw, self.yw, self.isqrt_steps
        x, y = self.x, self.y

        m.submodules.buf = buf = memory.Memory(shape=unsigned(B * R), depth=nb, init=[])
        wp = buf.write_port()
        rp = buf.read_port(domain="sync")
        m.submodules.gain = rom = memory.Memory(shape=unsigned(B * gw), depth=nb,
                                                init=self._rom_init())
        gp = rom.read_port(domain="sync")

        wr = Signal(range(nb + 1))  # beats of the next vector written
        rd = Signal(range(nb + 1))  # beats of the current pass read
        orv = Signal(R)  # OR of |h|
        s = Signal(range(self.smax + 1))
        sq = Signal()  # the pipeline holds the sum-of-squares pass
        acc = Signal(self.accw)  # sum of x*x
        mx = Signal(self.mmax.bit_length())  # max |x*G|
        rad = Signal(self.tw)  # radicand bits not yet fed
        irem = Signal(rw + 2)
        root = Signal(rw)
        rn = Signal(rw)  # r normalised: leading one at the top
        k = Signal(range(rw + RB))
        drem = Signal(rw + 1)
        q = Signal(RB + 1)
        cnt = Signal(range(max(rw, RB + 1)))
        sy = Signal(range(self.symax + 1))
        e = Signal(signed(fmt.exp_bits))

        # Pipeline: v1 read port, v2 (x1, g1), v3 (x2, xg2), v4 (p3).
        v1, v2, v3, v4 = Signal(), Signal(), Signal(), Signal()
        x1 = [Signal(signed(xw), name=f"x1_{i}") for i in range(B)]
        g1 = [Signal(signed(gw), name=f"g1_{i}") for i in range(B)]
        x2 = [Signal(signed(xw), name=f"x2_{i}") for i in range(B)]
        xg2 = [Signal(signed(self.xgw), name=f"xg2_{i}") for i in range(B)]
        p3 = [Signal(signed(yw), name=f"p3_{i}") for i in range(B)]
        busy = v1 | v2 | v3 | v4
        adv = ~y.valid | y.ready

        # The sequence, one state after the other (plain ifs: an FSM's case statements trip
        # Verilator's CASEINCOMPLETE).
        IDLE, SUMSQ, DRAIN, ISQRT, NORM, DIV, SCALE, EXP, OUT = range(9)
        state = Signal(range(9))
        issue = Signal()  # a pass reads beat rd in this cycle
        load = Signal()  # the buffer may take input
        scale = Signal()  # lane 0 multiplies q * M

        # Input: store the beat, OR the magnitudes.
        m.d.comb += x.ready.eq(load & (wr < nb))
        take = x.valid & x.ready
        elems = [x.payload.elem[i * R:(i + 1) * R].as_signed() for i in range(B)]
        m.d.comb += [wp.addr.eq(wr), wp.data.eq(x.payload.elem), wp.en.eq(take)]
        # Comb trees outside any m.If (see _bitlen on Icarus).
        or_beat = _tree(m, [abs(v) for v in elems], lambda a, b: a | b, "or")
        with m.If(take):
            m.d.sync += [wr.eq(wr + 1), orv.eq(orv | or_beat)]
        m.d.comb += [rp.addr.eq(rd), rp.en.eq(adv), gp.addr.eq(rd), gp.en.eq(adv)]

        bl_h = _bitlen(m, orv, "bitlen_h")
        s_new = Signal.like(s)
        m.d.comb += s_new.eq(Mux(bl_h > NB - 1, bl_h - (NB - 1), 0))

        # T = sum(x*x) + (eps_term >> 2s), at least 1.
        eps = Const(self.eps_term, max(self.eps_term.bit_length(), 1))
        t_sum = Signal(self.tw)
        m.d.comb += t_sum.eq(acc + (eps >> Cat(Const(0, 1), s)))
        t_pos = Mux(t_sum == 0, 1, t_sum)

        # Square root, digit by digit: two radicand bits per step.
        rem4 = Cat(rad[-2:], irem)
        trial = Cat(Const(1, 2), root)
        # Normalisation of r = root.
        bl_r = _bitlen(m, root, "bitlen_r")
        lsh = Signal(range(rw + 1))
        m.d.comb += lsh.eq(rw - bl_r)
        # Divider step.
        rem2 = Cat(Const(0, 1), drem)
        # bfp shift of q * M (in p3[0] after the SCALE state).
        bl_y = _bitlen(m, p3[0][:yw - 1], "bitlen_y")
        sy_new = Signal.like(sy)
        m.d.comb += sy_new.eq(Mux(bl_y > A - 1, bl_y - (A - 1), 0))
        e_new = Signal(signed(max(fmt.exp_bits, _signed_width(
            -(rw + RB) - abs(self.gf) - F, self.symax + abs(self.gf) + F)) + 1))
        m.d.comb += e_new.eq(sy_new - k + (F - self.gf))

        with m.If(state == IDLE):
            # Start once the vector is in and the pipeline is empty (s and the mode
            # change); the last output beat may leave in this cycle.
            with m.If((wr == nb) & ~busy & adv):
                m.d.sync += [s.eq(s_new), orv.eq(0), wr.eq(0), rd.eq(0), acc.eq(0),
                             mx.eq(0), sq.eq(1)]
                m.d.sync += state.eq(SUMSQ)
        with m.If(state == SUMSQ):
            with m.If(adv):
                m.d.sync += rd.eq(rd + 1)
                with m.If(rd == nb - 1):
                    m.d.sync += state.eq(DRAIN)
        with m.If(state == DRAIN):
            with m.If(~busy):
                m.d.sync += [rad.eq(t_pos), irem.eq(0), root.eq(0), cnt.eq(0), sq.eq(0)]
                m.d.sync += state.eq(ISQRT)
        with m.If(state == ISQRT):
            m.d.sync += [rad.eq(rad << 2), cnt.eq(cnt + 1)]
            with m.If(rem4 >= trial):
                m.d.sync += [irem.eq(rem4 - trial), root.eq(Cat(Const(1, 1), root))]
            with m.Else():
                m.d.sync += [irem.eq(rem4), root.eq(Cat(Const(0, 1), root))]
            with m.If(cnt == rw - 1):
                m.d.sync += state.eq(NORM)
        with m.If(state == NORM):
            m.d.sync += [rn.eq(root << lsh), k.eq(bl_r - 1 + RB), drem.eq(1 << (rw - 2)),
                         q.eq(0), cnt.eq(0)]
            m.d.sync += state.eq(DIV)
        with m.If(state == DIV):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(rem2 >= rn):
                m.d.sync += [drem.eq(rem2 - rn), q.eq(Cat(Const(1, 1), q))]
            with m.Else():
                m.d.sync += [drem.eq(rem2), q.eq(Cat(Const(0, 1), q))]
            with m.If(cnt == RB):
                m.d.sync += state.eq(SCALE)
        with m.If(state == SCALE):
            m.d.sync += state.eq(EXP)
        with m.If(state == EXP):
            m.d.sync += [sy.eq(sy_new), e.eq(e_new), rd.eq(0)]
            m.d.sync += state.eq(OUT)
        with m.If(state == OUT):
            with m.If(adv):
                m.d.sync += rd.eq(rd + 1)
                with m.If(rd == nb - 1):
                    m.d.sync += state.eq(IDLE)

        # Comb outputs of the sequence as plain expressions (see _bitlen on Icarus).
        m.d.comb += [
            load.eq((state == IDLE) | ((state == OUT) & (wr < rd))),
            issue.eq(((state == SUMSQ) | (state == OUT)) & adv),
            scale.eq(state == SCALE)]

        # The lanes. In SUMSQ, IDLE..SCALE have adv == 1: y is empty from the start on.
        with m.If(adv):
            m.d.sync += [v1.eq(issue), v2.eq(v1), v3.eq(v2), v4.eq(v3)]
            for i in range(B):
                h = rp.data[i * R:(i + 1) * R].as_signed()
                # x = h >> s (it fits xw bits): a slice at offset s, not a shifter per lane.
                hx = Cat(h, h[-1].replicate(max(0, self.smax + xw - R)))
                a = Mux(sq, x2[i], xg2[i])
                if i == 0:
                    a = Mux(scale, mx, a)
                b = Mux(sq, x2[i], q)
                m.d.sync += [x1[i].eq(hx.bit_select(s, xw)),
                             g1[i].eq(gp.data[i * gw:(i + 1) * gw].as_signed()),
                             x2[i].eq(x1[i]), xg2[i].eq(x1[i] * g1[i]), p3[i].eq(a * b)]
        sqw = self.sqmax.bit_length()
        absxg = [_wire(m, abs(v), f"absxg_{i}") for i, v in enumerate(xg2)]
        max_beat = _tree(m, absxg, _max, "max")
        sum_beat = _tree(m, [v[:sqw] for v in p3], lambda a, b: a + b, "sum")
        with m.If(adv & v3 & sq):
            m.d.sync += mx.eq(_max(mx, max_beat))
        with m.If(adv & v4 & sq):
            m.d.sync += acc.eq(acc + sum_beat)

        # Output: y = x * G * q rounded by sy, saturated.
        rs = RoundShift(m, sy, self.symax, yw, A, "rs", bounded=True)
        out = Cat(*(rs(p3[i], f"rounded_{i}") for i in range(B)))
        with m.If(adv):
            m.d.sync += [y.valid.eq(v4 & ~sq), y.payload.exp.eq(e), y.payload.elem.eq(out)]
        return m
