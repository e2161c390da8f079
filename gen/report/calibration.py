"""The built-in calibration of ``hardwire report``: each module kind's logic as terms of a size
driver (its beat, its lanes, its ports), fitted to a synthesised chip."""

import re

from .. import design as _design

__all__ = ["CALIBRATION", "CALIBRATION_FMAX", "builtin_fmax", "design_fmax",
           "CALIBRATION_SOURCE", "TERMS", "METRIC", "lane_bits", "mul_bits", "drivers", "builtin",
           "fit_calibration"]


#: The built-in calibration: each module kind's logic (ECP5 LUT4-equivalents, LUT4 + 2 x
#: CCU2C) and flip-flops as a sum of terms, a constant per unit of a size driver. Fitted by
#: :func:`fit_calibration` to ``hardwire synth build/report/tiny --target ecp5`` (yosys 0.70
#: via pyosys, synth_ecp5 -nodsp, per module, hierarchy kept; all 22 modules, 52 min on 2
#: busy cores) of the tiny chip (``hardwire chip --model tiny``: 32 lanes, 32 LM-head lanes,
#: beat 16, head_dim 16, ctx 16, 16-bit activations). Drivers:
#:
#: - ``lane_bits``: a lane's ``chunk`` input bits (block x activation bits) plus its two
#:   products' bits (``(D + M widths) x activation-sum width``), from its ports;
#: - ``beat``: elements per cycle (vector units, the lane array's rescalers, glue);
#: - ``mul_bits``: a parallel lane's multiplier array, its ``codes`` bits (block x code bits)
#:   x activation bits, plus its two products' bits as in ``lane_bits``;
#: - ``lanes``: a lane array's lanes (their D/M ROMs, the array's own logic);
#: - ``head_dim``: the attention unit (its dot products are ``head_dim`` wide);
#: - ``1``: the chip's top glue.
#:
#: Checked against SmolLM2-135M layer 0 (16-bit activations, 64 lanes, beat 32, head_dim 64;
#: ``hardwire synth --modules`` on five of its modules): see the README's report section.
#:
#: ``ParallelLane`` (``--lane parallel``) is fitted to the same tiny chip generated with
#: parallel lanes (``hardwire synth DIR --target ecp5 --modules 'hw_ParallelLane_*'``, 115 s
#: on one core: 11,561 LUT4-eq for a Q4_1 layer lane, 19,955 for the Q8_0 LM-head lane, 4.35
#: and 4.55 per driver bit); SmolLM2's layer-0 parallel lane measured 13,163 (bench.lanes).
#:
#: The mixture of experts' own kinds (``BiasAdd``, ``CombineUnit``, ``MoeDecoderLayer``,
#: ``RouterUnit``) are fitted the same way to the tiny-moe chip (``hardwire chip --model
#: tiny-moe --no-clock-gating``: 64 lanes, beat 16; ``hardwire synth --target ecp5 --modules
#: 'hw_RouterUnit*,hw_CombineUnit*,l0_bias,l0_layer,...'``, 1,174 s on one core).
CALIBRATION: dict[str, dict[str, tuple[float, float]]] = {
    # kind: {driver: (LUT4-eq, FF) per driver unit}
    "ArgmaxUnit": {"beat": (125.9, 2.812)},
    "AttentionUnit": {"head_dim": (6498.0, 174.4)},
    "BfpUnit": {"beat": (287.5, 51.5)},
    "BiasAdd": {"beat": (222.4, 43.88)},
    "BlockLane": {"lane_bits": (3.693, 0.06135)},
    "Chip": {"1": (10.0, 9.0)},
    "CombineUnit": {"beat": (2797.0, 131.8)},
    "DecoderLayer": {"beat": (90.44, 99.0)},
    "EmbeddingUnit": {"beat": (427.1, 1.75)},
    "LaneArray": {"beat": (1131.0, 0.0), "lanes": (114.2, 84.07)},
    "ParallelLane": {"mul_bits": (4.463, 0.01115)},
    "MoeDecoderLayer": {"beat": (96.12, 119.7)},
    "ResidualAdd": {"beat": (128.1, 96.12)},
    "RmsNormUnit": {"beat": (3861.0, 190.3)},
    "RopeUnit": {"beat": (3363.0, 74.19)},
    "RouterUnit": {"beat": (271.6, 37.75)},
    "SwigluUnit": {"beat": (8159.0, 243.9)},
}

#: The design each built-in kind was fitted to, where it is not the tiny chip.
CALIBRATION_SOURCE = {k: "tiny-moe chip" for k in ("BiasAdd", "CombineUnit", "MoeDecoderLayer",
                                                   "RouterUnit")} | {
    "ParallelLane": "tiny chip, --lane parallel"}

#: The built-in Fmax (MHz), for a design whose own module has not been placed, per lane
#: module class and ``--lane-stages``: SmolLM2's layer-0 lane (64 lanes) alone in the
#: shift-register harness, yosys ``synth_ecp5 -nodsp`` and nextpnr-ecp5 on an LFE5U-25F
#: (``python -m bench.lanes``; measured 2026-12-02, 6 stages on 2026-12-03).
CALIBRATION_FMAX = {
    "mhz": {"BlockLane": {0: 29.08, 1: 44.92, 2: 53.77, 3: 64.59, 4: 71.29, 5: 73.0, 6: 75.19},
            "ParallelLane": {0: 27.0, 1: 50.73, 2: 53.41, 3: 64.34, 4: 68.98, 5: 71.04,
                             6: 72.02}},
    "module": "SmolLM2's layer-0 lane", "device": "ECP5 LFE5U-25F CABGA381"}


def builtin_fmax(lane_class: str, stages: int = 0) -> float | None:
    """The built-in Fmax of a lane of ``lane_class`` (``BlockLane``, ``ParallelLane``) with
    ``stages`` pipeline registers, or ``None`` where none was measured."""
    return CALIBRATION_FMAX["mhz"].get(lane_class, {}).get(stages)


def design_fmax(m: dict) -> float | None:
    """The built-in Fmax of a design's lanes (its manifest's ``lane`` and ``lane_stages``)."""
    cls = "ParallelLane" if m.get("lane") == "parallel" else "BlockLane"
    return builtin_fmax(cls, m.get("lane_stages", 0))


#: The driver terms of each kind (see :data:`CALIBRATION`).
TERMS = {"BlockLane": ("lane_bits",), "ParallelLane": ("mul_bits",), "LaneArray": ("beat", "lanes"),
          "AttentionUnit": ("head_dim",), "RmsNormUnit": ("beat",), "BfpUnit": ("beat",),
          "ResidualAdd": ("beat",), "RopeUnit": ("beat",), "SwigluUnit": ("beat",),
          "EmbeddingUnit": ("beat",), "ArgmaxUnit": ("beat",), "DecoderLayer": ("beat",),
          "Chip": ("1",), "RouterUnit": ("beat",), "CombineUnit": ("beat",),
          "BiasAdd": ("beat",), "MoeDecoderLayer": ("beat",)}


#: The logic figure of each target: what the area table, the calibration and the sweep count.
METRIC = {"ecp5": ("lut4_equiv", "LUT4-eq", "LUT4-eq = LUT4 + 2 x CCU2C (ECP5 carry cells)"),
          "ice40": ("LUT4", "SB_LUT4", "iCE40 SB_LUT4 (carry cells apart)"),
          "generic": ("gates", "gates", "2-input gates (yosys abc -g)")}



_PORT_RE = re.compile(r"^\s*(?:input|output)\s+(?:\[(\d+):0\]\s+)?(\w+)\s*;", re.M)


def _port_widths(vmod) -> dict:
    """A module's port widths by name, from its black-box text."""
    return {name: int(hi) + 1 if hi else 1 for hi, name in _PORT_RE.findall(vmod.blackbox_text())}


def lane_bits(vmod, abits: int) -> int:
    """The ``lane_bits`` driver of a lane module: ``chunk`` bits plus ``(D + M widths) x
    activation-sum width`` (without an M input, the sum of 32 activations: abits + 5)."""
    w = _port_widths(vmod)
    s = w.get("act_sum", abits + 5)
    return w.get("chunk", 0) + (w.get("d", 0) + w.get("m", 0)) * s


def mul_bits(vmod, abits: int) -> int:
    """The ``mul_bits`` driver of a parallel lane module: ``codes`` bits x ``abits`` plus
    ``(D + M widths) x activation-sum width``."""
    w = _port_widths(vmod)
    return w.get("codes", 0) * abits + (w.get("d", 0) + w.get("m", 0)) * w.get("act_sum",
                                                                             abits + 5)


def drivers(d: "_design.Design", vmods, plan) -> dict:
    """Each module's driver values ``{term: value}`` (see :data:`CALIBRATION`); None for a
    module of no known kind."""
    m = d.manifest
    out = {}
    for p in plan:
        k = d.module(p.name).cls
        if k not in TERMS:
            out[p.name] = None
            continue
        v = {"beat": m["beat"], "head_dim": m["config"]["head_dim"], "1": 1,
             "lanes": m.get("head_lanes") if p.name == "chip_head_engine" else m["lanes"]}
        if k == "BlockLane":
            v["lane_bits"] = lane_bits(vmods[p.name], m["format_int"]["abits"])
        if k == "ParallelLane":
            v["mul_bits"] = mul_bits(vmods[p.name], m["format_int"]["abits"])
        out[p.name] = {t: v[t] for t in TERMS[k]}
    return out


def builtin(kind: str, values: dict) -> tuple[float, float] | None:
    """The built-in (ECP5 LUT4-eq, FF) of a module of ``kind`` with these driver values."""
    terms = CALIBRATION.get(kind)
    if not terms or values is None:
        return None
    return (sum(c[0] * values[t] for t, c in terms.items()),
            sum(c[1] * values[t] for t, c in terms.items()))


def fit_calibration(synth_report: dict, d: "_design.Design", vmods, plan) -> dict:
    """The :data:`CALIBRATION` table from a per-module synthesis report
    (``synth_<target>/report.json``) of a chip: per kind, each term's figure per driver unit,
    summed over the kind's modules and instances. A lane array's rescalers (its parts named
    ``*.rescale*``) are its ``beat`` term, the rest its ``lanes`` term; every other kind has
    one term."""
    values = drivers(d, vmods, plan)
    key = METRIC[synth_report["target"]][0]
    acc: dict = {}
    for e in synth_report["modules"]:
        k = d.module(e["module"]).cls
        dv = values.get(e["module"])
        if e["status"] != "ok" or dv is None:
            continue
        n = e["instances"]
        if k == "LaneArray":
            parts = e.get("parts", {})
            resc = [v for g, v in parts.items() if ".rescale" in g]
            r = (sum(v[key] for v in resc), sum(v["FF"] for v in resc))
            split = {"beat": r, "lanes": (e["stats"][key] - r[0], e["stats"]["FF"] - r[1])}
        else:
            (t,) = TERMS[k]
            split = {t: (e["stats"][key], e["stats"]["FF"])}
        for t, (logic, ff) in split.items():
            a = acc.setdefault(k, {}).setdefault(t, [0, 0, 0])
            a[0] += n * logic
            a[1] += n * ff
            a[2] += n * dv[t]
    return {k: {t: (float(f"{lo / x:.4g}"), float(f"{ff / x:.4g}"))
                for t, (lo, ff, x) in sorted(terms.items())}
            for k, terms in sorted(acc.items())}
