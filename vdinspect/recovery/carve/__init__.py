"""Carving: files found by their content where no filesystem entry leads to them any more
(a volume's free clusters, a whole disk), each signature validated structurally to find
the file's true end.

- :func:`carve_filesystem` (``fs.carve()``): the volume's free ranges, back to back, so a
  file whose pieces were split by live clusters reads whole (``fragmented`` says so);
- :func:`carve_disk` (``disk.carve()``): the disk's allocated runs only (a sparse image
  costs what it holds);
- :func:`carve_source`: any ByteSource, whole.
"""

from __future__ import annotations

import os

from ...io import ByteSource
from ...progress import Progress
from ...schemas import BACKING, DATA
from .registry import SIGNATURES, Signature, Types, signatures
from .report import CarvedFiles, CarveResult, file_name
from .scanner import MAX_PER_TYPE, MAX_TOTAL, Space, pieces_source, scan

__all__ = ["carve_filesystem", "carve_disk", "carve_source", "CarveResult", "CarvedFiles",
           "SIGNATURES", "Signature", "Space", "file_name"]

RUN_WINDOW = 1 << 36  # bytes of the disk whose runs are asked for at once
#: free space read again after its end: allocators wrap around (FAT's next-free pointer,
#: ext4's goal), so a file begun in the last free clusters may go on in the first ones
WRAP = 64 << 20


def _run(name: str, space: Space, dest, types, budget, progress, max_per_type, max_total,
         before=()) -> CarveResult:
    result = CarveResult(name, space, [])
    for row in before:
        result.finding(row["severity"], row["structure"], row["host_offset"], row["message"])
    result.found = scan(space, signatures(types), result, budget=budget, progress=progress,
                        max_per_type=max_per_type, max_total=max_total, types=types)
    if dest is not None:
        result.extract(dest, progress=progress)
    return result


def carve_filesystem(fs, dest: str | os.PathLike | None = None, *, types: Types = None,
                     budget: float | None = None, progress: Progress = None,
                     max_per_type: int = MAX_PER_TYPE, max_total: int = MAX_TOTAL
                     ) -> CarveResult:
    """Carve a filesystem's free ranges (``fs.free_ranges()``), read back to back; offsets
    in the rows are the volume's. ``types`` limits the search (names as in SIGNATURES),
    ``budget`` is in seconds, ``dest`` writes the files there."""
    before = len(fs.findings)
    ranges = fs.free_ranges()
    pieces, pos = [], 0
    for off, n in ranges:
        pieces.append((pos, off, n))
        pos += n
    searched = pos
    for off, n in ranges:  # the wrap: searched for nothing, read by validators only
        if pos - searched >= min(WRAP, searched):
            break
        n = min(n, min(WRAP, searched) - (pos - searched))
        pieces.append((pos, off, n))
        pos += n
    src = pieces_source(fs.source, pieces, f"{fs.name} (free space)")
    align = max(512, fs.block_size or 512)
    # positions in the pieces back to back keep the volume's alignment only when every
    # piece but the last (cut at the volume's end) is whole clusters
    if any(off % align for off, _n in ranges) or any(n % align for _o, n in ranges[:-1]):
        align = 512
    space = Space(src, [(0, searched)] if searched else [], align, pieces, fs.source)
    return _run(fs.name, space, dest, types, budget, progress, max_per_type, max_total,
                fs.findings[before:])


def carve_disk(disk, dest: str | os.PathLike | None = None, *, types: Types = None,
               budget: float | None = None, progress: Progress = None,
               max_per_type: int = MAX_PER_TYPE, max_total: int = MAX_TOTAL) -> CarveResult:
    """Carve a whole disk, reading only its allocated runs (data and backing), sector by
    sector aligned; offsets are the disk's. Options as in :func:`carve_filesystem`."""
    search: list[tuple[int, int]] = []
    pos = 0
    while pos < disk.size:
        n = min(RUN_WINDOW, disk.size - pos)
        for r in disk.runs(pos, n):
            if r.state in (DATA, BACKING):
                if search and search[-1][0] + search[-1][1] == r.start:
                    search[-1] = (search[-1][0], search[-1][1] + r.length)
                else:
                    search.append((r.start, r.length))
        pos += n
    return _run(disk.path, Space(disk, search), dest, types, budget, progress, max_per_type,
                max_total)


def carve_source(source: ByteSource, dest: str | os.PathLike | None = None, *, types: Types = None,
                 budget: float | None = None, progress: Progress = None,
                 max_per_type: int = MAX_PER_TYPE, max_total: int = MAX_TOTAL) -> CarveResult:
    """Carve every byte of any ByteSource (a partition, a file read from an image)."""
    space = Space(source, [(0, source.size)] if source.size else [])
    return _run(source.name, space, dest, types, budget, progress, max_per_type, max_total)
