"""Where a layer's or chip's cycles go (``hardwire sim`` prints it and writes ``cycles.json``):
the units' formulas at the last position, and the cycles per token the testbench measured,
against the ideal."""

from pathlib import Path

from .design import Design, measured_cycles_file

__all__ = ["cycle_report"]


def cycle_report(design: Path) -> tuple[dict, str]:
    """``(cycles.json's content, a table)`` of a layer or chip design."""
    d = Design.open(design)
    c = d.manifest["cycles"]
    units = c["units_at_last_pos"]
    rep = {"units_at_last_pos": units, "units_sum": sum(units.values())}
    lines = [f"{'unit':<18} {'cycles':>8}", "-" * 27]
    lines += [f"{k:<18} {v:>8}" for k, v in units.items()]
    lines += ["-" * 27, f"{'sum of units':<18} {rep['units_sum']:>8}"]
    got = d.read_json(measured_cycles_file(d.kind))
    if d.kind == "chip":
        rep["ideal_at_last_pos"] = c["ideal_at_last_pos"]
        lines.append(f"{'ideal, last pos':<18} {c['ideal_at_last_pos']:>8.0f}")
        if got is not None:
            per_tok = got["cycles"]
            rep |= {"measured_per_token": per_tok,
                    "ratio_last": per_tok[-1] / c["ideal_at_last_pos"],
                    "testbench_wall_seconds": got["wall_seconds"]}
            lines += [f"{'measured, pos 0':<18} {per_tok[0]:>8}",
                      f"{'measured, last':<18} {per_tok[-1]:>8}   "
                      f"({rep['ratio_last']:.3f}x the ideal)"]
    elif got is not None:
        # A layer's ideal at an earlier position: its attention reads fewer cached positions.
        n_heads = d.manifest["config"]["n_heads"]
        ideal = [c["ideal_at_last_pos"] - 2 * n_heads * (len(got) - 1 - p)
                 for p in range(len(got))]
        ratios = [m / i for m, i in zip(got, ideal, strict=True)]
        rep |= {"measured_per_token": got, "ideal_per_token": ideal,
                "ratio_max": max(ratios), "ratio_last": ratios[-1]}
        lines += [f"{'measured, pos 0':<18} {got[0]:>8}   ideal {ideal[0]:.0f}  "
                  f"({ratios[0]:.3f}x)",
                  f"{'measured, last':<18} {got[-1]:>8}   ideal {ideal[-1]:.0f}  "
                  f"({ratios[-1]:.3f}x)"]
    return rep, "\n".join(lines)
