"""A seekable, read-only file object over a file's bytes (reads stream, never the whole)."""

from __future__ import annotations

import io

from ..errors import InvalidArgument
from ..io import ByteSource


class FileReader(io.RawIOBase):
    """A seekable read-only file object over a ByteSource (reads stream, never the whole)."""

    def __init__(self, source: ByteSource, name: str = "") -> None:
        super().__init__()
        self._src = source
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        return self._src.size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._src.size + offset
        else:
            raise InvalidArgument(f"bad whence {whence}")
        if pos < 0:
            raise InvalidArgument("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b) -> int:
        mv = memoryview(b).cast("B")
        n = max(0, min(len(mv), self._src.size - self._pos))
        if n:
            self._src.readinto(self._pos, mv[:n])
            self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._src.size - self._pos)
        n = max(0, min(size, self._src.size - self._pos))
        if not n:
            return b""
        data = self._src.read(self._pos, n)
        self._pos += n
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def damaged_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) ranges of the file that could not be read (they read as zeros)."""
        return self._src.damaged_ranges()
