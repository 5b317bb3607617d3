"""Raw images: the file is the disk, byte for byte.

Allocation comes from the host file's holes (SEEK_DATA/SEEK_HOLE) where the host
filesystem reports them, so a sparse raw file shows as sparse.
"""

from __future__ import annotations

from ..io import ByteSource, FileSource
from . import readplan
from .base import DATA, UNALLOCATED, Image, Run, extent_pieces, structure_row

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
        self._starts = [s for s, _n in self._extents or ()]
        self._lengths = [n for _s, n in self._extents or ()]
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
        for a, b, i in extent_pieces(self._starts, self._lengths, start, end):
            if i is None:
                yield Run(a, b - a, UNALLOCATED)
            else:
                yield Run(a, b - a, DATA, host_file=self.path, host_offset=a, source=self.file)

    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """One pread: the file is the disk (its holes read as zeros, as the runs say)."""
        return [(start, end, readplan.DATA, start, self.file)]

    def locate(self, offset: int, length: int) -> readplan.Located:
        """The file is the disk: the bytes are where they are."""
        return self.file, offset

    def structure_rows(self) -> list[dict]:
        return [
            structure_row("data", self.path, 0, self.size, "the whole file is the virtual disk")
        ]


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> RawImage:
    return RawImage(source, path=path, strict=strict)
