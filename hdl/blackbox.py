"""Emit a component as its own Verilog module and instantiate it by name.

A layer's units convert separately (in parallel, and once for identical units: both residual
adds, and across layers every unit whose parameters match); the parent netlist holds only an
:class:`~amaranth.hdl.Instance`. Port names are Amaranth's for a converted component
(``x__payload``, ``x__valid``, ...) plus ``clk`` and ``rst``.
"""

import hashlib

import numpy as np
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["Blackbox", "module_key"]


def module_key(kind: str, *args, **kwargs) -> str:
    """A deterministic module name from a unit's kind and every constructor argument."""
    h = hashlib.sha256(kind.encode())
    for a in list(args) + sorted(kwargs.items()):
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str):
            h.update(a[0].encode())
            a = a[1]
        if isinstance(a, np.ndarray):
            h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        else:
            h.update(repr(a).encode())
        h.update(b"|")
    return f"hw_{kind}_{h.hexdigest()[:12]}"


class Blackbox(wiring.Component):
    """Has ``inner``'s signature; elaborates to an instance of module ``name``, clocked by
    ``clock`` (a gated clock) or else the ``sync`` domain's, and reset by ``reset`` or else
    the ``sync`` domain's."""

    def __init__(self, inner: wiring.Component, name: str, clock=None, reset=None):
        self.inner, self.module_name, self.clock, self.reset = inner, name, clock, reset
        super().__init__(inner.signature)

    def elaborate(self, platform):
        m = Module()
        clk = ClockSignal("sync") if self.clock is None else self.clock
        rst = ResetSignal("sync") if self.reset is None else self.reset
        ports = {"i_clk": clk, "i_rst": rst}
        for path, member, value in self.signature.flatten(self):
            name = "__".join(str(p) for p in path)
            ports[("i_" if member.flow == In else "o_") + name] = Value.cast(value)
        m.submodules.inst = Instance(self.module_name, **ports)
        return m
