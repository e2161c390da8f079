"""Small pieces every unit builds with: exact widths, named comb wires, balanced reduction
trees, the leading-one detector, and constants packed into ROM words.

The trees pair their values the same way everywhere: at each level value ``2i`` with value
``2i + 1``, an odd last value moving up unchanged. The emitted Verilog depends on that order.
"""

import itertools

from amaranth.hdl import Const, Module, Mux, Signal, signed

from golden.numerics import signed_range

from .vector import element

__all__ = ["signed_width", "wire", "counter", "index_mux", "indexed_constant", "mux_chain",
           "balanced_tree", "wired_tree", "adder_tree", "selected_sum", "bit_length",
           "priority_bit_length", "pack", "interpolation_words", "split_product",
           "PRODUCT_PIECE"]


def signed_width(lo, hi) -> int:
    """Two's complement width holding ``[lo, hi]``, a Python ``int`` (1 for ``{0}``).

    Exact for integers of any size (products in the norm and SwiGLU units reach ``2**62``
    and beyond). :func:`golden.numerics.signed_width` is elementwise on ``int64`` arrays and
    one bit too wide from ``2**62`` on, so the hardware does not use it."""
    def need(v: int) -> int:
        return (v if v >= 0 else -v - 1).bit_length() + 1

    return max(need(int(lo)), need(int(hi)), 1)


def wire(m: Module, expr, name: str) -> Signal:
    """``expr`` as a named comb signal: an expression used more than once would otherwise be
    written out (and simulated) once per use."""
    sig = Signal(expr.shape(), name=name)
    m.d.comb += sig.eq(expr)
    return sig


def counter(count: int, name: str) -> Signal:
    """A counter over ``0..count-1`` (at least one bit wide)."""
    return Signal(range(max(count, 2)), name=name)


def index_mux(values, index):
    """``values[index]`` as a chain of multiplexers (``values[0]`` innermost)."""
    out = values[0]
    for h in range(1, len(values)):
        out = Mux(index == h, values[h], out)
    return out


def mux_chain(sel, values):
    """``values[sel]`` (constants or values) as a multiplexer chain, ``values[-1]``
    innermost: what any ``sel`` past the end gives."""
    expr = values[-1]
    for k in range(len(values) - 2, -1, -1):
        expr = Mux(sel == k, values[k], expr)
    return expr


def indexed_constant(m, sel, values, name: str) -> Signal:
    """``values[sel]`` of constants as a named signal just wide enough (:func:`mux_chain`)."""
    values = [int(v) for v in values]
    sig = Signal(signed(signed_width(min(values + [0]), max(values + [0]))), name=name)
    m.d.comb += sig.eq(mux_chain(sel, values))
    return sig


def balanced_tree(values, op, node=None):
    """Reduce ``values`` with ``op`` as a balanced tree (Python's ``sum`` would build a
    chain). ``node(value, level, index)``, if given, turns each combined value into what the
    next level combines (a named signal, say)."""
    values, level = list(values), 0
    while len(values) > 1:
        nxt = []
        for i in range(0, len(values) - 1, 2):
            value = op(values[i], values[i + 1])
            nxt.append(value if node is None else node(value, level, i // 2))
        if len(values) % 2:
            nxt.append(values[-1])
        values, level = nxt, level + 1
    return values[0]


def wired_tree(m: Module, values, op, name: str):
    """:func:`balanced_tree` with every node a comb signal ``{name}_{level}_{index}``."""
    return balanced_tree(values, op, lambda v, level, i: wire(m, v, f"{name}_{level}_{i}"))


def adder_tree(m: Module, terms, lo: int, hi: int, *, cut=None):
    """Balanced sum of ``terms`` (each in ``[lo, hi]``). Every adder drives its own exactly
    sized, kept signal ``sum<n>``: otherwise yosys' ``alumacc`` merges the tree into one
    ``$macc`` and maps it to LUT compressors instead of carry chains (measured: 4x the
    LUT4-equivalents). ``cut = (level, register)``: after ``level`` levels of adders every
    partial sum goes through ``register`` (a list of signals to their pipeline registers),
    the same pairing on either side."""
    count = itertools.count()

    def add(a, b):
        (x, xlo, xhi), (y, ylo, yhi) = a, b
        s = Signal(signed(signed_width(xlo + ylo, xhi + yhi)), name=f"sum{next(count)}",
                   attrs={"keep": 1})
        m.d.comb += s.eq(x + y)
        return s, xlo + ylo, xhi + yhi

    values = [(t, lo, hi) for t in terms]
    if cut is not None:
        level, register = cut
        for _ in range(level):
            if len(values) > 1:
                values = [add(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)
                          ] + values[len(values) - len(values) % 2:]
        regs = register([v for v, _, _ in values])
        values = [(r, a, b) for r, (_, a, b) in zip(regs, values, strict=True)]
    return balanced_tree(values, add)[0]


#: Bits of an unsigned low piece of a :func:`split_product` operand: with its sign bit (or a
#: zero above it) a piece is an 18-bit signed operand, the ECP5 MULT18X18D's.
PRODUCT_PIECE = 17


def _pieces(v) -> list:
    """``v`` as ``(piece, shift)`` pairs summing to it: unsigned :data:`PRODUCT_PIECE`-bit
    low pieces, and a top piece of at most 18 bits that keeps ``v``'s signedness."""
    signed_v, rest = v.shape().signed, len(v)
    top = PRODUCT_PIECE + signed_v
    out, k = [], 0
    while rest - k > top:
        out.append((v[k:k + PRODUCT_PIECE], k))
        k += PRODUCT_PIECE
    hi = v[k:]
    out.append((hi.as_signed() if signed_v else hi, k))
    return out


def split_product(m: Module, a, b, register, name: str):
    """``a * b`` (exact, either signed) as partial products of at most 18 by 18 signed bits
    that ``register`` (a list of signals to their pipeline registers) puts through a
    register each, as a DSP block's output register does; returns the sum of the
    registered partials, shifted into place (an expression, a stage after ``a`` and ``b``).
    A product that fits one multiplier is one partial. Call it outside any ``m.If``: the
    partials are comb signals, and ``register`` puts its own condition on their registers."""
    parts, shifts = [], []
    for x, sx in _pieces(a):
        for y, sy in _pieces(b):
            p = Signal((x * y).shape(), name=f"{name}_pp{len(parts)}")
            m.d.comb += p.eq(x * y)
            parts.append(p)
            shifts.append(sx + sy)
    regs = register(parts)
    return balanced_tree([r.shift_left(k) for r, k in zip(regs, shifts, strict=True)],
                         lambda u, v: u + v)


def selected_sum(m: Module, select, chunk, count: int, abits: int, *, cut=None):
    """:func:`adder_tree` of the ``count`` signed ``abits``-bit activations of ``chunk``
    whose bit of ``select`` (a bit plane of weight codes) is set (``cut``: the tree's)."""
    lo, hi = signed_range(abits)
    xs = [element(chunk, k, abits) for k in range(count)]
    gated = [x & select[k].replicate(abits).as_signed() for k, x in enumerate(xs)]
    return adder_tree(m, gated, min(lo, 0), max(hi, 0), cut=cut)


def bit_length(m: Module, v, name: str) -> Signal:
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


def priority_bit_length(m: Module, v, name: str) -> Signal:
    """:func:`bit_length` as a chain of multiplexers from bit 0 up (a priority encoder), as
    the attention unit has it: the same value, other Verilog."""
    bl = Signal(range(len(v) + 1), name=name)
    out = Const(0, len(bl))
    for b in range(len(v)):
        out = Mux(v[b], b + 1, out)
    m.d.comb += bl.eq(out)
    return bl


def pack(values, bits: int) -> int:
    """Python integers as one word, element ``i`` at bits ``[i*bits, (i+1)*bits)`` (two's
    complement)."""
    word, mask = 0, (1 << bits) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


def interpolation_words(table, base_bits: int, diff_bits: int) -> list[int]:
    """ROM words of a linearly interpolated table: ``T[i]`` (unsigned, ``base_bits``) and
    ``T[i+1] - T[i]`` (two's complement, ``diff_bits``) above it, one word per segment."""
    t = [int(v) for v in table]
    mask = (1 << diff_bits) - 1
    return [t[i] | ((t[i + 1] - t[i]) & mask) << base_bits for i in range(len(t) - 1)]
