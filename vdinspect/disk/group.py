"""DiskGroup: several disks opened together (LVM2 volume groups spread over them)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from ..io import ByteSource
from .arguments import frames, part_argument, volume_key
from .core import Disk

if TYPE_CHECKING:
    import pandas as pd

    from ..filesystems.base import FileSystem


class DiskGroup:
    """Several disks opened together: ``vdinspect.open([img1, img2])``.

    Partitions are listed disk by disk, and LVM2 volume groups whose physical volumes are
    spread over the disks are assembled across them. Partitions are named "D:N" (disk
    index, partition number); logical volumes "vg/lv".
    """

    def __init__(self, disks: list[Disk]) -> None:
        self.disks = list(disks)
        self._lists = None

    def __iter__(self):
        return iter(self.disks)

    def __len__(self) -> int:
        return len(self.disks)

    def __getitem__(self, i: int) -> Disk:
        return self.disks[i]

    def volumes(self) -> list:
        """Every disk's volumes, then the logical volumes assembled across the disks."""
        from ..volumes import scan_many

        if self._lists is None:
            self._lists = scan_many(self.disks)
        vols = [v for vols in self._lists for v in vols]
        return [v for v in vols if v.kind != "logical volume"] + [
            v for v in vols if v.kind == "logical volume"]

    def partitions(self) -> pd.DataFrame:
        """The ``partitions()`` rows of every disk, with a ``disk`` column (its index)."""
        self.volumes()
        rows, lvs = [], []
        for d, vols in enumerate(self._lists):
            for v in vols:
                if v.kind == "logical volume":  # assembled across the disks: no one disk
                    lvs.append(dict(v.row(), disk=None))
                else:
                    rows.append(dict(v.row(), disk=d))
        rows += lvs
        df = frames().partitions_frame(rows)
        df["disk"] = frames().build_column([r["disk"] for r in rows], "Int64")
        return df

    def volume(self, part: int | str | None = None, *, key: int | str | None = None
               ) -> ByteSource:
        """A partition ("D:N") or a logical volume ("vg/lv") as a ByteSource (``key=`` is
        the deprecated name of ``part``)."""
        return self._find(part_argument(part, key)).source

    def _find(self, key):
        from ..volumes import find_volume

        key = volume_key(key)
        self.volumes()
        if isinstance(key, str) and ":" in key:
            d, _, part = key.partition(":")
            if not d.isdigit() or not 0 <= int(d) < len(self.disks):
                raise InvalidArgument(f"no disk {d!r}: the group has {len(self.disks)} disks")
            return find_volume(self._lists[int(d)], part)
        if isinstance(key, str) and "/" in key:
            return find_volume(self._lists[0], key)
        if len(self.disks) == 1:
            return find_volume(self._lists[0], key)
        raise InvalidArgument(f"say which disk: 'D:{key}' (D = 0..{len(self.disks) - 1}), "
                              "or 'vg/lv' for a logical volume")

    def filesystem(self, part: int | str) -> FileSystem:
        """The filesystem on a partition ("D:N") or logical volume ("vg/lv")."""
        from ..filesystems import open_filesystem

        vol = self._find(part)
        strict = self.disks[0].options.get("strict", True)
        if vol.filesystem == "btrfs" and vol.uuid:  # its other devices, on any of the disks
            from ..filesystems.btrfs import open_filesystem as open_btrfs

            others = [v.source for v in self.volumes() if v is not vol
                      and v.filesystem == "btrfs" and v.uuid == vol.uuid]
            return open_btrfs(vol.source, name=f"{part}", strict=strict, devices=others)
        return open_filesystem(vol.source, vol.filesystem or None, name=f"{part}",
                               strict=strict)

    def info(self) -> pd.DataFrame:
        """One row per disk: the ``info()`` fields."""
        import pandas as pd

        return pd.DataFrame([d.info() for d in self.disks])

    def check(self) -> pd.DataFrame:
        """Every disk's ``check()`` rows, stacked, with the disk's path first (``disk``)."""
        return self._stacked([d.check() for d in self.disks])

    def structures(self) -> pd.DataFrame:
        """Every disk's ``structures()`` rows, stacked, with the disk's path first."""
        return self._stacked([d.structures() for d in self.disks])

    def _stacked(self, parts: list[pd.DataFrame]) -> pd.DataFrame:
        import pandas as pd

        parts = [df.assign(disk=d.path) for d, df in zip(self.disks, parts, strict=True)]
        df = pd.concat(parts, ignore_index=True)
        return df[["disk", *[c for c in df.columns if c != "disk"]]]

    def close(self) -> None:
        for d in self.disks:
            d.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DiskGroup of {len(self.disks)} disks: " + ", ".join(
            os.path.basename(d.path) for d in self.disks) + ">"
