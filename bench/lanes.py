"""``make bench-lanes``: the Fmax of one lane placed alone, per lane kind and
``--lane-stages``, as the report's built-in figures (:data:`gen.report.CALIBRATION_FMAX`).

    python -m bench.lanes [--model smollm2] [--kinds serial,parallel] [--stages 0,1,2,3,4,5]
                          [--dsp]

The lane is the model's layer-0 lane at the default lane count (the datapath every weight
goes through), in the shift-register harness (every port on a register), through yosys
``synth_ecp5`` (``-nodsp`` unless ``--dsp``) and nextpnr-ecp5, as ``hardwire report
--synth`` places a module. Writes ``build/bench/lanes.json`` and prints a table. About a
minute per serial point and two to four per parallel one, on one core.
"""

import json
import sys
import time

from bench import OUT, parser


def lane_array(model: str, kind: str, stages: int):
    """Layer 0's lane array of ``model`` as ``hardwire layer``/``chip`` build it."""
    from gen.models import load_model
    from golden.integer import IntFormat
    from hdl import not_elaborated
    from hdl.decoder import decoder_layer, default_beat, default_lanes

    m = load_model(model, "q4_1")
    parallel = kind == "parallel"
    lanes = default_lanes(m.cfg, parallel=parallel)
    layer = decoder_layer(m.cfg, m.layer(0), ctx=1, lanes=lanes,
                          beat=default_beat(m.cfg, lanes), fmt=IntFormat(), parallel=parallel,
                          lane_stages=stages)
    not_elaborated(layer, *layer.modules.values())  # only its lane is converted
    return layer.engine


def place(model: str, kind: str, stages: int, dsp: bool, timeout: float) -> dict:
    from gen.synth import SynthError, WrapPorts, module_ports, pnr_verilog

    arr = lane_array(model, kind, stages)
    wd = (OUT / "lanes" / f"{model}_{kind}_s{stages}{'_dsp' if dsp else ''}").resolve()
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / "lane.v"
    src.write_text(arr.lane_verilog())
    wrap = WrapPorts.from_module_ports(module_ports([src], arr.lane_name, wd, cwd=wd),
                                       clock="clk", reset="rst")
    t = time.perf_counter()
    row = {"kind": kind, "stages": stages, "dsp": dsp, "lanes": arr.lanes}
    try:
        r = pnr_verilog([src], arr.lane_name, wrap, "ecp5", wd / "pnr", cwd=wd,
                        timeout=timeout, dsp=dsp)
    except SynthError as e:
        return row | {"error": str(e)}
    st = r["synth"]["stats"]
    return row | {"fmax_mhz": r["pnr"]["fmax_mhz"], "device": r["pnr"]["device"],
                  "lut4_equiv": st["lut4_equiv"], "ff": st["FF"], "dsp_blocks": st["DSP"],
                  "seconds": round(time.perf_counter() - t, 1)}


def main(argv=None):
    from gen import set_tool_environment

    p = parser("python -m bench.lanes", __doc__)
    p.add_argument("--kinds", default="serial,parallel")
    p.add_argument("--stages", default="0,1,2,3,4,5")
    p.add_argument("--dsp", action="store_true", help="map multipliers to MULT18X18D")
    p.add_argument("--timeout", type=float, default=3600)
    a = p.parse_args(argv)
    set_tool_environment()
    rows = []
    for kind in a.kinds.split(","):
        for s in map(int, a.stages.split(",")):
            print(f"placing {a.model} {kind} lane, {s} stages ...", file=sys.stderr, flush=True)
            rows.append(place(a.model, kind, s, a.dsp, a.timeout))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lanes.json").write_text(json.dumps({"model": a.model, "rows": rows}, indent=1)
                                    + "\n")
    print(f"{'lane':<9} {'stages':>6} {'Fmax MHz':>9} {'LUT4-eq':>8} {'FF':>6} {'DSP':>4}")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:<9} {r['stages']:>6}  failed: {r['error']}")
            continue
        print(f"{r['kind']:<9} {r['stages']:>6} {r['fmax_mhz']:>9.2f} {r['lut4_equiv']:>8,} "
              f"{r['ff']:>6,} {r['dsp_blocks']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
