"""The one directory walk every ``files()`` and ``iter_entries()`` goes through.

A driver supplies a directory listing, as fsspec's archive filesystems do: a callable
``children(child) -> iterable of Child`` for the directory a Child names (it may be
lazy: the walk hands children out as the caller takes them). The walk owns the
rules (docs/design.md "The walk"), written here once:

- depth first with an explicit stack: a directory's children together, in the order the
  driver lists them, then each subdirectory's, in that order;
- a directory naming one of its ancestors is a loop: reported and not followed;
- each directory is listed once (live and deleted apart): a second name for it (a
  directory hard link) is reported and not followed;
- nesting deeper than ``MAX_DEPTH`` and paths longer than ``MAX_PATH`` are not followed;
- a deleted directory is entered only when ``listable(child)`` says its listing can still
  be read (no finding: most deleted directories cannot);
- an unreadable directory (``CorruptImage``, any ``VDInspectError`` in salvage mode) is
  skipped with a finding and a note on its row; on a volume with damaged ranges,
  ``damage(child)`` bytes of a directory that could not be read (asked before it is
  listed) give a finding and a note on its row.

A child is a plain tuple (fast paths make thousands): ``(path, is_dir, ident, deleted,
handle, payload)``. ``is_dir``: a directory the walk may enter; ``ident``: what
identifies the directory for loop checks (None: not checked); ``handle``: what the
driver lists the directory by (an Entry, an inode, a tree key; ``children`` gets the
whole child tuple and reads it);
``payload``: the row as the driver keeps it (an Entry, raw inode bytes, a tuple), which
the walk never reads. A fast path may instead list a directory as a :class:`Batch`:
its rows as columns, only its subdirectories as Children (no tuple per file).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from ..errors import CorruptImage, VDInspectError
from .entry import MAX_DEPTH, MAX_PATH

#: positions in a child tuple
PATH, IS_DIR, IDENT, DELETED, HANDLE, PAYLOAD = range(6)

Child = tuple  # (path, is_dir, ident, deleted, handle, payload)

LOOP = "directory loop (points back to an ancestor); not followed"
HARD_LINK = "directory already listed under another name (a directory hard link); not followed"
TOO_DEEP = f"deeper than {MAX_DEPTH} levels; not followed"
TOO_LONG = f"path longer than {MAX_PATH} characters; not followed"


class Batch:
    """A fast path's listing of one directory held column-wise, without a tuple per row:
    ``size`` rows in the driver's order; ``subdirs``, the ``(row in the listing, Child)``
    of each row the walk may enter, in order; ``columns``, the rows as the driver keeps
    them (the walk never reads it). The driver leaves out the rows the walk would not
    hand out (deleted ones, when the walk lists none)."""

    __slots__ = ("size", "subdirs", "columns")

    def __init__(self, size: int, subdirs: list[tuple[int, Child]], columns) -> None:
        self.size = size
        self.subdirs = subdirs
        self.columns = columns

    def __len__(self) -> int:
        return self.size


_pause_lock = threading.Lock()
_pauses = 0  # walks running under paused_gc
_resume = False  # whether the last one to end turns the collector back on


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector held off while a walk builds a frame: the walk makes
    hundreds of thousands of small objects that all live until the frame is built, and
    each collection would traverse them all again (time growing faster than the file
    count) to free nothing; one collection after the walk traverses them once (moving
    them to the oldest generation unseen, with ``gc.freeze()``/``unfreeze()``, was
    tried: the garbage cycles of each walk then lived on until a full collection).

    Nested and concurrent pauses are counted: the collector is turned back on when the
    last one ends, and only if it was on when the first began and nobody turned it off
    in the meantime (a caller's ``gc.disable()`` while a walk runs is kept)."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
        _pauses += 1
        gc.disable()
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def damage_note(lost: int) -> str:
    """The note of a directory ``lost`` bytes of whose own data could not be read."""
    return f"{lost} bytes of the directory could not be read: entries stored there are lost"


def note_entry(c: Child, why: str) -> None:
    """The ``note`` hook of a walk whose payloads are Entries: the note goes on the
    directory's Entry (its row is built later)."""
    e = c[PAYLOAD]
    e.note = why if not e.note else f"{e.note}; {why}"


class Walk:
    """One walk below a directory; iterate it for ``(parent, children)`` pairs: the
    children as the driver gave them (a list, or an iterator handing them out lazily),
    to be taken in full before the next pair.

    ``notes`` maps the row number (0-based, in walk order) of each directory the walk
    could list only in part, or not at all, to why; ``note(child, why)`` hears of each as
    it is made (the Entry walk puts it on the Entry). ``on_skip(child, why)`` hears of
    every directory not followed, ``on_partial(child, why)`` of every directory listed in
    part. ``damage`` is asked only on a volume with damaged ranges.
    """

    def __init__(self, fs, top: Child, children: Callable[[Child], Iterable[Child]],
                 *, recursive: bool = True, deleted: bool = True,
                 listable: Callable[[Child], bool] | None = None,
                 damage: Callable[[Child], int] | None = None,
                 note: Callable[[Child, str], None] | None = None,
                 on_skip: Callable[[Child, str], None] | None = None,
                 on_partial: Callable[[Child, str], None] | None = None) -> None:
        self.fs = fs
        self.top = top
        self.children = children
        self.recursive = recursive
        self.deleted = deleted
        self.listable = listable
        self.damage = damage
        self.note = note
        self.on_skip = on_skip
        self.on_partial = on_partial
        self.notes: dict[int, str] = {}
        self.rows = 0  # rows yielded so far

    def _annotate(self, d: Child, row: int | None, why: str) -> None:
        if row is not None:
            old = self.notes.get(row)
            self.notes[row] = why if old is None else f"{old}; {why}"
        if self.note is not None:
            self.note(d, why)

    def _skip(self, c: Child, why: str) -> None:
        self.fs.finding("error", "directory", None, f"{c[PATH] or '/'}: {why}")
        if self.on_skip is not None:
            self.on_skip(c, why)

    def __iter__(self) -> Iterator[tuple[Child, Iterator[Child]]]:
        fs, top = self.fs, self.top
        damaged_volume = self.damage is not None and fs.volume_damaged()
        # ``way``: the directories from the top to the one being listed (``on_way``: the
        # same as a set); ``listed``: every directory entered, with its deleted flag (two
        # names for one directory at every level would double the tree each time)
        stack: list[tuple[Child, int, int | None]] = [(top, 0, None)]
        way: list = []
        on_way: set = set()
        listed: set = {(top[IDENT], top[DELETED])}
        while stack:
            d, depth, row = stack.pop()
            while len(way) > depth:
                on_way.discard(way.pop())
            way.append(d[IDENT])
            on_way.add(d[IDENT])
            if damaged_volume:
                lost = self.damage(d)
                if lost:
                    why = damage_note(lost)
                    fs.finding("error", "directory", None, f"{d[PATH] or '/'}: {why}")
                    self._annotate(d, row, why)
                    if self.on_partial is not None:
                        self.on_partial(d, why)
            try:
                kids = self.children(d)
            except VDInspectError as e:
                if fs.strict and not isinstance(e, CorruptImage):
                    raise
                why = f"unreadable directory: {e}"
                self._annotate(d, row, why)
                self._skip(d, why)
                continue
            subdirs: list = []
            if isinstance(kids, Batch):  # a fast path's columns: rows counted, not seen
                first = self.rows
                self.rows += kids.size
                yield d, kids
                if self.recursive:
                    for i, c in kids.subdirs:
                        self._enter(c, first + i, depth, len(way), on_way, listed, subdirs)
            elif isinstance(kids, list):  # a fast path's listing: handed out as it is
                if not self.deleted:
                    kids = [c for c in kids if not c[DELETED]]
                first = self.rows
                self.rows += len(kids)
                yield d, kids
                if self.recursive:
                    for i, c in enumerate(kids):
                        if c[IS_DIR]:
                            self._enter(c, first + i, depth, len(way), on_way, listed,
                                        subdirs)
            else:
                yield d, self._each(kids, depth, len(way), on_way, listed, subdirs)
            stack.extend(reversed(subdirs))

    def _each(self, kids, depth: int, levels: int, on_way: set, listed: set,
              subdirs: list) -> Iterator[Child]:
        """The children of one directory as the consumer takes them (a listing may be
        lazy: a huge folder is read only as far as it is shown), each subdirectory
        checked after it is handed out."""
        deleted, recursive = self.deleted, self.recursive
        for c in kids:
            if c[DELETED] and not deleted:
                continue
            row = self.rows
            self.rows = row + 1
            yield c
            if recursive and c[IS_DIR]:
                self._enter(c, row, depth, levels, on_way, listed, subdirs)

    def _enter(self, c: Child, row: int, depth: int, levels: int, on_way: set,
               listed: set, subdirs: list) -> None:
        """The rules for a subdirectory (``levels``: directories from the top to its
        parent): queued to be listed, or reported and not followed."""
        cid = c[IDENT]
        if cid is not None and cid in on_way:
            self._skip(c, LOOP)
        elif cid is not None and (cid, c[DELETED]) in listed:
            self._skip(c, HARD_LINK)
        elif levels >= MAX_DEPTH:
            self._skip(c, TOO_DEEP)
        elif len(c[PATH]) > MAX_PATH:
            self._skip(c, TOO_LONG)
        elif c[DELETED] and self.listable is not None and not self.listable(c):
            return
        else:
            listed.add((cid, c[DELETED]))
            subdirs.append((c, depth + 1, row))
