"""The exFAT allocation bitmap: one bit per cluster of the heap, set when it is in use.

The FAT only chains fragmented files, so the bitmap (a file in the heap, named by an
Allocation Bitmap entry of the root directory) is what says which clusters are free.
"""

from __future__ import annotations

import numpy as np

from ..base import free_runs
from ..fat.clusters import cluster_source
from .entries import ExfatKey


class BitmapMixin:
    """Loading and asking the allocation bitmap (mixed into ExfatFileSystem)."""

    bitmap: np.ndarray | None = None  # True where a cluster (from cluster 2) is in use
    bitmap_entry = None  # (offset, parsed AllocationBitmapEntry) of the bitmap in use

    def load_bitmap(self, off: int, bm) -> None:
        """Read the bitmap an Allocation Bitmap entry at ``off`` describes."""
        need = (self.clusters + 7) // 8
        if bm.DataLength < need:
            msg = f"the allocation bitmap has {bm.DataLength} bytes, {need} are needed"
            self.problem("allocation bitmap entry", off, msg)
        eff = self.max_cluster - 1  # clusters the FAT (and so the volume) really has
        length = min(bm.DataLength, need, (eff + 7) // 8)
        k = ExfatKey(bm.FirstCluster, length, length, False)
        runs, problem = self.stream_runs(k, length, "allocation bitmap")
        if problem:
            self.problem("allocation bitmap", off, f"allocation bitmap: {problem}")
        src = cluster_source(
            self.source, self.heap_offset, self.cluster_size, self.readable(runs), length, "bitmap"
        )
        data = src.read(0, src.size)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        full = np.ones(eff, dtype=bool)  # unreadable tail: treat as in use
        n = min(len(bits), eff)
        full[:n] = bits[:n].astype(bool)
        self.bitmap = full

    def free_mask(self, start: int, stop: int) -> np.ndarray:
        """True where clusters [start, stop) are free in the allocation bitmap."""
        stop = min(stop, self.max_cluster + 1)
        if self.bitmap is None or stop <= start:
            return np.zeros(max(0, stop - start), dtype=bool)
        lo, hi = start - 2, stop - 2
        bits = self.bitmap[lo:hi]
        out = np.ones(hi - lo, dtype=bool)
        out[: len(bits)] = ~bits
        return out

    def is_free(self, c: int) -> bool:
        """Whether cluster ``c`` exists and is free in the bitmap."""
        return 2 <= c <= self.max_cluster and bool(self.free_mask(c, c + 1)[0])

    def free_ranges(self) -> list[tuple[int, int]]:
        """The clusters the allocation bitmap marks free, as (offset, length) byte ranges."""
        step = 1 << 20
        masks = ((self.cluster_offset(c), self.free_mask(c, min(c + step, self.max_cluster + 1)))
                 for c in range(2, self.max_cluster + 1, step))
        return free_runs(masks, self.cluster_size, self.source.size)
