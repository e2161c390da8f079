"""Stream ports shared by every matrix-vector engine, and the output element format.

Input ``x``: ``cols`` signed ``abits``-bit elements; element ``j`` in bits
``[j*abits, (j+1)*abits)``. Output ``y``: ``rows`` signed elements of ``out_bits`` each, laid
out the same way. Both are ``lib.stream`` valid/ready streams.
"""

import numpy as np
from amaranth.hdl import Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.linear import LinearSpec, Requant, acc_widths, check_weights

from .requantizer import Requantizer

__all__ = ["matvec_ports", "out_bits", "unpack", "OutputFormatter", "MatVecEngine"]


def out_bits(weights, spec: LinearSpec, requant: Requant | None) -> int:
    """Width of every output element: the widest exact row accumulator, or the requantised
    width."""
    if requant is not None:
        return requant.out_bits
    return int(np.max(acc_widths(weights, spec.abits)))


def matvec_ports(weights, spec: LinearSpec, requant: Requant | None):
    w = check_weights(weights, spec)
    rows, cols = w.shape
    return w, {
        "x": In(stream.Signature(unsigned(cols * spec.abits))),
        "y": Out(stream.Signature(unsigned(rows * out_bits(w, spec, requant)))),
    }


def unpack(payload, count: int, bits: int):
    """Signed elements of a packed payload."""
    return [payload[j * bits:(j + 1) * bits].as_signed() for j in range(count)]


class OutputFormatter:
    """Turns a row's exact result into its output element (requantised if asked)."""

    def __init__(self, m, requant: Requant | None, bits: int):
        self._m, self._rq, self._bits = m, requant, bits
        self._n = 0

    def __call__(self, value, lo: int, hi: int):
        if self._rq is None:
            out = Signal(signed(self._bits), name=f"out{self._n}")
            self._m.d.comb += out.eq(value)
        else:
            rq = Requantizer(lo, hi, self._rq)
            self._m.submodules[f"requant{self._n}"] = rq
            self._m.d.comb += rq.i.eq(value)
            out = rq.o
        self._n += 1
        return out


class MatVecEngine(wiring.Component):
    """What the matrix-vector engines share: the checked ``weights``, the ports of
    :func:`matvec_ports`, :attr:`out_bits`, and a circuit a subclass builds once in its
    constructor (``self._module``, so that figures such as its adder count are known before
    conversion), which :meth:`elaborate` returns."""

    def __init__(self, weights, spec: LinearSpec, requant: Requant | None):
        self.spec, self.requant = spec, requant
        self.weights, ports = matvec_ports(weights, spec, requant)
        self.out_bits = out_bits(self.weights, spec, requant)
        super().__init__(ports)

    def elaborate(self, platform):
        return self._module
