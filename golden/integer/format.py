"""The integer model's number format: every width and fraction (:class:`IntFormat`) and its
one rounding mode (:data:`MODE`)."""

from dataclasses import dataclass

__all__ = ["MODE", "IntFormat"]

#: Rounding of every right shift (:func:`golden.numerics.round_shift`), unless a docstring
#: says ``floor``.
MODE = "half_away"


@dataclass(frozen=True)
class IntFormat:
    """Every width and fraction of the integer layer."""

    abits: int = 16  # matvec activation mantissa bits (12 bits: 4.9 % off on SmolLM2's logits)
    res_frac: int = 12  # residual: int32 Q19.12
    res_bits: int = 32
    fx_frac: int = 12  # vectors between units: int32 Q.12
    fx_bits: int = 32
    norm_bits: int = 16  # RMSNorm squares this many bits of each element
    gain_bits: int = 15  # RMSNorm gain magnitude bits (plus sign)
    isqrt_frac: int = 16  # fraction bits of the square root
    recip_bits: int = 24  # mantissa bits of every reciprocal
    kv_bits: int = 16  # KV cache mantissa bits
    q_bits: int = 16  # query mantissa bits for the scores
    trig_frac: int = 14  # RoPE cos/sin: round(cos * 2**14)
    score_frac: int = 12  # scores in log2 units, Q.12
    score_const_frac: int = 16  # log2(e) / sqrt(head_dim) as round(c * 2**16)
    prob_frac: int = 16  # exp2 results: Q.16, 2**16 == 1.0
    exp_lut_bits: int = 6  # exp2 table: 2**6 + 1 entries, linear interpolation
    sig_range: int = 16  # sigmoid table covers [-16, 16)
    sig_step_bits: int = 4  # ... in steps of 2**-4, linear interpolation
    exp_bits: int = 8  # every block-floating-point exponent is a signed 8-bit field
    head_abits: int | None = None  # LM head input (final RMSNorm) mantissa bits; None: abits
    logit_frac: int = 12  # logits: int32 Q.12
    logit_bits: int = 32

    def __post_init__(self):
        for name in ("abits", "head_abits"):
            v = getattr(self, name)
            if v is not None and not 2 <= v <= 16:
                raise ValueError(f"{name} must be in 2..16, not {v}")
        if self.exp_lut_bits > self.score_frac:
            raise ValueError("exp_lut_bits must not exceed score_frac")
