"""Byte sources: the one read protocol every layer of vdinspect speaks.

A ByteSource has a ``size`` in bytes and ``read(offset, length)``, which returns exactly
``length`` bytes from inside ``[0, size)``. Reading past the end is an error, never a silent
short read. Images, chains, partitions and open files are all ByteSources, so they compose.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Sequence

from ..errors import CorruptImage, InvalidArgument, NotFound


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


class FileSource(ByteSource):
    """A host file opened read-only (``O_RDONLY``) and read with ``os.pread``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError as e:
            raise NotFound(f"{self.path}: no such file") from e
        except IsADirectoryError as e:
            raise InvalidArgument(f"{self.path}: is a directory") from e
        except OSError as e:
            raise InvalidArgument(f"{self.path}: cannot open: {e.strerror}") from e
        st = os.fstat(self._fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(self._fd)
            self._fd = -1
            raise InvalidArgument(f"{self.path}: is a directory, not an image file")
        self.size = st.st_size
        if self.size == 0 and not os.path.isfile(self.path):
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

    def data_extents(self) -> list[tuple[int, int]] | None:
        """Where the host file holds data, from SEEK_DATA/SEEK_HOLE; None if unsupported."""
        if not hasattr(os, "SEEK_DATA"):
            return None
        out = []
        pos = 0
        try:
            while pos < self.size:
                try:
                    start = os.lseek(self._fd, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: no more data
                    break
                end = os.lseek(self._fd, start, os.SEEK_HOLE)
                end = min(end, self.size)
                if end <= start:
                    break
                out.append((start, end - start))
                pos = end
        except OSError:
            return None
        return out

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


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

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        self.source.readinto(self.offset + offset, mv)


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


def all_zero(buf) -> bool:
    """True when a buffer holds only zero bytes (numpy view: no copy, no slow compare)."""
    import numpy as np

    mv = memoryview(buf).cast("B")
    n = len(mv) - len(mv) % 8
    if n and np.frombuffer(mv[:n], dtype=np.uint64).any():
        return False
    return not np.frombuffer(mv[n:], dtype=np.uint8).any()

