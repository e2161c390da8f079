"""The Pareto plot of ``hardwire report --sweep`` (``DIR/pareto.png``)."""

from pathlib import Path

from ..errors import UserError
from ..output import atomic_file

__all__ = ["plot", "moe_plot"]


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


def moe_plot(x: dict, m: dict, out: Path) -> None:
    """``DIR/moe.png``: tokens/s against lanes for the design's weights as built, with
    per-expert lane groups and as a dense model of equal ROM (left); the reference shapes'
    variants beside HNLPU (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    styles = {"shared": ("*", "k", "built: shared lane array"),
              "per-expert": ("o", "tab:blue", "per-expert lane groups (G lanes each)"),
              "dense": ("s", "tab:orange", "dense, equal ROM")}
    for v, (marker, color, label) in styles.items():
        pts = [p for p in x["points"] or [] if p["variant"] == v]
        if not pts:
            continue
        a.scatter([p["lanes"] for p in pts], [p["tokens_per_s"] for p in pts], marker=marker,
                  c=color, s=120 if marker == "*" else 50, label=label, zorder=3)
        for p in pts:
            a.annotate((f"G={p['group_lanes']}, " if p["group_lanes"] else "")
                       + f"reads {100 * p['read_share']:.0f} %",
                       (p["lanes"], p["tokens_per_s"]), textcoords="offset points",
                       xytext=(6, -4), fontsize=7)
    a.set_xscale("log")
    a.set_xlabel("lanes in the chip (log)")
    a.set_ylabel(f"tokens/s at {x['fmax_mhz']:.1f} MHz")
    a.set_title(f"{m.get('model')}: the same weights, three datapaths", fontsize=9)
    a.grid(True, which="both", alpha=0.3)
    if x["points"]:
        a.legend(fontsize=8)
    names, vals, colors = [], [], []
    for name, ref in x["reference"].items():
        for p in ref["points"]:
            if p["position"] != min(q["position"] for q in ref["points"]):
                continue
            names.append(f"{name}\n{p['variant']}")
            vals.append(p["tokens_per_s"])
            colors.append(styles[p["variant"]][1])
    b.bar(range(len(vals)), vals, color=colors)
    h = x["hnlpu"]
    b.axhline(h["tokens_per_s"], color="tab:red", ls="--",
              label=f"HNLPU: {h['model']}, {h['chips']} chips at {h['process']}")
    b.set_xticks(range(len(vals)), names, fontsize=7)
    b.set_yscale("log")
    b.set_ylabel(f"tokens/s at {x['fmax_mhz']:.1f} MHz (log)")
    pos = min(p["position"] for p in next(iter(x["reference"].values()))["points"])
    b.set_title(f"public gpt-oss shapes, 64 lanes per layer, position {pos}", fontsize=9)
    b.legend(fontsize=8)
    b.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_file(out, "plot") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
    plt.close(fig)
