"""Bit-exact integer reference models. numpy only: this package never imports Amaranth.

Everything that fixes a number in hardware -- a width, a rounding rule, a saturation bound, the
contents of a ROM -- is defined here once, and ``hdl``/``gen`` read it from here.
"""
