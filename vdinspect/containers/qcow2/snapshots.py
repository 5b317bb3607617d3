"""QCOW2 internal snapshots: the snapshot table and its entries."""

from __future__ import annotations

import datetime as dt

from ...errors import CorruptImage, NotFound
from ...io import FileSource
from ..base import Image
from .report import INT64_MAX, int64_or_none
from .structs import SnapshotExtraData, SnapshotHeader


class Snapshot:
    """One internal snapshot entry (``.raw`` keeps the parsed structure)."""

    def __init__(self, raw, extra, id_str: str, name: str, offset: int, length: int):
        self.raw = raw
        self.extra = extra
        self.id = id_str
        self.name = name
        self.host_offset = offset
        self.length = length

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.raw.date_sec + self.raw.date_nsec / 1e9, dt.UTC)

    @property
    def vm_state_size(self) -> int:
        if self.extra is not None and self.extra.vm_state_size_large is not None:
            return self.extra.vm_state_size_large
        return self.raw.vm_state_size

    def virtual_size(self, default: int) -> int:
        if self.extra is not None and self.extra.disk_size is not None:
            return self.extra.disk_size
        return default

    def __repr__(self) -> str:
        return f"<qcow2 Snapshot id={self.id} name={self.name!r}>"


class Snapshots:
    """Mixin of :class:`Qcow2Image`: the snapshot table, and opening a snapshot's state."""

    def _read_snapshots(self) -> list[Snapshot]:
        h, f = self.header, self.file
        out: list[Snapshot] = []
        if not h.nb_snapshots:
            return out
        pos = h.snapshots_offset
        self.snapshot_table_length = 0

        def bad(message: str, structure: str, offset: int) -> list[Snapshot]:
            # strict: refuse the image; salvage: keep the entries read so far (the
            # active disk does not depend on the snapshot table) and report the rest
            if self.strict:
                self.fail(CorruptImage, message, structure, offset)
            ignored = h.nb_snapshots - len(out)
            self.finding("error", structure, offset, f"{message}; {ignored} snapshot(s) ignored")
            self.snapshot_table_length = pos - h.snapshots_offset
            return out

        if h.nb_snapshots > 65536:
            return bad(
                f"{h.nb_snapshots} snapshots (QEMU allows 65536)", "header.nb_snapshots", 60
            )
        if pos % self.cluster_size:
            return bad("snapshot table not cluster-aligned", "snapshot table", pos)
        for i in range(h.nb_snapshots):
            if pos + 40 > f.size:
                return bad(f"snapshot {i} header past the end of the file", "snapshot table", pos)
            raw = SnapshotHeader.parse(f.read(pos, 40))
            extra_n = raw.extra_data_size
            total = 40 + extra_n + raw.id_str_size + raw.name_size
            if extra_n > 1024 or pos + total > f.size:
                return bad(
                    f"snapshot {i} entry runs past the end of the file", "snapshot table", pos
                )
            body = f.read(pos + 40, total - 40)
            extra = None
            if extra_n >= 8:
                ex = body[:extra_n] + bytes(max(0, 24 - extra_n))
                extra = SnapshotExtraData.parse(ex[:24])
                if extra_n < 16:
                    extra.disk_size = None
                if extra_n < 24:
                    extra.icount = None
            ident = body[extra_n : extra_n + raw.id_str_size].decode("utf-8", "replace")
            name = body[extra_n + raw.id_str_size :].decode("utf-8", "replace")
            length = (total + 7) & ~7
            out.append(Snapshot(raw, extra, ident, name, pos, length))
            pos += length
        self.snapshot_table_length = pos - h.snapshots_offset
        return out

    def find_snapshot(self, ident: str | int) -> Snapshot:
        """The internal snapshot with this id (tried first) or name."""
        key = str(ident)
        for s in self.snapshot_list:
            if s.id == key:
                return s
        for s in self.snapshot_list:
            if s.name == key:
                return s
        names = ", ".join(f"{s.id}:{s.name}" for s in self.snapshot_list) or "none"
        raise NotFound(f"{self.path}: no internal snapshot {key!r} (snapshots: {names})")

    def snapshots(self) -> list[dict]:
        rows = []
        for s in self.snapshot_list:
            rows.append(
                dict(
                    id=s.id,
                    name=s.name,
                    created=s.created,
                    # values a damaged entry puts beyond the int64 columns read as NA
                    vm_clock=dt.timedelta(microseconds=s.raw.vm_clock_nsec / 1000)
                    if s.raw.vm_clock_nsec <= INT64_MAX - 10**6  # float rounding margin
                    else None,
                    vm_state_size=int64_or_none(s.vm_state_size),
                    virtual_size=int64_or_none(s.virtual_size(self.header.size)),
                    l1_table_offset=s.raw.l1_table_offset,
                    l1_size=s.raw.l1_size,
                )
            )
        return rows

    def open_snapshot(self, ident: str | int) -> Image:
        """A read-only view of the disk as it was at an internal snapshot."""
        self.find_snapshot(ident)
        src = FileSource(self.path)
        try:
            return type(self)(src, path=self.path, strict=self.strict, snapshot=ident)
        except BaseException:
            src.close()
            raise
