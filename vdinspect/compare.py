"""What changed between two states of a disk: two snapshots, two layers of a chain, or two
images.

Blocks are decided from allocation metadata wherever it decides: two runs that read the
same bytes of the same host file (a cluster shared by two snapshots, a range both states
take from one backing layer) are unchanged, and so are ranges that read as zeros on both
sides. Only the rest is read and compared, sector by sector, as ``qemu-img compare`` does.
Files are compared per filesystem present in both states; a file's content is hashed
only when its size is small or its bytes lie in a range the blocks say was written.

Both sides are duck-typed Disks (``runs``, ``read``, ``size``, ``volumes``,
``filesystem``), so this module sits below ``disk`` and imports none of it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import InvalidArgument, VDInspectError
from .filesystems import open_filesystem
from .filesystems.entry import DIR
from .io import ByteSource, Slice
from .progress import Progress, reporter
from .schemas import DAMAGED, UNALLOCATED, ZERO
from .volumes import find_volume

SECTOR = 512  # bytes: the granularity of a data comparison, as qemu-img compare
CHUNK = 4 << 20  # bytes read from each side at a time
SMALL_FILE = 64 << 10  # files up to this size are always hashed (resident NTFS data
# changes in its MFT record, which no content range points to)

#: ``how`` values of a block diff row
DATA_DIFFERS, WRITTEN, SIZE_ONLY, UNDECIDED = "data", "written", "size", "damaged"
#: ``change`` values of a file diff row
ADDED, REMOVED, MODIFIED, RENAMED = "added", "removed", "modified", "renamed"
#: filesystems whose inode / MFT record numbers identify a file across two states
STABLE_NUMBERS = {"ext2", "ext3", "ext4", "ntfs", "xfs", "btrfs"}


# --- blocks ----------------------------------------------------------------------------
class _Zeros:
    """A run standing for the bytes past the end of the shorter disk (read as zeros)."""

    state = UNALLOCATED
    host_file = host_offset = None
    compressed = False

    def __init__(self, start: int, length: int) -> None:
        self.start, self.length = start, length


def _segments(ra: list, rb: list) -> Iterator[tuple[int, int, Any, Any]]:
    """(start, end, run of a, run of b) over the common boundaries of two run lists that
    cover the same range without gaps."""
    i = j = 0
    while i < len(ra) and j < len(rb):
        x, y = ra[i], rb[j]
        s = max(x.start, y.start)
        e = min(x.start + x.length, y.start + y.length)
        if e > s:
            yield s, e, x, y
        if x.start + x.length <= e:
            i += 1
        if y.start + y.length <= e:
            j += 1


def _reads_zeros(run) -> bool:
    return run.state in (UNALLOCATED, ZERO)


def _same_place(x, y, s: int) -> bool:
    """Whether two runs read offset ``s`` from the same bytes of the same host file."""
    if x.host_offset is None or y.host_offset is None or not x.host_file or not y.host_file:
        return False
    if os.path.realpath(x.host_file) != os.path.realpath(y.host_file):
        return False
    if x.compressed or y.compressed:  # one compressed cluster: the same one, whole
        return (x.compressed and y.compressed and x.host_offset == y.host_offset
                and x.start == y.start and x.length == y.length)
    return x.host_offset + (s - x.start) == y.host_offset + (s - y.start)


def _differing(a, b, s: int, e: int, a_zero: bool, b_zero: bool) -> Iterator[tuple[int, int]]:
    """(start, end) of the sectors in ``[s, e)`` whose bytes differ between a and b."""
    pos = s
    while pos < e:
        n = min(CHUNK, e - pos)
        xa = None if a_zero else a.read(pos, n)
        xb = None if b_zero else b.read(pos, n)
        if xa is not None and xa == xb:
            pos += n
            continue
        ua = np.frombuffer(xa, dtype=np.uint8) if xa is not None else None
        ub = np.frombuffer(xb, dtype=np.uint8) if xb is not None else None
        ne = (ua != 0) if ub is None else (ub != 0) if ua is None else (ua != ub)
        pad = -n % SECTOR
        if pad:
            ne = np.concatenate([ne, np.zeros(pad, dtype=bool)])
        bad = ne.reshape(-1, SECTOR).any(axis=1)
        if bad.any():
            # edges of runs of differing sectors
            d = np.diff(np.concatenate([[0], bad.view(np.int8), [0]]))
            for lo, hi in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()):
                yield pos + lo * SECTOR, min(pos + hi * SECTOR, e)
        pos += n


def block_rows(a, b, *, start: int = 0, length: int | None = None,
               compare_data: bool = True, progress: Progress = None) -> list[dict]:
    """The ranges that differ between disks ``a`` and ``b``: rows ``start, length, how``.

    ``how`` is ``data`` (bytes compared and found different), ``written`` (with
    ``compare_data=False``: the metadata says one side holds its own bytes there, which may
    equal the other's), ``size`` (only one disk reaches there and its bytes are not zero)
    or ``damaged`` (one side cannot be read there: undecided).
    """
    size = max(a.size, b.size)
    if start < 0 or (length is not None and length < 0) or start > size:
        raise InvalidArgument(f"range {start}+{length} is outside the disks ({size} bytes)")
    end = size if length is None else min(size, start + length)

    def runs(d) -> list:
        stop = min(end, d.size)
        out = list(d.runs(start, stop - start)) if stop > start else []
        if stop < end:
            out.append(_Zeros(max(start, stop), end - max(start, stop)))
        return out

    ra, rb = runs(a), runs(b)
    total = sum(e - s for s, e, x, y in _segments(ra, rb)
                if not (_same_place(x, y, s) or (_reads_zeros(x) and _reads_zeros(y))))
    report = reporter(progress, total)
    done = 0
    rows: list[dict] = []

    def add(s: int, e: int, how: str) -> None:
        last = rows[-1] if rows else None
        if last is not None and last["how"] == how and last["start"] + last["length"] == s:
            last["length"] = e - last["start"]
        else:
            rows.append({"start": s, "length": e - s, "how": how})

    for s, e, x, y in _segments(ra, rb):
        if _same_place(x, y, s) or (_reads_zeros(x) and _reads_zeros(y)):
            continue
        beyond = s >= min(a.size, b.size)
        if DAMAGED in (x.state, y.state):
            add(s, e, UNDECIDED)
        elif not compare_data:
            add(s, e, SIZE_ONLY if beyond else WRITTEN)
        else:
            for lo, hi in _differing(a, b, s, e, _reads_zeros(x) or isinstance(x, _Zeros),
                                     _reads_zeros(y) or isinstance(y, _Zeros)):
                add(lo, hi, SIZE_ONLY if beyond else DATA_DIFFERS)
        done += e - s
        if report is not None:
            report(done, total)
    return rows


# --- files -----------------------------------------------------------------------------
class ChangedView(ByteSource):
    """A volume whose "damaged" ranges are the ranges a block diff found written: a
    filesystem opened on it tells, through the damage machinery every driver already
    has, which bytes of each file lie in changed blocks. Reads are the volume's own."""

    def __init__(self, source: ByteSource, changed: list[tuple[int, int]]) -> None:
        self.source = source
        self.size = source.size
        self.name = getattr(source, "name", "volume")
        self.changed = changed

    def _read(self, offset: int, length: int) -> bytes:
        return self.source.read(offset, length)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return [(max(s, start), min(s + n, end)) for s, n in self.changed
                if s < end and s + n > start]


def _volume_keys(d) -> dict:
    """Readable filesystem volumes of a disk by their key ("1", "vg/lv", "disk")."""
    return {v.key: v for v in d.filesystem_volumes(readable=True)}


def _sha256(fs, path: str) -> str | None:
    try:
        h = hashlib.sha256()
        with fs.open(path) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()
    except VDInspectError:
        return None


def _volume_offset(vol) -> int | None:
    """Where a volume starts on its disk (None for a volume not one slice of it: LVM)."""
    src = vol.source
    return src.offset if isinstance(src, Slice) else None


def file_rows(a, b, *, part: int | str | None = None, blocks: list[dict] | None = None,
              content: bool = True) -> list[dict]:
    """Files added, removed, modified and renamed from disk ``a`` to disk ``b``, for each
    filesystem present in both (or the one ``part`` names).

    Rows: ``part, path, change, kind, old_path, old_size, new_size, old_modified,
    new_modified, what`` (the facts that differ: size, modified, mode, kind, target,
    content). ``blocks`` (rows of :func:`block_rows`, metadata-only by default) says which
    files' bytes may have changed; only those, and small files, are hashed.
    """
    ka, kb = _volume_keys(a), _volume_keys(b)
    if part is not None:
        part = find_volume(a.volumes(), part if isinstance(part, str) else int(part)).key
    keys = [part] if part is not None else [k for k in ka if k in kb]
    if part is not None and (part not in ka or part not in kb):
        raise InvalidArgument(f"part={part!r} is not a readable filesystem on both disks "
                              f"(first: {sorted(map(str, ka))}, second: {sorted(map(str, kb))})")
    if blocks is None and content:
        blocks = block_rows(a, b, compare_data=False)
    rows: list[dict] = []
    for key in keys:
        rows += _fs_rows(a, b, key, ka[key], kb[key], blocks or [], content)
    return rows


def _identity(e) -> tuple:
    """What a rename keeps: the inode/record number and kind, and (a freed number can be
    reused at once) the size and modification time of a file, the creation time of a
    folder."""
    if e.kind == DIR:
        return (e.inode, e.kind, e.created)
    return (e.inode, e.kind, e.size, e.modified)


def _fs_rows(a, b, key, va, vb, blocks: list[dict], content: bool) -> list[dict]:
    fa, fb = a.filesystem(key), b.filesystem(key)
    stable = str(fb.info_fields().get("fstype", "")).lower() in STABLE_NUMBERS
    A = {e.path: e for e in fa.iter_entries("/", deleted=False)}
    B = {e.path: e for e in fb.iter_entries("/", deleted=False)}
    view_fs = None
    off = _volume_offset(vb)
    if content and blocks and off is not None:
        end = off + vb.source.size
        changed = [(max(r["start"], off) - off, min(r["start"] + r["length"], end)
                    - max(r["start"], off)) for r in blocks
                   if r["start"] < end and r["start"] + r["length"] > off]
        if changed:
            view_fs = open_filesystem(ChangedView(vb.source, changed), vb.filesystem,
                                      strict=False)
    elif content and off is None:
        view_fs = False  # placement unknown (LVM): hash every candidate

    def touched(e) -> bool:
        """Whether the new file's bytes may differ: small, or some bytes in changed blocks."""
        if e.size <= SMALL_FILE or view_fs is False:
            return True
        if view_fs is None:
            return False
        try:
            return bool(view_fs.damaged(e.path))
        except VDInspectError:
            return True

    def row(change, e_old, e_new, what="") -> dict:
        e = e_new or e_old
        return {"part": key, "path": e.path, "change": change, "kind": e.kind,
                "old_path": e_old.path if e_old is not None else None,
                "old_size": e_old.size if e_old is not None else None,
                "new_size": e_new.size if e_new is not None else None,
                "old_modified": e_old.modified if e_old is not None else None,
                "new_modified": e_new.modified if e_new is not None else None,
                "what": what}

    out = []
    removed = [p for p in A if p not in B]
    added = [p for p in B if p not in A]
    renamed_from: dict[str, str] = {}
    if stable:  # one file under a new name: its number, and the facts a rename keeps
        by_ino: dict[tuple, list[str]] = {}
        for p in removed:
            if A[p].inode is not None:
                by_ino.setdefault(_identity(A[p]), []).append(p)
        for p in added:
            olds = by_ino.get(_identity(B[p]))
            if olds:
                renamed_from[p] = olds.pop(0)
    gone = set(renamed_from.values())
    for p in removed:
        if p not in gone:
            out.append(row(REMOVED, A[p], None))
    for p in added:
        if p in renamed_from:
            out.append(row(RENAMED, A[renamed_from[p]], B[p]))
        else:
            out.append(row(ADDED, None, B[p]))
    for p, new in B.items():
        old = A.get(p)
        if old is None:
            continue
        what = [f for f in ("kind", "size", "modified", "mode", "target")
                if getattr(old, f) != getattr(new, f)]
        if (content and not what and new.kind != DIR and new.size and touched(new)
                and _sha256(fa, p) != _sha256(fb, p)):
            what.append("content")
        if what:
            out.append(row(MODIFIED, old, new, ",".join(what)))
    out.sort(key=lambda r: r["path"])
    return out


# --- the result ------------------------------------------------------------------------
class Diff:
    """What changed from disk ``a`` to disk ``b``: ``blocks`` and ``files`` DataFrames
    (each computed on first use), ``plot()`` the picture of where the changes fall."""

    def __init__(self, a, b, *, part: int | str | None = None, compare_data: bool = True,
                 progress: Progress = None) -> None:
        self.a, self.b = a, b
        self.part = part
        self.compare_data = compare_data
        self.progress = progress
        self._blocks: list[dict] | None = None
        self._written: list[dict] | None = None
        self._files: list[dict] | None = None

    def block_rows(self) -> list[dict]:
        """``blocks`` as plain rows (no pandas)."""
        if self._blocks is None:
            self._blocks = block_rows(self.a, self.b, compare_data=self.compare_data,
                                      progress=self.progress)
        return self._blocks

    def file_rows(self) -> list[dict]:
        """``files`` as plain rows (no pandas)."""
        if self._files is None:
            if self._written is None:  # metadata decides which files to hash
                self._written = (self._blocks if self._blocks is not None
                                 and not self.compare_data else
                                 block_rows(self.a, self.b, compare_data=False))
            self._files = file_rows(self.a, self.b, part=self.part, blocks=self._written)
        return self._files

    @property
    def blocks(self):
        from .frames import diff_blocks_frame

        return diff_blocks_frame(self.block_rows())

    @property
    def files(self):
        from .frames import diff_files_frame

        return diff_files_frame(self.file_rows())

    @property
    def changed_bytes(self) -> int:
        return sum(r["length"] for r in self.block_rows())

    def plot(self, ax=None):
        """The changed ranges along the disk; returns the Axes."""
        from .viz.diff import plot_diff

        return plot_diff(self.block_rows(), max(self.a.size, self.b.size), ax=ax)

    def __repr__(self) -> str:
        return (f"<Diff {getattr(self.a, 'path', '?')} -> {getattr(self.b, 'path', '?')}: "
                f"{len(self.block_rows())} changed ranges, {self.changed_bytes} bytes>")

    def _repr_html_(self) -> str:
        from .reprs import card
        from .units import human

        counts: dict[str, int] = {}
        for r in self.file_rows():
            counts[r["change"]] = counts.get(r["change"], 0) + 1
        facts = [("from", getattr(self.a, "path", "?")), ("to", getattr(self.b, "path", "?")),
                 ("changed ranges", len(self.block_rows())),
                 ("changed bytes", human(self.changed_bytes)),
                 ("files", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none")]
        return card("Diff", facts, ["d.blocks", "d.files", "d.plot()"])
