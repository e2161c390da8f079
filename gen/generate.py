"""``hardwire generate``: greedy text generation with the whole model, one decode step per
token.

The prompt's tokens are fed one at a time (position 0, 1, ...), filling every layer's KV
cache; the logits after the last prompt token give the first new token, and each new token is
fed back until ``tokens`` are generated. The next token is always the largest logit, the lowest
id among equal ones (greedy). No BOS is added: the prompt is exactly the tokenizer's ids (or
``--prompt-ids``).

A backend is a *step factory* in :data:`BACKENDS`: ``factory(model, ctx)`` returns
``step(token, pos) -> (logits, next_id)``. Another backend is one more entry.
"""

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .design import MANIFEST, Design, check_lane_stages
from .errors import UserError
from .limits import check_memory, ctx_bytes
from .output import exclusive

__all__ = ["BACKENDS", "GenerateResult", "generate", "parse_prompt_ids", "float_stepper",
           "golden_stepper", "rtl_stepper"]

Step = Callable[[int, int], tuple[np.ndarray, int]]


def float_stepper(m, ctx: int) -> Step:
    """The float32 reference, :class:`golden.llama.FloatModel` (a gpt-oss model's
    :class:`golden.gpt_oss.GptOssModel`; logits float32)."""
    from golden.arch import float_model

    fm = float_model(m.cfg, m.weights(), ctx)

    def step(token: int, pos: int):
        with np.errstate(over="ignore", invalid="ignore"):
            logits, nxt = fm.step(token, pos)
        if not np.all(np.isfinite(logits)):
            raise UserError(f"the float model overflowed float32 at position {pos}")
        return logits, nxt
    return step


def golden_stepper(m, ctx: int) -> Step:
    """The integer golden, :class:`golden.llama_int.IntModel` (a gpt-oss model's
    :class:`golden.gpt_oss_int.IntMoeModel`) with the default
    :class:`golden.integer.IntFormat` (logits int, Q.logit_frac)."""
    from golden.arch import int_model

    try:
        im = int_model(m.cfg, m.weights(), ctx)
    except ValueError as e:
        raise UserError(f"{m.name}: {e}") from None
    return im.step


def rtl_stepper(m, ctx: int, lanes: int | None = None, progress=None,
                design=None, lane: str | None = None, lane_stages: int | None = None) -> Step:
    """The generated chip (:mod:`gen.chip`) in Verilator (:class:`sim.fast.ChipProcess`).

    The design is generated once per model, KV-cache size (``ctx`` rounded up to a power of
    two, at least 16, at most the model's), lane count and ``lane`` kind (default
    ``parallel``: a block's whole codes per cycle, several times faster to simulate than
    ``serial``; see :func:`gen.chip.generate_chip`) and ``lane_stages`` (default 0), its
    ROMs as image files above 1 Mbit of weights (then Verilator compiles one decoder layer
    for all of them, :mod:`sim.shared`): ``build/chip/`` keeps it
    under a digest of every weight, so a changed model file never reuses a stale design.
    ``progress(desc, total)`` returns a bar for the generation and the Verilator build. The
    chip returns only the next id and its logit, so ``logits`` is ``{id: logit}`` (int,
    Q.logit_frac). ``design``: an existing chip directory to use instead (``--chip``).
    """
    import atexit
    from pathlib import Path

    from sim.fast import ChipProcess

    from .chip import chip_digest, generate_chip

    if design is not None:
        d = Path(design)
        man = Design.read(d, lambda e: f"--chip {d}: not a chip design ({e})").manifest
        if man.get("kind") != "chip":
            raise UserError(f"--chip {d}: not a chip design (kind {man.get('kind')!r})")
        if man.get("weights_digest") != chip_digest(m):
            raise UserError(f"--chip {d} was generated from other weights than {m.name}")
        if man["ctx"] < ctx:
            raise UserError(f"--chip {d} holds {man['ctx']} positions per KV cache; this run "
                            f"needs {ctx}: lower --tokens or generate it with a larger --ctx")
        if lanes is not None and man["lanes"] != lanes:
            raise UserError(f"--chip {d} has {man['lanes']} lanes, not --lanes {lanes}")
        if lane is not None and man.get("lane", "serial") != lane:
            raise UserError(f"--chip {d} has {man.get('lane', 'serial')} lanes, not "
                            f"--lane {lane}")
        if lane_stages is not None and man.get("lane_stages", 0) != lane_stages:
            raise UserError(f"--chip {d} has {man.get('lane_stages', 0)} lane stages, not "
                            f"--lane-stages {lane_stages}")
        with exclusive(d / "sim_build" / "fast.lock", lambda: _waiting(d)):
            proc = ChipProcess(d, progress=(lambda n: progress("chip: Verilator build", n))
                               if progress else None)
        atexit.register(proc.close)
        return _chip_step(proc)
    # A power of two (at least 16) of KV-cache positions, so that prompts of other lengths
    # reuse the design; the results do not depend on the cache size.
    ctx = min(m.cfg.max_ctx, max(16, 1 << (ctx - 1).bit_length()))
    lane, stages = lane or "parallel", lane_stages or 0
    check_lane_stages(stages)
    stem = "".join(c if c.isalnum() else "_" for c in m.name)
    shape = dict(ctx=ctx, lanes=lanes, lane=lane, rom_images="auto") | (
        {"lane_stages": stages} if stages else {})
    d = Path("build") / "chip" / f"{stem}_ctx{ctx}_lanes{lanes or 'auto'}_{lane}_" \
        f"{f's{stages}_' if stages else ''}{chip_digest(m, **shape)}"
    # One run at a time generates and builds a cache entry; another waits, then reuses it.
    # The design appears whole or not at all (atomic_directory) and the build counts only
    # once its stamp is written, so an interrupted run leaves nothing a later one trusts.
    with exclusive(d.with_name(d.name + ".lock"), lambda: _waiting(d)):
        if not (d / MANIFEST).exists():
            generate_chip(m, d, ctx=ctx, lanes=lanes, lane=lane, lane_stages=stages,
                          rom_images="auto", log=None,
                          progress=(lambda n: progress("chip: layers", n)) if progress
                          else None)
        proc = ChipProcess(d, progress=(lambda n: progress("chip: Verilator build", n))
                           if progress else None)
    atexit.register(proc.close)
    return _chip_step(proc)


def _waiting(d) -> None:
    print(f"hardwire: another run is generating or building {d}; waiting for it",
          file=sys.stderr, flush=True)


def _chip_step(proc) -> Step:
    def step(token: int, pos: int):
        nxt, logit = proc.step(token, pos)
        return {nxt: logit}, nxt
    step.process = proc
    return step


#: Backend name -> step factory ``(model, ctx) -> step``.
BACKENDS: dict[str, Callable[..., Step]] = {"float": float_stepper, "golden": golden_stepper,
                                            "rtl": rtl_stepper}


@dataclass
class GenerateResult:
    model: str
    backend: str
    ctx: int
    prompt_ids: list[int]
    ids: list[int]
    text: str
    #: Seconds of each decode step (prompt tokens included), in order.
    step_seconds: list[float] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"prompt_ids": self.prompt_ids, "ids": self.ids, "text": self.text}

    def summary(self) -> str:
        s = self.step_seconds
        # The first step also dequantises or prepares the weights: shown apart.
        later = f", then {sum(s[1:]) / len(s[1:]):.3g} s per step" if len(s) > 1 else ""
        return (f"generate: {self.model}, backend {self.backend}, {len(self.prompt_ids)} prompt "
                f"+ {len(self.ids)} new tokens, ctx {self.ctx}; first decode step "
                f"{s[0] if s else 0:.3g} s{later}")


def parse_prompt_ids(text: str) -> list[int]:
    """``'1,2,3'`` (spaces allowed) as token ids."""
    if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", text):
        raise UserError(f"--prompt-ids {text!r} is not a comma-separated list of token ids "
                        "(non-negative integers)")
    return [int(t) for t in text.split(",")]


def generate(model: str, tokens: int, backend: str = "float", prompt: str | None = None,
             prompt_ids: list[int] | None = None, ctx: int | None = None,
             quant: str | None = None, on_text=None, on_step=None,
             echo: bool = False, lanes: int | None = None, progress=None,
             chip=None, lane: str | None = None,
             lane_stages: int | None = None) -> GenerateResult:
    """Generate ``tokens`` tokens greedily after ``prompt`` (text) or ``prompt_ids``.

    ``ctx`` (the KV cache length) defaults to prompt + tokens and may not exceed the model's.
    ``on_text(str)`` receives the generated text as it becomes printable (whole UTF-8
    characters), after the prompt's text when ``echo`` (once the model is ready, so that an
    error comes before any text); ``on_step(pos, token, logits, next_id)`` sees every decode
    step. ``lanes``, ``lane``, ``lane_stages`` (:func:`rtl_stepper`) and ``progress(desc,
    total)`` (a bar for the RTL build) are for the ``rtl`` backend."""
    from .models import load_model

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if tokens < 1:
        raise UserError(f"--tokens must be at least 1, not {tokens}")
    if (prompt is None) == (prompt_ids is None):
        raise UserError("give the prompt as --prompt TEXT or --prompt-ids ID,ID,...")
    if prompt is not None and prompt == "":
        raise UserError("--prompt is empty; the model needs at least one token")
    if prompt is not None:
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as e:  # bytes the shell passed that are not UTF-8
            raise UserError(f"--prompt is not valid UTF-8 text (position {e.start})") from None
    m = load_model(model, quant or "q4_1")
    m.check_quant_given(quant)
    cfg = m.cfg
    tok = m.tokenizer(ids_ok=prompt is None)
    if prompt is not None:
        ids = tok.encode(prompt)
        if not ids:
            raise UserError(f"--prompt {prompt!r} encodes to no tokens")
        what = "the tokenizer gives"
    else:
        ids = list(prompt_ids)
        if not ids:
            raise UserError("--prompt-ids is empty; the model needs at least one token")
        what = "--prompt-ids has"
    bad = [i for i in ids if not 0 <= i < cfg.vocab]
    if bad:
        raise UserError(f"{what} token id {bad[0]}, outside the vocabulary of {m.name}: "
                        f"{cfg.vocab} tokens (ids 0..{cfg.vocab - 1})")
    need = len(ids) + tokens
    if ctx is None:
        if need > cfg.max_ctx:
            raise UserError(f"{len(ids)} prompt tokens + {tokens} new ones exceed the context "
                            f"length of {m.name}, {cfg.max_ctx}")
        ctx = need
    elif ctx > cfg.max_ctx:
        raise UserError(f"--ctx {ctx} exceeds the context length of {m.name}, {cfg.max_ctx}")
    elif need > ctx:
        raise UserError(f"{len(ids)} prompt tokens + {tokens} new ones exceed --ctx {ctx}; "
                        "raise --ctx or lower --tokens")
    check_memory(ctx_bytes(cfg, ctx), f"--ctx {ctx}")

    if backend == "rtl":
        step = rtl_stepper(m, ctx, lanes=lanes, progress=progress, design=chip, lane=lane,
                           lane_stages=lane_stages)
    else:
        if (lanes, chip, lane, lane_stages) != (None, None, None, None):
            raise UserError("--lanes, --lane, --lane-stages and --chip apply to the rtl "
                            "backend only")
        step = BACKENDS[backend](m, ctx)
    if echo and on_text is not None:
        on_text(prompt if prompt is not None else tok.decode(ids))
    res = GenerateResult(m.name, backend, ctx, list(ids), [], "")
    shown = ""
    cur = ids[0]
    for pos in range(len(ids) + tokens - 1):
        t0 = time.perf_counter()
        logits, nxt = step(cur, pos)
        res.step_seconds.append(time.perf_counter() - t0)
        if on_step is not None:
            on_step(pos, cur, logits, nxt)
        if pos + 1 < len(ids):
            cur = ids[pos + 1]
            continue
        res.ids.append(int(nxt))
        cur = nxt
        res.text = tok.decode(res.ids)
        # Hold back an incomplete UTF-8 character (decoded as U+FFFD) until it completes.
        last = len(res.ids) == tokens
        if on_text is not None and (last or not res.text.endswith("\ufffd")) \
                and res.text.startswith(shown) and len(res.text) > len(shown):
            on_text(res.text[len(shown):])
            shown = res.text
    return res
