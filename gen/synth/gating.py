"""What a synthesised chip's netlist holds that the hand-off must name: the instance paths of
its macros, and its gated clocks (where clock-gating cells go)."""

from collections.abc import Mapping

from .netlist import is_blackbox
from .tools import SynthError

__all__ = ["instance_paths", "clock_gates"]


def instance_paths(netlist: Mapping, top: str, kinds: set[str]) -> dict[str, list[str]]:
    """Hierarchical instance names (dot-separated, as yosys flattens them) of every cell of a
    type in ``kinds``, from a yosys JSON netlist."""
    mods = netlist["modules"]
    out: dict[str, list[str]] = {k: [] for k in kinds}

    def walk(name: str, prefix: str, depth: int = 0):
        if depth > 100:
            raise SynthError(f"module hierarchy too deep at {name}")
        for cname, cell in sorted(mods[name].get("cells", {}).items()):
            t = cell["type"].lstrip("\\")
            path = prefix + cname.lstrip("\\")
            if t in kinds:
                out[t].append(path)
            elif t in mods and not is_blackbox(mods[t]):
                walk(t, path + ".", depth + 1)

    walk(top, "")
    return out


def clock_gates(netlist: Mapping, top: str) -> list[dict]:
    """The gated clocks of a chip (``<stage>_gclk = clk & <stage>_en_q``, the enable caught
    on the falling edge): the stages' in the top module, then the lanes' inside each lane
    array module (named ``<module>.<stage>``): the nets, the enable flop, and the instances
    each clocks."""
    mods = netlist["modules"]
    out = []
    for mname in [top] + sorted(n for n in mods if n != top):
        out += _module_clock_gates(mods[mname], "" if mname == top else f"{mname}.")
    return out


def _module_clock_gates(mod: Mapping, prefix: str) -> list[dict]:
    """A module's gated clocks; below the top, only those made there (with their enable flop),
    not a stage's clock passed in through a port."""
    nets = mod.get("netnames", {})
    out = []
    for name, net in sorted(nets.items()):
        if not name.endswith("_gclk"):
            continue
        stage = name.removesuffix("_gclk")
        if prefix and f"{stage}_en_q" not in nets:
            continue
        bits = net["bits"]
        clocked = sorted(c.lstrip("\\") for c, cell in mod.get("cells", {}).items()
                         if not cell["type"].startswith("$")  # the AND that makes it
                         and bits in cell.get("connections", {}).values())
        en = nets.get(f"{stage}_en_q", {}).get("bits")
        flop = next((cell for cell in mod.get("cells", {}).values()
                     if en and cell.get("connections", {}).get("Q") == en), None)
        edge = None
        if flop is not None and "CLK_POLARITY" in flop.get("parameters", {}):
            edge = "rising" if int(str(flop["parameters"]["CLK_POLARITY"]), 2) else "falling"
        out.append({"stage": prefix + stage, "gated_clock": prefix + name,
                    "enable_latch": f"{prefix}{stage}_en_q",
                    "enable_flop_edge": edge, "clocks_instances": clocked,
                    "icg": ("replace the negative-edge enable flop and the AND with the "
                            "PDK's integrated clock-gating cell (latch + AND, e.g. "
                            f"sky130_fd_sc_hd__dlclkp: CLK=clk, GATE=<D of {stage}_en_q>, "
                            f"GCLK={name})")})
    return out
