"""The QCOW2 reader: one class made of the concepts of the format (header, clusters,
snapshots, refcounts, reports)."""

from __future__ import annotations

from functools import cached_property

from ...io import ByteSource, LRUCache
from ...lazy import np
from ..base import Image
from .check import Refcounts
from .clusters import ClusterMap
from .header import Header
from .report import Report
from .snapshots import Snapshot, Snapshots
from .structs import FORMAT


class Qcow2Image(Header, ClusterMap, Snapshots, Refcounts, Report, Image):
    """A QCOW2 image file; ``snapshot`` opens an internal snapshot's state instead."""

    format = FORMAT

    def __init__(
        self,
        source: ByteSource,
        *,
        path: str | None = None,
        strict: bool = True,
        snapshot: str | int | None = None,
    ) -> None:
        super().__init__(source, path=path, strict=strict)
        self.data_file: ByteSource | None = None
        self._l2_cache: LRUCache = LRUCache(256)
        self._parse_header()
        self._parse_extensions()
        self._check_features()
        self._open_data_file()
        self.snapshot_list = self._read_snapshots()
        self.current_snapshot: Snapshot | None = None
        l1_offset, l1_size = self.header.l1_table_offset, self.header.l1_size
        if snapshot is not None:
            snap = self.find_snapshot(snapshot)
            self.current_snapshot = snap
            l1_offset, l1_size = snap.raw.l1_table_offset, snap.raw.l1_size
            self.size = snap.virtual_size(self.size)
        self.l1_table_offset = l1_offset
        self.l1_entries = l1_size
        if not self._l1_sound(l1_offset, l1_size, "L1 table"):
            self.l1 = self._read_l1(l1_offset, l1_size, "L1 table")
        # else: the table is decoded on first use (``info`` needs none of it: no numpy)

    @cached_property
    def l1(self) -> np.ndarray:
        """The L1 table (uint64 entries), read and decoded when first used."""
        return self._read_table(self.l1_table_offset, self.l1_entries * 8, "L1 table")

    @property
    def host_files(self) -> list[str]:
        out = [self.path]
        if self.data_file is not None:
            out.append(self.data_file_path)
        return out

    def owned_sources(self) -> list[ByteSource]:
        return [self.file] + ([self.data_file] if self.data_file is not None else [])


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> Qcow2Image:
    """Open a QCOW2 image read from ``source``."""
    return Qcow2Image(source, path=path, strict=strict)
