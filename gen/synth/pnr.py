"""Place and route with nextpnr: a top module in a shift-in/shift-out harness with a handful
of pins (so that any module fits a package), synthesised and placed for its Fmax."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..verilog import to_verilog
from .devices import PLACERS
from .tools import SynthError, have, pkg_version, rel, run, yowasp_command
from .yosys import synth_verilog

__all__ = ["WrapPorts", "wrapper_verilog", "harness_ports", "place_and_route",
           "critical_path", "synth_wrapped", "pnr_verilog"]


@dataclass(frozen=True)
class WrapPorts:
    """How the place-and-route wrapper connects to a top module.

    ``inputs`` (name, width) are fed, concatenated in order, from a shift-in register;
    ``outputs`` are loaded, concatenated, into a shift-out register; ``controls_in`` are 1-bit
    inputs driven from one registered pin each, ``controls_out`` 1-bit outputs registered to
    one pin each. ``clock`` is the DUT's clock input (None if purely combinational), ``reset``
    its active-high reset, driven from a registered pin.
    """
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]
    controls_in: tuple[str, ...] = ()
    controls_out: tuple[str, ...] = ()
    clock: str | None = "clk"
    reset: str | None = None

    @classmethod
    def from_manifest(cls, m: Mapping) -> WrapPorts:
        """The wrapping of a ``hardwire matvec`` design: data through the shift registers,
        valid/ready through their own registered pins."""
        i, o = m["in"], m["out"]
        return cls(inputs=((i["data"], int(i["count"]) * int(i["bits"])),),
                   outputs=((o["data"], int(o["count"]) * int(o["bits"])),),
                   controls_in=(i["valid"], o["ready"]), controls_out=(i["ready"], o["valid"]),
                   clock=m.get("clock"), reset=m.get("reset"))

    @classmethod
    def from_module_ports(cls, ports: Mapping[str, tuple[str, int]], *,
                          clock: str | None = "clk", reset: str | None = None,
                          controls_in: Sequence[str] = (),
                          controls_out: Sequence[str] = ()) -> WrapPorts:
        """From :func:`module_ports`: every other input is data, every other output too."""
        skip = {clock, reset, *controls_in, *controls_out}
        return cls(
            inputs=tuple((n, w) for n, (d, w) in ports.items() if d == "input" and n not in skip),
            outputs=tuple((n, w) for n, (d, w) in ports.items()
                          if d == "output" and n not in skip),
            controls_in=tuple(controls_in), controls_out=tuple(controls_out),
            clock=clock, reset=reset)


def _wrapper(top: str, ports: WrapPorts):
    """The harness as an Amaranth elaboratable plus its port list.

    Every DUT port sits directly on a wrapper register, so the critical path is the DUT's
    own (or, for a combinational DUT, the register-to-register path through it). The DUT's
    inputs change only by shifting, which keeps them live, and the output register loads all
    DUT outputs, so no logic is unobservable.
    """
    from amaranth.hdl import (
        Cat,
        ClockDomain,
        ClockSignal,
        Elaboratable,
        Instance,
        Module,
        ResetSignal,
        Signal,
    )

    class Wrapper(Elaboratable):
        def __init__(self):
            # The harness's only clock domain; without a DUT reset there is no reset pin.
            self.cd = ClockDomain("sync", reset_less=not ports.reset)
            self.sin = Signal(name="sin")
            self.load = Signal(name="load")
            self.sout = Signal(name="sout")
            self.ctl_in = Signal(len(ports.controls_in), name="ctl_in")
            self.ctl_out = Signal(len(ports.controls_out), name="ctl_out")

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = self.cd
            in_w = sum(w for _, w in ports.inputs)
            out_w = sum(w for _, w in ports.outputs)
            # reset_less: only the DUT's reset matters, and a reset on the harness would add
            # a high-fanout net that is no part of the design.
            shift_in = Signal(max(in_w, 1), reset_less=True)
            shift_out = Signal(max(out_w, 1), reset_less=True)
            load_r = Signal(reset_less=True)
            ctl_in_r = Signal(len(self.ctl_in), reset_less=True)
            ctl_out_r = Signal(len(self.ctl_out), reset_less=True)
            dut_out = [Signal(w, name=f"dut_{n}") for n, w in ports.outputs]
            dut_ctl = [Signal(name=f"dut_{n}") for n in ports.controls_out]

            args = []
            if ports.clock:
                args.append(("i", ports.clock, ClockSignal()))
            if ports.reset:
                rst_r = Signal(reset_less=True)
                m.d.sync += rst_r.eq(ResetSignal())
                args.append(("i", ports.reset, rst_r))
            lo = 0
            for name, w in ports.inputs:
                args.append(("i", name, shift_in[lo:lo + w]))
                lo += w
            args += [("i", n, ctl_in_r[k]) for k, n in enumerate(ports.controls_in)]
            args += [("o", n, s) for (n, _), s in zip(ports.outputs, dut_out, strict=True)]
            args += [("o", n, s) for n, s in zip(ports.controls_out, dut_ctl, strict=True)]
            m.submodules.dut = Instance(top, *args)

            m.d.sync += [shift_in.eq(Cat(self.sin, shift_in[:-1])), load_r.eq(self.load),
                         ctl_in_r.eq(self.ctl_in), ctl_out_r.eq(Cat(*dut_ctl))]
            with m.If(load_r):
                m.d.sync += shift_out.eq(Cat(*dut_out))
            with m.Else():
                m.d.sync += shift_out.eq(shift_out >> 1)
            m.d.comb += [self.sout.eq(shift_out[0]), self.ctl_out.eq(ctl_out_r)]
            return m

    w = Wrapper()
    pins = [w.cd.clk] + ([w.cd.rst] if ports.reset else []) + [w.sin, w.load, w.sout]
    pins += [s for s in (w.ctl_in, w.ctl_out) if len(s)]
    return w, pins


def wrapper_verilog(top: str, ports: WrapPorts, name: str | None = None) -> tuple[str, str]:
    """Verilog of the place-and-route harness around ``top``: returns (module name, text).

    Pins: ``clk``, ``rst`` (if the DUT has a reset), ``sin``, ``load``, ``sout``,
    ``ctl_in``/``ctl_out`` (one bit per control port).
    """
    name = name or f"{top}_pnr_wrap"
    w, pins = _wrapper(top, ports)
    text = to_verilog(w, name, ports=pins)
    return name, text


_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']*)':\s*([0-9.]+)\s*MHz")
_PATH_HEAD = "Critical path report for clock"
_SPLIT_RE = re.compile(r"([0-9.]+) ns logic, ([0-9.]+) ns routing")
_END_RE = re.compile(r"\b(Source|Sink) (\S+)")


def critical_path(text: str) -> dict | None:
    """The last critical-path report of a clock in a nextpnr log (the one after routing):
    the cell it starts at, the cell it ends at, its logic and routing delay (ns)."""
    at = text.rfind(_PATH_HEAD)
    if at < 0:
        return None
    ends = []
    for line in text[at:].splitlines()[1:]:
        if not line.startswith("Info:"):
            break
        m = _END_RE.search(line)
        if m:
            ends.append(m.group(2))
        s = _SPLIT_RE.search(line)
        if s:
            if not ends:
                return None
            return {"from": ends[0], "to": ends[-1], "logic_ns": float(s.group(1)),
                    "routing_ns": float(s.group(2))}
    return None


def place_and_route(netlist: str | Path, target: str, workdir: str | Path, *,
                    timeout: float = 1800.0, freq_mhz: float | None = None,
                    seed: int = 1, device: tuple[Sequence[str], str] | None = None) -> dict:
    """Place and route a synthesised JSON netlist with nextpnr and return its Fmax.

    The netlist must have few enough pins for the device (see :func:`pnr_verilog`).
    ``device``: nextpnr's device arguments and a label, instead of the target's default
    (ECP5 LFE5U-25F, iCE40 HX8K).

    Returns
    -------
    dict with ``fmax_mhz`` (slowest clock after routing, None if none was reported),
    ``clocks`` (``{name: MHz}``), ``critical_path`` (:func:`critical_path`, or None),
    ``utilisation`` (``{bel type: {"used", "available"}}``
    from nextpnr's report), ``device``, ``args``, ``nextpnr`` (version), ``seconds``,
    ``log``.
    """
    if target not in PLACERS:
        raise UserError(f"no place-and-route for target {target!r} (only "
                        f"{', '.join(PLACERS)})")
    p = PLACERS[target]
    if not have(p.module):
        raise SynthError(f"{p.tool} not found: install yowasp-{p.tool} "
                         "(pip install 'hardwire[synth]')")
    workdir = Path(workdir)
    log, report = workdir / "nextpnr.log", workdir / "nextpnr_report.json"
    report.unlink(missing_ok=True)
    # Paths relative to workdir, the tool's cwd: YoWASP shadows the real /tmp.
    dev_args, label = (p.device.args, p.device.label) if device is None else device
    args = [*dev_args, "--json", rel(netlist, workdir), "--report", report.name,
            p.unconstrained, "--timing-allow-fail", "--freq", f"{freq_mhz or p.freq_mhz:g}",
            "--seed", str(seed)]
    cmd = yowasp_command(p.module, p.func, *args)
    seconds = run(cmd, cwd=workdir, log=log, timeout=timeout, what=p.tool)
    text = log.read_text(errors="replace")
    clocks = {}
    for clk, mhz in _FMAX_RE.findall(text):
        clocks[clk] = float(mhz)  # later lines (after routing) override earlier estimates
    util = {}
    try:
        rep = json.loads(report.read_text())
        util = {k: {"used": int(v["used"]), "available": int(v["available"])}
                for k, v in sorted(rep.get("utilization", {}).items()) if int(v["used"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # utilisation is a bonus; Fmax comes from the log
    return {"fmax_mhz": min(clocks.values()) if clocks else None,
            "clocks": dict(sorted(clocks.items())), "critical_path": critical_path(text),
            "utilisation": util,
            "device": label, "args": args,
            "nextpnr": f"yowasp-{p.tool} {pkg_version('yowasp-' + p.tool)}",
            "seconds": round(seconds, 3), "log": str(log)}


def synth_wrapped(sources, top: str, ports: WrapPorts, target: str, workdir: Path, *,
                   cwd: Path | None, timeout: float, flatten: bool,
                   dsp: bool = False) -> tuple[dict, Path]:
    """Write the harness around ``top`` and synthesise both into a JSON netlist."""
    workdir.mkdir(parents=True, exist_ok=True)
    name, text = wrapper_verilog(top, ports)
    wrap_v = workdir / f"{name}.v"
    wrap_v.write_text(text)
    cwd = Path(cwd) if cwd is not None else workdir
    srcs = [Path(s) if Path(s).is_absolute() else cwd / s for s in sources]
    netlist = workdir / f"{name}.json"
    syn = synth_verilog([*srcs, wrap_v], name, target, workdir, cwd=cwd, timeout=timeout,
                        flatten=flatten, stat_top=None if flatten else top, netlist=netlist,
                        tag="wrap", dsp=dsp)
    return syn, netlist


def pnr_verilog(sources: Sequence[str | Path], top: str, ports: WrapPorts, target: str,
                workdir: str | Path, *, cwd: str | Path | None = None,
                timeout: float = 1800.0, flatten: bool = False,
                freq_mhz: float | None = None, dsp: bool = False) -> dict:
    """Wrap ``top`` (see :func:`wrapper_verilog`), synthesise and place-and-route it.

    Returns ``{"synth": ..., "pnr": ...}``: the :func:`synth_verilog` result of the wrapped
    design and the :func:`place_and_route` result. Unless ``flatten``, ``synth["stats"]``
    counts the DUT alone (its hierarchy is kept, so the harness does not change it) and
    ``synth["total"]`` includes the harness; with ``flatten`` the two cannot be told apart
    and ``synth["stats"]`` counts both. ``dsp`` maps multipliers to DSP blocks.
    """
    if target not in PLACERS:
        raise UserError(f"no place-and-route for target {target!r} (only "
                        f"{', '.join(PLACERS)})")
    workdir = Path(workdir)
    syn, netlist = synth_wrapped(sources, top, ports, target, workdir,
                                  cwd=None if cwd is None else Path(cwd), timeout=timeout,
                                  flatten=flatten, dsp=dsp)
    return {"synth": syn, "pnr": place_and_route(netlist, target, workdir, timeout=timeout,
                                                 freq_mhz=freq_mhz)}




def harness_ports(netlist: Mapping, module: str) -> WrapPorts:
    """The harness of a module from its ports in a JSON netlist: the streams' valid/ready on
    registered pins, every other port through the shift registers."""
    try:
        ports = {n: (p["direction"], len(p["bits"]))
                 for n, p in netlist["modules"][module]["ports"].items()}
    except (KeyError, TypeError):
        raise SynthError(f"the netlist has no ports of {module}") from None
    ctl = [n for n, (_, w) in ports.items()
           if w == 1 and (n.endswith("__valid") or n.endswith("__ready"))]
    return WrapPorts.from_module_ports(
        ports, clock="clk" if "clk" in ports else None, reset="rst" if "rst" in ports else None,
        controls_in=[n for n in ctl if ports[n][0] == "input"],
        controls_out=[n for n in ctl if ports[n][0] == "output"])
