"""A ByteSource over a seekable binary file object (an fsspec file, a zip member, BytesIO).

Used where an image is not a host file that ``FileSource`` can ``pread``: the bytes come
through the object's ``seek``/``readinto``, under a lock so that one reader at a time moves
its position.
"""

from __future__ import annotations

import io
import threading

from ..errors import CorruptImage, InvalidArgument
from .sources import FilledSource


class FileObjectSource(FilledSource):
    """The bytes of a seekable binary file object; ``owned=True`` closes it on ``close()``."""

    def __init__(self, fileobj, *, name: str | None = None, owned: bool = False) -> None:
        for attr in ("seek", "read"):
            if not callable(getattr(fileobj, attr, None)):
                raise InvalidArgument(f"not a binary file object (no {attr}()): {fileobj!r}")
        if callable(getattr(fileobj, "seekable", None)) and not fileobj.seekable():
            raise InvalidArgument(f"{name or fileobj!r}: the file object is not seekable")
        self.fileobj = fileobj
        self.owned = owned
        self.name = name or str(getattr(fileobj, "path", None) or getattr(fileobj, "name", None)
                                or "<file object>")
        self._lock = threading.Lock()
        with self._lock:
            self.size = int(fileobj.seek(0, io.SEEK_END))

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        f = self.fileobj
        if f is None:
            raise InvalidArgument(f"{self.name}: the source is closed")
        done = 0
        with self._lock:
            f.seek(offset)
            into = getattr(f, "readinto", None)
            while done < len(mv):
                if into is not None:
                    n = into(mv[done:])
                else:
                    chunk = f.read(len(mv) - done)
                    n = len(chunk)
                    mv[done:done + n] = chunk
                if not n:
                    raise CorruptImage(f"file ended early: wanted {len(mv)} bytes, got {done}",
                                       path=self.name, offset=offset + done)
                done += n

    def close(self) -> None:
        f, self.fileobj = self.fileobj, None
        if f is not None and self.owned:
            f.close()
