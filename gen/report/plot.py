"""The Pareto plot of ``hardwire report --sweep`` (``DIR/pareto.png``)."""

from pathlib import Path

from ..errors import UserError
from ..output import atomic_file

__all__ = ["plot"]


def plot(sweep: dict, m: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in sweep["points"] if p["logic"] is not None
           and p["tokens_per_s"] is not None]
    if not pts:
        raise UserError("the sweep has no point with both an area and a rate to plot "
                        "(no Fmax and no calibration)")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    styles = {"per-layer": ("o", "tab:blue"), "shared": ("s", "tab:orange")}
    for s, (marker, color) in styles.items():
        sel = [p for p in pts if p["strategy"] == s]
        label = s if s == "per-layer" else f"{s} (analytical estimate)"
        ax.scatter([p["logic"] for p in sel], [p["tokens_per_s"] for p in sel],
                   marker=marker, c=color, alpha=0.45, s=28, label=label)
    built = [sweep["points"][i] for i in sweep["pareto_by_strategy"]["per-layer"]]
    ax.plot([p["logic"] for p in built], [p["tokens_per_s"] for p in built], "--",
            c="tab:blue", lw=1.2, zorder=3, label="Pareto front of per-layer (built) designs")
    front = [sweep["points"][i] for i in sweep["pareto"]]
    ax.plot([p["logic"] for p in front], [p["tokens_per_s"] for p in front], "-",
            c="tab:red", lw=1.5, zorder=3, label="Pareto front, all points")
    ax.scatter([p["logic"] for p in front], [p["tokens_per_s"] for p in front],
               facecolors="none", edgecolors="tab:red", s=90, lw=1.5, zorder=4)
    for p in front:
        ax.annotate(f"{p['lanes']}/{p['head_lanes']}" + (" sh" if p["strategy"] == "shared"
                                                         else ""),
                    (p["logic"], p["tokens_per_s"]), textcoords="offset points",
                    xytext=(5, -10), fontsize=7)
    for p in pts:
        if p["design"]:
            ax.scatter([p["logic"]], [p["tokens_per_s"]], marker="*", s=200, c="k",
                       zorder=5, label="this design")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"logic area, calibrated: {sweep['logic_unit']} (log)")
    ax.set_ylabel(f"tokens/s at {sweep['fmax_mhz']:.1f} MHz, position {sweep['position']} (log)")
    ax.set_title(f"{m.get('model')}: lanes per layer / LM-head lanes; ROM {m['rom_bits']:,} bits "
                 f"and RAM {m['ram_bits']:,} bits at every point", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(out, "plot") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
    plt.close(fig)
