"""``hardwire matvec``: a constant matrix-vector engine, from weights to a design directory."""

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from golden.folded import MAX_WORD
from golden.linear import (
    LinearSpec,
    Requant,
    acc_widths,
    check_weights,
    matvec,
    random_vectors,
    worst_case_vectors,
)
from golden.numerics import ROUNDING_MODES

from .design import check_rom_images, header, lint_waivers, module_infos, rom_files, write_design
from .errors import UserError
from .limits import check_memory
from .output import check_output_directory
from .verilog import to_verilog, yosys_errors

__all__ = ["STRATEGIES", "MatVecConfig", "synthetic_weights", "load_weights", "build",
           "generate", "TOP"]

STRATEGIES = ("serial", "folded", "parallel")
TOP = "matvec"
MAX_DIM = 1 << 16
@dataclass(frozen=True, kw_only=True)
class MatVecConfig:
    """Everything that determines a generated matrix-vector design."""

    rows: int
    cols: int
    wbits: int
    abits: int = 8
    ternary: bool = False
    strategy: str = "folded"
    lanes: int | None = None
    word: int | None = None
    digit: int = 1
    stage_levels: int = 2
    requant: bool = False
    rounding: str = "half_away"
    requant_scale: float | None = None
    seed: int = 0
    rom_images: str = "auto"

    def __post_init__(self):
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v <= MAX_DIM:
                raise UserError(f"--{name} must be in 1..{MAX_DIM}, not {v}")
        try:
            LinearSpec(wbits=self.wbits, abits=self.abits, ternary=self.ternary)
        except ValueError as e:
            raise UserError(str(e).replace("wbits", "--wbits").replace("abits", "--abits")) \
                from None
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose one of "
                            f"{', '.join(STRATEGIES)}")
        if self.lanes is not None and self.lanes < 1:
            raise UserError(f"--lanes must be at least 1, not {self.lanes}")
        if self.word is not None and not 1 <= self.word <= MAX_WORD:
            raise UserError(f"--word must be in 1..{MAX_WORD}, not {self.word}")
        if self.digit not in (1, 2, 4):
            raise UserError(f"--digit must be 1, 2 or 4, not {self.digit}")
        if self.stage_levels < 0:
            raise UserError(f"--stage-levels must be 0 or more, not {self.stage_levels}")
        if self.rounding not in ROUNDING_MODES:
            raise UserError(f"unknown rounding {self.rounding!r}; choose one of "
                            f"{', '.join(ROUNDING_MODES)}")
        check_rom_images(self.rom_images)
        # the weights as int64 and the generators' working copies of them (measured: a
        # 65536x65536 int8 matrix wanted 32 GiB)
        check_memory(self.rows * self.cols * 8 * 4, f"a {self.rows}x{self.cols} matvec")

    @property
    def spec(self) -> LinearSpec:
        return LinearSpec(wbits=self.wbits, abits=self.abits, ternary=self.ternary)

    @property
    def effective_lanes(self) -> int:
        """Lanes actually built: the default is ``min(rows, 8)``, and never more than rows."""
        return min(self.lanes or 8, self.rows)

    @property
    def effective_word(self) -> int:
        """ROM word width: the default is ``min(cols, 32)``."""
        return self.word if self.word is not None else min(32, self.cols)


def synthetic_weights(rows: int, cols: int, spec: LinearSpec, seed: int) -> np.ndarray:
    """Seeded weights, uniform over the format's range."""
    lo, hi = spec.weight_range
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(rows, cols), dtype=np.int64)


def load_weights(path: Path, spec: LinearSpec) -> np.ndarray:
    """Read a ``.npy`` weight matrix and validate it, with a one-line error if it is bad."""
    try:
        w = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"weights file {path} does not exist") from None
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"weights file {path} is not a readable .npy array: {e}") from None
    if not isinstance(w, np.ndarray):
        raise UserError(f"weights file {path} does not hold a single array")
    if w.dtype.kind not in "iuf":
        raise UserError(f"weights file {path}: dtype {w.dtype} is not an integer type")
    if w.dtype.kind == "f" and not np.all(np.isfinite(w)):
        raise UserError(f"weights file {path} contains NaN or infinity")
    if w.dtype.kind == "f":
        raise UserError(f"weights file {path}: dtype {w.dtype} is floating point; hardwire "
                        "needs integer weights (quantise first)")
    try:
        return check_weights(w, spec)
    except ValueError as e:
        raise UserError(f"weights file {path}: {e}") from None


def requant_for(config: MatVecConfig, w) -> Requant | None:
    if not config.requant:
        return None
    try:
        if config.requant_scale is not None:
            return Requant.from_scale(config.requant_scale, rounding=config.rounding)
        return Requant.for_weights(w, config.abits, rounding=config.rounding)
    except ValueError as e:
        raise UserError(str(e)) from None


def build(config: MatVecConfig, w):
    """The Amaranth component for ``config`` and weights ``w``."""
    from hdl.folded import FoldedMatVec
    from hdl.parallel import ParallelMatVec
    from hdl.serial import SerialMatVec

    spec, rq = config.spec, requant_for(config, w)
    if config.strategy == "serial":
        return SerialMatVec(w, spec, digit=config.digit, requant=rq)
    if config.strategy == "parallel":
        return ParallelMatVec(w, spec, stage_levels=config.stage_levels, requant=rq)
    files = rom_files(config.rom_images, config.rows * config.cols * config.wbits)
    return FoldedMatVec(w, spec, lanes=config.effective_lanes, word=config.effective_word,
                        requant=rq, rom_images=files)


def _save_npy(path: Path, arr: np.ndarray):
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def generate(config: MatVecConfig, w, out: Path, *, vectors: int = 64, log=None) -> dict:
    """Write the design directory ``out`` and return its manifest."""

    t0 = time.perf_counter()
    check_output_directory(out)  # before the work: a bad --out fails at once
    w = np.asarray(w, dtype=np.int64)
    if w.shape != (config.rows, config.cols):
        raise UserError(f"weights have shape {w.shape[0]}x{w.shape[1]} but --rows/--cols say "
                        f"{config.rows}x{config.cols}")
    comp = build(config, w)
    rq = comp.requant
    t_build = time.perf_counter()
    with yosys_errors(TOP):
        text = to_verilog(comp, TOP)
        if config.strategy == "folded":
            text += comp.lane_verilog()
    t_verilog = time.perf_counter()

    rng = np.random.default_rng(config.seed + 1)
    xs = np.concatenate([worst_case_vectors(w, config.abits)[:256],
                         random_vectors(vectors, config.cols, config.abits, rng)])
    ys = matvec(w, xs)
    if rq is not None:
        ys = rq.apply(ys)

    roms = []
    if config.strategy == "folded" and comp.roms[0].image is not None:
        roms = [r.image for r in comp.roms]
    layout = getattr(comp, "layout", None)
    lanes = {comp.lane_name: "FoldedLane"} if config.strategy == "folded" else {}
    manifest = header("hardwire-matvec/1", None, TOP, roms) | {
        "rom_images_note": ("$readmemh paths are relative: simulate and synthesise with this "
                            "directory as the working directory") if roms else None,
        "modules": module_infos({TOP: comp}, TOP, lanes),
        "in": {"valid": "x__valid", "ready": "x__ready", "data": "x__payload",
               "count": config.cols, "bits": config.abits, "signed": True},
        "out": {"valid": "y__valid", "ready": "y__ready", "data": "y__payload",
                "count": config.rows, "bits": comp.out_bits, "signed": True},
        "packing": "element i occupies bits [i*bits, (i+1)*bits) of data, two's complement",
        "output": "requantised: saturate(round_shift(W@x * multiplier, shift, rounding), "
                  "out_bits)" if rq else "exact integer W@x",
        "requant": None if rq is None else {
            "multiplier": rq.multiplier, "shift": rq.shift, "rounding": rq.rounding,
            "out_bits": rq.out_bits},
        "latency_cycles": comp.latency,
        "latency_note": "cycles from the input handshake to y.valid",
        "cycles_per_vector": comp.cycles_per_vector,
        "strategy": config.strategy,
        "parameters": asdict(config) | {
            "lanes": config.effective_lanes if config.strategy == "folded" else None,
            "word": config.effective_word if config.strategy == "folded" else None,
            "lanes_requested": config.lanes,
        },
        "weights": "weights.npy",
        "weights_sha256": hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest(),
        "vectors": {"x": "vectors_x.npy", "y": "vectors_y.npy"},
        "acc_bits": [int(b) for b in acc_widths(w, config.abits)],
        "lint_waivers": lint_waivers(),
    }
    if layout is not None:
        manifest["folded"] = {
            "lanes": layout.lanes, "word": layout.word, "chunks": layout.chunks,
            "rows_per_lane": layout.rows_per_lane, "rom_depth": layout.depth,
            "rom_bits": layout.lanes * layout.depth * layout.word,
            "ideal_cycles": layout.ideal_cycles,
            "ideal_definition": "rows*cols*wbits / (lanes*word): every lane reads one full "
                                "word (word weight bits) per cycle",
            "cycles_over_ideal": layout.cycles_per_vector / layout.ideal_cycles,
        }
    if config.strategy in ("serial", "parallel"):
        manifest["adders"] = comp.adders
    if config.strategy == "serial":
        manifest["serial"] = {"digit": config.digit, "digits": comp.digits}
    if config.strategy == "parallel":
        manifest["parallel"] = {"stage_levels": config.stage_levels,
                                "pipeline_stages": comp.stages}

    def arrays(d: Path):
        _save_npy(d / "weights.npy", w)
        # Two plain .npy files, not .npz: zip members carry timestamps.
        _save_npy(d / "vectors_x.npy", xs)
        _save_npy(d / "vectors_y.npy", ys)
    write_design(out, manifest, text, comp.roms if roms else (), extra=arrays)
    t_end = time.perf_counter()
    if log:
        log(f"built {config.strategy} {config.rows}x{config.cols} in {t_build - t0:.2f} s, "
            f"Verilog in {t_verilog - t_build:.2f} s, wrote {out} in {t_end - t_verilog:.2f} s")
    return manifest
