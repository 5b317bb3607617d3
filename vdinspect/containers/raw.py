"""Raw images: the file is the disk, byte for byte.

Allocation comes from the host file's holes (SEEK_DATA/SEEK_HOLE) where the host
filesystem reports them, so a sparse raw file shows as sparse.
"""

from __future__ import annotations

from ..io import ByteSource, FileSource
from . import readplan
from .base import DATA, UNALLOCATED, Image, Run

FORMAT = "raw"


def probe(head: bytes) -> bool:
    """Anything can be raw; the registry asks last."""
    return True


class RawImage(Image):
    """A raw disk image (also used as a backing file)."""

    format = FORMAT

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        super().__init__(source, path=path, strict=strict)
        self.size = source.size
        self.header = None
        self._extents = source.data_extents() if isinstance(source, FileSource) else None
        self.subformat = (
            "sparse"
            if self._extents is not None and sum(n for _, n in self._extents) < self.size
            else None
        )

    def _runs(self, start: int, end: int):
        if self._extents is None:
            yield Run(
                start, end - start, DATA, host_file=self.path, host_offset=start, source=self.file
            )
            return
        pos = start
        import bisect

        i = max(0, bisect.bisect_right(self._extents, (start, 1 << 63)) - 1)
        for ext_start, ext_len in self._extents[i:]:
            ext_end = ext_start + ext_len
            if ext_end <= pos:
                continue
            if ext_start >= end:
                break
            if ext_start > pos:
                yield Run(pos, ext_start - pos, UNALLOCATED)
                pos = ext_start
            stop = min(ext_end, end)
            yield Run(pos, stop - pos, DATA, host_file=self.path, host_offset=pos, source=self.file)
            pos = stop
        if pos < end:
            yield Run(pos, end - pos, UNALLOCATED)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """One pread: the file is the disk (its holes read as zeros, as the runs say)."""
        return [(start, end, readplan.DATA, start, self.file)]

    def locate(self, offset: int, length: int) -> readplan.Located:
        """The file is the disk: the bytes are where they are."""
        return self.file, offset

    def structures(self) -> list[dict]:
        return [
            dict(
                name="data",
                host_file=self.path,
                host_offset=0,
                length=self.size,
                description="the whole file is the virtual disk",
            )
        ]


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> RawImage:
    return RawImage(source, path=path, strict=strict)
