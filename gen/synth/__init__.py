"""Synthesis with yosys, place-and-route with nextpnr, and the ASIC hand-off.

Layers, each usable alone (the bench feeds the lower two foreign Verilog):

- :mod:`.tools`: finding and running the tools, each in its own process group;
- :mod:`.yosys`: one yosys flow on Verilog files and its cell statistics
  (:func:`synth_verilog`);
- :mod:`.devices`: the FPGAs, their nextpnr arguments and capacities;
- :mod:`.pnr`: a top module in a shift-in/shift-out pin harness, placed and routed for Fmax
  (:func:`wrapper_verilog`, :func:`pnr_verilog`);
- :mod:`.netlist`: Verilog split into modules, the per-module plan, netlists joined;
- the flow of each design kind: :mod:`.matvec` (whole), :mod:`.modules` (a layer or chip per
  module), :mod:`.chip` (a chip's modules joined and placed on the smallest device that holds
  it), :mod:`.asic` (the ASIC hand-off, with :mod:`.macros` and :mod:`.gating`);
- :mod:`.tables`: the readable tables; :mod:`.board`: ``make synth``.

:func:`synth_design` is the one place that dispatches by design kind.
"""

from collections.abc import Sequence
from pathlib import Path

from ..design import manifest_kind
from ..errors import UserError
from .asic import asic_handoff
from .chip import place_module, synth_chip
from .devices import DEVICES, Device, fits
from .macros import RomMacro, find_roms
from .matvec import synth_matvec
from .modules import LAYER_MAX_READ_PORTS, manifest_estimate, synth_layer
from .netlist import LayerModule, VerilogModule, join_netlists, plan_layer, split_verilog, subtree
from .pnr import WrapPorts, critical_path, place_and_route, pnr_verilog, wrapper_verilog
from .tables import SynthReport
from .tools import TARGETS, SynthError, SynthTimeout, check_target, check_timeout
from .yosys import GENERIC_GATES, module_ports, synth_verilog, yosys_script

__all__ = [
    "TARGETS", "GENERIC_GATES", "SynthError", "SynthTimeout", "WrapPorts", "SynthReport",
    "yosys_script", "synth_verilog", "module_ports", "wrapper_verilog", "place_and_route",
    "critical_path", "place_module", "pnr_verilog", "synth_design", "synth_layer",
    "synth_chip", "asic_handoff",
    "manifest_estimate", "split_verilog", "plan_layer", "VerilogModule", "LayerModule",
    "LAYER_MAX_READ_PORTS", "Device", "DEVICES", "fits", "subtree", "join_netlists",
    "RomMacro", "find_roms",
]


def synth_design(design: str | Path, target: str = "ecp5", pnr: bool = True,
                 timeout: float = 1800.0, *, flatten: bool = False,
                 freq_mhz: float | None = None, jobs: int | None = None,
                 modules: Sequence[str] | None = None, dsp: bool = False) -> SynthReport:
    """Synthesise (and place-and-route) a design directory, by its kind: a ``hardwire matvec``
    design whole (:func:`gen.synth.matvec.synth_matvec`), a ``hardwire layer`` design per
    module (:func:`synth_layer`; ``jobs``, ``modules`` and ``dsp`` are its options,
    ``flatten`` and ``freq_mhz`` do not apply), a ``hardwire chip`` design per module and then
    placed whole where it fits (:func:`synth_chip`).

    Work files go to ``DESIGN/synth_<target>/``; a matvec report goes to
    ``DESIGN/report.json`` (keys sorted) and a copy to ``DESIGN/synth_<target>/report.json``.
    For ``generic`` there is no place-and-route and ``fmax_mhz`` is null with the reason in
    ``fmax_note``; so it is when place-and-route fails or times out (``pnr_status``), since
    the statistics stand on their own.
    """
    # Absolute: the tools run with other working directories.
    design = Path(design).resolve()
    check_target(target)
    check_timeout(timeout)
    kind = manifest_kind(design)
    if kind in ("layer", "chip"):
        if flatten:
            raise UserError("a layer design is synthesised per module; it cannot be flattened")
        if kind == "chip":  # placed and routed whole, where it fits
            return synth_chip(design, target, pnr=pnr, timeout=timeout, jobs=jobs,
                              modules=modules, dsp=dsp, freq_mhz=freq_mhz)
        return synth_layer(design, target, timeout=timeout, pnr=pnr, jobs=jobs,
                           modules=modules, dsp=dsp)
    if modules is not None or dsp:
        raise UserError("choosing modules and DSP mapping apply to layer designs only")
    return synth_matvec(design, target, pnr, timeout, flatten=flatten, freq_mhz=freq_mhz)
