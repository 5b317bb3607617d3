"""Deleted names left in directory index slack, and the rules that keep phantoms out.

Removing a name from an INDX block moves the entries after it down; copies of the last
entries stay past the bytes in use (The Sleuth Kit's ``fls -d`` lists them too). Most are
copies of names still listed (live ones, or deleted files the MFT still holds): those are
suppressed. A name is listed (found_by ``slack``) only when it is a plausible $FILE_NAME of
this directory and no listed row already names that record under that name: the name of
a deleted file whose MFT record was reused (name, size and times only; the content is
gone), or an older name of a deleted record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Entry
from .attributes import MAX_FILETIME, NS_DOS, FileNameAttr, parse_file_name
from .catalog import Catalog
from .index import IndexEntry
from .listing import entries
from .mft import MREF_MASK, RecordError
from .recovery import SLACK, name_only_entry

if TYPE_CHECKING:
    from .fs import NTFS

FILE_NAME_HEAD = 66  # bytes of a $FILE_NAME before its name
MAX_NAMESPACE = 3


def plausible(
    fs: NTFS, n: int, dir_seq: int, e: IndexEntry
) -> tuple[int, int, FileNameAttr] | None:
    """(record, sequence, $FILE_NAME) of a slack entry of directory ``n``, or None when its
    bytes are not a $FILE_NAME of this directory naming a record inside the MFT."""
    ref, seq = e.ref & MREF_MASK, e.ref >> 48
    if not 0 <= ref < fs.nrecords or ref == n:
        return None
    try:
        fn = parse_file_name(e.key)
        name = e.key[FILE_NAME_HEAD : FILE_NAME_HEAD + 2 * len(fn.name)].decode("utf-16-le")
    except (RecordError, UnicodeDecodeError):
        return None
    if (
        not fn.name
        or len(e.key) < FILE_NAME_HEAD + 2 * len(name)
        or fn.parent != n
        or (fn.parent_seq and dir_seq and fn.parent_seq != dir_seq)
        or fn.namespace > MAX_NAMESPACE
        or any(c in name for c in "\0/\\:") or any(ord(c) < 0x20 for c in name)
        or not 0 < fn.created < MAX_FILETIME
        or not 0 < fn.modified < MAX_FILETIME
        or fn.data_size > fs.geometry.volume_size
        or fn.data_size > fn.allocated_size and fn.allocated_size
    ):
        return None
    return ref, seq, fn


def slack_rows(
    fs: NTFS, n: int, found: list[IndexEntry], cat: Catalog,
    listed: list[tuple[int | None, str]],
) -> list[Entry]:
    """The rows the slack entries ``found`` in directory ``n`` add to a listing whose
    files are ``listed`` as ``(record, name folded by fs.fold)`` (:func:`.listing.listed_names`)."""
    info = cat.infos.get(n)
    dir_seq = info.sequence if info is not None else 0
    fold = fs.fold
    seen = set(listed)
    listed_refs = {ref for ref, _name in listed}
    keep: dict[tuple[int, str], tuple[int, FileNameAttr]] = {}
    infos = cat.infos
    for e in found:
        rec = infos.get(e.ref & MREF_MASK)
        if rec is not None and rec.in_use and rec.sequence == e.ref >> 48:
            continue  # a copy of a live file's entry (here, renamed or moved): not deleted
        got = plausible(fs, n, dir_seq, e)
        if got is None:
            continue
        ref, seq, fn = got
        k = (ref, fold(fn.name))
        if k in seen or k in keep:
            continue  # a copy of a listed name (live, or a deleted record's own name)
        keep[k] = (seq, fn)
    has_long = {ref for (ref, _), (_s, fn) in keep.items() if fn.namespace != NS_DOS}
    rows: list[Entry] = []
    for (ref, _), (seq, fn) in keep.items():
        if fn.namespace == NS_DOS and (ref in has_long or ref in listed_refs):
            continue  # the 8.3 twin of a long name
        rec = cat.infos.get(ref)
        same_file = rec is not None and (
            rec.sequence == seq or (not rec.in_use and rec.sequence == (seq + 1) & 0xFFFF)
        )
        if same_file and rec.in_use:
            continue  # an old copy of a live file's entry (renamed or moved): not deleted
        if same_file:
            rows += entries(fs, rec, fn, deleted=True, found_by="slack",
                            note="an older name of this deleted record, left in its "
                            "directory's index slack")
            continue
        now = "unusable" if rec is None else f"sequence {rec.sequence} now, {seq} then"
        rows.append(name_only_entry(
            ref, fn, SLACK, f"name left in its directory's index slack; MFT record {ref} "
            f"was reused ({now}): only its name, size and times are known",
            deleted=True, found_by="slack"))
    return rows
