"""Verilog and netlists as modules: splitting generated Verilog into its modules, the
per-module synthesis plan of a design, and joining yosys JSON netlists again."""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..design import ROLES, fallback_info
from .tools import SynthError

__all__ = ["VerilogModule", "split_verilog", "module_names", "LayerModule", "plan_layer",
           "subtree", "is_blackbox", "join_netlists"]


# Verilog as Amaranth (and the ROM primitive) write it: a module starts at a line beginning
# with `module`, and an instance line starts with the module's name and then the instance's
# name or `#(`. Names are checked against the modules found, so a declaration never counts.
_MODULE_RE = re.compile(r"^[ \t]*module[ \t]+(\\\S+|[A-Za-z_][\w$]*)", re.M)
_ENDMODULE_RE = re.compile(r"^[ \t]*endmodule\b[^\n]*\n?", re.M)
_INSTANCE_RE = re.compile(r"^[ \t]+(\\\S+|[A-Za-z_][\w$]*)\s+(?=[#\\A-Za-z_])", re.M)
_DECL_RE = re.compile(r"^[ \t]*(?:input|output|inout|parameter)\b[^;]*;", re.M)


def module_names(paths: Sequence[Path]) -> list[str]:
    """Names of the modules defined in Verilog files (leading backslash dropped)."""
    return [m.group(1).lstrip("\\") for p in paths
            for m in _MODULE_RE.finditer(Path(p).read_text(errors="replace"))]


@dataclass
class VerilogModule:
    """One module of a Verilog file: its text and the modules it instantiates."""
    name: str
    text: str
    children: dict[str, int]  # module name -> instances in this module

    def blackbox_text(self) -> str:
        """The module with its ports (and parameters) only, for ``read_verilog -lib``."""
        header = self.text[:self.text.index(";") + 1]
        decls = _DECL_RE.findall(self.text, len(header))
        return "\n".join([header, *decls, "endmodule", ""])


def split_verilog(texts: Sequence[str]) -> dict[str, VerilogModule]:
    """The modules of Verilog texts by name (a leading backslash of an escaped name
    dropped), with the instances each holds of the others."""
    found = {}
    for text in texts:
        for m in _MODULE_RE.finditer(text):
            end = _ENDMODULE_RE.search(text, m.end())
            if end is None:
                raise SynthError(f"module {m.group(1)} has no endmodule")
            name = m.group(1).lstrip("\\")
            if name in found:
                raise SynthError(f"module {name} is defined twice")
            found[name] = text[m.start():end.end()]
    modules = {}
    for name, text in found.items():
        children: dict[str, int] = {}
        for m in _INSTANCE_RE.finditer(text):
            child = m.group(1).lstrip("\\")
            if child in found and child != name:
                children[child] = children.get(child, 0) + 1
        modules[name] = VerilogModule(name, text, children)
    return modules


@dataclass
class LayerModule:
    """One unit of per-module synthesis: a module, synthesised with the submodules that are
    part of it (``body``, itself first), while the separately synthesised modules it
    instantiates (``boxes``) are black boxes. ``instances`` is how often the whole design
    holds it."""
    name: str
    role: str
    instances: int
    body: list[str]
    boxes: list[str]

def plan_layer(modules: Mapping[str, VerilogModule], top: str,
               inline: Sequence[str] = ("hardwire_rom",),
               role: Callable[[str], str] | None = None) -> list[LayerModule]:
    """Cut a layer's hierarchy into separately synthesised modules.

    Amaranth names a submodule ``parent.child``; modules with a plain name were emitted on
    their own (the units, the lane array, the lane datapath) and are synthesised alone, each
    once however often it is instantiated. ``inline`` modules (the ``$readmemh`` ROM
    primitive, a leaf whose memory must stay visible to yosys' block-RAM mapping) go with
    the module that holds them. The top module (with everything else black-boxed) is the
    glue between the units. ``role(name)`` gives each module's role (one of
    :data:`gen.design.ROLES`; default: by its name, :func:`gen.design.fallback_info`).
    """
    role = role or (lambda name: fallback_info(name, top, "layer").role)
    if top not in modules:
        raise SynthError(f"top module {top} is not in the sources")
    # Instances of every module in the whole design, in topological order from the top.
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, depth: int = 0):
        if state.get(name) == 2:
            return
        if state.get(name) == 1 or depth > 100:
            raise SynthError(f"module hierarchy too deep or recursive at {name}")
        state[name] = 1
        for child in modules[name].children:
            visit(child, depth + 1)
        state[name] = 2
        order.append(name)

    visit(top)
    count = dict.fromkeys(order, 0)
    count[top] = 1
    for name in reversed(order):
        for child, n in modules[name].children.items():
            count[child] += count[name] * n

    def separate(name: str) -> bool:
        return name == top or ("." not in name and name not in inline)

    plan = []
    for name in order:
        if not separate(name):
            continue
        body, boxes, todo = [name], [], [name]
        while todo:
            for child in modules[todo.pop()].children:
                if separate(child):
                    if child not in boxes:
                        boxes.append(child)
                elif child not in body:
                    body.append(child)
                    todo.append(child)
        plan.append(LayerModule(name, role(name), count[name], body, sorted(boxes)))
    plan.sort(key=lambda p: (ROLES.index(p.role), p.name))
    return plan



def subtree(entries: Mapping[str, Mapping], root: str) -> dict[str, int]:
    """The separately synthesised modules under ``root`` (itself included) and how often the
    subtree holds each, from a per-module report's entries (``blackboxes``: a module's
    instances of the others)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, depth: int = 0):
        if name in seen:
            return
        if depth > 100 or name not in entries:
            raise SynthError(f"module {name} is not in the synthesis report")
        seen.add(name)
        for child in entries[name].get("blackboxes") or {}:
            visit(child, depth + 1)
        order.append(name)

    visit(root)
    count = dict.fromkeys(order, 0)
    count[root] = 1
    for name in reversed(order):
        for child, n in (entries[name].get("blackboxes") or {}).items():
            count[child] += count[name] * int(n)
    return {name: count[name] for name in reversed(order)}

def is_blackbox(mod: Mapping) -> bool:
    value = str(mod.get("attributes", {}).get("blackbox", "0"))
    try:
        return int(value, 2) != 0
    except ValueError:
        return value not in ("", "0")


def join_netlists(paths: Sequence[Path], top: str) -> dict:
    """One yosys JSON netlist from several: every module defined anywhere (a real definition
    replaces a black box of the same name; the cell libraries are the same in all), with
    ``top`` the only module marked top."""
    modules: dict[str, dict] = {}
    creator = None
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SynthError(f"cannot read netlist {path}: {e}") from None
        creator = creator or data.get("creator")
        for name, mod in data.get("modules", {}).items():
            old = modules.get(name)
            if old is None or (is_blackbox(old) and not is_blackbox(mod)):
                modules[name] = mod
            elif not is_blackbox(old) and not is_blackbox(mod) and \
                    old.get("ports", {}).keys() != mod.get("ports", {}).keys():
                raise SynthError(f"module {name} is defined differently in two netlists")
    if top not in modules:
        raise SynthError(f"top module {top} is not in the netlists")
    for name, mod in modules.items():
        attrs = mod.setdefault("attributes", {})
        attrs.pop("top", None)
        if name == top:
            attrs["top"] = "00000000000000000000000000000001"
    return {"creator": creator or "yosys", "modules": modules}
