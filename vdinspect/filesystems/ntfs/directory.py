"""Directories: $I30 indexes, listing a directory, and path lookup.

A directory's names are the keys of its $I30 index (a B+ tree of $FILE_NAME copies,
walked by index.py). Listing adds what the index cannot give: deleted files whose parent
reference names the directory, and names the index lost (damaged indexes). Lookup walks
the indexes from the root, without reading the whole MFT, and knows ``file:stream``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import CorruptImage, InvalidArgument, NotFound, VDInspectError
from ...units import is_pow2
from ..base import DIR, Entry
from .attributes import FileNameAttr, display_name_rank, parse_file_name
from .catalog import ROOT, display_names, record_fn, short_name
from .index import IndexEntry, all_blocks, block_slack, index_block_size, walk_index
from .listing import entries, listed_names, same, sort_rows
from .mft import AT_BITMAP, AT_INDEX_ALLOCATION, AT_INDEX_ROOT, MREF_MASK, RecordError
from .recovery import (
    NOT_IN_INDEX,
    ORPHANS,
    ORPHANS_KEY,
    orphan_dir,
    orphan_note,
    refuse_unusable,
    unusable_entry,
)
from .slack import slack_rows

if TYPE_CHECKING:
    from .fs import NTFS


def index_reader(fs: NTFS, n: int) -> tuple | str:
    """Directory ``n``'s $I30: (root value, read_block(vcn), block_in_use(vcn), blocks,
    VCNs per block), or a problem string. read_block/block_in_use are None without an
    $INDEX_ALLOCATION (/$BITMAP)."""
    f = fs.file(n)
    root = f.attr(AT_INDEX_ROOT, "$I30")
    if root is None or not root.resident:
        return "no resident $I30 $INDEX_ROOT"
    alloc = f.streams(AT_INDEX_ALLOCATION).get("$I30")
    bitmap = f.streams(AT_BITMAP).get("$I30")
    bsize = index_block_size(root.value) or fs.geometry.index_record_size
    if not is_pow2(bsize) or not 256 <= bsize <= 1 << 21:
        return f"index block size {bsize} is not sane"
    vcn_size = fs.cluster_size if bsize >= fs.cluster_size else 512
    read_block = in_use = None
    nblocks = 0
    if alloc is not None:
        src = fs.stream_source(f, alloc, f"record {n} $I30")
        nblocks = src.size // bsize

        def read_block(vcn: int) -> bytes:
            off = vcn * vcn_size
            if off + bsize > src.size:
                raise RecordError(f"VCN {vcn} is past the $INDEX_ALLOCATION")
            return fs.index_block(n, vcn, lambda: src.read(off, bsize))

        if bitmap is not None:
            bits = fs.stream_source(f, bitmap, f"record {n} $I30 bitmap").read(
                0, min(bitmap.size, 1 << 20)
            )

            def in_use(vcn: int) -> bool:
                i = vcn * vcn_size // bsize
                return i // 8 < len(bits) and bool(bits[i // 8] >> (i % 8) & 1)

    return root.value, read_block, in_use, nblocks, bsize // vcn_size


def load_index(fs: NTFS, n: int) -> tuple[list[tuple[int, int, FileNameAttr]], list[str]]:
    """The $I30 index of directory ``n``: (record, sequence, $FILE_NAME) in order."""
    problems: list[str] = []
    got = index_reader(fs, n)
    if isinstance(got, str):
        return [], [got]
    root_value, read_block, in_use, nblocks, per = got
    walk = walk_index(root_value, read_block, in_use)
    problems += [m for _o, m in walk.problems]
    entries = walk.entries
    if walk.problems and read_block is not None:  # damaged tree: read every block
        flat = all_blocks(read_block, nblocks, per, in_use)
        seen = {(e.ref, e.key) for e in entries}
        entries = entries + [e for e in flat.entries if (e.ref, e.key) not in seen]
    out = []
    for e in entries:
        try:
            fn = parse_file_name(e.key)
        except RecordError as err:
            problems.append(f"index entry: {err}")
            continue
        out.append((e.ref & MREF_MASK, e.ref >> 48, fn))
    return out, problems


MAX_SLACK = 1 << 16  # slack candidates examined per directory


def read_slack(fs: NTFS, n: int) -> tuple[list[IndexEntry], bool]:
    """The entries left in the slack of directory ``n``'s INDX blocks (free blocks whole),
    and whether an in-use block is unusable (its names are then lost from the index)."""
    try:
        got = index_reader(fs, n)
    except (RecordError, VDInspectError):
        return [], False  # an unusable record is reported where it is read
    if isinstance(got, str) or got[1] is None:
        return [], False
    _root, read_block, in_use, nblocks, per = got
    found: list[IndexEntry] = []
    broken = False
    for i in range(nblocks):
        if len(found) >= MAX_SLACK:
            fs.finding("warning", f"directory record {n}", fs.record_offset(n),
                       f"index slack: more than {MAX_SLACK} candidate entries; INDX blocks "
                       f"{i}..{nblocks - 1} not examined")
            break
        vcn = i * per
        free = in_use is not None and not in_use(vcn)
        try:
            more, ok = block_slack(read_block(vcn), vcn, whole=free)
        except (RecordError, VDInspectError):
            more, ok = [], False
        broken = broken or (not ok and not free)
        found += more
    return found[:MAX_SLACK], broken


def slack_listing(fs: NTFS, n: int, listed: list[tuple[int | None, str]]) -> list[Entry]:
    """Deleted names left in directory ``n``'s index slack that ``listed``, the
    ``(record, folded name)`` of its files (listing.listed_names), does not already name
    (slack.slack_rows has the rules)."""
    return slack_rows(fs, n, fs.index_slack(n)[0], fs.catalog(), listed)


def index_damage(fs: NTFS, entry: Entry) -> int:
    """Bytes of a live directory's $I30 $INDEX_ALLOCATION that cannot be read (names kept
    only there are lost; the MFT still places its files)."""
    if entry.key == ORPHANS_KEY or entry.inode is None or entry.deleted:
        return 0
    try:
        f = fs.file(entry.inode)
        s = f.streams(AT_INDEX_ALLOCATION).get("$I30")
        if s is None or s.resident:
            return 0
        src = fs.stream_source(f, s, f"record {entry.inode} $I30")
        return sum(n for _a, n in src.damaged_ranges())
    except (VDInspectError, RecordError):
        return 0  # an unusable record is reported where it is read


def list_dir(fs: NTFS, entry: Entry) -> list[Entry]:
    """A directory's children from its index, with deleted files and index-less names."""
    refuse_unusable(fs, entry)
    if entry.key == ORPHANS_KEY:
        cat = fs.catalog()
        out = []
        for info, fn in cat.orphans:
            out += entries(fs, info, fn, deleted=not info.in_use, found_by="mft",
                           note=orphan_note(fn))
        return out
    n = entry.inode
    cat = fs.catalog()
    info = cat.infos.get(n)
    if info is None or not info.is_dir:
        raise NotFound(f"{fs.name}: {entry.path} is not a directory")
    rows: list[Entry] = []
    if entry.deleted or not info.in_use:
        for child, fn in cat.dead.get(n, []):
            rows += entries(fs, child, fn, deleted=True, short=short_name(child, fn))
        return sort_rows(fs, rows)
    seen: set[tuple[int, str]] = set()
    try:
        idx, problems = fs.index_entries(n)
    except (RecordError, CorruptImage) as e:
        idx, problems = [], [str(e)]
    for p in problems:
        fs.finding(
            "error",
            f"directory record {n}",
            fs.record_offset(n),
            f"{entry.path or '/'}: {p}",
        )
    by_rec: dict[int, list[tuple[int, FileNameAttr]]] = {}
    for ref, seq, fn in idx:
        by_rec.setdefault(ref, []).append((seq, fn))
    for ref, names in by_rec.items():
        if ref == n and n == ROOT and all(fn.name == "." for _s, fn in names):
            continue  # the root's "." entry (any other entry naming its own
            # directory is listed, and the walk reports it as a loop)
        child = cat.infos.get(ref)
        if child is None:
            fs.finding(
                "error",
                f"directory record {n}",
                fs.record_offset(n),
                f"{entry.path or '/'}: index entry {names[0][1].name!r} names "
                f"record {ref}, which is unusable",
            )
            # still listed, from what the index keeps of it (name, size, times), so
            # that listings and extraction reports name what was lost
            for fn in display_names([x for _s, x in names]):
                rows.append(unusable_entry(ref, fn))
            continue
        if names[0][0] and child.sequence != names[0][0] and child.in_use:
            fs.finding(
                "warning",
                f"directory record {n}",
                fs.record_offset(n),
                f"{entry.path or '/'}: index entry {names[0][1].name!r} is stale "
                f"(sequence {names[0][0]}, record has {child.sequence})",
            )
            continue
        for fn in display_names([x for _s, x in names]):
            fn = record_fn(child, fn)
            seen.add((ref, fn.name))
            rows += entries(fs, child, fn, deleted=not child.in_use, short=short_name(child, fn),
                            found_by="index")
    # names whose parent reference says they live here but the index does not list
    # (a damaged or incomplete index): listed all the same, as the MFT scan does
    fallback = [(c, fn) for c, fn in cat.live.get(n, []) if (c.number, fn.name) not in seen]
    if fallback:
        fs.finding(
            "warning",
            f"directory record {n}",
            fs.record_offset(n),
            f"{entry.path or '/'}: {len(fallback)} entries found only through "
            "parent references (not in the directory index)",
        )
        for c, fn in fallback:
            seen.add((c.number, fn.name))
            rows += entries(fs, c, fn, deleted=False, short=short_name(c, fn),
                            found_by="mft", note=NOT_IN_INDEX)
    for c, fn in cat.dead.get(n, []):
        if (c.number, fn.name) not in seen:
            rows += entries(fs, c, fn, deleted=True, short=short_name(c, fn))
    if info.index_blocks:
        rows += slack_listing(fs, n, listed_names(fs, rows))
    rows = sort_rows(fs, rows)
    if n == ROOT:
        rows.append(orphan_dir())
    return rows


def lookup(fs: NTFS, path: str, *, deleted: bool = False) -> Entry:
    """The entry at ``path`` (``file:stream`` names a named $DATA), by index walk."""
    if not isinstance(path, str):
        raise InvalidArgument(f"path must be a str, not {type(path).__name__}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    entry = fs.root()
    for i, part in enumerate(parts):
        if part == "..":
            raise InvalidArgument(f"{fs.name}: '..' is not allowed in {path!r}")
        if entry.kind != DIR:
            raise NotFound(f"{fs.name}: {'/' + '/'.join(parts[:i])} is not a directory")
        last = i == len(parts) - 1
        child = find_child(fs, entry, part, deleted)
        if child is None and last and ":" in part:
            fname, stream = part.split(":", 1)
            if stream.upper().endswith(":$DATA"):
                stream = stream[:-6]
            base = find_child(fs, entry, fname, deleted) if fname else None
            if base is not None and stream == "":
                child = base
            elif base is not None:
                for s in entries(fs, base.raw, None, base.deleted, name=base.name):
                    sname = s.extra.get("stream")
                    if sname is not None and same(fs, sname, stream):
                        s.extra.update(
                            {
                                k: v
                                for k, v in base.extra.items()
                                if k.startswith("fn_") or k == "short_name"
                            }
                        )
                        child = s
                        break
        if child is None:
            raise NotFound(f"{fs.name}: no such file or directory: {path}")
        child.parent = entry.path
        child.path = ("/" if entry.path in ("", "/") else entry.path + "/") + child.name
        entry = child
    return entry


def find_child(fs: NTFS, d: Entry, name: str, deleted: bool) -> Entry | None:
    """A directory's child by name, through its index when it is a live directory."""
    if d.key == ORPHANS_KEY or d.deleted:
        kids = list_dir(fs, d)
    else:
        if d.path in ("/", "") and same(fs, name, ORPHANS):
            return orphan_dir()
        try:
            idx, problems = fs.index_entries(d.inode)
        except (RecordError, CorruptImage):
            idx, problems = [], ["unreadable"]
        key = fs.fold(name)
        hits = [(ref, seq, fn) for ref, seq, fn in idx if fs.fold(fn.name) == key]
        hits.sort(key=lambda h: (h[2].name != name, display_name_rank(h[2].namespace)))
        for ref, _seq, fn in hits:
            info = fs.info_of(ref)
            if info is None or not info.in_use:
                continue
            names = display_names([x for r, _s, x in idx if r == ref])
            show = record_fn(info, fn if fn in names else (names[0] if names else fn))
            return entries(fs, info, show, deleted=False, short=short_name(info, show))[0]
        if not (deleted or problems or fs.scanned):
            return None  # a healthy index does not have it (no MFT scan just for this)
        kids = list_dir(fs, d)  # parent references, deleted files
    live = [c for c in kids if not c.deleted and same(fs, c.name, name)]
    dead = [c for c in kids if c.deleted and same(fs, c.name, name)]
    exact = [c for c in live if c.name == name]
    pick = exact or live or (dead if deleted else [])
    return pick[0] if pick else None
