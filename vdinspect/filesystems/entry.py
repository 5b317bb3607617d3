"""A directory entry: one row of ``files()``, and the names and limits every driver shares."""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat as statmod
from dataclasses import dataclass, field
from typing import Any

from ..schemas import FILES_COLUMNS

#: ``kind`` values of the files() schema
FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # the Unix epoch, where inode times count from

MAX_DEPTH = 4096  # directory nesting deeper than this is treated as a loop
MAX_PATH = 32767  # characters (the Windows limit): longer paths are not followed, so a
# hostile tree of long names cannot make the listing's paths grow without bound


def ns_to_datetime(ns: int | None) -> dt.datetime | None:
    """An aware UTC datetime (microseconds) of nanoseconds since the Unix epoch; None
    for None or a time datetime cannot hold."""
    if ns is None:
        return None
    try:
        return EPOCH + dt.timedelta(microseconds=ns // 1000)
    except OverflowError:
        return None


@dataclass(slots=True, eq=False)
class Entry:
    """One directory entry: a row of ``files()``. ``raw`` keeps the parsed structures.

    ``inode`` identifies the file inside the filesystem (inode number, MFT record, or the
    first cluster / directory-entry position for FAT); ``key`` is what the driver needs
    to find the content again (anything hashable). Times are aware UTC datetimes or None.
    """

    name: str
    kind: str
    size: int = 0
    path: str = ""
    parent: str = ""
    allocated: int | None = None  # bytes the filesystem has allocated for the content
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    created: dt.datetime | None = None
    modified: dt.datetime | None = None
    accessed: dt.datetime | None = None
    changed: dt.datetime | None = None
    inode: int | None = None
    links: int | None = None
    deleted: bool = False
    recoverable: bool = False
    target: str | None = None
    found_by: str = "index"  # how it was found: one of schemas.FOUND_BY
    note: str | None = None  # what could not be read about it, or why it is listed
    key: Any = None
    raw: Any = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)  # driver-specific columns

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def copy(self) -> Entry:
        """A copy a caller may change (path, parent) without touching a driver's cache.

        Slot by slot: a third of ``dataclasses.replace``'s time, which a browser listing a
        20,000-entry folder pays once per entry."""
        new = object.__new__(type(self))
        for name in _SLOTS:
            setattr(new, name, getattr(self, name))
        new.extra = dict(self.extra)
        return new

    def row(self) -> dict:
        d = {c: getattr(self, c) for c in FILES_COLUMNS}
        d.update(self.extra)
        return d

    def __repr__(self) -> str:
        flag = " deleted" if self.deleted else ""
        return f"<Entry {self.kind} {self.path or self.name!r} size={self.size}{flag}>"

    def _repr_html_(self) -> str:
        from ..reprs import card

        state = "deleted" if self.deleted else "live"
        if self.deleted:
            state += ", recoverable" if self.recoverable else ", not recoverable"
        facts = [("kind", self.kind), ("path", self.path or self.name),
                 ("size", f"{self.size} bytes"), ("modified", self.modified),
                 ("created", self.created), ("accessed", self.accessed),
                 ("changed", self.changed), ("inode", self.inode), ("state", state)]
        if self.target is not None:
            facts.append(("target", self.target))
        where = self.path or self.name
        steps = ([f"fs.files({where!r})"] if self.kind == DIR
                 else [f"fs.open({where!r})", f"fs.read({where!r})"])
        return card("Entry", facts, steps + [f"fs.extract({where!r}, dest)"])


_SLOTS = tuple(f.name for f in dataclasses.fields(Entry))


def join_path(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name


def decode_names(raw: list[bytes]) -> list[str]:
    """Names stored as bytes as text (bytes that are not UTF-8 kept as surrogates, as
    ``bytes.decode(..., "surrogateescape")`` does for each), decoded together: joined by
    NUL, decoded and split at C speed (one by one when a name holds a NUL)."""
    blob = b"\0".join(raw)
    if blob.count(b"\0") != len(raw) - 1:
        return [nm.decode("utf-8", "surrogateescape") for nm in raw]
    return blob.decode("utf-8", "surrogateescape").split("\0")


def mode_kind(mode: int | None) -> str:
    """The files() ``kind`` of a POSIX mode."""
    if mode is None:
        return OTHER
    if statmod.S_ISDIR(mode):
        return DIR
    if statmod.S_ISREG(mode):
        return FILE
    if statmod.S_ISLNK(mode):
        return SYMLINK
    return OTHER

