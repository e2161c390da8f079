"""Block-affine folded matrix-vector engine: llama.cpp block scales and mins, in hardware.

``y = rescale(sum_b D*P + M*S, ...)`` (:func:`golden.integer.project`) on ``lanes`` lanes with
the schedule and ROM contents of :mod:`golden.block_folded`: a :class:`hdl.lane_array.LaneArray`
of one pass.
"""

from golden.blockquant import BlockAffine

from .lane_array import LaneArray

__all__ = ["BlockMatVec"]


class BlockMatVec(LaneArray):
    """A :class:`LaneArray` of one pass: ``y = project(w, a, e)``."""

    def __init__(self, w: BlockAffine, **kwargs):
        super().__init__([w], **kwargs)
        self.w = w
        self.layout = self.layouts[0]
