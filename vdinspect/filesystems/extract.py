"""Safe extraction: names sanitised, links kept inside the destination, holes kept, files
written under a temporary name and renamed, and a report of everything that could not be
written as it is on the volume."""

from __future__ import annotations

import bisect
import datetime as dt
import errno
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import VDInspectError
from ..io import NOT_STORED, ByteSource, Concat, HostCopier, Zero, all_zero
from ..progress import reporter

if TYPE_CHECKING:
    from .base import FileSystem
    pass

from .entry import DIR, FILE, SYMLINK, Entry

# --- extraction -------------------------------------------------------------------------

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {
    f"LPT{i}" for i in range(1, 10)}
_BAD_CHARS = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def safe_name(name: str) -> str:
    """A host-safe version of one path component (never '', '.', '..' or a separator)."""
    n = unicodedata.normalize("NFC", name)
    n = _BAD_CHARS.sub("_", n).strip()
    n = n.rstrip(". ") or "_"
    if n in (".", ".."):
        n = "_" * len(n)
    if n.split(".")[0].upper() in _WINDOWS_RESERVED:
        n = "_" + n
    return _fit(n[:255]).rstrip(". ") or "_"


def _fit(name: str, limit: int = 255) -> str:
    """``name`` cut to at most ``limit`` bytes of UTF-8 (hosts count NAME_MAX in bytes)."""
    while len(name.encode("utf-8", "surrogatepass")) > limit:
        name = name[:-1]
    return name


def _next_data(src: ByteSource, pos: int) -> int:
    """The first offset at or after ``pos`` that may hold non-zero bytes (``src.size`` if
    none): sources that know their holes answer ``seek_data(pos)`` (like SEEK_DATA), so
    extracting a sparse 2 TiB file skips its holes instead of reading them."""
    if isinstance(src, Zero):
        return src.size
    if isinstance(src, Concat):
        for i in range(max(0, bisect.bisect_right(src.starts, pos) - 1), len(src.sources)):
            start, part = src.starts[i], src.sources[i]
            at = _next_data(part, max(0, pos - start))
            if at < part.size:
                return start + at
        return src.size
    seek = getattr(src, "seek_data", None)
    return pos if seek is None else min(max(seek(pos), pos), src.size)


@dataclass
class ExtractReport:
    """What ``extract`` did: files written, bytes, and what was skipped and why."""

    dest: str
    written: list[str] = field(default_factory=list)
    bytes_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (volume path, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (volume path, host path)
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # written, but cut short
    #: written, but with ranges that could not be read (zeros there): (volume path, host
    #: path, [(offset, length), ...]) — salvage mode's damaged ranges reaching a file
    damaged: list[tuple[str, str, list[tuple[int, int]]]] = field(default_factory=list)
    #: hard links: (volume path, the volume path whose host file it is linked to)
    linked: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{len(self.written)} files, {self.bytes_written} bytes written to {self.dest}"
        if self.renamed:
            s += f"; {len(self.renamed)} renamed"
        if self.linked:
            s += f"; {len(self.linked)} hard links"
        if self.incomplete:
            s += f"; {len(self.incomplete)} incomplete"
        if self.damaged:
            s += f"; {len(self.damaged)} with unreadable ranges written as zeros"
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
        return s

    def __repr__(self) -> str:
        return f"<ExtractReport {self.summary()}>"

    def _repr_html_(self) -> str:
        import html

        from ..reprs import table

        shown = self.skipped[:20]
        body = table(("volume path", "why skipped"), shown) if shown else ""
        more = len(self.skipped) - len(shown)
        if more:
            body += f"<div>... and {more} more in <code>.skipped</code></div>"
        bad = [(p, damage_text(r)) for p, _h, r in self.damaged[:20]]
        if bad:
            body += table(("volume path", "unreadable (written as zeros)"), bad)
        return (f"<div><b>ExtractReport</b> {html.escape(self.summary())}{body}"
                "<div>See: <code>.written</code>, <code>.skipped</code>, "
                "<code>.renamed</code>, <code>.incomplete</code>, "
                "<code>.damaged</code></div></div>")


def damage_text(ranges: list[tuple[int, int]]) -> str:
    """A short human description of damaged ranges: bytes and where."""
    total = sum(n for _a, n in ranges)
    shown = ", ".join(f"[{a:#x}, +{n:#x})" for a, n in ranges[:3])
    more = f" and {len(ranges) - 3} more" if len(ranges) > 3 else ""
    return f"{total} bytes in {len(ranges)} ranges: {shown}{more}"


class Extractor:
    #: bytes checked for zeros (left as a hole) or written at a time
    CHUNK = 1 << 20
    #: bytes read at a time where they are not stored as themselves (compressed, replayed)
    READ = 1 << 20
    #: the window asked of ``host_pieces`` at a time: one question per window
    COPY = 64 << 20
    #: whether stored bytes are copied in the kernel (``io.HostCopier``) at all
    kernel_copy = hasattr(os, "copy_file_range") or hasattr(os, "sendfile")

    def __init__(self, fs: FileSystem, dest: str, progress) -> None:
        self.fs = fs
        self.dest = os.path.realpath(dest)
        self.report = ExtractReport(self.dest)
        self.progress = progress
        self.links: dict = {}  # hard-link key -> (host path written, volume path)
        # one copier for the whole extraction: a host file the kernel refused is asked
        # once, not once per file written (its output descriptor is set per file)
        self.copier = HostCopier(-1) if self.kernel_copy else None

    def _link(self, e: Entry, host: str) -> bool:
        """Make a second name of a file already written a hard link to it (as tar does):
        a thousand names for one big file cost one copy. False when it must be written."""
        key = self.fs.hardlink_key(e)
        first = self.links.get(key) if key is not None else None
        if first is None or os.path.lexists(host):
            return False
        try:
            os.link(first[0], host, follow_symlinks=False)
        except OSError:
            return False  # a host without hard links: write the copy instead
        self.report.written.append(host)
        self.report.linked.append((e.path, first[1]))
        self.done = min(self.total, self.done + e.size)
        return True

    def run(self, path: str, recursive: bool, deleted: bool) -> ExtractReport:
        os.makedirs(self.dest, exist_ok=True)
        top = self.fs.lookup(path, deleted=deleted)
        skipped = self.report.skipped
        not_followed: set[int] = set()  # directories the walk refused (loops, too deep)

        def on_skip(e: Entry, why: str) -> None:
            skipped.append((e.path, why))
            not_followed.add(id(e))

        if top.kind == DIR:
            pairs = list(self.fs.walk_entries(path, recursive=recursive, deleted=deleted,
                                              on_skip=on_skip, on_partial=lambda e, why:
                                              self.report.incomplete.append((e.path, why))))
        else:
            pairs = [(top, None)]
        walk_top = pairs[0][1] if pairs else None
        total = sum(e.size for e, _ in pairs if e.kind == FILE)
        self.total = total
        self.done = 0
        self.report_fn = reporter(self.progress, total)
        dirs_times = []
        used: set[str] = set()
        hosts: dict[int, str] = {}  # id(directory entry) -> its host folder
        for e, parent in pairs:
            if id(e) in not_followed:
                continue  # reported as skipped; no empty folder stands in for it
            if parent is None or parent is walk_top:
                parent_host = self.dest
            else:
                parent_host = hosts.get(id(parent))
                if parent_host is None:
                    skipped.append((e.path, "its folder was not extracted"))
                    continue
            name = safe_name(e.name)
            host = os.path.join(parent_host, name)
            if _host_key(host) in used:
                stem, i = host, 1
                while _host_key(host) in used:
                    host = f"{stem}~{i}"
                    i += 1
            used.add(_host_key(host))
            if os.path.basename(host) != e.name:
                self.report.renamed.append((e.path, host))
            try:
                if e.kind == DIR:
                    # parent_host is a real folder inside dest (checked when made) and the
                    # name has no separator, so a real folder made here is inside too
                    if os.path.islink(host) or (os.path.lexists(host)
                                                and not os.path.isdir(host)):
                        skipped.append((e.path, f"{host} exists and is not a folder"))
                        continue
                    if not os.path.isdir(host):
                        os.mkdir(host, 0o755)
                    hosts[id(e)] = host
                    dirs_times.append((host, e))
                elif e.kind == FILE and self._link(e, host):
                    pass
                elif e.kind == FILE:
                    n, cut, bad = self._write_file(e, host)
                    key = self.fs.hardlink_key(e)
                    if key is not None and not cut and not bad:
                        self.links.setdefault(key, (host, e.path))
                    self.report.written.append(host)
                    self.report.bytes_written += n
                    if cut:
                        self.report.incomplete.append((e.path, cut))
                    if bad:
                        self.report.damaged.append((e.path, host, bad))
                elif e.kind == SYMLINK:
                    self._symlink(e, host)
                else:
                    skipped.append((e.path, f"{e.kind} entries are not extracted"))
            except VDInspectError as exc:
                skipped.append((e.path, f"unreadable: {exc}"))
            except OSError as exc:
                skipped.append((e.path, f"could not write {host}: {exc.strerror or exc}"))
        for host, e in reversed(dirs_times):
            _set_times(host, e)
        if self.report_fn and self.done < total:
            self.report_fn(total, total)
        return self.report

    def _write_file(self, e: Entry, host: str
                    ) -> tuple[int, str | None, list[tuple[int, int]]]:
        """Write one file (temporary name, then rename); (bytes, why it is short or None,
        the ranges that could not be read and were written as zeros)."""
        src = self.fs.content(e)
        if os.path.islink(host) or (os.path.exists(host) and not os.path.isfile(host)):
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file", host)
        tmp = os.path.join(os.path.dirname(host),
                           f".{_fit(os.path.basename(host), 200)}.vdinspect-part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
        written = 0
        start = self.done
        if self.copier is not None:
            self.copier.fd = fd
        try:
            buf = bytearray(min(self.READ, max(src.size, 1)))
            pos = 0
            while pos < src.size:
                n = _next_data(src, pos) - pos  # a hole the source knows of: not read
                if n <= 0:
                    n = self._window(src, pos, fd, buf)
                pos += n
                written += n
                if self.report_fn:
                    self.done = min(self.total, start + written)
                    self.report_fn(self.done, self.total)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        try:
            os.ftruncate(fd, written)  # a trailing hole needs the size set explicitly
        finally:
            os.close(fd)
        os.replace(tmp, host)
        _set_times(host, e)
        self.done = min(self.total, start + e.size)
        cut = None
        if written < e.size:
            cut = f"only {written} of {e.size} bytes could be read"
        try:  # after the copy: decoders learn of undecodable units while reading
            bad = src.damaged_ranges()
        except VDInspectError:
            bad = []
        return written, cut, bad

    def _window(self, src: ByteSource, pos: int, fd: int, buf: bytearray) -> int:
        """Write up to :attr:`COPY` bytes of ``src`` from ``pos`` to ``fd`` at ``pos``, asking
        ``host_pieces`` once: bytes stored as themselves copied host file to host file in
        the kernel (``io.HostCopier``: copy_file_range, sendfile across filesystems), zeros
        left as holes, the rest (compressed, replayed, damaged; or what the kernel refused)
        read through the source in large reads. Returns the bytes done."""
        n = min(self.COPY, src.size - pos)
        copier = self.copier
        pieces = src.host_pieces(pos, n) if copier is not None else [(NOT_STORED, 0, n)]
        at = pos
        for host, off, k in pieces:
            if host is not None and (host is NOT_STORED or not self._kernel(host, off, k, at)):
                self._read_write(src, at, k, fd, buf)
            at += k
        if at != pos + n:  # a source answering for other bytes than asked: a bug of ours
            raise AssertionError(f"{src.name}: host pieces cover {at - pos} of {n} bytes")
        return n

    def _kernel(self, host, off: int, k: int, at: int) -> bool:
        """Copy ``k`` host bytes in the kernel; False when it refuses or fails (the read
        then reports what is wrong)."""
        try:
            return self.copier.copy(host, off, off + k, at)
        except OSError:
            return False

    def _read_write(self, src: ByteSource, pos: int, n: int, fd: int, buf: bytearray) -> None:
        """Read ``[pos, pos+n)`` of ``src`` in reads of up to :attr:`READ` bytes and write it
        at ``pos``, each all-zero :attr:`CHUNK` left a hole (sparse files stay sparse)."""
        end = pos + n
        while pos < end:
            m = min(len(buf), end - pos)
            mv = memoryview(buf)[:m]
            src.readinto(pos, mv)
            for a in range(0, m, self.CHUNK):
                part = mv[a:a + self.CHUNK]
                if not all_zero(part):
                    _pwrite_all(fd, part, pos + a)
            pos += m

    def _symlink(self, e: Entry, host: str) -> None:
        target = self.fs.readlink_entry(e)
        if os.path.isabs(target) or "\\" in target or "\0" in target:
            self.report.skipped.append((e.path, f"symlink to {target!r} points outside"))
            return
        # ".." only as a prefix: after a name it could climb out of a link made earlier
        # (a link to "." followed by "..") where the lexical check below would not see it
        parts = [p for p in target.split("/") if p not in ("", ".")]
        while parts and parts[0] == "..":
            parts.pop(0)
        resolved = os.path.normpath(os.path.join(os.path.dirname(host), target))
        if ".." in parts or not (resolved == self.dest
                                 or resolved.startswith(self.dest + os.sep)):
            self.report.skipped.append((e.path, f"symlink to {target!r} points outside"))
            return
        os.makedirs(os.path.dirname(host), exist_ok=True)
        if os.path.lexists(host):
            os.unlink(host)
        os.symlink(target, host)
        self.report.written.append(host)


def _pwrite_all(fd: int, data: memoryview, at: int) -> None:
    """Write all of ``data`` at ``at`` (``pwrite`` may write less than asked)."""
    while len(data):
        n = os.pwrite(fd, data, at)
        data, at = data[n:], at + n


def _host_key(host: str) -> str:
    """How a host path is compared for collisions: without case, on every host, so an
    extraction gives the same names on Linux as on macOS or Windows (where README.TXT
    would overwrite Readme.txt)."""
    return os.path.normcase(host).casefold()


def _set_times(host: str, e: Entry) -> None:
    m = e.modified
    a = e.accessed or m
    if m is None:
        return
    try:
        os.utime(host, ns=(_ns(a), _ns(m)), follow_symlinks=False)
    except (OSError, OverflowError, ValueError):
        pass


def _ns(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
