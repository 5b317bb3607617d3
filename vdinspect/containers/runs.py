"""Allocation runs as numpy columns: what ``runs()`` returns for every format.

A valid image can describe a state change every few KiB (QCOW2 extended L2: one per 2 KiB
subcluster), so a small file can name a million runs. Kept as one Python ``Run`` object
each that costs ~360 bytes a run; kept as columns it costs ~50. A :class:`RunTable` is a
sequence of :class:`~vdinspect.containers.base.Run` made on demand (``table[i]``,
iteration), and offers its columns to whoever can use them (``allocation()``, chains).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..lazy import LazyArray, np
from ..schemas import DAMAGED, DATA, STATES, UNALLOCATED, ZERO

if TYPE_CHECKING:
    from .base import Run

#: state name -> code in the ``state`` column (the order of ``schemas.STATES``)
STATE_CODE = {name: i for i, name in enumerate(STATES)}
UNALLOCATED_CODE = STATE_CODE[UNALLOCATED]
BATCH = 4096  # Run objects gathered before they become columns

_COLUMNS = ("start", "length", "state", "layer", "host", "compressed", "src", "x0", "x1")
_DTYPES = ("int64", "int64", "int8", "int32", "int64", "bool", "int32", "int64", "int64")


def codes_for(names: dict[int, str]) -> LazyArray:
    """A format's state numbers (0..n-1) -> codes of the ``state`` column (an int8 array
    built on first use: formats define it at import time)."""
    return LazyArray(lambda: np.array([STATE_CODE[names[k]] for k in range(len(names))],
                                      dtype=np.int8))


#: a table unit's state while a format maps it (QCOW2 clusters and subclusters, VMDK
#: grains, VDI blocks, VHD sectors): one set of numbers for every format
S_UNALLOC, S_ZERO, S_DATA, S_COMP, S_DAMAGED = 0, 1, 2, 3, 4
#: unit state -> allocation state (a compressed unit holds data)
UNIT_STATE = {S_UNALLOC: UNALLOCATED, S_ZERO: ZERO, S_DATA: DATA, S_COMP: DATA,
              S_DAMAGED: DAMAGED}
#: unit state -> code of the ``state`` column of a RunTable
UNIT_CODES = codes_for(UNIT_STATE)


def unit_breaks(state: np.ndarray, host: np.ndarray, unit: int, data: int,
                alone: np.ndarray | None = None) -> np.ndarray:
    """Where a run starts among consecutive table units (blocks, grains): the first unit, a
    change of ``state``, a ``data`` unit whose host bytes do not follow the previous unit's
    (``unit`` bytes each), and around each unit marked ``alone`` (a run by itself)."""
    brk = np.ones(len(state), dtype=bool)
    if len(state) > 1:
        same = state[1:] == state[:-1]
        cont = (state[1:] != data) | (host[1:] == host[:-1] + unit)
        brk[1:] = ~(same & cont)
        if alone is not None:
            brk[1:] |= alone[1:] | alone[:-1]
    return brk


def unit_runs(first: int, unit: int, state: np.ndarray, host: np.ndarray, data: int,
              codes: np.ndarray, alone: np.ndarray, sources: list,
              alone_runs: Callable[[int], Iterable]) -> RunTable:
    """The runs of the units ``first, first + 1, ...`` of a one-level table (VDI blocks,
    Parallels clusters; ``unit`` bytes each) as columns: ``state`` per unit (``codes[state]``
    its run state code; units in state ``data`` read ``sources[0]`` at ``host``); a unit
    marked ``alone`` (cut short by the end of the file, never ``data``) comes as the Run
    objects ``alone_runs(index)`` gives, which report it."""
    starts = np.flatnonzero(unit_breaks(state, host, unit, data, alone))
    stops = np.append(starts[1:], len(state))
    s = state[starts]
    is_data = s == data
    odd = ~is_data & alone[starts]
    p = ~odd
    table = RunTable(((first + starts) * unit)[p], ((stops - starts) * unit)[p], codes[s[p]],
                     host=np.where(is_data, host[starts], -1)[p],
                     src=np.where(is_data, 0, -1)[p], sources=sources)
    return table.with_runs([r for a in (first + starts[odd]).tolist() for r in alone_runs(a)])


class RunTable:
    """Ordered runs as columns: ``start``, ``length`` (bytes), ``state`` (code into
    ``schemas.STATES``), ``layer`` (-1 none), ``host`` (host offset, -1 none),
    ``compressed``, ``src`` (index into ``sources``, -1 none) and ``x0``, ``x1`` (a
    compressed run's ``extra``: the unit's virtual start and its stored length)."""

    __slots__ = (*_COLUMNS, "sources")

    def __init__(self, start, length, state, *, layer=None, host=None, compressed=None,
                 src=None, x0=None, x1=None, sources: list | None = None) -> None:
        n = len(start)
        given = (start, length, state, layer, host, compressed, src, x0, x1)
        fill = (0, 0, 0, -1, -1, False, -1, 0, 0)
        for name, dtype, value, default in zip(_COLUMNS, _DTYPES, given, fill):
            if value is None:
                col = np.full(n, default, dtype=dtype)
            else:
                col = np.asarray(value, dtype=dtype)
                if col.ndim == 0:
                    col = np.full(n, col, dtype=dtype)
            setattr(self, name, col)
        #: (host_file, ByteSource) pairs the ``src`` column points into
        self.sources: list[tuple[str | None, Any]] = list(sources or [])

    # -- building ------------------------------------------------------------------
    @classmethod
    def empty(cls) -> RunTable:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z)

    @classmethod
    def from_runs(cls, runs: Iterable) -> RunTable:
        """Columns from Run objects (any order is kept as given)."""
        runs = list(runs)
        sources: list = []
        index: dict = {}
        src = np.full(len(runs), -1, dtype=np.int32)
        x0 = np.zeros(len(runs), dtype=np.int64)
        x1 = np.zeros(len(runs), dtype=np.int64)
        for i, r in enumerate(runs):
            if r.host_file is not None or r.source is not None:
                key = (r.host_file, id(r.source))
                k = index.get(key)
                if k is None:
                    k = index[key] = len(sources)
                    sources.append((r.host_file, r.source))
                src[i] = k
            if r.compressed and r.extra is not None:
                x0[i], x1[i] = r.extra[0], r.extra[1]
        return cls(
            [r.start for r in runs], [r.length for r in runs],
            [STATE_CODE[r.state] for r in runs],
            layer=[-1 if r.layer is None else r.layer for r in runs],
            host=[-1 if r.host_offset is None else r.host_offset for r in runs],
            compressed=[bool(r.compressed) for r in runs], src=src, x0=x0, x1=x1,
            sources=sources)

    @classmethod
    def collect(cls, items: Iterable) -> RunTable:
        """One table from what a format's ``_runs`` yields: Run objects and RunTables, in
        order. Run objects become columns in batches, so they never pile up."""
        parts: list[RunTable] = []
        batch: list = []
        for item in items:
            if isinstance(item, RunTable):
                if batch:
                    parts.append(cls.from_runs(batch))
                    batch = []
                parts.append(item)
            else:
                batch.append(item)
                if len(batch) >= BATCH:
                    parts.append(cls.from_runs(batch))
                    batch = []
        if batch:
            parts.append(cls.from_runs(batch))
        return cls.concat(parts)

    @classmethod
    def concat(cls, parts: list[RunTable]) -> RunTable:
        """The rows of ``parts`` one after the other (their sources pooled)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        sources: list = []
        index: dict = {}
        srcs = []
        for p in parts:
            remap = np.empty(len(p.sources) + 1, dtype=np.int32)
            remap[-1] = -1  # src -1 indexes the last slot
            for j, (name, source) in enumerate(p.sources):
                key = (name, id(source))
                k = index.get(key)
                if k is None:
                    k = index[key] = len(sources)
                    sources.append((name, source))
                remap[j] = k
            srcs.append(remap[p.src])
        cols = {c: np.concatenate([getattr(p, c) for p in parts]) for c in _COLUMNS if c != "src"}
        return cls(cols.pop("start"), cols.pop("length"), cols.pop("state"), **cols,
                   src=np.concatenate(srcs), sources=sources)

    def with_runs(self, runs: list) -> RunTable:
        """These rows and the Run objects ``runs`` together, in order of start (a format
        builds its common runs as columns and its rare ones, damaged stretches, one by one)."""
        if not runs:
            return self
        return RunTable.concat([self, RunTable.from_runs(runs)]).sorted()

    def shifted(self, delta: int) -> RunTable:
        """The rows moved by ``delta`` virtual bytes (a compressed unit's start too)."""
        out = self.take(slice(None))
        out.start = self.start + delta
        out.x0 = np.where(self.compressed, self.x0 + delta, self.x0)
        return out

    def take(self, which) -> RunTable:
        """The rows selected by a mask or an index array."""
        cols = {c: getattr(self, c)[which] for c in _COLUMNS}
        return RunTable(cols.pop("start"), cols.pop("length"), cols.pop("state"), **cols,
                        sources=self.sources)

    def sorted(self) -> RunTable:
        """The rows in order of ``start`` (stable)."""
        return self.take(np.argsort(self.start, kind="stable"))

    def clip_merge(self, start: int, end: int) -> RunTable:
        """Rows cut to ``[start, end)``, neighbours that continue each other joined (as
        ``merge_runs`` does for Run objects)."""
        s, e = self.start, self.start + self.length
        keep = (e > start) & (s < end) & (self.length > 0)
        t = self.take(slice(None) if keep.all() else keep)  # a view when all rows stay
        if not len(t):
            return t
        if t.start[0] < start or t.start[-1] + t.length[-1] > end:
            s = np.maximum(t.start, start)
            e = np.minimum(t.start + t.length, end)
            moved = s - t.start
            t.host = np.where((t.host >= 0) & ~t.compressed, t.host + moved, t.host)
            t.start, t.length = s, e - s
        if len(t) < 2:
            return t
        a = slice(None, -1)
        b = slice(1, None)
        host_cont = np.where(t.host[a] < 0, t.host[b] < 0, t.host[b] == t.host[a] + t.length[a])
        joins = ((t.start[b] == t.start[a] + t.length[a]) & (t.state[b] == t.state[a])
                 & (t.layer[b] == t.layer[a]) & ~t.compressed[a] & ~t.compressed[b]
                 & (t.src[b] == t.src[a]) & host_cont)
        if not joins.any():
            return t
        first = np.flatnonzero(np.concatenate(([True], ~joins)))
        out = t.take(first)
        out.length = np.add.reduceat(t.length, first)
        return out

    def labelled(self, layer: int) -> RunTable:
        """A copy whose rows other than ``unallocated`` say they come from ``layer``."""
        out = self.take(slice(None))
        out.layer = np.where(self.state != UNALLOCATED_CODE, layer, -1).astype(np.int32)
        return out

    def within(self, starts, ends) -> RunTable:
        """The pieces of these (ordered, gap-free) runs inside each of the ordered,
        disjoint ranges ``[starts[i], ends[i])``, which they must cover."""
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        first = np.searchsorted(self.end, starts, side="right")
        stop = np.searchsorted(self.start, ends, side="left")
        counts = np.maximum(stop - first, 0)
        total = int(counts.sum())
        rng = np.repeat(np.arange(len(starts)), counts)
        offsets = np.cumsum(counts) - counts
        idx = np.repeat(first, counts) + (np.arange(total) - offsets[rng])
        t = self.take(idx)
        s = np.maximum(t.start, starts[rng])
        e = np.minimum(t.start + t.length, ends[rng])
        t.host = np.where((t.host >= 0) & ~t.compressed, t.host + (s - t.start), t.host)
        t.start, t.length = s, e - s
        return t

    # -- reading -------------------------------------------------------------------
    @property
    def end(self) -> np.ndarray:
        return self.start + self.length

    def total(self, *states: str) -> int:
        """Bytes in runs of the given states."""
        return int(self.length[self.in_states(*states)].sum())

    def in_states(self, *states: str) -> np.ndarray:
        """A mask of the rows in the given states."""
        return np.isin(self.state, [STATE_CODE[s] for s in states])

    def of_states(self, *states: str) -> RunTable:
        """The rows in the given states."""
        return self.take(self.in_states(*states))

    def state_names(self) -> np.ndarray:
        """The ``state`` column as names (an object array)."""
        return np.array(STATES, dtype=object)[self.state]

    def host_files(self) -> np.ndarray:
        """The host file name of each row (an object array, None where there is none)."""
        names = np.array([name for name, _ in self.sources] + [None], dtype=object)
        return names[self.src]

    def run(self, i: int) -> Run:
        """Row ``i`` as a Run object."""
        from .base import Run

        k = int(self.src[i])
        name, source = self.sources[k] if k >= 0 else (None, None)
        comp = bool(self.compressed[i])
        layer = int(self.layer[i])
        host = int(self.host[i])
        return Run(int(self.start[i]), int(self.length[i]), STATES[self.state[i]],
                   None if layer < 0 else layer, name, None if host < 0 else host, comp,
                   source, (int(self.x0[i]), int(self.x1[i])) if comp else None)

    def runs_of(self, rows) -> list:
        """Rows ``rows`` (an index array or a mask) as Run objects, made from the columns
        at once (a few Python ints a row, not a numpy scalar a field)."""
        from .base import Run

        t = self.take(rows)
        names = [name for name, _ in self.sources] + [None]
        sources = [source for _, source in self.sources] + [None]
        out = []
        for s, n, st, lay, h, c, k, a, b in zip(*(getattr(t, c).tolist() for c in _COLUMNS)):
            out.append(Run(s, n, STATES[st], None if lay < 0 else lay, names[k],
                           None if h < 0 else h, c, sources[k], (a, b) if c else None))
        return out

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError("run index out of range")
        return self.run(i % n)

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self.run(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunTable | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RunTable {len(self)} runs>"
