"""What every lane-multiplexed schedule shares (:mod:`golden.folded`,
:mod:`golden.block_folded`): row ``r`` runs on lane ``r % lanes`` as its local row
``r // lanes``, and each lane reads one ROM word per cycle, so a vector takes as many cycles
as a lane has words."""

__all__ = ["LaneLayout"]


class LaneLayout:
    """The lane arithmetic of a layout with ``rows``, ``cols`` and ``lanes``.

    A subclass says what one ROM word holds: :attr:`word_cols` columns of one row, and a
    group of columns takes :attr:`words_per_group` words (one per bit plane, or one for all).
    """

    rows: int
    cols: int
    lanes: int

    @property
    def word_cols(self) -> int:
        """Columns of a row in one ROM word."""
        raise NotImplementedError

    @property
    def words_per_group(self) -> int:
        """ROM words (cycles) per group of :attr:`word_cols` columns of a row."""
        raise NotImplementedError

    @property
    def rows_per_lane(self) -> int:
        return -(-self.rows // self.lanes)

    @property
    def depth(self) -> int:
        """ROM words per lane, which is also the cycles one vector takes."""
        return self.rows_per_lane * self.words_per_group * -(-self.cols // self.word_cols)

    @property
    def cycles_per_vector(self) -> int:
        return self.depth

    @property
    def ideal_cycles(self) -> float:
        """``rows * cols * words_per_group / (lanes * word_cols)``: every lane reads a full
        word every cycle and no word carries padding."""
        return self.rows * self.cols * self.words_per_group / (self.lanes * self.word_cols)
