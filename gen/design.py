"""A design directory: the one reader and writer of ``manifest.json``.

``hardwire matvec``, ``layer`` and ``chip`` each write a directory (the Verilog, ROM images,
golden vectors and ``manifest.json``, the contract a testbench needs), and every later
command (``sim``, ``synth``, ``asic``, ``report``, ``generate --chip``) reads one. This
module knows the directory's layout: the file names, the design kind, and the role of each
separately emitted Verilog module, recorded at generation under ``modules`` (older designs
without it fall back to the naming rules of :func:`fallback_role`).
"""

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .output import atomic_directory, read_json_object

__all__ = ["KINDS", "MANIFEST", "REPORT", "CYCLES", "ROLES", "LINT_WAIVERS", "ROM_IMAGE_MODES",
           "Design", "ModuleInfo", "lint_waivers", "check_rom_images", "rom_files",
           "manifest_kind", "module_infos", "manifest_bytes", "header", "write_design",
           "synth_dir", "measured_cycles_file", "fallback_info"]

#: The kinds of design directory (a manifest without ``kind`` is a matvec design).
KINDS = ("matvec", "layer", "chip")

#: File names in a design directory.
MANIFEST = "manifest.json"
REPORT = "report.json"  # 'hardwire report' of a chip or layer; 'hardwire synth' of a matvec
CYCLES = "cycles.json"  # 'hardwire sim' of a layer or chip: where the cycles went
PARETO = "pareto.png"
MOE_PLOT = "moe.png"  # 'hardwire report' of a mixture-of-experts design
ROM_PRIMITIVE_FILE = "hardwire_rom.v"


#: ``--rom-images``: ROM contents as ``$readmemh`` image files or inside the Verilog.
ROM_IMAGE_MODES = ("auto", "inline", "files")

#: Designs whose ROMs hold more bits than this load them from image files under ``auto``.
INLINE_ROM_BITS = 1 << 20

#: Verilator -Wall warnings that Amaranth's output raises by construction, with the reason we
#: accept each. The lint test runs with exactly these waived.
LINT_WAIVERS = {
    "ASCRANGE": "yosys declares a zero-width signal (the address of a one-entry memory, the KV "
                "cache at --ctx 1) as a [-1:0] wire that nothing reads.",
    "DECLFILENAME": "Amaranth writes every submodule into the one top file.",
    "PROCASSINIT": "Amaranth gives every register an initial value in its declaration and "
                   "also assigns it in the clocked process; that is the reset/init value.",
    "UNUSEDSIGNAL": "Bits that constant weights or padding never read (the sign bit of a "
                    "shifted partial sum, padded ROM columns); yosys removes them.",
    "WIDTHEXPAND": "Amaranth relies on Verilog's implicit sign extension of signed operands "
                   "to the expression width; the values are exact by construction.",
    "WIDTHTRUNC": "The Verilog backend writes 'k == 0' as '!k' on multi-bit k, and exact-width "
                  "results are assigned from wider expressions whose value always fits.",
}


def lint_waivers() -> list[dict]:
    """The manifest's ``lint_waivers``."""
    return [{"warning": k, "reason": v} for k, v in LINT_WAIVERS.items()]


def check_rom_images(mode: str) -> None:
    if mode not in ROM_IMAGE_MODES:
        raise UserError(f"--rom-images must be auto, inline or files, not {mode!r}")


def check_lane_stages(stages: int) -> None:
    from hdl import MAX_LANE_STAGES

    if not 0 <= stages <= MAX_LANE_STAGES:
        raise UserError(f"--lane-stages must be 0..{MAX_LANE_STAGES}, not {stages}")


def rom_files(mode: str, bits: int) -> bool:
    """Whether ROMs of ``bits`` in all are written as image files under ``--rom-images
    mode``."""
    return mode == "files" or (mode == "auto" and bits > INLINE_ROM_BITS)


def synth_dir(design: Path, target: str) -> Path:
    """Where ``hardwire synth`` keeps a target's work files and report."""
    return Path(design) / f"synth_{target}"


def measured_cycles_file(kind: str) -> str:
    """The testbench's per-token cycle counts (``hardwire sim``)."""
    return "cycles_tokens.json" if kind == "chip" else "cycles_real_tokens.json"


#: Module roles, in the order per-module tables list them.
ROLES = ("unit", "module", "lane", "lane array", "layer", "glue")


@dataclass(frozen=True)
class ModuleInfo:
    """A separately emitted Verilog module: its ``role`` (one of :data:`ROLES`) and the
    hardware class it is an instance of (``cls``; ``Chip`` or ``DecoderLayer`` for a top)."""
    role: str
    cls: str


# The naming rules of designs written before roles were recorded: a chip's lanes are
# hw_BlockLane_<digest> or hw_ParallelLane_<digest> (one module per distinct lane), a layer's
# <prefix>_lane; units are hw_<class>_<digest>; lane arrays <prefix>_engine; a chip's decoder
# layers l<i>_layer. First match wins.
_NAME_RULES = (
    (lambda n: n.startswith(("hw_BlockLane_", "hw_ParallelLane_")), "lane", None),
    (lambda n: n.endswith("_lane"), "lane", "BlockLane"),
    (lambda n: n.startswith("hw_"), "unit", None),
    (lambda n: n.endswith("_engine"), "lane array", "LaneArray"),
    (lambda n: n.endswith("_layer"), "layer", "DecoderLayer"),
)
_CHIP_MODULES = {"chip_embedding": "EmbeddingUnit", "chip_final_norm": "RmsNormUnit",
                 "chip_argmax": "ArgmaxUnit"}


def fallback_info(name: str, top: str, kind: str) -> ModuleInfo:
    """The role and class of a module of a design written before roles were recorded, by
    its name."""
    if name == top:
        return ModuleInfo("glue", "Chip" if kind == "chip" else "DecoderLayer")
    for match, role, cls in _NAME_RULES:
        if match(name):
            return ModuleInfo(role, cls or name.split("_")[1])
    return ModuleInfo("module", _CHIP_MODULES.get(name, "other"))


def module_infos(modules: Mapping[str, object], top: str, lanes: Mapping[str, str],
                 unit_prefix: str = "hw_") -> dict[str, dict]:
    """The manifest's ``modules`` entry at generation: each separately emitted module's role
    and class, from the components themselves (``modules``: name -> component; ``lanes``:
    lane module name -> the lane's class name; units shared by parameters are named
    ``unit_prefix...``)."""
    arrays = {"LaneArray", "BlockMatVec"}
    out = {name: {"role": "lane", "class": cls} for name, cls in lanes.items()}
    for name, comp in modules.items():
        cls = type(comp).__name__
        if name == top:
            role = "glue"
        elif name in lanes:
            role = "lane"
        elif cls in arrays:
            role = "lane array"
        elif cls == "DecoderLayer":
            role = "layer"
        else:
            role = "unit" if name.startswith(unit_prefix) else "module"
        out[name] = {"role": role, "class": cls}
    return dict(sorted(out.items()))


def manifest_kind(design: Path) -> str:
    """The ``kind`` of a design directory's manifest (``matvec`` when it has none, or when
    the manifest cannot be read: :meth:`Design.open` then says what is wrong)."""
    try:
        kind = json.loads((Path(design) / MANIFEST).read_text()).get("kind", "matvec")
    except (OSError, ValueError, AttributeError):
        return "matvec"
    return kind if isinstance(kind, str) else "matvec"


def manifest_bytes(manifest: Mapping, sort: bool | None = None) -> bytes:
    """The bytes of ``manifest.json``: a matvec manifest with sorted keys, indented by 2; a
    layer's or chip's (and an ASIC hand-off's) in its own order, indented by 1. ``sort``
    chooses instead of the kind."""
    if sort is None:
        sort = manifest.get("kind", "matvec") == "matvec"
    if sort:
        return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return (json.dumps(manifest, indent=1) + "\n").encode()


def table_rom_bits(top) -> int:
    """The bits of ``top``'s ROM images that hold no weights (``top.rom_bits``): the norms'
    gain tables and exponents and the lane arrays' shift constants, which are in the
    Verilog when the ROMs are (then 0)."""
    images = [r for r in top.roms() if r.image is not None]
    return sum(len(r.words) * r.width for r in images) - top.rom_bits if images else 0


def header(fmt: str, kind: str | None, top: str, roms: list[str]) -> dict:
    """The first keys of every manifest: format, kind, top module, sources, ROM images, and
    the clock and reset."""
    out = {"format": fmt} | ({"kind": kind} if kind else {})
    return out | {
        "top": top,
        "sources": [f"{top}.v"] + ([ROM_PRIMITIVE_FILE] if roms else []),
        "rom_images": roms,
        "clock": "clk",
        "reset": "rst",
        "reset_active": "high",
        "reset_kind": "synchronous",
    }


def write_design(out: Path, manifest: Mapping, verilog: str, roms=(),
                 extra: Callable[[Path], None] | None = None) -> None:
    """Write a design directory atomically (:func:`gen.output.atomic_directory`): the top's
    Verilog, the ROM primitive and images when ``roms`` (objects with ``image`` and
    ``image_text()``) is not empty, whatever ``extra(dir)`` writes, and the manifest."""
    from hdl.mask_rom import ROM_PRIMITIVE

    roms = [r for r in roms if r.image is not None]
    with atomic_directory(out) as d:
        (d / f"{manifest['top']}.v").write_text(verilog)
        if roms:
            (d / ROM_PRIMITIVE_FILE).write_text(ROM_PRIMITIVE)
            for r in roms:
                (d / r.image).write_bytes(r.image_text())
        if extra is not None:
            extra(d)
        (d / MANIFEST).write_bytes(manifest_bytes(manifest))


_MANIFEST_LOCK = threading.Lock()

#: The manifest formats of design directories, and the kind each is.
DESIGN_FORMATS = {"hardwire-matvec/1": "matvec", "hardwire-layer/1": "layer",
                  "hardwire-chip/1": "chip"}


class Design:
    """A design directory and its manifest, read once.

    Parameters
    ----------
    path : the directory.
    manifest : its parsed ``manifest.json``.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = Path(path), manifest

    @classmethod
    def open(cls, path, *, make: str = "'hardwire matvec'", need_dir: bool = True) -> "Design":
        """Read ``path/manifest.json``.

        Raises
        ------
        UserError
            When ``path`` is not a directory (with ``need_dir``), has no manifest (``make``
            names the commands that write one), or the manifest is not a JSON object.
        """
        path = Path(path)
        mpath = path / MANIFEST
        if need_dir:
            if not path.is_dir():
                raise UserError(f"{path} is not a directory")
            if not mpath.is_file():
                raise UserError(f"{path} is not a design directory (no {MANIFEST}); make one "
                                f"with {make}")
        return cls(path, read_json_object(mpath, lambda e: f"cannot read {mpath}: {e}",
                                          f"cannot read {mpath}: not a JSON object"))

    @classmethod
    def read(cls, path, fail: Callable[[Exception], str]) -> "Design":
        """Read ``path/manifest.json``; when it is missing or not JSON, ``fail(error)`` is the
        message of the :class:`UserError` raised."""
        path = Path(path)
        return cls(path, read_json_object(path / MANIFEST, fail,
                                          fail(ValueError("not a JSON object"))))

    # -- what it holds ----------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def kind(self) -> str:
        kind = self.manifest.get("kind", "matvec")
        return kind if isinstance(kind, str) else "matvec"

    @property
    def top(self) -> str:
        return self.manifest["top"]

    def require(self, *keys: str, quoted: bool = True) -> "Design":
        """Check that the manifest has ``keys`` (``key`` or ``key.sub``)."""
        for key in keys:
            node = self.manifest
            try:
                for part in key.split("."):
                    node = node[part]
            except (KeyError, TypeError):
                name = f"'{part}'" if quoted else part
                raise UserError(f"{self.manifest_path} lacks key {name}") from None
        return self

    def check_format(self) -> "Design":
        """Check that the manifest is a design's that this version reads: its ``format``
        one of :data:`DESIGN_FORMATS`, its ``kind`` the one the format names."""
        fmt = self.manifest.get("format")
        if fmt not in DESIGN_FORMATS:
            raise UserError(f"{self.manifest_path}: format {fmt!r} is not a design this "
                            f"version reads ({', '.join(DESIGN_FORMATS)})")
        if DESIGN_FORMATS[fmt] != self.kind:
            raise UserError(f"{self.manifest_path}: kind {self.manifest.get('kind')!r} does "
                            f"not match format {fmt!r}")
        return self

    def check_sources(self) -> "Design":
        """Check that ``top`` names a module and ``sources`` lists files that exist."""
        self.require("top", "sources")
        top, sources = self.manifest["top"], self.manifest["sources"]
        if not isinstance(top, str) or not isinstance(sources, list) or not sources:
            raise UserError(f"{self.manifest_path}: 'top' must be a module name and 'sources' "
                            "a list of files")
        for src in sources:
            if not (self.path / src).is_file():
                raise UserError(f"{self.path}: source {src} named in {MANIFEST} is missing")
        return self

    def check_rom_image_files(self) -> "Design":
        """Check that every ROM image the manifest lists is there and holds one hex word per
        line (a damaged image would otherwise simulate as a wrong design)."""
        images = self.manifest.get("rom_images", [])
        if not isinstance(images, list):
            raise UserError(f"{self.manifest_path}: 'rom_images' must be a list of files")
        for name in images:
            p = self.path / str(name)
            try:
                data = p.read_bytes()
            except OSError:
                raise UserError(f"{self.path}: ROM image {name} named in {MANIFEST} is "
                                "missing") from None
            if not data or not re.fullmatch(rb"(?:[0-9a-fA-F]+\n)+", data):
                raise UserError(f"{p}: not a ROM image (one hexadecimal word per line)")
        return self

    def source_texts(self) -> list[str]:
        """The Verilog sources' texts."""
        try:
            return [(self.path / s).read_text() for s in self.manifest["sources"]]
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the sources of {self.path}: {e}") from None

    def module(self, name: str) -> ModuleInfo:
        """The role and class of a separately emitted module."""
        rec = self.manifest.get("modules")
        if isinstance(rec, dict) and isinstance(rec.get(name), dict):
            return ModuleInfo(rec[name]["role"], rec[name]["class"])
        return fallback_info(name, self.manifest.get("top", ""), self.kind)

    def file(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str):
        """A JSON file of the directory, or None when it is missing or unreadable."""
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    # -- writing ---------------------------------------------------------------------------
    def update(self, change: Callable[[dict], None]) -> None:
        """Re-read the manifest, apply ``change`` to it and replace the file atomically;
        threads of this process updating the same design take turns."""
        with _MANIFEST_LOCK:
            fresh = Design.open(self.path)
            change(fresh.manifest)
            replace_file(self.manifest_path, manifest_bytes(fresh.manifest))
            self.manifest = fresh.manifest


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file beside it, so that readers never see half."""
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
