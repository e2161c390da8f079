"""Vectors between the layer's units travel as *beats* on ``lib.stream`` ports.

A vector of ``n`` elements is ``n / beat`` consecutive payloads (``beat`` divides ``n``).
In a beat, element ``i`` sits in bits ``[i*bits, (i+1)*bits)``, two's complement, elements
in vector order. A block-floating-point vector (matvec activations: mantissas ``a`` and one
exponent ``e``, value ``a * 2**e``, :func:`golden.integer.bfp`) carries its exponent as a
signed ``exp_bits`` field directly above the mantissas, the same in every beat of the vector.
``sim.streams.beats`` packs the same layout on the Python side.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["beat_layout", "beat_count", "beat_element", "beat_exponent", "element"]


def beat_layout(beat: int, bits: int, exp_bits: int | None = None) -> data.StructLayout:
    fields = {"elem": unsigned(beat * bits)}
    if exp_bits is not None:
        fields["exp"] = signed(exp_bits)
    return data.StructLayout(fields)


def beat_count(n: int, beat: int) -> int:
    """Beats of a vector of ``n`` elements: ``n / beat``, which must be whole."""
    if beat < 1 or n < 1 or n % beat:
        raise ValueError(f"a vector of {n} is not a whole number of {beat}-element beats")
    return n // beat


def element(word, i: int, bits: int):
    """Element ``i`` of a packed word (``bits`` each, element 0 lowest) as a signed value."""
    return word[i * bits:(i + 1) * bits].as_signed()


def beat_element(payload, i: int, bits: int):
    """Element ``i`` of a beat as a signed value."""
    return payload.elem[i * bits:(i + 1) * bits].as_signed()


def beat_exponent(payload):
    return payload.exp

