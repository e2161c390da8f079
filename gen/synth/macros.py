"""The ROM macros of an ASIC hand-off: every ``$readmemh`` ROM instance becomes a black-box
macro, one per ROM image (a mask ROM is made for its contents), with a behavioural model for
simulating the netlist and a table for the ROM compiler."""

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hdl.mask_rom import ROM_PRIMITIVE, ROM_PRIMITIVE_NAME

from ..errors import UserError
from .netlist import VerilogModule

__all__ = ["RomMacro", "find_roms", "check_macros", "write_macros", "macros_md",
           "PLACEHOLDER"]

#: Where config.json expects each macro's LEF and GDS, made by a ROM compiler (not here).
PLACEHOLDER = "rom_compiler_output"


# An instance of the $readmemh ROM primitive as Amaranth writes it:
#   hardwire_rom #(
#     .ABITS(32'd10), .DEPTH(32'd1024), .INIT("l0_code0.hex"), .WIDTH(32'd64)
#   ) rom (
_ROM_INSTANCE_RE = re.compile(
    r"\bhardwire_rom\s*#\((?P<params>(?:\s*\.\w+\s*\([^()]*\)\s*,?)*)\s*\)\s*"
    r"(?P<inst>\\\S+|[A-Za-z_][\w$]*)\s*\(")
_PARAM_RE = re.compile(r"\.(\w+)\s*\(([^()]*)\)")


@dataclass(frozen=True)
class RomMacro:
    """A ROM macro: one per ROM image (a mask ROM is made for its contents). Ports: ``clk``,
    ``en``, ``addr[abits-1:0]``, ``data[width-1:0]``; ``data`` shows word ``addr`` after a
    rising edge of ``clk`` with ``en`` high and holds while ``en`` is low."""
    name: str
    depth: int
    width: int
    abits: int
    image: str

    @property
    def bits(self) -> int:
        return self.depth * self.width

    def blackbox(self) -> str:
        return (f"(* blackbox *)\nmodule {self.name} (clk, en, addr, data);\n  input clk;\n"
                f"  input en;\n  input [{self.abits - 1}:0] addr;\n"
                f"  output [{self.width - 1}:0] data;\nendmodule\n")

    def model(self) -> str:
        """A behavioural model for simulation: the ROM primitive with the macro's image."""
        return (f"module {self.name} (clk, en, addr, data);\n  input clk;\n  input en;\n"
                f"  input [{self.abits - 1}:0] addr;\n  output [{self.width - 1}:0] data;\n"
                f"  {ROM_PRIMITIVE_NAME} #(.WIDTH({self.width}), .DEPTH({self.depth}), "
                f".ABITS({self.abits}), .INIT(\"{self.image}\")) rom (.clk(clk), .en(en), "
                f".addr(addr), .data(data));\nendmodule\n")


def _param(value: str):
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    m = re.fullmatch(r"(?:\d*'s?d)?(\d+)", value)
    if not m:
        raise UserError(f"cannot read ROM parameter value {value!r}")
    return int(m.group(1))


def find_roms(modules: Mapping[str, VerilogModule]) -> tuple[dict[str, str], dict[str, RomMacro]]:
    """Every instance of the ``$readmemh`` ROM primitive replaced by an instance of its macro:
    the modules' new texts (only those that change) and the macros by name."""
    macros: dict[str, RomMacro] = {}
    texts: dict[str, str] = {}
    for mod in modules.values():
        def repl(m: re.Match, mod: VerilogModule = mod) -> str:
            p = {k: _param(v) for k, v in _PARAM_RE.findall(m.group("params"))}
            try:
                image = str(p["INIT"])
                rom = RomMacro(name="hwrom_" + re.sub(r"\W", "_", image.removesuffix(".hex")),
                               depth=int(p["DEPTH"]), width=int(p["WIDTH"]),
                               abits=int(p["ABITS"]), image=image)
            except KeyError as e:
                raise UserError(f"ROM instance in {mod.name} lacks parameter {e}") from None
            if macros.setdefault(rom.name, rom) != rom:
                raise UserError(f"two different ROMs map to macro {rom.name}")
            return f"{rom.name} {m.group('inst')} ("
        new = _ROM_INSTANCE_RE.sub(repl, mod.text)
        if new != mod.text:
            texts[mod.name] = new
    return texts, dict(sorted(macros.items()))



def macros_md(top: str, rows: list[dict], gating: list[dict], stats: dict,
               config: dict) -> str:
    lines = [f"# ROM macros of {top}", "",
             "Each ROM is a synchronous mask ROM: `data` shows word `addr` after a rising "
             "edge of `clk` with `en` high, and holds while `en` is low. A ROM compiler of the "
             "target PDK makes one macro per image (the `.hex` file: one word per line, "
             "`ceil(width/4)` hex digits, word 0 first) and provides its LEF and GDS under "
             "`rom_compiler_output/` (named in config.json; not provided here).", "",
             "| macro | depth | width | bits | image | instances |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['depth']} | {r['width']} | {r['bits']} | "
                     f"{r['image']} | {', '.join(r['instances'])} |")
    lines += ["", f"{len(rows)} macros, {sum(r['bits'] for r in rows)} bits, "
              f"{sum(len(r['instances']) for r in rows)} instances.", ""]
    lines += ["## Clock gating", ""]
    if gating:
        lines.append("Each stage runs on a gated clock, and each lane array's lanes on one "
                     "gated again inside it: an enable caught on the falling edge of the "
                     "clock, ANDed with it. That is where integrated clock-gating cells go:")
        lines.append("")
        for g in gating:
            lines.append(f"- `{g['gated_clock']}` (enable `{g['enable_latch']}`) clocks "
                         f"{', '.join(g['clocks_instances']) or '-'}")
    else:
        lines.append("None: every register is on the clock port.")
    lines += ["", "## Netlist", "",
              f"{stats['cells']} cells ({stats['gates']} gates, {stats['flip_flops']} "
              f"flip-flops) and {stats['macro_instances']} macro instances; "
              f"clock `{config['CLOCK_PORT']}`, period {config['CLOCK_PERIOD']} ns (a target, "
              "not a measured figure).", ""]
    return "\n".join(lines)



def check_macros(design: Path, m: Mapping, macros: Mapping[str, "RomMacro"]) -> None:
    """The macros found must be every ROM of the manifest, with their images present."""
    rom_bits = int(m.get("rom_bits") or 0)
    if rom_bits and not macros:
        raise UserError(f"{design}: the ROMs are inside the Verilog (Memory init), so they "
                        "cannot become macros; generate the design with --rom-images files")
    missing = [img for img in m.get("rom_images", [])
               if img not in {r.image for r in macros.values()}]
    if missing:
        raise UserError(f"{design}: ROM image {missing[0]} has no ROM instance")
    imaged = rom_bits + int(m.get("table_rom_bits") or 0)  # the weights' and the tables'
    if rom_bits and sum(r.bits for r in macros.values()) != imaged:
        raise UserError(f"{design}: the ROM instances hold {sum(r.bits for r in macros.values())}"
                        f" bits, the manifest {imaged}; some ROMs are inline")
    for r in macros.values():
        if not (design / r.image).is_file():
            raise UserError(f"{design}: ROM image {r.image} is missing")


def write_macros(design: Path, d: Path, macros: Mapping[str, "RomMacro"],
                 inst: Mapping[str, list[str]]) -> list[dict]:
    """Into the hand-off ``d``: each macro's image, the behavioural models and the ROM
    primitive, ``macros.json``, the placeholder folder for the ROM compiler's output, and the
    design's golden vectors (so that ``hardwire sim`` runs on the netlist). Returns the rows
    of ``macros.json``."""
    rows = []
    for r in macros.values():
        shutil.copyfile(design / r.image, d / r.image)
        rows.append({"name": r.name, "depth": r.depth, "width": r.width,
                     "address_bits": r.abits, "bits": r.bits, "image": r.image,
                     "instances": inst[r.name]})
    for f in sorted(design.glob("*.npy")):  # golden vectors: 'hardwire sim OUT' runs
        shutil.copyfile(f, d / f.name)
    if macros:
        (d / "rom_models.v").write_text(
            "// Behavioural models of the ROM macros, for simulating the netlist.\n\n"
            + "".join(r.model() + "\n" for r in macros.values()))
        (d / f"{ROM_PRIMITIVE_NAME}.v").write_text(ROM_PRIMITIVE)
    (d / "macros.json").write_text(json.dumps(rows, indent=1) + "\n")
    if macros:
        (d / PLACEHOLDER).mkdir()
        (d / PLACEHOLDER / "README.md").write_text(
            "# To be provided by a ROM compiler\n\nThis directory is a placeholder. "
            "config.json names, for every ROM macro listed in ../MACROS.md, "
            "`<macro>.lef` and `<macro>.gds` here: the macro's abstract and layout, "
            "made by a ROM compiler of the target PDK from its `.hex` image. None of "
            "them exist yet.\n")
    return rows
