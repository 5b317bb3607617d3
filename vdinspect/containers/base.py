"""What every image-format reader shares: allocation runs, generic reads, report rows.

A format module subclasses :class:`Image` and implements ``_runs(start, end)``; reading,
run merging and clipping live here once.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..findings import Findings, check_row
from ..io import ByteSource, FileSource, FilledSource, LRUCache
from ..lazy import np
from ..schemas import BACKING, DAMAGED, DATA, STATES, UNALLOCATED, ZERO  # noqa: F401 (re-exported)
from . import readplan
from .runs import RunTable

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

MAX_LEAK_ROWS = 1000  # leaked blocks/clusters check() lists one by one; one row counts the rest


@dataclass(slots=True)
class Run:
    """One stretch of the virtual disk with a single allocation state.

    ``source`` (the host ByteSource) and ``extra`` (format-private, e.g. a compressed
    length) are for reading and do not appear in DataFrames.
    """

    start: int
    length: int
    state: str
    layer: int | None = None
    host_file: str | None = None
    host_offset: int | None = None
    compressed: bool = False
    source: Any = field(default=None, repr=False, compare=False)
    extra: Any = field(default=None, repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.start + self.length

    def clip(self, start: int, end: int) -> Run:
        """This run cut to ``[start, end)`` (host offset moved along with it)."""
        s = max(self.start, start)
        e = min(self.end, end)
        if s == self.start and e == self.end:
            return self
        host = self.host_offset
        if host is not None and not self.compressed:
            host += s - self.start
        return Run(
            s,
            e - s,
            self.state,
            self.layer,
            self.host_file,
            host,
            self.compressed,
            self.source,
            self.extra if self.compressed else None,
        )

    def continues(self, other: Run) -> bool:
        """True when ``other`` starts where this ends and could be one run with it."""
        if (
            other.start != self.end
            or other.state != self.state
            or other.layer != self.layer
            or self.compressed
            or other.compressed
            or other.host_file != self.host_file
        ):
            return False
        if self.host_offset is None:
            return other.host_offset is None
        return other.host_offset == self.host_offset + self.length


def damage_from_runs(owner, start: int, end: int) -> list[tuple[int, int]]:
    """The ``damaged`` runs of ``owner`` (an image or a chain) inside ``[start, end)`` as
    (start, end) pairs, from a window-by-window index kept on the owner."""
    index = getattr(owner, "_damage_index", None)
    if index is None:
        from ..io import DamageIndex

        index = owner._damage_index = DamageIndex(lambda a, b: damaged_pairs(owner.runs(a, b - a)),
                                                   owner.size)
    return index.query(start, end)


def damaged_pairs(runs: RunTable) -> list[tuple[int, int]]:
    """The (start, end) pairs of the ``damaged`` rows of ``runs``."""
    bad = runs.of_states(DAMAGED)
    return list(zip(bad.start.tolist(), bad.end.tolist()))


def run_objects(items: Iterable[Run | RunTable]) -> Iterator[Run]:
    """Run objects from what a format's ``_runs`` yields (Run objects and RunTables)."""
    for item in items:
        if isinstance(item, RunTable):
            yield from item
        else:
            yield item


def merge_runs(runs, start: int, end: int) -> list[Run]:
    """Clip runs to ``[start, end)`` and join neighbours that continue each other."""
    out: list[Run] = []
    for r in runs:
        if r.end <= start or r.start >= end or r.length <= 0:
            continue
        r = r.clip(start, end)
        if out and out[-1].continues(r):
            last = out[-1]
            out[-1] = Run(
                last.start,
                last.length + r.length,
                last.state,
                last.layer,
                last.host_file,
                last.host_offset,
                False,
                last.source,
            )
        else:
            out.append(r)
    return out


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How a table structure of ``structures()`` decodes entry by entry (the explainer's
    view): the numpy dtype of an entry, what an entry's value means, and the stride when an
    entry carries more bytes than that value (QCOW2 extended L2: entry + subcluster bitmap)."""

    dtype: str
    describe: Callable[[int], str]
    stride: int | None = None


@dataclass(slots=True)
class ParentHint:
    """What an image says about its parent: a file name, a format, an identity to verify."""

    path: str | None = None
    format: str | None = None
    uuid: str | None = None
    #: other names for the same parent, tried after ``path`` (e.g. VHD's W2ru locator)
    alternatives: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class RowViews:
    """``info()``, ``check()`` and ``structures()`` as pandas views of the plain rows a
    class provides (``info_fields()``, ``check_rows()``, ``structure_rows()``): the one
    grammar of every public object (Image, a VMDK extent, ...)."""

    path: str | None = None  # names the info() Series

    def info_fields(self) -> dict:
        """The facts as a dict (``info()`` shows them)."""
        return {}

    def check_rows(self) -> list[dict]:
        """Integrity findings as rows (severity, structure, host_offset, message)."""
        return []

    def structure_rows(self) -> list[dict]:
        """On-disk structures as rows (name, host_file, host_offset, length, description)."""
        return []

    def info(self) -> pd.Series:
        """``info_fields()`` as a Series."""
        from ..frames import series

        return series(self.info_fields(), name=self.path)

    def check(self) -> pd.DataFrame:
        """Integrity findings, in the ``check()`` schema (never raises for damage)."""
        from ..frames import check_frame

        return check_frame(self.check_rows())

    def structures(self) -> pd.DataFrame:
        """Where the on-disk structures lie, in the ``structures()`` schema."""
        from ..frames import structures_frame

        return structures_frame(self.structure_rows())


class Image(RowViews, FilledSource, Findings):
    """One image file (one layer of a chain) seen as its virtual disk.

    Subclasses set ``format``, ``size``, ``header`` and implement :meth:`_runs`; they may
    override :meth:`structure_rows`, :meth:`check_rows`, :meth:`info_fields`,
    :meth:`flags`, :meth:`snapshots` and the optional members declared below (None when a
    format has no such thing). ``info()``, ``check()`` and ``structures()`` are the pandas
    views of those, as on Disk and FileSystem.
    Reads of ``unallocated`` ranges give zeros here; a chain sends them to the parent.
    """

    format: str = "?"
    #: threads that inflate compressed units ahead in large reads (None: the machine's cores)
    workers: int | None = None
    subformat: str | None = None
    cluster_size: int | None = None
    header: Any = None
    #: the encryption scheme when the image's data is ciphertext (opened in salvage mode)
    encryption: str | None = None
    #: the Struct of the binary header and where it lies (``explain("header")``); None
    #: lets the explainer find the Struct from the parsed header
    header_struct: Any = None
    header_offset: int | None = None
    header_file: str | None = None
    #: notes on parent/extent paths the path policy turned away (``io.paths``)
    path_notes: list[str] | tuple[str, ...] = ()
    #: ``find_parent(parents) -> (path or None, tried)``: a format that names its parent by
    #: identity (VDI: a UUID) searches for it itself; None: the chain follows the hint
    find_parent: Callable | None = None
    #: ``verify_parent(parent)``: raises when the parent found is not the one recorded
    verify_parent: Callable | None = None
    #: ``explain_delegate(what) -> Image | None``: a package's inner image that explains
    #: its own structures (OVA)
    explain_delegate: Callable | None = None

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        self.file = source
        self.path = path or source.name
        self.name = self.path
        self.strict = strict
        self._decompressed = LRUCache(8)
        self._inflated: dict = {}  # units inflated ahead for the current batch

    # -- what subclasses provide -------------------------------------------------
    def _runs(self, start: int, end: int):
        """Yield runs covering ``[start, end)`` in order (may overhang; merged later): Run
        objects, or RunTables where a format builds its runs as columns."""
        raise NotImplementedError

    def _read_compressed(self, run: Run) -> bytes:
        """Decompress the whole unit (cluster or grain) that a compressed run belongs to."""
        raise NotImplementedError

    @property
    def parent_hint(self) -> ParentHint | None:
        return None

    def check_rows(self) -> list[dict]:
        """Integrity findings as rows (severity, structure, host_offset, message): what
        ``check()`` shows and Disk stacks per layer."""
        return self.findings_rows()

    def flags(self) -> list[str]:
        """The header's flags by name (dirty, corrupt, ...); none here."""
        return []

    def info(self) -> pd.Series:
        """This image file's facts: path, format, subformat, virtual_size, file_size,
        cluster_size, flags, then the format's own (``info_fields()``)."""
        from ..frames import info_series

        extra = dict(self.info_fields())
        fields = dict(path=self.path, format=self.format, subformat=self.subformat,
                      virtual_size=self.size, file_size=self.file_size,
                      cluster_size=self.cluster_size, layers=1,
                      created=extra.pop("created", None), uuid=extra.pop("uuid", None),
                      flags=self.flags())
        return info_series({**fields, **extra})


    #: (structure name pattern, entry dtype, name of the method that says what an entry
    #: means): the tables of this format that ``explain()`` decodes entry by entry
    TABLES: tuple[tuple[str, str, str], ...] = ()

    def table_layout(self, name: str) -> TableLayout | None:
        """How the structure ``name`` decodes as a table of entries, or None."""
        import re

        for pattern, dtype, method in self.TABLES:
            if re.fullmatch(pattern, name.strip().lower()):
                return TableLayout(dtype, getattr(self, method))
        return None

    def snapshots(self) -> list[dict]:
        return []

    def open_snapshot(self, ident: str | int) -> Image:
        raise NotFound(f"{self.path}: this {self.format} image has no internal snapshot {ident!r}")

    @property
    def host_files(self) -> list[str]:
        return [self.path]

    @property
    def file_size(self) -> int:
        total = 0
        for p in self.host_files:
            try:
                total += os.stat(p).st_size
            except OSError:
                pass
        return total

    # -- shared machinery ---------------------------------------------------------
    def runs(self, start: int = 0, length: int | None = None) -> RunTable:
        """Ordered, gap-free runs over ``[start, start+length)`` from metadata only (a
        :class:`~vdinspect.containers.runs.RunTable`: a sequence of :class:`Run`)."""
        if length is None:
            length = self.size - start
        self._check_range(start, length)
        end = start + length
        return RunTable.collect(self._runs(start, end)).clip_merge(start, end)

    def run_list(self, start: int, end: int) -> list[Run]:
        """The runs of ``[start, end)`` as merged Run objects: what a read that cannot take
        the plan uses (a few runs cost less as objects than as columns)."""
        return merge_runs(run_objects(self._runs(start, end)), start, end)

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        plan = self.plan(offset, offset + len(mv))
        if plan is not None:
            readplan.fill(plan, offset, mv, zeroed)
            return
        runs = self.run_list(offset, offset + len(mv))
        if sum(r.compressed for r in runs) > 1:  # many compressed units: in tasks, each
            self.fill_runs(RunTable.from_runs(runs), offset, mv)  # copied out as inflated
            return
        for run in runs:
            self.fill_run(run, mv[run.start - offset : run.end - offset])

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan of ``[start, end)`` (see :mod:`.readplan`): pieces in order,
        holes where this image holds nothing; None when the range needs the runs."""
        return None

    def locate(self, offset: int, length: int) -> readplan.Located:
        """Where the ``length`` bytes at ``offset`` are, when one lookup can say: (source,
        host offset), ``readplan.ZERO``, ``readplan.HOLE``, or None (the plan or the runs
        decide). The caller checked the range. Formats override this with a lookup of the
        one unit a small read lies in (a read over several units is the plan's); by
        default the plan answers every read."""
        return None

    def _inflate_many(self, runs: list[Run]) -> Iterator[bytes]:
        """The whole decompressed units of the compressed ``runs``, one by one in order (so
        the caller can copy each out and let it go while it is still in the CPU cache);
        formats that can read many units at once override this."""
        for r in runs:
            yield self._read_compressed(r)

    def inflate_ahead(self, runs, workers: int | None = None) -> None:
        """Inflate the compressed units behind ``runs`` (this image's) for :meth:`fill_run`
        to use, in tasks of many units each (see :meth:`in_tasks`). Replaces what an earlier
        call kept, so memory stays one batch; ``workers`` defaults to :attr:`workers`, then
        the machine's cores. Errors come out in the order of ``runs``, as a one-by-one read
        would raise them."""
        self._inflated = {}
        wanted: dict = {}
        for r in runs:
            if r.compressed:
                key = (r.host_offset, r.extra)
                if key not in wanted:
                    wanted[key] = r
        if len(wanted) < 2:
            return  # one unit goes through the cache of recent units
        todo = list(wanted.values())
        units: list[bytes] = []
        self.in_tasks(lambda part: list(self._inflate_many(part)), todo, workers, units.extend)
        self._inflated = dict(zip(wanted, units))

    def in_tasks(self, task: Callable[[list], Any], items: list, workers: int | None,
                 take: Callable[[Any], None]) -> None:
        """``take(task(part))`` for consecutive parts of ``items``, in order: one part per
        worker, the first in this thread while the others run in the shared pool (zlib and
        zstd release the GIL; a task per unit would cost more than a small unit's
        inflation). One part only when there is little to inflate (under TASK_BYTES of
        units a part), one worker, or a source that seeks (a file object)."""
        n = workers or self.workers or os.cpu_count() or 1
        parts = min(n, len(items) * (self.cluster_size or 1 << 16) // TASK_BYTES)
        if parts < 2 or not all(isinstance(src, FileSource) for src in self.owned_sources()):
            take(task(items))
            return
        cuts = [len(items) * k // parts for k in range(parts + 1)]
        pool = inflate_pool(n)
        later = [pool.submit(task, items[a:b]) for a, b in zip(cuts[1:], cuts[2:])]
        try:
            take(task(items[: cuts[1]]))
            for f in later:
                take(f.result())
        finally:
            for f in later:  # after an error: wait for the rest, which write into buffers
                f.cancel() or f.exception()

    def inflated(self, run: Run) -> bytes:
        """The whole decompressed unit (cluster or grain) of the compressed ``run``: inflated
        ahead, kept from a recent read, or inflated now."""
        key = (run.host_offset, run.extra)
        unit = self._inflated.get(key)
        if unit is None:
            unit = self._decompressed.get(key, lambda: self._read_compressed(run))
        return unit

    def fill_runs(self, table: RunTable, base: int, out: memoryview,
                  workers: int | None = None) -> None:
        """Write the bytes of this image's rows of ``table`` (inside ``[base, base +
        len(out))``) into ``out`` at their offset from ``base``: what a conversion does a
        chunk at a time. Compressed units are inflated in tasks of many (``workers``: see
        :meth:`in_tasks`), each copied into ``out`` as soon as it is inflated (a
        preallocated buffer: no batch of units held); other rows go through
        :meth:`fill_run`."""
        comp = table.compressed.tolist()
        units: dict = {}  # unit key -> [Run, (out offset, bytes, offset in the unit)...]
        runs = table.runs_of(table.compressed) if any(comp) else []
        k = 0
        for i, c in enumerate(comp):
            if not c:
                self.fill_run(table.run(i), out[table.start[i] - base : table.end[i] - base])
                continue
            r = runs[k]
            k += 1
            units.setdefault((r.host_offset, r.extra), [r]).append(
                (r.start - base, r.length, r.start - r.extra[0]))
        if not units:
            return
        if len(units) == 1:  # one unit (part of a read): through the cache of recent units
            (r, *targets), = units.values()
            unit = memoryview(self.inflated(r))
            for a, n, off in targets:
                out[a : a + n] = unit[off : off + n]
            return

        def inflate_into(part: list) -> None:
            for (_r, *targets), unit in zip(part, self._inflate_many([t[0] for t in part])):
                for a, n, off in targets:
                    out[a : a + n] = unit if n == len(unit) else memoryview(unit)[off : off + n]

        self.in_tasks(inflate_into, list(units.values()), workers, lambda _done: None)

    def fill_run(self, run: Run, out: memoryview) -> None:
        """Write the bytes of ``run`` (one of this image's runs) into ``out``."""
        if run.state in (DATA, BACKING) and (run.source is not None or run.compressed):
            if run.compressed:
                unit = self.inflated(run)
                base = run.start - run.extra[0]  # extra = (unit virtual start, ...)
                out[:] = unit[base : base + run.length]
            else:
                run.source.readinto(run.host_offset, out)
        else:
            out[:] = bytes(len(out)) if len(out) < 1 << 16 else _zeros(len(out))

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return damage_from_runs(self, start, end)

    @property
    def allocated(self) -> int:
        """Virtual bytes whose data this image itself stores."""
        return self.runs().total(DATA)

    def close(self) -> None:
        for src in self.owned_sources():
            src.close()

    def owned_sources(self) -> list[ByteSource]:
        """The host files this image has open (its own, a data file, extents): what
        ``close()`` closes, what the explainer reads a ``structures()`` row's bytes from,
        and whether inflation may run in threads (all must be files). A format that opens
        more files overrides this."""
        return [self.file]

    def __repr__(self) -> str:
        sub = f"/{self.subformat}" if self.subformat else ""
        return f"<{type(self).__name__} {self.format}{sub} {os.path.basename(self.path)} size={self.size}>"

    def _repr_html_(self) -> str:
        from ..reprs import card, human

        facts = [("format", self.format), ("subformat", self.subformat),
                 ("file", os.path.basename(self.path)),
                 ("virtual size", f"{human(self.size)} ({self.size} bytes)"),
                 ("cluster size", human(self.cluster_size) if self.cluster_size else None)]
        return card(f"{type(self).__name__}", facts,
                    (".runs()", ".structures()", ".check()"))


_POOLS: dict = {}

#: bytes of units below which a task of :meth:`Image.in_tasks` is not worth a thread: zlib
#: inflates text at ~4.7 GB/s here, so 512 KiB take ~0.1 ms, twice a task's hand-over
TASK_BYTES = 512 << 10


def inflate_pool(workers: int) -> ThreadPoolExecutor:
    """The shared thread pool of ``workers`` threads that inflates compressed units."""
    pool = _POOLS.get(workers)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="vdinspect-inflate")
    return pool


def _zeros(n: int) -> memoryview:
    return memoryview(bytearray(n))


def table_runs(start: int, end: int, unit: int, count: int,
               units: Callable[[int, int], Iterable], past: str) -> Iterator:
    """The runs of ``[start, end)`` over a table of ``count`` units of ``unit`` bytes (a BAT,
    a block map): ``units(first, stop)`` gives those of the table's units ``first..stop-1``
    the range reaches, and what lies beyond the table is one run in state ``past``."""
    first, last = start // unit, -(-end // unit)
    stop = min(last, count)
    inside = units(first, stop) if first < stop else ()
    if stop >= last:
        return iter(inside)
    s = max(start, stop * unit)
    return chain(inside, (Run(s, end - s, past),))  # (no generator frame per run)


def extent_pieces(starts, lengths, start: int, end: int
                  ) -> Iterator[tuple[int, int, int | None]]:
    """``[start, end)`` cut along sorted, non-overlapping extents ``(starts[i], lengths[i])``:
    ``(a, b, i)`` for a piece inside extent ``i``, ``(a, b, None)`` for a gap between them,
    in order and covering the range (what a format with stored extents and holes maps)."""
    i = max(0, bisect.bisect_right(starts, start) - 1)
    pos = start
    while pos < end and i < len(starts):
        s, n = int(starts[i]), int(lengths[i])
        if s + n <= pos:
            i += 1
            continue
        if s >= end:
            break
        if s > pos:
            yield pos, s, None
            pos = s
        stop = min(s + n, end)
        yield pos, stop, i
        pos = stop
        i += 1
    if pos < end:
        yield pos, end, None


def structure_row(name: str, host_file: str | None, host_offset: int, length: int,
                  description: str) -> dict:
    """One ``structures()`` row (schemas.STRUCTURE_COLUMNS): the one spelling every
    format's report uses."""
    return dict(name=name, host_file=host_file, host_offset=host_offset, length=length,
                description=description)


def data_structures(runs, unit: str = "clusters") -> list[dict]:
    """``structures()`` rows for the data an image stores: contiguous host ranges, merged.

    Compressed runs count their compressed length (``extra[1]`` by convention).
    """
    pieces = []
    for r in runs:
        if r.state != DATA or r.host_offset is None:
            continue
        length = r.extra[1] if r.compressed else r.length
        pieces.append((r.host_file or "", r.host_offset, length, r.compressed))
    pieces.sort()
    spans: list[list] = []
    for f, off, n, comp in pieces:
        last = spans[-1] if spans else None
        if last and last[0] == f and last[3] == comp and last[1] + last[2] >= off:
            last[2] = max(last[2], off + n - last[1])
        else:
            spans.append([f, off, n, comp])
    return [structure_row("compressed data" if comp else "data", f, off, n,
                          f"compressed {unit}" if comp else "guest data")
            for f, off, n, comp in spans]


def unused_spans(starts, ends, lo: int, hi: int) -> list[tuple[int, int]]:
    """The stretches of host bytes ``[lo, hi)`` that no range ``[starts[i], ends[i])`` touches,
    in order (the raw material of a leak check)."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    keep = (e > s) & (e > lo) & (s < hi)
    order = np.argsort(s[keep], kind="stable")
    s, e = s[keep][order], e[keep][order]
    reach = np.maximum.accumulate(np.concatenate(([lo], e)))  # covered up to here before s[i]
    gap = s > reach[:-1]
    out = list(zip(reach[:-1][gap].tolist(), s[gap].tolist()))
    if int(reach[-1]) < hi:
        out.append((int(reach[-1]), hi))
    return out


#: the most table entries :func:`ranges_sound` checks in Python at open; a larger table is
#: decoded with numpy at open as before (numpy's import costs less than the loop there)
MAX_LIGHT_ENTRIES = 1 << 16


def ranges_sound(starts: list[int], length: int, regions: Iterable[tuple[int, int]],
                 file_size: int) -> bool:
    """Without numpy: True when the host ranges ``[s, s + length)`` all lie inside the
    file, none overlaps one of ``regions`` and none overlaps another, i.e. when
    :func:`misplaced` (and a past-the-end check) would find nothing. Readers call it at
    open to learn that a table may be decoded later, on first use; when it says False
    they decode and check at open as before, so strict mode raises the same error."""
    if len(starts) > MAX_LIGHT_ENTRIES:
        return False
    s = sorted(starts)
    if s and (s[0] < 0 or s[-1] + length > file_size):
        return False
    if any(b - a < length for a, b in zip(s, s[1:])):
        return False
    for a, b in regions:
        if a < b:
            k = bisect.bisect_left(s, a - length + 1)  # the first range ending after a
            if k < len(s) and s[k] < b:
                return False
    return True


def misplaced(starts, ends, regions) -> tuple[np.ndarray, np.ndarray]:
    """Which of the host ranges ``[starts[i], ends[i])`` (blocks, clusters the tables point
    to) lie at an impossible place: over one of the file's own ``regions`` ((start, end)
    pairs: header, tables, footer), or over a range placed before them in the file
    (cross-linked: the range earlier in the file keeps its bytes, the first listed on a
    tie). Returns (the index of the region each overlaps, -1 for none; the cross-linked
    mask). Readers show such ranges as ``damaged`` and never read them, so the ranges they
    read are disjoint stretches of the file and what a small file can make them produce
    (runs, rows) stays bounded by its size."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    region = np.full(len(s), -1, dtype=np.int64)
    for j, (a, b) in enumerate(regions):
        if a < b:
            region[(region < 0) & (s < b) & (e > a)] = j
    ok = np.flatnonzero(region < 0)
    order = ok[np.argsort(s[ok], kind="stable")]
    clash = np.zeros(len(s), dtype=bool)
    if len(order) > 1:
        clash[order[1:]] = s[order[1:]] < np.maximum.accumulate(e[order[:-1]])
    return region, clash


def leak_rows(
    leaks, total: int, structure: str, what: str, limit: int = MAX_LEAK_ROWS
) -> list[dict]:
    """``leak`` rows for the first ``limit`` (structure, host_offset, message) of ``leaks`` (an
    iterable, read no further), then a warning row counting the rest of ``total``."""
    rows = [check_row("leak", s, off, msg)
            for s, off, msg in islice(leaks, limit)]
    if total > len(rows):
        rows.append(check_row(
            "warning", structure, None,
            f"{total - len(rows)} more {what} (only the first "
            f"{len(rows)} are listed)",
        ))
    return rows
