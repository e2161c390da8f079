"""The ``hardwire`` command line.

Every bad input ends in one line ``hardwire: error: ...`` on stderr and exit code 2.
"""

import argparse
import sys
from pathlib import Path

from .errors import UserError

__all__ = ["main"]

EXAMPLES = """\
examples:
  hardwire matvec --rows 16 --cols 16 --wbits 4 --strategy parallel --out build/mv
  hardwire sim build/mv --simulator verilator --vectors 200
  hardwire synth build/mv --target ecp5
  hardwire forward --model tiny --layers 0:2 --input x.npy --backend golden --out y.npy
  hardwire generate --model smollm2 --prompt "The capital of France is" --tokens 8
  hardwire layer --model tiny --layer 0 --out build/layer
  hardwire sim build/layer --simulator verilator
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block, so that scripts can show it as is.
        raise UserError(f"{message} (see '{self.prog} --help')")


def _count(text):
    """A non-negative integer; ranges beyond that are checked where the meaning is known."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return v


def _at_least_one(text):
    v = _count(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, not {text!r}")
    return v


def _int_list(text):
    """Comma-separated positive integers."""
    return [_at_least_one(t.strip()) for t in text.split(",")]


def _parser():
    from .models import QUANTS

    quant_help = (f"quantiser of .safetensors/.npz checkpoint projections: {', '.join(QUANTS)} "
                  "(default q4_1; intN per channel, intNg per group of 32, ternary one "
                  "absmean scale per tensor, mxfp4 OCP MX; GGUF and tiny keep their own)")
    p = _Parser(prog="hardwire", description="Hard-wire quantised weights into Verilog: "
                "constant matrix-vector engines, proven bit-exact against a numpy golden model.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    mv = sub.add_parser("matvec", help="generate a constant matrix-vector engine y = W x",
                        description="Generate a matrix-vector engine whose weights are "
                        "constants: Verilog, ROM images, weights.npy, golden vectors and "
                        "manifest.json in --out.")
    mv.add_argument("--rows", type=_count, help="output count (default: from --weights)")
    mv.add_argument("--cols", type=_count, help="input count (default: from --weights)")
    mv.add_argument("--wbits", type=_count, required=True, help="weight bits, 2..8")
    mv.add_argument("--abits", type=_count, default=8, help="activation bits, 2..8 "
                    "(default 8)")
    mv.add_argument("--ternary", action="store_true", help="weights in {-1, 0, 1} (--wbits 2)")
    mv.add_argument("--strategy", default="folded", help="serial: activation-bit-serial "
                    "distributed arithmetic; folded: lanes with mask ROMs, weight-bit-serial "
                    "(scales to real layers); parallel: unrolled pipelined shift-add, one "
                    "vector per cycle (default folded)")
    mv.add_argument("--lanes", type=_count, help="folded: parallel lanes (default "
                    "min(rows, 8))")
    mv.add_argument("--word", type=_count, help="folded: weight bits per lane per cycle, "
                    "1..64 (default min(cols, 32))")
    mv.add_argument("--digit", type=_count, default=1, help="serial: activation bits per "
                    "cycle, 1, 2 or 4 (default 1)")
    mv.add_argument("--stage-levels", type=_count, default=2, help="parallel: adder "
                    "levels between pipeline registers, 0 for none (default 2)")
    mv.add_argument("--requant", action="store_true", help="requantise outputs to int8")
    mv.add_argument("--requant-scale", type=float, help="real scale for --requant (default: "
                    "the largest reachable |W x| maps to 127)")
    mv.add_argument("--rounding", default="half_away", help="requant rounding: floor, "
                    "trunc_zero, half_up, half_down, half_away, half_even (default half_away)")
    src = mv.add_mutually_exclusive_group()
    src.add_argument("--seed", type=_count, default=0, help="seed of the synthetic "
                     "weights and golden vectors (default 0)")
    src.add_argument("--weights", type=Path, help="integer weights, rows x cols, as .npy")
    mv.add_argument("--rom-images", default="auto", help="folded: 'inline' ROM contents in "
                    "the Verilog, 'files' for $readmemh images, 'auto' uses files above 1 Mbit")
    mv.add_argument("--vectors", type=_count, default=64, help="random golden vectors to "
                    "store besides the worst-case ones (default 64)")
    mv.add_argument("--out", type=Path, required=True, help="output directory (replaced "
                    "atomically)")

    lay = sub.add_parser("layer", help="generate one decoder layer of a model as Verilog",
                         description="Generate a decoder layer: one lane array whose mask ROMs "
                         "hold every projection, RMSNorm, RoPE, attention with a KV cache in "
                         "RAM, SwiGLU and the residual adds. Writes the Verilog, ROM images, "
                         "golden test tokens and manifest.json to --out.")
    lay.add_argument("--model", required=True,
                     help="'tiny', 'smollm2', or a .gguf / .safetensors / .npz file")
    lay.add_argument("--layer", type=_count, required=True, help="layer index")
    lay.add_argument("--lanes", type=_at_least_one,
                     help="lanes of the lane array; must divide every pass's rows (default: "
                          "gcd(64, dim, kv_dim, ffn))")
    lay.add_argument("--ctx", type=_at_least_one,
                     help="context length: KV cache positions (default 16)")
    lay.add_argument("--beat", type=_at_least_one,
                     help="vector elements per cycle between units (default: the widest "
                          "that divides the vector lengths, the block and --lanes)")
    lay.add_argument("--quant", default="q4_1", metavar="Q", help=quant_help)
    lay.add_argument("--rom-images", default="auto", choices=("auto", "inline", "files"),
                     help="ROM contents as $readmemh files or inside the Verilog (auto: files "
                          "above 1 Mbit)")
    lay.add_argument("--seed", type=_count, default=0, help="seed of the golden test tokens")
    lay.add_argument("--out", type=Path, required=True, help="output directory")

    chp = sub.add_parser("chip", help="generate the whole model as Verilog: token ids in, "
                         "next token ids out",
                         description="Generate the whole chip: the embedding ROM, every decoder "
                         "layer (each with its own lane array, mask ROMs and KV-cache RAM), the "
                         "final RMSNorm, the LM head (a lane array) and argmax. Token ids and "
                         "positions stream in, the next (greedy) id and its logit stream out. "
                         "Writes the Verilog, ROM images, a golden token sequence (the integer "
                         "model's greedy run) and manifest.json to --out; 'hardwire sim DIR' "
                         "proves it.")
    chp.add_argument("--model", required=True,
                     help="'tiny', 'smollm2', or a .gguf / .safetensors / .npz file")
    chp.add_argument("--lanes", type=_at_least_one,
                     help="lanes per decoder layer; must divide every pass's rows (default: "
                          "gcd(64, dim, kv_dim, ffn))")
    chp.add_argument("--head-lanes", type=_at_least_one,
                     help="lanes of the LM head; must divide the vocabulary (default: --lanes "
                          "if it divides it)")
    chp.add_argument("--ctx", type=_at_least_one,
                     help="context length: KV cache positions per layer (default 16)")
    chp.add_argument("--beat", type=_at_least_one,
                     help="vector elements per cycle between units (default: the widest that "
                          "fits)")
    chp.add_argument("--lane", default="serial", choices=("serial", "parallel"),
                     help="serial: each lane reads one bit plane of a weight block per cycle "
                          "(an adder tree); parallel: a block's whole codes per cycle (a "
                          "multiplier per column), bits times fewer cycles for more area "
                          "(default serial)")
    chp.add_argument("--quant", default="q4_1", metavar="Q", help=quant_help)
    chp.add_argument("--rom-images", default="auto", choices=("auto", "inline", "files"),
                     help="ROM contents as $readmemh files or inside the Verilog (auto: files "
                          "above 1 Mbit of weights)")
    chp.add_argument("--seed", type=_count, default=0, help="seed of the golden prompt")
    chp.add_argument("--no-clock-gating", action="store_true", help="every register on clk "
                     "(for FPGAs); by default each layer and the head stage run on a gated "
                     "clock (enable latch + AND, where an ASIC puts clock-gating cells)")
    chp.add_argument("--out", type=Path, required=True, help="output directory")

    sim = sub.add_parser("sim", help="prove a design bit-exact against golden with cocotb",
                         description="Run the cocotb testbench on a generated design: random "
                         "vectors, worst-case vectors, and valid/ready stalls on both sides, "
                         "compared exactly with the golden model.")
    sim.add_argument("design", type=Path,
                     help="directory written by 'hardwire matvec', 'layer' or 'chip'")
    sim.add_argument("--simulator", choices=("icarus", "verilator"),
                     help="default: icarus for matvec designs, verilator for layers and chips")
    sim.add_argument("--vectors", type=_at_least_one, default=100,
                     help="random vectors per test (default 100)")
    sim.add_argument("--seed", type=_count, default=1)
    sim.add_argument("--waves", action="store_true", help="dump waveforms")

    syn = sub.add_parser("synth", help="synthesise with yosys and place-and-route with nextpnr",
                         description="Synthesise a design: generic 2-input gates, or LUT4/carry/"
                         "FF/BRAM for iCE40/ECP5 plus nextpnr Fmax. Writes report.json in the "
                         "design directory and prints a table. A layer design (hardwire layer) "
                         "is synthesised per module: each unit, the lane datapath once (counted "
                         "once per lane), the lane array and the top's glue, each with the "
                         "modules it instantiates as black boxes; it gets no place-and-route. "
                         "A chip design (hardwire chip --no-clock-gating) is synthesised the same "
                         "way, then its module netlists are joined and placed and routed on the "
                         "smallest ECP5/iCE40 that holds it; if none does, the largest module "
                         "that fits is placed alone (the report says which). "
                         "Exit code 1 when a module timed out or failed (the report says which).")
    syn.add_argument("design", type=Path)
    syn.add_argument("--target", default="ecp5", choices=("generic", "ice40", "ecp5"))
    syn.add_argument("--no-pnr", action="store_true", help="skip place-and-route")
    syn.add_argument("--timeout", type=float, default=1800, help="seconds per tool run (for a "
                     "layer: per module)")
    syn.add_argument("--jobs", type=_at_least_one, help="layer: yosys runs at once (default: "
                     "the CPUs, at most 8)")
    syn.add_argument("--modules", metavar="GLOB[,GLOB...]", help="layer: synthesise only the "
                     "modules matching these patterns (e.g. 'layer_*,hw_Bfp*'); the others "
                     "are reported as skipped")
    syn.add_argument("--dsp", action="store_true", help="layer: map the units' multipliers to "
                     "DSP blocks (default: LUTs, as for matvec designs)")

    asc = sub.add_parser("asic", help="ASIC hand-off: gate-level netlist, ROM macros, LibreLane "
                         "config", description="Write the ASIC hand-off of a design directory "
                         "(hardwire chip/layer/matvec with ROM image files): a gate-level "
                         "netlist from yosys' generic synthesis (per module, write_verilog "
                         "-noattr) with every ROM a black-box macro (one per image), the macros' "
                         "black boxes and simulation models, a LibreLane config.json (MACROS with "
                         "their instances; LEF/GDS to be provided by a ROM compiler), MACROS.md, "
                         "the clock-gating points, and manifest.json. The netlist is read back "
                         "by yosys (check -assert) and linted by Verilator and Icarus.")
    asc.add_argument("design", type=Path)
    asc.add_argument("--out", type=Path, required=True, help="output directory")
    asc.add_argument("--clock-period", type=float, default=20.0, metavar="NS",
                     help="CLOCK_PERIOD of config.json, in ns (a target; default 20)")
    asc.add_argument("--gates", default="abc", choices=("abc", "techmap", "2-input"),
                     help="abc: yosys 'synth' (ABC to simple gates, the default); techmap: "
                     "'synth -noabc' (faster, slightly larger); 2-input: then 'abc -g' to the "
                     "2-input gate set (slowest)")
    asc.add_argument("--timeout", type=float, default=1800, help="seconds per yosys run")
    asc.add_argument("--jobs", type=_at_least_one, help="yosys runs at once")
    asc.add_argument("--no-lint", action="store_true", help="skip Verilator lint and the "
                     "Icarus compile of the netlist")

    rep = sub.add_parser("report", help="area, cycles, tokens/s, weight error and a design-space "
                         "sweep of a chip (or layer) design",
                         description="Report a chip (or layer) design: ROM/RAM bits, lanes and "
                         "the logic of every module (yosys figures where synthesised, else "
                         "calibrated per module kind, each figure saying which), cycles per "
                         "token (formula, ideal, measured by 'hardwire sim'), the Fmax of one "
                         "module placed alone by nextpnr and tokens/s at it, the weight error "
                         "per format, and with --sweep a lanes x LM-head lanes x strategy sweep "
                         "with its Pareto front (DIR/pareto.png). Writes DIR/report.json (no "
                         "wall times: the same design gives the same bytes).")
    rep.add_argument("design", type=Path, help="directory written by 'hardwire chip' (or "
                     "'hardwire layer')")
    rep.add_argument("--sweep", action="store_true", help="chip: the design-space sweep and "
                     "its Pareto plot")
    rep.add_argument("--target", default="ecp5", choices=("generic", "ice40", "ecp5"))
    rep.add_argument("--dsp", action="store_true", help="figures with multipliers in DSP "
                     "blocks (yosys runs with --dsp)")
    rep.add_argument("--synth", action="store_true", help="run yosys per module (unless the "
                     "manifest has figures for this target) and nextpnr on the Fmax module "
                     "(unless cached); without it, earlier runs' results are used and the rest "
                     "is calibrated")
    rep.add_argument("--timeout", type=float, default=900, help="--synth: seconds per module "
                     "(default 900); a module that runs out is calibrated instead")
    rep.add_argument("--jobs", type=_at_least_one, help="--synth: yosys runs at once")
    rep.add_argument("--fmax-module", metavar="MODULE", help="the module to place and route "
                     "for Fmax (default: a lane of the first decoder layer)")
    rep.add_argument("--model", help="the design's model file, when it is not 'tiny' or "
                     "'smollm2' (for the sweep and the weight error)")
    rep.add_argument("--quant", metavar="Q", help="the --quant the design was made with, "
                     "for a float checkpoint")
    rep.add_argument("--lanes", type=_int_list, metavar="P,P,...", help="--sweep: lanes per "
                     "layer to try (default: the powers of two 8..256 that divide every "
                     "pass's rows, the largest such divisor and the design's own)")
    rep.add_argument("--head-lanes", type=_int_list, metavar="P,P,...", help="--sweep: LM-head "
                     "lanes to try (default: likewise for the vocabulary, up to 1024)")

    fw = sub.add_parser("forward", help="run hidden states through decoder layers (float "
                        "reference or integer golden)",
                        description="Run hidden states through a range of a model's decoder "
                        "layers, one decode\nstep per position (row t of --input is position "
                        "t), and save the result.\n\n"
                        "  float   the float32 reference (golden/llama.py)\n"
                        "  golden  the bit-exact integer model of the hardware "
                        "(golden/llama_int.py): the\n          input becomes the integer "
                        "residual once, stays integer between layers,\n          and is "
                        "converted back to float at the end\n"
                        "  rtl     the generated Verilog of each layer (hardwire layer), run in "
                        "Verilator;\n          designs are kept in build/forward/, so a second "
                        "run skips generation",
                        epilog="example:\n  hardwire forward --model tiny --layers 0:2 "
                        "--input x.npy --backend golden --out y.npy",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fw.add_argument("--model", required=True, metavar="M", help="'tiny' (shipped synthetic "
                    "model), 'smollm2' (SmolLM2-135M Q4_1), or a .gguf file, or a "
                    ".safetensors/.npz Llama checkpoint with config.json beside it")
    fw.add_argument("--layers", required=True, metavar="A:B", help="layers A..B-1 (half-open, "
                    "like a Python slice; A or B may be left out), or N for layer N alone")
    fw.add_argument("--input", required=True, type=Path, metavar="X.npy",
                    help="hidden states, float [T, dim] .npy (float16/32/64, cast to "
                    "float32): positions 0..T-1")
    fw.add_argument("--backend", required=True, choices=("float", "golden", "rtl"),
                    help="float: float32 reference; golden: integer golden model; rtl: the "
                    "generated layers in Verilator")
    fw.add_argument("--lanes", type=_at_least_one, help="rtl backend: lanes per layer "
                    "(default as for 'hardwire layer')")
    fw.add_argument("--out", required=True, type=Path, metavar="Y.npy", help="result, "
                    "float32 [T, dim] .npy (written atomically; the directory must exist)")
    fw.add_argument("--ctx", type=_at_least_one, metavar="L", help="context length (KV cache "
                    "size), at least T and at most the model's (default min(64, the model's))")
    fw.add_argument("--quant", metavar="Q", help=quant_help)

    from .generate import BACKENDS as GEN_BACKENDS

    gn = sub.add_parser("generate", help="generate text greedily with the whole model (float "
                        "reference, integer golden, or the chip's RTL)",
                        description="Generate text greedily: the prompt's tokens are fed one "
                        "decode step at a time\n(KV cache), then each new token (the largest "
                        "logit, lowest id on ties) is fed back.\nNo BOS is added. Prints the "
                        "prompt and the new text as it is produced.\n\n"
                        "  float   the float32 reference (golden/llama.py)\n"
                        "  golden  the bit-exact integer model of the hardware "
                        "(golden/llama_int.py)\n"
                        "  rtl     the generated chip (hardwire chip) in Verilator; generated "
                        "and built\n          once per model, KV-cache size and --lanes "
                        "(cached in build/chip/)\n\n"
                        "Tokenizers come from the model: a GGUF's own vocabulary and merges, the "
                        "tokenizer.json\nbeside a checkpoint, bytes for tiny (token i is byte i).",
                        epilog="examples:\n  hardwire generate --model smollm2 --prompt \"The "
                        "capital of France is\" --tokens 8\n  hardwire generate --model tiny "
                        "--prompt-ids 1,2,3 --tokens 4 --backend golden --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gn.add_argument("--model", required=True, metavar="M", help="'tiny', 'smollm2', a .gguf "
                    "file, or a .safetensors/.npz checkpoint with config.json (and "
                    "tokenizer.json) beside it")
    src = gn.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", metavar="TEXT", help="prompt text")
    src.add_argument("--prompt-ids", metavar="ID[,ID...]", help="prompt as token ids")
    gn.add_argument("--tokens", type=_at_least_one, required=True, metavar="N",
                    help="tokens to generate")
    gn.add_argument("--backend", default="float", choices=tuple(GEN_BACKENDS),
                    help="default float")
    gn.add_argument("--ctx", type=_at_least_one, metavar="L", help="context length (KV "
                    "cache size), at least prompt + N and at most the model's (default "
                    "prompt + N)")
    gn.add_argument("--quant", metavar="Q", help=quant_help)
    gn.add_argument("--lanes", type=_at_least_one, metavar="P", help="rtl: lanes per decoder "
                    "layer of the generated chip (default as for 'hardwire chip')")
    gn.add_argument("--lane", choices=("serial", "parallel"), help="rtl: the lanes of the "
                    "generated chip, as for 'hardwire chip' (default parallel: several times "
                    "faster to simulate)")
    gn.add_argument("--chip", type=Path, metavar="DIR", help="rtl: use this design written by "
                    "'hardwire chip' (same model, enough --ctx) instead of build/chip/")
    gn.add_argument("--compare", metavar="BACKEND", choices=tuple(GEN_BACKENDS),
                    help="also run BACKEND on the same prompt ids and print the two token "
                    "lists side by side (exit 1 if they differ); with --json, adds "
                    '"compare": {"backend", "ids", "same"}')
    gn.add_argument("--json", action="store_true", help="print one JSON object "
                    '{"prompt_ids": [...], "ids": [...], "text": "..."} instead of the text')
    return p


def _cmd_matvec(a):
    from golden.linear import LinearSpec

    from .matvec import MatVecConfig, generate, load_weights, synthetic_weights

    try:
        spec = LinearSpec(wbits=a.wbits, abits=a.abits, ternary=a.ternary)
    except ValueError as e:
        raise UserError(str(e).replace("wbits", "--wbits").replace("abits", "--abits")) from None
    if a.weights is not None:
        w = load_weights(a.weights, spec)
        rows, cols = w.shape
        if (a.rows or rows) != rows or (a.cols or cols) != cols:
            raise UserError(f"weights file {a.weights} has shape {rows}x{cols} but --rows/"
                            f"--cols say {a.rows or rows}x{a.cols or cols}")
    else:
        if a.rows is None or a.cols is None:
            raise UserError("give --rows and --cols, or --weights")
        rows, cols, w = a.rows, a.cols, None
    config = MatVecConfig(rows=rows, cols=cols, wbits=a.wbits, abits=a.abits,
                          ternary=a.ternary, strategy=a.strategy, lanes=a.lanes, word=a.word,
                          digit=a.digit, stage_levels=a.stage_levels, requant=a.requant,
                          rounding=a.rounding, requant_scale=a.requant_scale, seed=a.seed,
                          rom_images=a.rom_images)
    if w is None:
        w = synthetic_weights(rows, cols, spec, a.seed)
    m = generate(config, w, a.out, vectors=a.vectors,
                 log=lambda s: print(s, file=sys.stderr))
    print(f"{a.out}: {m['strategy']} {rows}x{cols} int{a.wbits}, out {m['out']['bits']} bits, "
          f"latency {m['latency_cycles']}, {m['cycles_per_vector']} cycles/vector")
    return 0


def _cmd_layer(a):
    from .layer import generate_layer

    generate_layer(a.model, a.layer, a.out, lanes=a.lanes, ctx=a.ctx, beat=a.beat,
                   seed=a.seed, quant=a.quant, rom_images=a.rom_images)
    return 0


def _cmd_sim(a):
    import json

    from sim.runner import run_chip, run_layer, run_matvec

    try:
        kind = json.loads((a.design / "manifest.json").read_text()).get("kind", "matvec")
    except (OSError, ValueError) as e:
        raise UserError(f"{a.design} is not a design directory (manifest.json: {e})") from None
    if kind == "layer":
        from .layer import cycle_report

        res = run_layer(a.design, simulator=a.simulator or "verilator", seed=a.seed,
                        waves=a.waves)
        if res.ok:
            rep, table = cycle_report(a.design)
            (a.design / "cycles.json").write_text(json.dumps(rep, indent=1) + "\n")
            print(table)
    elif kind == "chip":
        from .chip import chip_cycle_report

        res = run_chip(a.design, simulator=a.simulator or "verilator", seed=a.seed,
                       waves=a.waves)
        if res.ok:
            rep, table = chip_cycle_report(a.design)
            (a.design / "cycles.json").write_text(json.dumps(rep, indent=1) + "\n")
            print(table)
    else:
        res = run_matvec(a.design, simulator=a.simulator or "icarus", vectors=a.vectors,
                         seed=a.seed, waves=a.waves)
    print(res.summary())
    return 0 if res.ok else 1


def _cmd_chip(a):
    from .chip import generate_chip
    from .forward import tty_progress

    generate_chip(a.model, a.out, lanes=a.lanes, head_lanes=a.head_lanes, ctx=a.ctx,
                  beat=a.beat, seed=a.seed, quant=a.quant, rom_images=a.rom_images,
                  gate_clocks=not a.no_clock_gating, lane=a.lane,
                  progress=lambda n: tty_progress(n, "chip: layers", "layer"))
    return 0


def _cmd_synth(a):
    from .synth import synth_design

    modules = None if a.modules is None else [m.strip() for m in a.modules.split(",")]
    report = synth_design(a.design, target=a.target, pnr=not a.no_pnr, timeout=a.timeout,
                          jobs=a.jobs, modules=modules, dsp=a.dsp)
    print(report.table())
    bad = [e for e in report.data.get("modules", ()) if e["status"] in ("timeout", "failed")]
    if bad:
        print(f"hardwire: warning: {len(bad)} module{'s' if len(bad) > 1 else ''} not "
              f"synthesised ({', '.join(e['module'] + ': ' + e['status'] for e in bad)}); "
              "the totals leave them out", file=sys.stderr)
        return 1
    return 0


def _cmd_asic(a):
    from .flow import asic_handoff

    asic_handoff(a.design, a.out, clock_period_ns=a.clock_period, gates=a.gates,
                 timeout=a.timeout, jobs=a.jobs, lint=not a.no_lint)
    return 0


def _cmd_report(a):
    from .report import make_report

    _, table = make_report(a.design, target=a.target, dsp=a.dsp, synth=a.synth,
                           timeout=a.timeout, jobs=a.jobs, fmax_module=a.fmax_module,
                           sweep=a.sweep, model=a.model, quant=a.quant, lanes=a.lanes,
                           head_lanes=a.head_lanes,
                           log=lambda s: print(f"hardwire: {s}", file=sys.stderr))
    print(table)
    return 0


def _cmd_forward(a):
    from .forward import forward, tty_progress

    res = forward(a.model, a.layers, a.input, a.backend, a.out, ctx=a.ctx, quant=a.quant,
                  progress=tty_progress, lanes=a.lanes,
                  warn=lambda s: print(f"hardwire: warning: {s}", file=sys.stderr),
                  info=lambda s: print(f"hardwire: {s}", file=sys.stderr))
    print(res.summary())
    return 0


def _cmd_generate(a):
    import json

    from .generate import generate, parse_prompt_ids

    def show(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    ids = None if a.prompt_ids is None else parse_prompt_ids(a.prompt_ids)
    if a.chip is not None and "rtl" not in (a.backend, a.compare):
        raise UserError("--chip names the design of the rtl backend; add --backend rtl or "
                        "--compare rtl")
    if (a.lanes is not None or a.lane is not None) and "rtl" not in (a.backend, a.compare):
        raise UserError("--lanes and --lane shape the rtl backend's chip; add --backend rtl or "
                        "--compare rtl")
    from .forward import tty_progress

    res = generate(a.model, a.tokens, a.backend, prompt=a.prompt, prompt_ids=ids, ctx=a.ctx,
                   quant=a.quant, on_text=None if a.json else show, echo=True,
                   lanes=a.lanes if a.backend == "rtl" else None,
                   progress=lambda desc, n: tty_progress(n, desc, "file"),
                   chip=a.chip if a.backend == "rtl" else None,
                   lane=a.lane if a.backend == "rtl" else None)
    other = None
    if a.compare:
        other = generate(a.model, a.tokens, a.compare, prompt_ids=res.prompt_ids, ctx=a.ctx,
                         quant=a.quant, lanes=a.lanes if a.compare == "rtl" else None,
                         progress=lambda desc, n: tty_progress(n, desc, "file"),
                         chip=a.chip if a.compare == "rtl" else None,
                         lane=a.lane if a.compare == "rtl" else None)
    same = other is None or other.ids == res.ids
    if a.json:
        out = res.as_json()
        if other is not None:
            out["compare"] = {"backend": a.compare, "ids": other.ids, "same": same}
        print(json.dumps(out, ensure_ascii=False))
    else:
        show("\n")
        if other is not None:
            print(_side_by_side(res, other, a.model))
    print(f"hardwire: {res.summary()}", file=sys.stderr)
    if other is not None:
        print(f"hardwire: {other.summary()}", file=sys.stderr)
    return 0 if same else 1


def _side_by_side(a, b, model: str) -> str:
    """Two generations of the same prompt as a table: position, id and text per backend."""
    from .models import load_model

    tok = load_model(model, "q4_1").tokenizer()
    w = max(len(a.backend), len(b.backend), 6)
    lines = [f"{'pos':>4}  {a.backend:>{w}} {'':<12}  {b.backend:>{w}} {'':<12}",
             "-" * (4 + 2 * (w + 15))]
    for k, (x, y) in enumerate(zip(a.ids, b.ids, strict=True)):
        mark = "" if x == y else "   <- differs"
        lines.append(f"{len(a.prompt_ids) + k:>4}  {x:>{w}} {tok.decode([x])!r:<12}  "
                     f"{y:>{w}} {tok.decode([y])!r:<12}{mark}")
    same = a.ids == b.ids
    lines.append(f"{a.backend} and {b.backend}: "
                 + ("the same tokens" if same else "DIFFERENT tokens"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = _parser()
    try:
        a = parser.parse_args(argv)
        if a.command is None:
            parser.print_help()
            return 2
        return {"matvec": _cmd_matvec, "sim": _cmd_sim, "synth": _cmd_synth,
                "forward": _cmd_forward, "layer": _cmd_layer, "chip": _cmd_chip, "asic": _cmd_asic,
                "generate": _cmd_generate, "report": _cmd_report}[a.command](a)
    except UserError as e:
        print(f"hardwire: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hardwire: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
