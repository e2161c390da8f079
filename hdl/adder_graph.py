"""Constant matrix-vector product as a shift-add graph.

Every weight is split into canonical signed digits, each a shifted, signed copy of one input.
Pairs of terms that recur across rows (same inputs, relative shift and sign) are built once
and shared (Hartley's method; this also builds multiples such as ``3x = x + 2x`` where they
pay). Every row then sums what is left in a balanced tree. Additions keep the low bits of the
less-shifted operand as wires and add only the overlapping bits. Every intermediate signal is
exactly as wide as the range of values it can take for these weights, computed by
:func:`golden.linear.dot_bounds`.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Signal, Value, signed

from golden.linear import dot_bounds
from golden.numerics import csd_digits

from .arith import signed_width

__all__ = ["AdderGraph"]


class _Form:
    """The linear form in ``x`` that a signal holds, reduced to what its exact range needs.

    Nodes only ever combine two multiples of the same input (``3x = x + 2x``) or forms over
    disjoint sets of inputs (a row's terms are distinct columns). So a form is either
    ``mult * x_col`` or a sum over disjoint columns, whose exact range is the sum of the
    ranges: O(1) per node instead of a coefficient vector per node.
    """

    __slots__ = ("col", "mult", "lo", "hi")

    def __init__(self, col, mult, lo, hi):
        self.col, self.mult, self.lo, self.hi = col, mult, lo, hi

    @classmethod
    def single(cls, col, mult, xlo, xhi):
        lo, hi = dot_bounds(np.array([mult]), xlo, xhi)
        return cls(col, mult, int(lo), int(hi))

    def __neg__(self):
        return _Form(self.col, None if self.mult is None else -self.mult, -self.hi, -self.lo)

    def combine(self, other, d, add, xlo, xhi):
        """``self + (other << d)`` or ``self - (other << d)``, exactly."""
        if self.col is not None and self.col == other.col:
            mult = self.mult + (other.mult << d) if add else self.mult - (other.mult << d)
            return _Form.single(self.col, mult, xlo, xhi)
        olo, ohi = (other.lo << d, other.hi << d) if add else (-(other.hi << d), -(other.lo << d))
        return _Form(None, None, self.lo + olo, self.hi + ohi)


class _Node:
    """A signal worth ``(-1 if neg else 1) * form << shift``; ``sig`` holds ``form``."""

    __slots__ = ("sig", "coef", "shift", "neg", "stage", "depth", "delayed")

    def __init__(self, sig, coef, shift=0, neg=False, stage=0, depth=0):
        self.sig, self.coef, self.shift, self.neg = sig, coef, shift, neg
        self.stage, self.depth = stage, depth
        self.delayed = {}


class AdderGraph:
    """Builds ``W @ x`` into an Amaranth module.

    Parameters
    ----------
    m : Module
        Where the logic goes.
    inputs : list of Value
        ``x_j``, signed.
    lo, hi : int
        Range of every input (used for exact widths).
    weights : ndarray
        Integer ``rows x cols`` constant matrix.
    stage_levels : int
        Insert a pipeline register after every ``stage_levels`` adder levels; 0 builds a purely
        combinational graph.
    enable : Value or None
        Clock enable of the pipeline registers.
    name : str
        Prefix for signal names.
    share : bool
        Extract subexpressions that several rows have in common (see :meth:`_share`).

    Members
    -------
    stages : int
        Pipeline registers between the inputs and :meth:`outputs`.
    adders : int
        Adders and subtractors built.
    shared : int
        Adders saved by subexpressions shared between rows.
    """

    def __init__(self, m, inputs, lo, hi, weights, *, stage_levels=0, enable=None, name="g",
                 share=True, window=64):
        self._m = m
        self._lo, self._hi = int(lo), int(hi)
        self._w = np.asarray(weights, dtype=np.int64)
        rows, cols = self._w.shape
        if len(inputs) != cols:
            raise ValueError(f"{len(inputs)} inputs for a matrix with {cols} columns")
        self._stage_levels = stage_levels
        self._enable = enable
        self._name = name
        self._regs = []
        self.adders = 0
        self._count = 0
        self._leaves = [_Node(Value.cast(x).as_signed(), _Form.single(j, 1, self._lo, self._hi))
                        for j, x in enumerate(inputs)]
        self.shared = 0
        self._share_terms = share
        self._window = window
        self._outputs = self._build_rows(rows)
        self.stages = max([n.stage for n in self._outputs if n is not None], default=0)
        self.adders += sum(1 for n in self._outputs if n is not None and n.neg)
        self._outputs = [None if n is None else self._delay(n, self.stages) for n in self._outputs]
        if self._regs:
            regs = self._regs
            if enable is None:
                m.d.sync += [r.eq(v) for r, v in regs]
            else:
                with m.If(enable):
                    m.d.sync += [r.eq(v) for r, v in regs]

    # -- exact widths -------------------------------------------------------------------------

    def _width(self, form) -> int:
        return signed_width(form.lo, form.hi)

    def _signal(self, coef, kind):
        self._count += 1
        # keep: each adder stays one carry chain instead of being merged by alumacc.
        return Signal(signed(self._width(coef)), name=f"{self._name}_{kind}{self._count}",
                      attrs={"keep": 1})

    # -- pipeline -----------------------------------------------------------------------------

    def _delay(self, node, stage):
        """``node`` as seen ``stage - node.stage`` registers later (registers are shared)."""
        while node.stage < stage:
            nxt = node.delayed.get(node.stage + 1)
            if nxt is None:
                r = Signal(node.sig.shape(), name=f"{self._name}_d{self._count}")
                self._count += 1
                self._regs.append((r, node.sig))
                nxt = _Node(r, node.coef, node.shift, node.neg, node.stage + 1, 0)
                node.delayed[node.stage + 1] = nxt
            node = nxt
        return node

    def _finish(self, node):
        """Register ``node`` if it ends a pipeline stage."""
        if self._stage_levels and node.depth >= self._stage_levels:
            r = Signal(node.sig.shape(), name=f"{self._name}_r{self._count}")
            self._count += 1
            self._regs.append((r, node.sig))
            return _Node(r, node.coef, node.shift, node.neg, node.stage + 1, 0)
        return node

    # -- adders -------------------------------------------------------------------------------

    def _combine(self, a, b, *, positive=False):
        """``a + b`` (as values, signs and shifts included).

        The result keeps the sign of the less-shifted operand, so that its low bits pass
        through as wires. With ``positive``, a result that would come out negated is built as
        one full-width subtraction instead.
        """
        if (a.shift, not a.neg) > (b.shift, not b.neg):
            a, b = b, a
        stage = max(a.stage, b.stage)
        a, b = self._delay(a, stage), self._delay(b, stage)
        d = b.shift - a.shift
        add = a.neg == b.neg
        coef = a.coef.combine(b.coef, d, add, self._lo, self._hi)
        neg = a.neg
        if positive and neg:
            coef, neg = -coef, False
        out = self._signal(coef, "s")
        shifted = b.sig << d if d else b.sig
        if neg != a.neg:
            # -(a - (b << d)) with a negative: (b << d) - a, or -(a + (b << d)) never arises.
            assert not add
            self._m.d.comb += out.eq(shifted - a.sig)
        elif 0 < d < len(a.sig) and len(out) > d:
            # The low d bits are a's; only the bits above them need an adder.
            hi = a.sig[d:].as_signed()
            self._m.d.comb += out.eq(Cat(a.sig[:d], hi + b.sig if add else hi - b.sig))
        else:
            self._m.d.comb += out.eq(a.sig + shifted if add else a.sig - shifted)
        self.adders += 1
        node = _Node(out, coef, a.shift, neg, stage, max(a.depth, b.depth) + 1)
        return self._finish(node)

    @staticmethod
    def _term(node, shift, neg):
        """``(-1 if neg else 1) * node << shift``: composes with the node's own sign and
        shift (a shared node can come out negated)."""
        return _Node(node.sig, node.coef, node.shift + shift, node.neg != neg, node.stage,
                     node.depth)

    def _row_terms(self, i):
        """Row ``i`` as ``{(node index, shift): neg}``: one term per canonical signed digit of
        each weight; sharing then finds the multiples worth building."""
        w = self._w[i]
        nz = np.flatnonzero(w)
        terms = {}
        digits = csd_digits(w[nz], 10)
        for j, k in zip(*np.nonzero(digits), strict=True):
            node = self._index(self._leaves[int(nz[j])], int(nz[j]))
            terms[(node, int(k))] = bool(digits[j, k] < 0)
        return terms

    def _index(self, node, col=None):
        key = id(node)
        if key not in self._ids:
            self._ids[key] = len(self._nodes)
            self._nodes.append(node)
            if col is not None:
                self._col.append(col)
        return self._ids[key]

    @staticmethod
    def _pair_key(ta, tb):
        """Pattern of two terms ``((node, shift), neg)``, independent of the row's own shift
        and sign: the same key in two rows means one shared adder can serve both."""
        (a, sa), na = ta
        (b, sb), nb = tb
        if (sb, b) < (sa, a):
            a, sa, na, b, sb, nb = b, sb, nb, a, sa, na
        return (a, b, sb - sa, na != nb)

    def _share(self, rows):
        """Greedy common-subexpression extraction across rows (Hartley's method): while some
        pair of terms, at the same relative shift and sign, occurs two or more times, build
        it once and substitute it.

        Only pairs whose columns (a node's lowest column) lie within ``window`` of each other
        are candidates, so the work per row is ``terms * window`` rather than ``terms**2``
        and generation time grows linearly with the weights. Counts live in a bucket queue;
        a pattern's occurrences are re-found (without overlap) when it is extracted.
        """
        win = self._window
        col = self._col
        counts = {}
        buckets = {}  # count -> relative shift -> keys (only counts >= 2)
        # where[r][node]: the shifts at which row r uses node
        where = [{} for _ in rows]
        # bycol[r][c]: row r's terms whose node column is c (updates visit the window only)
        bycol = [{} for _ in rows]
        users = {}

        def bump(key, by):
            c = counts.get(key, 0)
            if c >= 2:
                buckets[c][key[2]].discard(key)
            c += by
            counts[key] = c
            if c >= 2:
                buckets.setdefault(c, {}).setdefault(key[2], set()).add(key)

        for r, terms in enumerate(rows):
            items = sorted(terms.items(), key=lambda t: col[t[0][0]])
            for k, ta in enumerate(items):
                (n, sh), _ = ta
                users.setdefault(n, set()).add(r)
                where[r].setdefault(n, set()).add(sh)
                ca = col[n]
                bycol[r].setdefault(ca, set()).add((n, sh))
                for tb in items[k + 1:]:
                    if col[tb[0][0]] - ca > win:
                        break
                    bump(self._pair_key(ta, tb), 1)
        top = max(buckets, default=0)
        while top >= 2:
            level = buckets.get(top, {})
            shifts = [d for d, keys in level.items() if keys]
            if not shifts:
                top -= 1
                continue
            # Among the most frequent, the smallest relative shift gives the narrowest adder;
            # then the lowest-numbered nodes (deterministic).
            key = min(level[min(shifts)])
            a, b, ds, flip = key
            hits = []  # (row, term of a, term of b)
            for r in sorted(users.get(a, set()) & users.get(b, set())):
                terms, used = rows[r], set()
                for sh in sorted(where[r].get(a, ())):
                    ta, tb = (a, sh), (b, sh + ds)
                    if ta in used or tb in used or tb == ta or tb not in terms \
                            or ta not in terms or (terms[tb] != terms[ta]) != flip:
                        continue
                    used |= {ta, tb}
                    hits.append((r, (ta, terms[ta]), (tb, terms[tb])))
            if len(hits) < 2:
                bump(key, len(hits) - counts[key])
                continue
            node = self._combine(self._term(self._nodes[a], 0, False),
                                 self._term(self._nodes[b], ds, flip))
            new = self._index(node, min(col[a], col[b]))
            self.shared += len(hits) - 1
            for r, ta, tb in hits:
                terms = rows[r]
                del terms[ta[0]], terms[tb[0]]
                for (n, sh), _ in (ta, tb):
                    where[r][n].discard(sh)
                    bycol[r][col[n]].discard((n, sh))
                where[r].setdefault(new, set()).add(ta[0][1])
                tn = ((new, ta[0][1]), ta[1])
                lo_c = min(col[a], col[b]) - win
                hi_c = max(col[a], col[b]) + win
                near = [(t, terms[t]) for c in range(lo_c, hi_c + 1)
                        for t in sorted(bycol[r].get(c, ()))]
                for tc in near:
                    cc = col[tc[0][0]]
                    for old in (ta, tb):
                        if abs(col[old[0][0]] - cc) <= win:
                            bump(self._pair_key(old, tc), -1)
                    if abs(col[new] - cc) <= win:
                        bump(self._pair_key(tn, tc), 1)
                bump(key, -1)
                users.setdefault(new, set()).add(r)
                terms[tn[0]] = tn[1]
                bycol[r].setdefault(col[new], set()).add(tn[0])
            top = max(top, max(buckets, default=0))
        return rows

    def _build_rows(self, rows_count):
        self._nodes, self._ids, self._col = [], {}, []
        rows = [self._row_terms(i) for i in range(rows_count)]
        if self._share_terms:
            rows = self._share(rows)
        out = []
        for terms in rows:
            if not terms:
                out.append(None)
                continue
            level = [self._term(self._nodes[n], sh, neg) for (n, sh), neg in terms.items()]
            # Balanced tree; neighbours in shift order overlap least, so they share low wires.
            while len(level) > 1:
                level.sort(key=lambda n: (n.stage, n.shift))
                # Adders of mixed sign subtract the right way round, so that negative results
                # only come from two negative operands and a row needs a final negation only
                # when all its terms are negative.
                nxt = [self._combine(level[k], level[k + 1],
                                     positive=level[k].neg != level[k + 1].neg)
                       for k in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            out.append(level[0])
        return out

    # -- results ------------------------------------------------------------------------------

    def outputs(self):
        """Row results as ``(Value, lo, hi)``; the value is signed and exactly wide enough."""
        res = []
        for i, node in enumerate(self._outputs):
            if node is None:
                res.append((Const(0, signed(1)), 0, 0))
                continue
            lo, hi = dot_bounds(self._w[i], self._lo, self._hi)
            v = -node.sig if node.neg else node.sig  # a row whose terms are all negative
            if node.shift:
                v = Cat(Const(0, node.shift), v).as_signed()
            res.append((v, int(lo), int(hi)))
        return res
