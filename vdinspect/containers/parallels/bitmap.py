"""The dirty bitmaps of the Parallels Format Extension."""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING

from ...lazy import np
from .structs import SECTOR

if TYPE_CHECKING:
    from .image import ParallelsImage


class DirtyBitmap:
    """A dirty bitmap from the Format Extension (``.raw`` keeps the parsed feature)."""

    def __init__(self, image: ParallelsImage, raw, l1: np.ndarray, host_offset: int) -> None:
        self.image = image
        self.raw = raw
        self.l1 = l1
        self.host_offset = host_offset  # of the feature data
        self.id = str(uuidlib.UUID(bytes=bytes(raw.id)))
        self.granularity = raw.granularity * SECTOR  # bytes of disk per bit
        self.bits = -(-raw.size * SECTOR // self.granularity) if raw.granularity else 0
        self._dirty: list[tuple[int, int]] | None = None

    @property
    def data_clusters(self) -> list[int]:
        """Host offsets of the clusters holding bitmap data (those inside the file)."""
        limit = self.image.file.size - self.image.cluster_size
        return [e * SECTOR for e in self.l1.tolist() if 1 < e and e * SECTOR <= limit]

    def dirty(self) -> list[tuple[int, int]]:
        """Dirty granules as inclusive (first, last) index ranges (units of ``granularity``)."""
        if self._dirty is None:
            self._dirty = self._read()
        return self._dirty

    def _read(self) -> list[tuple[int, int]]:
        img = self.image
        cs = img.cluster_size
        per = cs * 8  # bits per bitmap cluster
        out: list[tuple[int, int]] = []
        for k, e in enumerate(self.l1.tolist()):
            base = k * per
            n = min(per, self.bits - base)
            if n <= 0:
                break
            if e == 0:
                continue
            if e == 1:
                got = [(base, base + n - 1)]
            else:
                off = e * SECTOR
                if off + cs > img.file.size:
                    continue  # reported when the extension was read
                bits = np.unpackbits(
                    np.frombuffer(img.file.read(off, cs), dtype=np.uint8), bitorder="little"
                )[:n]
                got = [(a + base, b + base) for a, b in index_ranges(np.flatnonzero(bits))]
            for a, b in got:
                if out and out[-1][1] + 1 == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
        return out

    @property
    def dirty_bytes(self) -> int:
        return sum(b - a + 1 for a, b in self.dirty()) * self.granularity

    def as_dict(self) -> dict:
        return dict(
            id=self.id,
            granularity=self.granularity,
            size=self.raw.size * SECTOR,
            l1_size=self.raw.l1_size,
            dirty_clusters=", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in self.dirty()),
            dirty_bytes=self.dirty_bytes,
        )

    def __repr__(self) -> str:
        return f"<parallels DirtyBitmap {self.id} granularity={self.granularity}>"


def index_ranges(idx: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indexes as inclusive (first, last) ranges."""
    if not len(idx):
        return []
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    firsts = np.concatenate(([idx[0]], idx[cut]))
    lasts = np.concatenate((idx[cut - 1], [idx[-1]]))
    return list(zip(firsts.tolist(), lasts.tolist()))
