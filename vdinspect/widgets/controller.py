"""The file browser's logic, in plain Python (no ipywidgets): the view only wires events here.

A :class:`BrowserController` holds the state of one browser: the disk, the chosen volume
and its open filesystem, the current folder, the sort order, the filter, the selection and
whether deleted entries are shown. A folder is listed lazily: entries are pulled from the
driver only as far as the rows asked for need (in directory order): ``window(start, count)``
for the rows a scrolled table shows, or a page (``listing()``) for a script. Sorting needs
every entry of the folder once; the sorted order is then kept until the folder or the
filter changes. Rows are numbered in display order from 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ..disk.arguments import renamed_part
from ..errors import InvalidArgument, NotFound, VDInspectError
from ..filesystems.base import DIR, Entry, ExtractReport, FileSystem, safe_name
from ..units import human
from .preview import preview_entry

if TYPE_CHECKING:
    import pandas as pd

#: the columns of ``listing()``
LISTING_COLUMNS = ["name", "kind", "size", "modified", "deleted"]
#: columns ``sort()`` accepts (None is directory order)
SORT_KEYS = ("name", "kind", "size", "modified", "deleted")
PAGE_SIZE = 200
#: the most rows one ``window()`` call hands out
WINDOW_MAX = 5_000
#: rows the view reads when a folder opens, so the scrollbar spans the whole folder (a
#: bigger folder's scrollbar grows as it is scrolled)
SPAN_LIMIT = 50_000


class BrowserController:
    """State and actions of a file browser over a Disk (or directly over a FileSystem)."""

    def __init__(
        self,
        disk,
        *,
        page_size: int = PAGE_SIZE,
        show_deleted: bool = False,
        part: int | str | None = None,
        volume: int | str | None = None,
    ) -> None:
        part = renamed_part(part, volume, "BrowserController(volume=...)")
        if not isinstance(page_size, int) or page_size < 1:
            raise InvalidArgument(f"page_size must be a positive int, not {page_size!r}")
        self.disk = disk
        self.page_size = page_size
        self.show_deleted = bool(show_deleted)
        self.volume: str | None = None
        self.fs: FileSystem | None = None
        self.cwd = "/"
        self.page = 0
        self.sort_key: str | None = None
        self.ascending = True
        self.selection: list[Entry] = []
        self._entries: list[Entry] = []  # pulled so far, in directory order
        self._source: Iterator[Entry] | None = None  # None once the folder is exhausted
        self._sorted: list[Entry] | None = None
        self.errors: list[str] = []  # problems met while listing (shown by the view)
        # The panels beside the listing; each goes stale when the user moves on, so
        # navigating clears all three and a successful action clears the error.
        self.error: str | None = None  # the last failed action's message (the red line)
        self.shown: dict | None = None  # the preview on screen (see ``preview()``)
        self.report: ExtractReport | None = None  # the last extraction's report
        self.filter = ""  # only names holding this text (case-insensitive) are listed
        if isinstance(disk, FileSystem):
            self.fs = disk
            self.volume = "fs"
            self._reload()
            return
        if part is not None:
            self.select_volume(part)
        else:
            vols = self.volumes()
            if vols:
                self.select_volume(vols[0][1])

    # --- actions with panels ------------------------------------------------------------
    def run(self, action: Callable[[], object]) -> bool:
        """Run a user action: on success clear the error, on a VDInspectError/OSError keep
        its message in ``error`` (never raise). True when it succeeded."""
        try:
            action()
        except (VDInspectError, OSError) as exc:
            self.error = str(exc)
            return False
        self.error = None
        return True

    def show(self, name: str | Entry | None) -> dict | None:
        """Preview an entry in the panel (None empties it); returns what is shown."""
        self.shown = None if name is None else self.preview(name)
        return self.shown

    # --- volumes ------------------------------------------------------------------
    def volumes(self) -> list[tuple[str, str]]:
        """The volumes with a readable filesystem, as (label, key) pairs for a dropdown."""
        if isinstance(self.disk, FileSystem):
            fs = self.disk
            return [(f"{fs.fstype} {fs.label or ''}".strip(), "fs")]
        from ..filesystems import has_driver

        out = []
        for v in self.disk.volumes():
            if v.kind == "unallocated" or not v.filesystem or not v.key:
                continue
            if not getattr(v, "readable", True) or not has_driver(v.filesystem):
                continue
            label = f" {v.label!r}" if v.label else ""
            where = "whole disk" if v.key == "disk" else f"#{v.key}"
            out.append((f"{where}: {v.filesystem}{label} ({human(v.length)})", v.key))
        return out

    def select_volume(self, key: int | str) -> None:
        """Open the filesystem of a volume (a key from ``volumes()``) at its root."""
        if isinstance(self.disk, FileSystem):
            if str(key) != "fs":
                raise NotFound(f"no volume {key!r}; volumes: fs")
            return
        fs = self.disk.filesystem(key)
        self.fs = fs
        self.report = None
        self.volume = str(key)
        self.cwd = "/"
        self._reload()

    # --- navigation ----------------------------------------------------------------
    def cd(self, path: str) -> None:
        """Go to a folder: absolute, or relative to the current one ('..' goes up)."""
        fs = self._need_fs()
        if not isinstance(path, str):
            raise InvalidArgument(f"path must be a str, not {type(path).__name__}")
        parts = [] if path.startswith("/") else [p for p in self.cwd.split("/") if p]
        for p in path.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(p)
        target = "/" + "/".join(parts)
        entry = fs.lookup(target, deleted=self.show_deleted)
        if entry.kind != DIR:
            raise InvalidArgument(f"{fs.name}: {target} is not a folder")
        self.cwd = entry.path or "/"
        self._reload()

    def up(self) -> None:
        """Go to the parent folder (stays at the root)."""
        self.cd("..")

    def breadcrumbs(self) -> list[tuple[str, str]]:
        """(label, path) pairs from the root to the current folder."""
        crumbs = [("/", "/")]
        path = ""
        for part in [p for p in self.cwd.split("/") if p]:
            path += "/" + part
            crumbs.append((part, path))
        return crumbs

    def set_show_deleted(self, show: bool) -> None:
        """Show or hide deleted entries (back to the first page)."""
        self.show_deleted = bool(show)
        if self.fs is not None:
            self._reload()

    # --- the listing ------------------------------------------------------------------
    def listing(self) -> pd.DataFrame:
        """The current page as a DataFrame: name, kind, size, modified, deleted."""
        from ..frames import files_frame

        entries = self.page_entries()
        return files_frame([e.row() for e in entries])[LISTING_COLUMNS]

    def page_entries(self) -> list[Entry]:
        """The entries of the current page (only these and the ones before are pulled)."""
        start = self.page * self.page_size
        return self._ordered(start + self.page_size)[start : start + self.page_size]

    @property
    def has_next(self) -> bool:
        end = (self.page + 1) * self.page_size
        return len(self._ordered(end + 1)) > end

    @property
    def has_prev(self) -> bool:
        return self.page > 0

    @property
    def count(self) -> int | None:
        """How many entries are listed (after the filter), or None while not all are read."""
        if self._source is not None:
            return None
        return len(self._ordered(0))

    def page_label(self) -> str:
        """E.g. 'entries 201-400 of 100000' (or 'of 401+' while the folder is not all read)."""
        start = self.page * self.page_size
        n = len(self.page_entries())
        has_next = self.has_next
        total = self.count
        of = str(total) if total is not None else f"{start + n + (1 if has_next else 0)}+"
        if n == 0:
            return f"no entries (of {of})"
        return f"entries {start + 1}-{start + n} of {of}"

    def next_page(self) -> bool:
        """Go to the next page; False (and stay) when this is the last one."""
        if not self.has_next:
            return False
        self.page += 1
        return True

    def prev_page(self) -> bool:
        """Go to the previous page; False at the first."""
        if self.page == 0:
            return False
        self.page -= 1
        return True

    def sort(self, col: str | None) -> None:
        """Sort by a column (again: reverse the order); None is the directory's own order."""
        if col is not None and col not in SORT_KEYS:
            raise InvalidArgument(f"cannot sort by {col!r}; choose one of {', '.join(SORT_KEYS)}")
        if col is not None and col == self.sort_key:
            self.ascending = not self.ascending
        else:
            self.sort_key = col
            self.ascending = True
        self._sorted = None
        self.page = 0

    def set_filter(self, text: str) -> None:
        """List only names containing ``text`` (case-insensitive; '' lists all); page 0."""
        if not isinstance(text, str):
            raise InvalidArgument(f"filter must be a str, not {type(text).__name__}")
        self.filter = text.strip()
        self._sorted = None
        self.page = 0
        self.selection = []

    @property
    def page_count(self) -> int | None:
        """How many pages the folder fills, or None while it is not fully read."""
        total = self.count
        return None if total is None else max(1, -(-total // self.page_size))

    def goto_page(self, page: int) -> int:
        """Jump to a page (0-based; past the end goes to the last page); returns the page."""
        if not isinstance(page, int) or page < 0:
            raise InvalidArgument(f"page must be an int >= 0, not {page!r}")
        have = len(self._ordered((page + 1) * self.page_size))
        last = max(0, -(-have // self.page_size) - 1)
        self.page = min(page, last)
        return self.page

    # --- the rows of a scrolled table ----------------------------------------------------
    def window(self, start: int, count: int) -> list[Entry]:
        """Rows ``start`` to ``start + count`` in display order (fewer at the end).

        Only the entries up to the window's end are pulled from the driver (all of them
        once the folder is sorted or filtered): a table scrolled to row 19,000 asks for the
        rows around it and builds no others.
        """
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise InvalidArgument(f"start must be an int >= 0, not {start!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= WINDOW_MAX:
            raise InvalidArgument(f"count must be an int in 0..{WINDOW_MAX}, not {count!r}")
        return self._ordered(start + count)[start : start + count]

    @property
    def known(self) -> int:
        """Rows known so far in display order: all of them once ``count`` is not None."""
        return len(self._ordered(0))

    def read_ahead(self, limit: int = SPAN_LIMIT) -> int:
        """Pull entries until ``limit`` are held or the folder ends; returns ``known``.

        A table calls it when a folder opens so that its scrollbar spans every row of any
        folder up to ``limit`` entries.
        """
        if not isinstance(limit, int) or limit < 0:
            raise InvalidArgument(f"limit must be an int >= 0, not {limit!r}")
        self._ordered(limit)
        return self.known

    def rows_at(self, indices: Iterable[int]) -> list[Entry]:
        """The entries at these row numbers (display order) among the rows already read
        (``known``); other numbers are skipped, so a stray number reads nothing more."""
        rows = self._ordered(0)
        return [rows[i] for i in indices if isinstance(i, int) and 0 <= i < len(rows)]

    def find_next(self, prefix: str, after: int = -1) -> int | None:
        """The row number of the next name starting with ``prefix`` (case-insensitive)
        after row ``after``, wrapping round, among the rows already read; None if none."""
        if not isinstance(prefix, str) or not isinstance(after, int):
            raise InvalidArgument("find_next takes a str prefix and an int row")
        rows = self._ordered(0)
        needle = prefix.casefold()
        n = len(rows)
        if not needle or not n:
            return None
        start = min(max(after + 1, 0), n)
        for i in (*range(start, n), *range(0, start)):
            if rows[i].name.casefold().startswith(needle):
                return i
        return None

    def describe(self) -> str:
        """How many rows there are, for a status line: '20,000 entries', '3 of 20,000
        match "abc"' or '50,000+ entries' while the folder is not read to its end."""
        total = len(self._entries)
        more = "+" if self._source is not None else ""
        if not self.filter:
            n = self.known
            return f"{n:,}{more} {'entry' if n == 1 and not more else 'entries'}"
        return f"{self.known:,} of {total:,}{more} match {self.filter!r}"

    # --- selection, preview, extraction -------------------------------------------------
    def select(self, names: Iterable[str | Entry]) -> list[Entry]:
        """Select entries of the current folder by name (or Entry); returns the selection."""
        if isinstance(names, str | Entry):
            names = [names]
        chosen = []
        for n in names:
            chosen.append(n if isinstance(n, Entry) else self.entry(n))
        self.selection = chosen
        return chosen

    def entry(self, name: str) -> Entry:
        """The entry called ``name`` in the current folder (live before deleted)."""
        if not isinstance(name, str):
            raise InvalidArgument(f"name must be a str, not {type(name).__name__}")
        found = [e for e in self._entries if e.name == name]
        if not found and self._source is not None:
            # not pulled yet: look it up directly rather than reading the whole folder
            fs = self._need_fs()
            e = fs.lookup(_join(self.cwd, name), deleted=self.show_deleted)
            return e
        if not found:
            raise NotFound(f"{self._need_fs().name}: no {name!r} in {self.cwd}")
        live = [e for e in found if not e.deleted]
        return (live or found)[0]

    def preview(self, name: str | Entry, *, limit: int = 4096) -> dict:
        """What to show for an entry: dict(kind="text"|"hex"|"image", ...); see preview.py."""
        entry = name if isinstance(name, Entry) else self.entry(name)
        return preview_entry(self._need_fs(), entry, limit=limit)

    def extract(
        self, dest: str | os.PathLike, *, progress: Callable[[int, int], None] | None = None
    ) -> ExtractReport:
        """Copy the selection into the host folder ``dest``; one report for all of it.

        A selected folder goes to ``dest/<name>``; ``progress(done, total)`` hears bytes
        (the total grows as folders are walked).
        """
        fs = self._need_fs()
        self.report = None
        if not self.selection:
            raise InvalidArgument("nothing selected to extract")
        if dest is None or not os.fspath(dest).strip():
            raise InvalidArgument("say which host folder to extract into")
        dest = os.path.realpath(os.path.expanduser(os.fspath(dest)))
        report = ExtractReport(dest)
        pending = sum(e.size for e in self.selection if e.kind != DIR)
        base = 0
        for e in self.selection:
            if e.kind != DIR:
                pending -= e.size
            target = os.path.join(dest, safe_name(e.name)) if e.kind == DIR else dest
            seen = {"total": e.size if e.kind != DIR else 0}
            cb = None
            if progress is not None:

                def cb(done, total, _base=base, _pending=pending, _seen=seen):
                    _seen["total"] = total
                    progress(_base + done, _base + total + _pending)

            try:
                r = fs.extract(
                    e.path or _join(self.cwd, e.name),
                    target,
                    deleted=self.show_deleted or e.deleted,
                    progress=cb,
                )
            except VDInspectError as exc:
                report.skipped.append((e.path, f"unreadable: {exc}"))
                continue
            except OSError as exc:
                report.skipped.append((e.path, f"could not write: {exc.strerror or exc}"))
                continue
            finally:
                base += seen["total"]
            report.written += r.written
            report.bytes_written += r.bytes_written
            report.skipped += r.skipped
            report.renamed += r.renamed
            report.incomplete += r.incomplete
            report.damaged += r.damaged
            report.linked += r.linked
        if progress is not None:
            progress(base, base)
        self.report = report
        return report

    # --- internals ------------------------------------------------------------------------
    def _need_fs(self) -> FileSystem:
        if self.fs is None:
            raise InvalidArgument("no volume with a readable filesystem is selected")
        return self.fs

    def _reload(self) -> None:
        """Start listing the current folder afresh (nothing is pulled yet)."""
        fs = self._need_fs()
        self.page = 0
        self.selection = []
        self._entries = []
        self._sorted = None
        self.errors = []
        self.error = None
        self.shown = None
        self.report = None
        self._source = fs.iter_entries(self.cwd, recursive=False, deleted=self.show_deleted)

    def _pull(self, n: int | None) -> None:
        """Pull entries from the driver until ``n`` are held (all of them when None)."""
        src = self._source
        if src is None:
            return
        try:
            while n is None or len(self._entries) < n:
                e = next(src, None)
                if e is None:
                    self._source = None
                    return
                self._entries.append(e)
        except VDInspectError as exc:
            self.errors.append(str(exc))
            self._source = None

    def _ordered(self, n: int) -> list[Entry]:
        """At least the first ``n`` entries in display order (or all there are)."""
        if self.sort_key is None and not self.filter:
            self._pull(n)
            return self._entries
        if self._sorted is None:
            self._pull(None)
            entries = self._entries
            if self.filter:
                needle = self.filter.casefold()
                entries = [e for e in entries if needle in e.name.casefold()]
            self._sorted = (
                entries if self.sort_key is None else _sorted(entries, self.sort_key, self.ascending)
            )
        return self._sorted


def _sorted(entries: list[Entry], col: str, ascending: bool) -> list[Entry]:
    """Entries sorted by a column; entries without a value go last either way."""
    if col == "name":
        out = sorted(entries, key=lambda e: (e.name.casefold(), e.name), reverse=not ascending)
        return [e for e in out if e.kind == DIR] + [e for e in out if e.kind != DIR]
    have = [e for e in entries if getattr(e, col) is not None]
    missing = [e for e in entries if getattr(e, col) is None]
    have.sort(key=lambda e: (getattr(e, col), e.name.casefold()), reverse=not ascending)
    return have + missing


def _join(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name
