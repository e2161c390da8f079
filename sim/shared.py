"""One compiled module per distinct circuit: a design's Verilog with its repeated modules
merged, for Verilator.

A chip's decoder layers are the same circuit apart from their mask-ROM images, but each is
its own module (``l0_layer``, ``l1_layer``, ...; lanes and units under names of their own),
and Verilator compiles each into C++ of its own: a 30-layer model compiles 30 copies of
the layer. :func:`share` merges every set of modules whose text is the same apart from
their own names and the ``INIT`` image of their ROM primitives, until no two are alike, so
that each circuit is one module, compiled once and instantiated where the copies were.

The merged ROM wrappers can no longer name their images, so the ROM primitive of the
shared Verilog (:func:`rom_primitive`) finds its image at run time from its own instance
path (``%m``): :func:`share` returns every ROM instance's path with the image it loads, and
:func:`link_images` makes a directory of links from the paths to the images. The Verilog
the generator wrote, which Icarus and yosys read, is unchanged.
"""

import os
import re
from collections import defaultdict
from pathlib import Path

from .errors import SimError

__all__ = ["share", "rom_primitive", "link_images", "ROM_PRIMITIVE_NAME"]

#: The ROM primitive's module name (:data:`hdl.mask_rom.ROM_PRIMITIVE_NAME`; sim does not
#: import hdl).
ROM_PRIMITIVE_NAME = "hardwire_rom"

_ID = r"(?:\\\S+|[A-Za-z_][\w$]*)"
_MODULE = re.compile(r"^module (" + _ID + r")\s*#?\(.*?^endmodule\n", re.S | re.M)
# An instance: its module at the start of a line, then a parameter block, then its name.
_INSTANCE = re.compile(r"^  (" + _ID + r")(?:\s+#\(\n((?:    .*\n)*?)  \))?\s+(" + _ID
                       + r")\s*\(\n", re.M)
_INIT = re.compile(r'^    \.INIT\("([^"]*)"\),?\n', re.M)
_AUTO = re.compile(r"(\\\$auto\$verilog_backend\.cc:)\d+:dump_module\$\d+")


def _name(ident: str) -> str:
    """An identifier as ``%m`` prints it: an escaped one without its backslash."""
    return ident[1:] if ident.startswith("\\") else ident


def _modules(text: str) -> dict[str, str]:
    """Module name -> its text (``module`` to ``endmodule``), in order. Only comments may
    stand between modules."""
    def check(gap: str) -> None:
        if re.sub(r"//[^\n]*|/\*.*?\*/", "", gap, flags=re.S).strip():
            raise SimError(f"unexpected Verilog outside a module: {gap.strip()[:60]!r}")

    mods, pos = {}, 0
    for mo in _MODULE.finditer(text):
        check(text[pos:mo.start()])
        mods[mo.group(1)] = mo.group(0)
        pos = mo.end()
    check(text[pos:])
    return mods


def _instances(body: str) -> list[tuple[str, str, str | None]]:
    """``(module, instance, INIT image or None)`` of every instance in a module's text."""
    out = []
    for mo in _INSTANCE.finditer(body):
        init = _INIT.search(mo.group(2) or "")
        out.append((mo.group(1), mo.group(3), init.group(1) if init else None))
    return out


def _rom_paths(mods: dict, top: str, canon: dict, blocks: set) -> dict[str, str]:
    """Instance path (as ``%m`` prints it, from ``top``) -> image, of every ROM primitive
    instance under ``top``. Inside a hierarchical block (``blocks``, by the merged name
    ``canon`` gives each module), ``%m`` names the block's module after its instance."""
    paths, stack = {}, [(top, _name(top))]
    while stack:
        mod, path = stack.pop()
        for sub, inst, init in _instances(mods[mod]):
            here = f"{path}.{_name(inst)}"
            if sub == ROM_PRIMITIVE_NAME:
                if init is None:
                    raise SimError(f"ROM instance {here} names no INIT image")
                paths[here] = init
            elif sub in mods:
                if canon[sub] in blocks:
                    here += f".{canon[sub]}"
                stack.append((sub, here))
    return paths


def _hier_blocks(mods: dict, top: str, least: int) -> set[str]:
    """The modules of the merged design ``mods`` that Verilator compiles as hierarchical
    blocks, once for all their instances: from the top down, the first modules on each
    path that have several instances and at least ``least`` characters of Verilog below
    them (each instance counted), not escaped names. Verilator inlines every other module,
    and its code is then repeated for each instance."""
    kids = {n: [sub for sub, _, _ in _instances(b) if sub in mods] for n, b in mods.items()}
    size: dict[str, int] = {}

    def below(n: str) -> int:
        if n not in size:
            size[n] = len(mods[n]) + sum(below(k) for k in kids[n])
        return size[n]

    count: dict[str, int] = defaultdict(int)
    for n in mods:
        for k in kids[n]:
            count[k] += 1
    blocks, todo, seen = set(), [top], {top}
    while todo:
        n = todo.pop()
        for k in kids[n]:
            if k in seen:
                continue
            seen.add(k)
            if count[k] > 1 and below(k) >= least and not k.startswith("\\"):
                blocks.add(k)
            else:
                todo.append(k)
    return blocks


def _key(name: str, body: str) -> str:
    """A module's text without its own name, its ROM images and the numbers of yosys' own
    local names (the Verilog backend numbers a dummy register per module across the file):
    the same for two modules that are the same circuit."""
    return _AUTO.sub(r"\1", _INIT.sub("", body[len("module ") + len(name):]))


def _rename_instances(body: str, renames: dict) -> str:
    return _INSTANCE.sub(lambda mo: mo.group(0).replace(mo.group(1), renames[mo.group(1)], 1)
                         if mo.group(1) in renames else mo.group(0), body)


#: Verilog below a module, in characters, from which its repeated instances are compiled
#: once as a hierarchical block (:func:`_hier_blocks`): a decoder layer, not a lane.
HIER_LEAST = 200_000


def share(text: str, top: str, least: int = HIER_LEAST) -> tuple[str, dict[str, str], dict]:
    """``text`` (a design's Verilog; its ROM primitive is dropped) with alike modules merged,
    until no two are alike, and without ROM images; the merged modules of several large
    instances are marked as Verilator's hierarchical blocks (:func:`_hier_blocks`, from
    ``least`` characters). Returns the Verilog, each ROM instance's path with its image
    (:func:`_rom_paths`), and ``{"modules": before, "shared": after, "blocks": [...]}``. The
    first module of each alike set (in the text's order) stands for the others."""
    mods = _modules(text)
    mods.pop(ROM_PRIMITIVE_NAME, None)  # replaced by :func:`rom_primitive`
    if top not in mods:
        raise SimError(f"the top module {top} is not in the Verilog")
    alive, canon = dict(mods), {n: n for n in mods}
    while True:
        groups = defaultdict(list)
        for name, body in alive.items():
            groups[_key(name, body)].append(name)
        renames = {n: g[0] for g in groups.values() for n in g[1:]}
        if not renames:
            break
        alive = {n: _rename_instances(b, renames) for n, b in alive.items() if n not in renames}
        canon = {n: renames.get(c, c) for n, c in canon.items()}
    blocks = _hier_blocks(alive, top, least)
    roms = _rom_paths(mods, top, canon, blocks)
    # Amaranth sorts an instance's parameters, so INIT is never the last (WIDTH follows);
    # a comma left before the block's end would still be dropped.
    out = re.sub(r",(\n  \) )", r"\1", "".join(
        _mark(_INIT.sub("", b)) if n in blocks else _INIT.sub("", b)
        for n, b in alive.items()))
    return out, roms, {"modules": len(mods), "shared": len(alive), "blocks": sorted(blocks)}


def _mark(body: str) -> str:
    """A module's text with Verilator's ``hier_block`` comment after its header."""
    head = body.index(";\n") + 2
    return body[:head] + "  /*verilator hier_block*/\n" + body[head:]


def rom_primitive(image_dir: Path) -> str:
    """The ROM primitive of shared Verilog: :data:`hdl.mask_rom.ROM_PRIMITIVE`'s ports and
    timing, its image ``image_dir/<instance path>.hex`` (:func:`link_images`). Verilator
    prints the path from ``TOP.``, the model's own name, which is dropped."""
    d = str(Path(image_dir).resolve())
    if '"' in d or "\\" in d:
        raise SimError(f"a ROM image directory cannot contain quotes or backslashes: {d}")
    return f"""\
// Synchronous ROM whose $readmemh image is named by its instance path (sim/shared.py).
module {ROM_PRIMITIVE_NAME} #(
    parameter WIDTH = 8,
    parameter DEPTH = 16,
    parameter ABITS = 4
) (
    input  wire             clk,
    input  wire             en,
    input  wire [ABITS-1:0] addr,
    output reg  [WIDTH-1:0] data
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    string path, image;  // not in a named block: %m would name it too
    integer fd;
    initial begin
        path = $sformatf("%m");
        if (path.len() > 4 && path.substr(0, 3) == "TOP.")
            path = path.substr(4, path.len() - 1);
        image = {{"{d}/", path, ".hex"}};
        fd = $fopen(image, "r");
        if (fd == 0)
            $fatal(1, "no ROM image %s", image);
        $fclose(fd);
        $readmemh(image, mem);
    end
    always @(posedge clk)
        if (en)
            data <= mem[addr];
endmodule
"""


def link_images(roms: dict[str, str], design: Path, image_dir: Path) -> None:
    """``image_dir/<path>.hex``, a link to ``design/<image>``, for every ROM instance
    (``roms`` from :func:`share`); the directory is made afresh."""
    image_dir = Path(image_dir)
    if image_dir.exists():
        for old in image_dir.iterdir():
            old.unlink()
    image_dir.mkdir(parents=True, exist_ok=True)
    design = Path(design).resolve()
    for path, image in roms.items():
        src = design / image
        if not src.is_file():
            raise SimError(f"ROM image {src} (of {path}) is missing")
        os.symlink(src, image_dir / f"{path}.hex")
