"""Byte sources: the one read protocol every layer of vdinspect speaks.

A ByteSource has a ``size`` in bytes and ``read(offset, length)``, which returns exactly
``length`` bytes from inside ``[0, size)``. Reading past the end is an error, never a silent
short read. Images, chains, partitions and open files are all ByteSources, so they compose.

``damaged_ranges()`` says which bytes could not be read (salvage mode reads them as zeros):
a disk knows from its ``damaged`` runs, and every source built on another (a partition, a
file's extents, a decompressed stream) maps its parent's damage into its own offsets, so a
file on a partition of a damaged chain can say which of its bytes are not real.
"""

from __future__ import annotations

import bisect
import errno
import io
import mmap
import os
import stat
from collections.abc import Sequence

from ..errors import CorruptImage, InvalidArgument, NotFound, VDInspectError

#: what :meth:`ByteSource.host_ranges` answers: (host file source or None for zeros, host
#: offset, length) stretches in order, or None
HostRanges = list[tuple["FileSource | None", int, int]] | None


class _NotStored:
    """The host of a :meth:`ByteSource.host_pieces` stretch that is not stored as itself."""

    def __repr__(self) -> str:
        return "NOT_STORED"


#: the host of a stretch that must be read through the source (compressed, replayed,
#: damaged, unknown): ``(NOT_STORED, 0, bytes)``
NOT_STORED = _NotStored()
#: what :meth:`ByteSource.host_pieces` answers: host ranges that never give up, stretches
#: not stored as themselves named ``(NOT_STORED, 0, bytes)``
HostPieces = list[tuple["FileSource | _NotStored | None", int, int]]


class ByteSource:
    """Base class: subclasses set ``size`` and implement ``_read``."""

    size: int = 0
    name: str = "<bytes>"

    def read(self, offset: int, length: int) -> bytes:
        """Return exactly ``length`` bytes starting at ``offset``."""
        self._check_range(offset, length)
        if length == 0:
            return b""
        return self._read(offset, length)

    def readinto(self, offset: int, buffer) -> None:
        """Fill ``buffer`` (a writable buffer) with bytes from ``offset``."""
        mv = memoryview(buffer).cast("B")
        mv[:] = self.read(offset, len(mv))

    def _read(self, offset: int, length: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """``[offset, offset+length)`` as stretches of host files, in order: ``(FileSource,
        host offset, bytes)``, or ``(None, 0, bytes)`` for zeros; None when some byte is not
        stored as itself (compressed, damaged, replayed, unknown). A copy can then go host
        file to host file in the kernel (``os.copy_file_range``). By default: None."""
        return None

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """Like :meth:`host_ranges`, but what is not stored as itself is a stretch
        ``(NOT_STORED, 0, bytes)`` instead of no answer: a copier reads exactly those bytes
        (in large reads) and copies the rest in the kernel, asking once per window. By
        default: the whole range as host ranges, or one stretch not stored."""
        got = self.host_ranges(offset, length)
        return [(NOT_STORED, 0, length)] if got is None else got

    def damaged_ranges(self, offset: int = 0, length: int | None = None) -> list[tuple[int, int]]:
        """The (offset, length) ranges inside ``[offset, offset+length)`` that could not be
        read and read as zeros (salvage mode), merged and in order; [] for a sound source."""
        if length is None:
            length = max(0, self.size - offset)
        self._check_range(offset, length)
        if not length:
            return []
        return [(a, b - a) for a, b in merge_ranges(self._damage_pairs(offset, offset + length))]

    def damaged_bytes(self) -> int:
        """How many of this source's bytes could not be read (0 for a sound source)."""
        return sum(n for _a, n in self.damaged_ranges())

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Damaged (start, end) pairs clipped to ``[start, end)``; sources over another
        source override this to map their parent's damage (the default: none)."""
        return []

    def _check_range(self, offset: int, length: int) -> None:
        if not isinstance(offset, int) or not isinstance(length, int):
            raise InvalidArgument(f"{self.name}: offset and length must be integers")
        if offset < 0 or length < 0:
            raise InvalidArgument(f"{self.name}: negative offset or length ({offset}, {length})")
        if offset + length > self.size:
            raise InvalidArgument(
                f"{self.name}: read of {length} bytes at offset {offset:#x} "
                f"goes past the end ({self.size:#x})"
            )

    def close(self) -> None:
        """Release what the source holds (file descriptors); reading afterwards fails."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} size={self.size}>"


def filled_bytes(length: int, fill) -> bytes:
    """``length`` bytes written in place by ``fill(view)`` (a writable view, zeroed at first,
    that ``fill`` must not keep): the one place a read assembles its answer from pieces.
    A ``bytearray`` then ``bytes()`` costs a second buffer and a copy (about 1 ms a MiB
    here, mostly page faults); a ``BytesIO`` over a fresh zeroed buffer lends that buffer
    (``getbuffer``: never a copy, as nobody else holds it) and CPython's ``getvalue`` hands
    it back as the answer without copying."""
    bio = io.BytesIO(bytes(length))
    with bio.getbuffer() as view:
        fill(view)
    return bio.getvalue()


class FilledSource(ByteSource):
    """A source that writes its bytes into a buffer, ``_fill(offset, view, zeroed)``: ``read``
    and ``readinto`` share that one path instead of each copying through the other.
    ``zeroed`` says the view already holds zeros (a fresh buffer), so holes need no writing."""

    def _read(self, offset: int, length: int) -> bytes:
        return filled_bytes(length, lambda view: self._fill(offset, view, True))

    def readinto(self, offset: int, buffer) -> None:
        """Fill ``buffer`` (a writable buffer) with bytes from ``offset``."""
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        if len(mv):
            self._fill(offset, mv, False)

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:  # pragma: no cover
        raise NotImplementedError


class FileSource(ByteSource):
    """A host file opened read-only (``O_RDONLY``) and read with ``os.pread``.

    ``fd`` hands over a descriptor already opened (by :class:`~vdinspect.io.paths.PathPolicy`,
    which checks what a name stored in an image may open); the source then owns it.
    """

    def __init__(self, path: str | os.PathLike, *, fd: int | None = None) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        if fd is not None:
            self._fd = fd
        else:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError as e:
                raise NotFound(f"{self.path}: no such file") from e
            except IsADirectoryError as e:
                raise InvalidArgument(f"{self.path}: is a directory") from e
            except OSError as e:
                raise InvalidArgument(f"{self.path}: cannot open: {os_reason(e)}") from e
        st = os.fstat(self._fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(self._fd)
            self._fd = -1
            raise InvalidArgument(f"{self.path}: is a directory, not an image file")
        self.size = st.st_size
        if self.size == 0 and not stat.S_ISREG(st.st_mode):
            # block devices report 0 in st_size; ask lseek instead
            self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def _read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) == length:
            return data
        parts = [data]
        got = len(data)
        while got < length:
            more = os.pread(self._fd, length - got, offset + got)
            if not more:
                raise CorruptImage(
                    f"file ended early: wanted {length} bytes, got {got}",
                    path=self.path,
                    offset=offset,
                )
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        done = 0
        while done < len(mv):
            n = os.preadv(self._fd, [mv[done:]], offset + done)
            if n <= 0:
                raise CorruptImage("file ended early", path=self.path, offset=offset + done)
            done += n

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """The file's own bytes (see :meth:`ByteSource.host_ranges`)."""
        self._check_range(offset, length)
        return [(self, offset, length)]

    @property
    def fd(self) -> int:
        """The open descriptor (read-only), for ``os.copy_file_range``."""
        return self._fd

    def view(self) -> memoryview | None:
        """The whole file as a read-only memory map (None where it cannot be mapped: not a
        regular file, empty), made once: bulk readers take slices of the page cache
        instead of copies. The file must not shrink while its view is in use."""
        if getattr(self, "_view", False) is False:
            self._view = None
            try:
                if self.size and stat.S_ISREG(os.fstat(self._fd).st_mode):
                    self._map = mmap.mmap(self._fd, self.size, access=mmap.ACCESS_READ)
                    self._view = memoryview(self._map)
            except (OSError, ValueError, OverflowError):
                self._view = None
        return self._view

    def seek_data(self, offset: int) -> int:
        """The first offset >= ``offset`` where the host file may hold data (SEEK_DATA;
        ``size`` when only a hole follows, ``offset`` where the host cannot tell): the
        bytes before it read as zeros."""
        return self.data_extent(offset)[0]

    def data_extent(self, offset: int) -> tuple[int, int]:
        """``(start, end)``: the first stretch at or after ``offset`` where the host file may
        hold data (SEEK_DATA, then SEEK_HOLE); the bytes from ``offset`` to ``start`` are a
        hole (zeros). ``(size, size)`` when only a hole follows; ``(offset, size)`` where
        the host cannot tell."""
        if not hasattr(os, "SEEK_DATA"):
            return offset, self.size
        try:
            start = os.lseek(self._fd, offset, os.SEEK_DATA)
        except OSError as e:
            return (self.size, self.size) if e.errno == errno.ENXIO else (offset, self.size)
        start = min(max(start, offset), self.size)
        try:
            end = os.lseek(self._fd, start, os.SEEK_HOLE)
        except OSError:
            end = self.size
        return start, min(max(end, start), self.size)

    def data_spans(self, offset: int, length: int) -> list[tuple[int, int]]:
        """The ``(start, end)`` stretches of ``[offset, offset+length)`` where the host file
        may hold data (:meth:`data_extent`); the rest is holes, which read as zeros."""
        end = offset + length
        out = []
        pos = offset
        while pos < end:
            a, b = self.data_extent(pos)
            if a >= end or b <= a:
                break
            out.append((a, min(b, end)))
            pos = b
        return out

    def data_extents(self) -> list[tuple[int, int]] | None:
        """Where the host file holds data, ``(offset, length)`` from SEEK_DATA/SEEK_HOLE
        (:meth:`data_spans` of the whole file); None if the host cannot tell."""
        if not hasattr(os, "SEEK_DATA"):
            return None
        try:
            os.lseek(self._fd, 0, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: all of it a hole
                return None
        return [(a, b - a) for a, b in self.data_spans(0, self.size)]

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        view, self._view = getattr(self, "_view", None), None
        if view is not None:
            try:
                view.release()
                self._map.close()
            except BufferError:  # arrays still look at it: unmapped when they go
                pass
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def os_reason(e: OSError) -> str:
    """Why an open failed, in words; running out of file descriptors says what to do (a
    deep backing chain holds one per layer)."""
    import errno

    if e.errno in (errno.EMFILE, errno.ENFILE):
        try:
            import resource

            limit = f" (this process may hold {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
        except (ImportError, OSError, ValueError):
            limit = ""
        return (f"too many open files{limit}: every layer of a chain and every extent holds "
                "one; raise the limit (ulimit -n)")
    return e.strerror or str(e)


class MemorySource(ByteSource):
    """Bytes held in memory (tests, small synthesised images)."""

    def __init__(self, data: bytes, name: str = "<memory>") -> None:
        self._data = bytes(data)
        self.size = len(self._data)
        self.name = name

    def _read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class Zero(ByteSource):
    """``size`` bytes of zeros."""

    def __init__(self, size: int, name: str = "<zero>") -> None:
        self.size = int(size)
        self.name = name

    def _read(self, offset: int, length: int) -> bytes:
        return bytes(length)

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """All zeros (see :meth:`ByteSource.host_ranges`): a hole in the copy."""
        self._check_range(offset, length)
        return [(None, 0, length)] if length else []


class Slice(ByteSource):
    """A window ``[offset, offset+length)`` of another source (a partition, an extent)."""

    def __init__(self, source: ByteSource, offset: int, length: int, name: str | None = None):
        if offset < 0 or length < 0 or offset + length > source.size:
            raise InvalidArgument(
                f"{source.name}: slice [{offset:#x}, +{length:#x}) outside size {source.size:#x}"
            )
        self.source = source
        self.offset = offset
        self.size = length
        self.name = name or f"{source.name}[{offset:#x}:+{length:#x}]"

    def _read(self, offset: int, length: int) -> bytes:
        return self.source.read(self.offset + offset, length)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return damaged_through(self.source, [(0, self.offset, self.size)], start, end)

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        self.source.readinto(self.offset + offset, mv)

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        self._check_range(offset, length)
        return self.source.host_ranges(self.offset + offset, length)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        self._check_range(offset, length)
        return self.source.host_pieces(self.offset + offset, length)


class Concat(ByteSource):
    """Several sources one after another (split extents, striped volumes' pieces)."""

    def __init__(self, sources: Sequence[ByteSource], name: str | None = None) -> None:
        self.sources = list(sources)
        self.starts = []
        pos = 0
        for s in self.sources:
            self.starts.append(pos)
            pos += s.size
        self.size = pos
        self.name = name or "+".join(s.name for s in self.sources)

    def _read(self, offset: int, length: int) -> bytes:
        i = bisect.bisect_right(self.starts, offset) - 1
        parts = []
        while length > 0:
            src = self.sources[i]
            local = offset - self.starts[i]
            n = min(length, src.size - local)
            if n > 0:
                parts.append(src.read(local, n))
                offset += n
                length -= n
            i += 1
        return b"".join(parts)

    def readinto(self, offset: int, buffer) -> None:
        """Fill ``buffer`` piece by piece from each source it spans, with no joined copy."""
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        i = bisect.bisect_right(self.starts, offset) - 1
        done, length = 0, len(mv)
        while done < length:
            src = self.sources[i]
            local = offset + done - self.starts[i]
            n = min(length - done, src.size - local)
            if n > 0:
                src.readinto(local, mv[done:done + n])
                done += n
            i += 1

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """Each part's host ranges in turn (see :meth:`ByteSource.host_ranges`); None
        when one part cannot say."""
        return self._parts_host(offset, length, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """Each part's host pieces in turn (see :meth:`ByteSource.host_pieces`)."""
        return self._parts_host(offset, length, True)

    def _parts_host(self, offset: int, length: int, pieces: bool):
        self._check_range(offset, length)
        out: list = []
        i = max(0, bisect.bisect_right(self.starts, offset) - 1)
        pos, end = offset, offset + length
        while pos < end:
            src = self.sources[i]
            local = pos - self.starts[i]
            n = min(end - pos, src.size - local)
            if n > 0:
                got = src.host_pieces(local, n) if pieces else src.host_ranges(local, n)
                if got is None:
                    return None
                join_host_ranges(out, got)
                pos += n
            i += 1
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        out: list[tuple[int, int]] = []
        while i < len(self.sources) and self.starts[i] < end:
            s0, src = self.starts[i], self.sources[i]
            a, b = max(start, s0), min(end, s0 + src.size)
            if a < b:
                out.extend((s0 + x, s0 + y) for x, y in src._damage_pairs(a - s0, b - s0))
            i += 1
        return out


def stored_only(pieces: HostPieces) -> HostRanges:
    """``host_pieces`` as ``host_ranges`` answers: None when a stretch is not stored."""
    return None if any(h is NOT_STORED for h, _o, _n in pieces) else pieces


def join_host_ranges(out: list, got: list) -> None:
    """Append host ranges (or pieces) ``got`` to ``out``, a piece that goes on where the
    last one ends (the same host file and the next offset, zeros after zeros, not stored
    after not stored) joined to it: one copy call instead of two."""
    for host, off, n in got:
        if out:
            h, o, k = out[-1]
            if h is host and (host is None or host is NOT_STORED or o + k == off):
                out[-1] = (h, o, k + n)
                continue
        out.append((host, off, n))


def cut_host_ranges(ranges: list, skip: int, length: int) -> list:
    """The host ranges of bytes ``[skip, skip+length)`` of what ``ranges`` cover (a
    source that looked up whole blocks hands back the part asked for)."""
    out = []
    for host, off, n in ranges:
        if skip >= n:
            skip -= n
            continue
        take = min(n - skip, length)
        out.append((host, 0 if host is None else off + skip, take))
        skip, length = 0, length - take
        if not length:
            break
    return out


def read_inside(source: ByteSource, offset: int, length: int) -> bytes | None:
    """``length`` bytes at ``offset``, or None when they are not all inside ``source``: for
    probes and scans, to which bytes that are not there are an answer, not an error."""
    if offset < 0 or length < 0 or offset + length > source.size:
        return None
    return source.read(offset, length)


def merge_ranges(pairs) -> list[tuple[int, int]]:
    """(start, end) pairs sorted and merged where they touch or overlap; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(p for p in pairs if p[1] > p[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def damaged_through(source: ByteSource, pieces, start: int = 0, end: int | None = None
                    ) -> list[tuple[int, int]]:
    """Map ``source``'s damage into a view made of ``pieces`` (view offset, source offset,
    length), as (start, end) pairs of the view clipped to ``[start, end)``.

    The helper every extent-mapped source (a file on a volume, a partition) uses.
    """
    out: list[tuple[int, int]] = []
    for view, src, n in pieces:
        a, b = max(start, view), min(view + n, end if end is not None else view + n)
        if a >= b:
            continue
        shift = view - src
        for x, y in source._damage_pairs(a - shift, b - shift):
            out.append((x + shift, y + shift))
    return out


class DamageIndex:
    """The damaged ranges of a large source, fetched window by window and kept.

    ``fetch(start, end)`` returns (start, end) pairs (from metadata: allocation runs);
    windows keep the cost of a question about a few extents small on a multi-TiB disk.
    """

    WINDOW = 1 << 32
    SPLIT = 512  # finest range a mapping error is narrowed down to, bytes
    SPLIT_BUDGET = 4096  # mapping calls per window spent narrowing errors down

    def __init__(self, fetch, size: int) -> None:
        self.fetch = fetch
        self.size = size
        # window -> (merged pairs, their ends): ends are sorted, so a question about a few
        # extents bisects to the first pair that can touch it
        self.windows: dict[int, tuple[list[tuple[int, int]], list[int]]] = {}

    def _fetch(self, a: int, b: int, budget: list[int]) -> list[tuple[int, int]]:
        """``fetch``, where a range whose mapping raises (strict mode: a damaged table
        entry) is halved until the unreadable part is found; it counts as damaged, since
        reading it fails. The budget bounds the work on a table full of errors."""
        try:
            return self.fetch(a, b)
        except InvalidArgument:
            raise
        except VDInspectError:
            budget[0] -= 1
            if b - a <= self.SPLIT or budget[0] <= 0:
                return [(a, b)]
            mid = a + (b - a) // 2 // self.SPLIT * self.SPLIT
            mid = mid if a < mid < b else a + (b - a) // 2
            return self._fetch(a, mid, budget) + self._fetch(mid, b, budget)

    def query(self, start: int, end: int) -> list[tuple[int, int]]:
        out = []
        w = self.WINDOW
        for k in range(start // w, (max(start, end - 1)) // w + 1):
            got = self.windows.get(k)
            if got is None:
                budget = [self.SPLIT_BUDGET]
                pairs = merge_ranges(self._fetch(k * w, min(self.size, (k + 1) * w), budget))
                got = self.windows[k] = (pairs, [b for _a, b in pairs])
            pairs, ends = got
            for i in range(bisect.bisect_right(ends, start), len(pairs)):
                a, b = pairs[i]
                if a >= end:
                    break
                out.append((max(a, start), min(b, end)))
        return out


def all_zero(buf) -> bool:
    """True when a buffer holds only zero bytes (numpy view: no copy, no slow compare)."""
    import numpy as np

    mv = memoryview(buf).cast("B")
    n = len(mv) - len(mv) % 8
    # data shows in its first bytes nearly always: a look there spares the whole scan
    if n and (np.frombuffer(mv[:min(n, 4096)], dtype=np.uint64).any()
              or np.frombuffer(mv[:n], dtype=np.uint64).any()):
        return False
    return not np.frombuffer(mv[n:], dtype=np.uint8).any()

