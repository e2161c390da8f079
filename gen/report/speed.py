"""The speed part of ``hardwire report``: cycles per token (the units' formulas, the ideal,
what ``hardwire sim`` measured) and tokens/s at the Fmax."""

import json
from pathlib import Path

from .. import design as _design

__all__ = ["speed", "rate"]


def _measured(design: Path, kind: str) -> list[int] | None:
    path = design / _design.measured_cycles_file(kind)
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cycles = got.get("cycles") if isinstance(got, dict) else got
    if not isinstance(cycles, list) or not cycles:
        return None
    return [int(c) for c in cycles]


def rate(mhz: float | None, cycles: float | None) -> float | None:
    if not mhz or not cycles:
        return None
    return float(f"{mhz * 1e6 / cycles:.6g}")


def speed(design: Path, m: dict, fmax: dict) -> dict:
    c = m["cycles"]
    units = int(c.get("units_sum_at_last_pos", sum(c["units_at_last_pos"].values())))
    ideal = float(c["ideal_at_last_pos"])
    meas = _measured(design, m["kind"])
    mhz = fmax.get("mhz")
    what = "token" if m["kind"] == "chip" else "token through this layer"
    out = {
        "position": m["ctx"] - 1,
        "cycles_per_token": {
            "units_formula": units, "ideal": ideal,
            "units_at_last_pos": c["units_at_last_pos"],
            "measured": None if meas is None else {
                "per_position": meas, "first": meas[0], "last": meas[-1],
                "mean": float(f"{sum(meas) / len(meas):.6g}"),
                "source": _design.measured_cycles_file(m["kind"])},
            "note": f"cycles per {what} at the last position (ctx - 1): the sum of the units' "
                    "formulas, the ideal (weight bits over the lanes' throughput plus "
                    "attention), and what the testbench measured ('hardwire sim')",
        },
        "fmax": fmax,
        "tokens_per_s": {
            "units_formula": rate(mhz, units), "ideal": rate(mhz, ideal),
            "measured_last": rate(mhz, meas[-1]) if meas else None,
            "measured_mean": rate(mhz, sum(meas) / len(meas)) if meas else None,
        },
    }
    return out
