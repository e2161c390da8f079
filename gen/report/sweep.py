"""The design-space sweep of ``hardwire report --sweep``: lanes per layer x LM-head lanes x
strategy, each point's cycles from the hardware classes' own formulas, calibrated logic, and the
Pareto fronts."""

import math
from dataclasses import replace

from ..errors import UserError
from .area import estimate
from .speed import rate

__all__ = ["STRATEGIES", "pareto_front", "sweep_points", "design_lane_bits"]


#: What the sweep compares. ``per-layer``: every decoder layer has its own datapath (lane
#: array, units, KV cache), clock-gated while the token is elsewhere: what ``hardwire chip``
#: builds. ``shared``: one layer datapath time-multiplexed over the layers, its lanes' ROMs
#: ``n_layers`` times deeper and the norm gains in small ROMs: an analytical estimate only
#: (not built), with the per-layer cycle count (one token is in flight either way).
STRATEGIES = ("per-layer", "shared")


def _chip_cycles(model, ctx: int, lanes: int, head_lanes: int, beat: int, fmt, cache: dict,
                 stages: int = 0):
    """``(units at the last position, ideal)`` of the chip ``hardwire chip`` would build, from
    the hardware classes' own cycle formulas. Raises ``ValueError`` for an impossible point.

    A decoder layer's cycles are its units' (which depend on the beat) plus its lane array's
    passes (which depend on the lanes): a :class:`hdl.layer.DecoderLayer` is built once per
    beat and distinct layer (its lane ROMs laid out, not converted) for the first, and the
    passes' schedules (:class:`golden.block_folded.BlockFoldedLayout`, as the lane array uses
    them) give the second for any lane count. The LM head is one such schedule; the
    embedding, final norm and argmax units give their own."""
    from golden import block_folded as gbf
    from golden import blockquant as gbq
    from golden.integer import norm_gain
    from golden.llama import PROJECTIONS
    from hdl import not_elaborated
    from hdl.argmax import ArgmaxUnit
    from hdl.chip import chip_cycles
    from hdl.embedding import EmbeddingUnit
    from hdl.lane_array import pass_latency
    from hdl.layer import DecoderLayer
    from hdl.norm import RmsNormUnit

    cfg, pos = model.cfg, ctx - 1
    w = cache.get("weights") or cache.setdefault("weights", model.weights())

    def passes(layouts, n):
        out = []
        for L in layouts:
            L = gbf.BlockFoldedLayout(L.rows, L.cols, L.bits, L.block, n)
            if n % beat or n // beat > L.nblocks * L.bits:
                raise ValueError(f"{n} lanes do not fit beat {beat}")
            out.append(L)
        return out

    layers = []
    for lw in w.layers:
        sig = (beat, tuple((getattr(lw, p).bits, getattr(lw, p).block) for p in PROJECTIONS))
        if sig not in cache:
            layer = DecoderLayer(cfg, lw, ctx=ctx, lanes=lanes, beat=beat, fmt=fmt)
            e = layer.engine
            not_elaborated(layer, e, *layer.modules.values())
            cache[sig] = (sum(layer.unit_cycles(pos).values()) - sum(e.pass_cycles),
                          layer.ideal_cycles(pos) - e.ideal_cycles, e.layouts,
                          layer.golden.eps_term)
        units, ideal, layouts, eps_term = cache[sig]
        ls = passes(layouts, lanes)
        layers.append((units + sum(L.cycles_per_vector + pass_latency(stages) for L in ls),
                       ideal + sum(L.ideal_cycles for L in ls)))
    head = w.lm_head.reblock(gbq.lane_block(w.lm_head))
    (hl,) = passes([gbf.BlockFoldedLayout.of(head, head_lanes)], head_lanes)
    head_abits = fmt.head_abits or fmt.abits
    head_fmt = replace(fmt, abits=head_abits, fx_frac=fmt.logit_frac, fx_bits=fmt.logit_bits)
    g, gf = norm_gain(w.final_norm, cfg.dim, fmt)
    norm = RmsNormUnit(cfg.dim, beat, head_fmt, g, gf, eps_term)
    # One embedding row is enough for the unit's timing (it depends on dim and beat only).
    emb = EmbeddingUnit(w.embedding.rows_slice(0, 1), beat=beat, fmt=fmt,
                        pos_bits=max(1, (ctx - 1).bit_length()))
    argmax = ArgmaxUnit(cfg.vocab, beat, fmt.logit_bits)
    not_elaborated(norm, emb, argmax)
    units = chip_cycles(emb, [c for c, _ in layers], norm,
                        hl.cycles_per_vector + pass_latency(stages), argmax)
    ideal = sum(i for _, i in layers) + hl.ideal_cycles
    return units, ideal


def _sweep_area(cal: dict, cfg: dict, lane_bits: tuple[float, float], lanes: int,
                head_lanes: int, beat: int, strategy: str) -> tuple[int | None, dict]:
    """Calibrated logic of a chip: per layer its lanes, lane array, units and glue (once for
    ``shared``, ``n_layers`` times for ``per-layer``), then the LM head's lanes and lane
    array, the embedding, final norm, argmax and the top glue. ``lane_bits``: the design's
    layer and LM-head lanes' driver (their widths do not depend on the lane count)."""
    def k(kind, **drivers):
        e = estimate(cal, kind, drivers)
        return math.nan if e is None else e[0]

    common = {"beat": beat, "head_dim": cfg["head_dim"]}
    layer = (lanes * k("BlockLane", lane_bits=lane_bits[0])
             + k("LaneArray", beat=beat, lanes=lanes)
             + 2 * k("RmsNormUnit", **common) + k("BfpUnit", **common)
             + 2 * k("ResidualAdd", **common) + k("RopeUnit", **common)
             + k("SwigluUnit", **common) + k("AttentionUnit", **common)
             + k("DecoderLayer", **common))
    n = 1 if strategy == "shared" else cfg["n_layers"]
    parts = {
        "layers": n * layer,
        "LM head lanes": head_lanes * k("BlockLane", lane_bits=lane_bits[1]),
        "LM head lane array": k("LaneArray", beat=beat, lanes=head_lanes),
        "embedding": k("EmbeddingUnit", **common),
        "final norm": k("RmsNormUnit", **common),
        "argmax": k("ArgmaxUnit", **common),
        "top glue": k("Chip", **{"1": 1}),
    }
    total = sum(parts.values())
    if math.isnan(total):
        return None, {}
    return round(total), {p: round(v) for p, v in parts.items()}


def _candidates(n_rows: list[int], design_value: int, lo: int = 8, hi: int = 256) -> list[int]:
    """Lane counts to try: the powers of two ``lo..hi`` that divide every row count, the
    largest such divisor up to ``hi`` (one that is not a power of two, like SmolLM2's 192),
    and the design's own."""
    g = 0
    for r in n_rows:
        g = math.gcd(g, r)
    divisors = [d for d in range(lo, min(g, hi) + 1) if g % d == 0]
    out = {d for d in divisors if d & (d - 1) == 0} | set(divisors[-1:])
    return sorted(out | {design_value})


def pareto_front(points: list[dict], x: str = "logic", y: str = "tokens_per_s") -> list[int]:
    """Indices of the points no other point beats: at most the area and at least the rate,
    one of them strictly. Points without both figures are left out."""
    ok = [i for i, p in enumerate(points) if p.get(x) is not None and p.get(y) is not None]
    front = []
    for i in ok:
        a, r = points[i][x], points[i][y]
        if not any((points[j][x] <= a and points[j][y] >= r)
                   and (points[j][x] < a or points[j][y] > r) for j in ok if j != i):
            front.append(i)
    return sorted(front, key=lambda i: (points[i][x], points[i][y]))


def sweep_points(m: dict, model, cal: dict, fmax_mhz: float | None,
                 lane_bits: tuple[float, float], *, lanes: list[int] | None = None,
                 head_lanes: list[int] | None = None) -> dict:
    """The design-space sweep of a chip manifest ``m`` (see :data:`STRATEGIES`): every
    valid (lanes, LM-head lanes) pair, its beat as ``hardwire chip`` would choose it, each
    strategy's cycles per token (:func:`_chip_cycles`), calibrated logic (``cal``, from
    :func:`_calibration`; ``lane_bits`` of the design's layer and LM-head lanes) and tokens/s
    at ``fmax_mhz``."""
    from golden.integer import IntFormat

    from ..chip import check_chip_lanes
    from ..layer import default_beat, weights_block

    cfg = model.cfg
    block = weights_block(model.weights())
    fmt = IntFormat(**m["format_int"])
    rows = [cfg.dim + 2 * cfg.kv_dim, cfg.dim, 2 * cfg.ffn]
    lanes = lanes or _candidates(rows, m["lanes"])
    head_lanes = head_lanes or _candidates([cfg.vocab], m["head_lanes"], hi=1024)
    cache: dict = {}
    points, skipped = [], []
    design_key = (m["lanes"], m["head_lanes"], m["beat"])
    combos = [(p, h, math.gcd(default_beat(cfg, p, block), h)) for p in lanes for h in head_lanes]
    if design_key not in combos:
        combos.append(design_key)
    match = None
    for p, h, beat in sorted(combos):
        try:
            check_chip_lanes(cfg, p, h)
            units, ideal = _chip_cycles(model, m["ctx"], p, h, beat, fmt, cache,
                                        m.get("lane_stages", 0))
        except (UserError, ValueError) as e:
            skipped.append({"lanes": p, "head_lanes": h, "beat": beat, "reason": str(e)})
            continue
        cycles = sum(units.values())
        if (p, h, beat) == design_key:
            match = units == m["cycles"]["units_at_last_pos"]
        for s in STRATEGIES:
            area, parts = _sweep_area(cal, m["config"], lane_bits, p, h, beat, s)
            points.append({"strategy": s, "lanes": p, "head_lanes": h, "beat": beat,
                           "cycles_per_token": cycles, "ideal_cycles": ideal,
                           "tokens_per_s": rate(fmax_mhz, cycles), "logic": area,
                           "area_parts": parts, "design": (p, h, beat) == design_key
                           and s == "per-layer"})
    front = pareto_front(points)
    by_strategy = {s: pareto_front([p if p["strategy"] == s else {} for p in points])
                   for s in STRATEGIES}
    for i, pt in enumerate(points):
        pt["pareto"] = i in front
        pt["pareto_in_strategy"] = i in by_strategy[pt["strategy"]]
    return {
        "fmax_mhz": fmax_mhz,
        "position": m["ctx"] - 1,
        "rom_bits": m["rom_bits"], "ram_bits": m["ram_bits"],
        "strategies": {
            "per-layer": "every decoder layer its own datapath (lane array, units, KV cache), "
                         "each clock-gated while the token is elsewhere: what 'hardwire chip' "
                         "builds",
            "shared": "ANALYTICAL ESTIMATE, not built: one layer datapath time-multiplexed "
                      "over the layers, its lanes' mask ROMs n_layers times deeper (the same "
                      "ROM bits), the same KV-cache RAM, the same cycles per token (one token "
                      "is in flight either way); the per-layer norm gains would need small "
                      "ROMs, not counted"},
        "method": "cycles: the hardware classes' formulas at the last position (the design's "
                  "own point reproduces its manifest); area: calibrated logic (see "
                  "area.calibration); tokens/s: at the Fmax of speed.fmax for every point; "
                  "ROM and RAM bits do not depend on the lanes",
        "design_point_matches_manifest": match,
        "points": points,
        "pareto": front,
        "pareto_by_strategy": by_strategy,
        "skipped": skipped,
    }


def design_lane_bits(area: dict, plan) -> tuple[float, float]:
    """The ``lane_bits`` driver of the design's layer lanes (instance-weighted mean) and of
    its LM-head lane."""
    bits = area["drivers"]["lane_bits"]
    layer, head = [], []
    for p in plan:
        if p.role == "lane array":
            for b in p.boxes:
                (head if p.name == "chip_head_engine" else layer).append(bits[b])
    mean = sum(layer) / len(layer) if layer else math.nan
    return mean, (sum(head) / len(head) if head else mean)
