"""What a QCOW2 image reports: info fields, flags, bitmaps, and the on-disk structures."""

from __future__ import annotations

import re

from ...errors import CorruptImage
from ...lazy import np
from ..base import TableLayout, data_structures, structure_row
from .structs import (
    COMPAT_LAZY_REFCOUNTS,
    EXT_FEATURE_NAMES,
    INCOMPAT_CORRUPT,
    INCOMPAT_DIRTY,
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    QCOW_OFLAG_COMPRESSED,
    QCOW_OFLAG_COPIED,
    QCOW_OFLAG_ZERO,
    REFT_OFFSET_MASK,
    BitmapDirectoryEntry,
    FeatureNameEntry,
    cstr,
)

INT64_MAX = (1 << 63) - 1
# Report rows become DataFrames with nullable Int64 columns, built through float64 when a
# column mixes None and ints: above 2**53 values lose precision (and fail the cast). No
# host file holds 8 PiB, so a larger offset read from an image is garbage anyway.
FRAME_INT_MAX = (1 << 53) - 1


def fit_int64(rows: list[dict], note: str) -> list[dict]:
    """Copies of report rows whose ``host_offset``/``length`` (read from a damaged image)
    fit the int64 DataFrame columns: a value that does not moves into the ``note`` text."""
    out = []
    for r in rows:
        for key in ("host_offset", "length"):
            v = r.get(key)
            if v is not None and not 0 <= v <= FRAME_INT_MAX:
                r = dict(r)
                r[key] = None
                r[note] = f"{r.get(note) or ''} ({key} {int(v):#x} is out of range)".lstrip()
        out.append(r)
    return out


def int64_or_none(v: int | None) -> int | None:
    return v if v is None or 0 <= v <= FRAME_INT_MAX else None


class Report:
    """Mixin of :class:`Qcow2Image`: info fields, flags, bitmaps and structures()."""

    TABLES = (
        (r"(snapshot \S+ )?l1 table", ">u8", "describe_l1_entry"),
        (r"l2 table \d+", ">u8", "describe_l2_entry"),
        (r"refcount table", ">u8", "describe_refcount_table_entry"),
    )

    def table_layout(self, name: str) -> TableLayout | None:
        if re.fullmatch(r"refcount block \d+", name.strip().lower()) and self.refcount_bits >= 8:
            # entries of refcount_bits each (8..64 bits: a numpy dtype; 1..4 are sub-byte)
            return TableLayout(f">u{self.refcount_bits // 8}", self.describe_refcount)
        layout = super().table_layout(name)
        if layout is not None and self.extended_l2 and name.lower().startswith("l2"):
            return TableLayout(layout.dtype, layout.describe, 16)  # entry + subcluster bitmap
        return layout

    def describe_l1_entry(self, v: int) -> str:
        """What an L1 table entry says."""
        off = v & L1E_OFFSET_MASK
        if not off:
            return "no L2 table: the whole range is unallocated here"
        return f"L2 table at {off:#x}" + ("; COPIED (refcount 1)" if v & QCOW_OFLAG_COPIED else "")

    def describe_l2_entry(self, v: int) -> str:
        """What an L2 table entry says (a standard, zero or compressed cluster)."""
        if v & QCOW_OFLAG_COMPRESSED:
            host = v & self.coffset_mask
            sectors = ((v >> self.csize_shift) & self.csize_mask) + 1
            return f"compressed cluster at {host:#x}, {sectors} sector(s)"
        off = v & L2E_OFFSET_MASK
        if v & QCOW_OFLAG_ZERO:
            return "zero cluster" + (f" (preallocated at {off:#x})" if off else "")
        if not off:
            return "unallocated: read from the backing file (or zeros)"
        return f"data cluster at {off:#x}" + ("; COPIED (refcount 1)" if v & QCOW_OFLAG_COPIED else "")

    def describe_refcount(self, v: int) -> str:
        """What a refcount block entry says about its cluster."""
        if v == 0:
            return "free cluster"
        return "used once" if v == 1 else f"shared: {v} references (snapshots)"

    def describe_refcount_table_entry(self, v: int) -> str:
        """What a refcount table entry says."""
        off = v & REFT_OFFSET_MASK
        return f"refcount block at {off:#x}" if off else "no refcount block"

    @property
    def subformat(self) -> str:
        return "v3" if self.version >= 3 else "v2"

    @property
    def dirty(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_DIRTY)

    @property
    def corrupt(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_CORRUPT)

    def flags(self) -> list[str]:
        h = self.header
        out = self._feature_list(h.incompatible_features, 0)
        out += self._feature_list(h.compatible_features, 1)
        out += self._feature_list(h.autoclear_features, 2)
        if h.compression_type == 1:
            out.append("zstd")
        return out

    def bitmaps(self) -> list[dict]:
        """The persistent dirty bitmaps listed in the bitmap directory."""
        b = self.bitmaps_ext
        if b is None:
            return []
        off, size = b.bitmap_directory_offset, b.bitmap_directory_size
        if size > 64 << 20 or off + size > self.file.size or b.nb_bitmaps > 65535:
            self.fail(CorruptImage, "bitmap directory outside the file", "bitmap directory", off)
        data = self.file.read(off, size)
        rows, pos = [], 0
        for _ in range(b.nb_bitmaps):
            if pos + 24 > len(data):
                self.fail(CorruptImage, "bitmap directory entry cut short", "bitmap directory", off + pos)
            e = BitmapDirectoryEntry.parse(data[pos : pos + 24])
            name_at = pos + 24 + e.extra_data_size
            name = data[name_at : name_at + e.name_size].decode("utf-8", "replace")
            rows.append(
                dict(
                    name=name,
                    granularity=1 << e.granularity_bits,
                    in_use=bool(e.flags & 1),
                    auto=bool(e.flags & 2),
                    bitmap_table_offset=e.bitmap_table_offset,
                    bitmap_table_size=e.bitmap_table_size,
                    host_offset=off + pos,
                )
            )
            pos = (name_at + e.name_size + 7) & ~7
        return rows

    def info_fields(self) -> dict:
        h = self.header
        try:
            bitmaps = [b["name"] for b in self.bitmaps()]
        except CorruptImage as e:  # salvage: the disk does not depend on the bitmaps
            if self.strict:
                raise
            self.finding("error", e.structure or "bitmap directory", e.offset, e.detail)
            bitmaps = None
        return dict(
            version=h.version,
            compat="1.1" if h.version >= 3 else "0.10",
            cluster_size=self.cluster_size,
            backing_file=self.backing_file,
            backing_format=self.backing_format,
            data_file=self.data_file_name,
            data_file_raw=self.data_file_raw if self.data_file_name else None,
            refcount_bits=self.refcount_bits,
            compression_type="zstd" if h.compression_type == 1 else "zlib",
            extended_l2=self.extended_l2,
            lazy_refcounts=bool(h.compatible_features & COMPAT_LAZY_REFCOUNTS),
            dirty=self.dirty,
            corrupt=self.corrupt,
            encrypted=False,
            snapshots=len(self.snapshot_list),
            bitmaps=bitmaps,
            extensions=[
                e["name"] if e["name"] != "unknown" else f"unknown {e['type']:#010x}"
                for e in self.extensions
            ],
            snapshot=self.current_snapshot.name if self.current_snapshot else None,
        )

    def structure_rows(self) -> list[dict]:
        h, cs, p = self.header, self.cluster_size, self.path
        rows = [
            structure_row("header", p, 0, h.header_length, f"QCOW2 v{h.version} header")
        ]
        for e in self.extensions:
            rows.append(
                structure_row(
                    f"header extension: {e['name']}", p, e["host_offset"], 8 + e["length"],
                    f"type {e['type']:#010x}",
                )
            )
            if e["type"] == EXT_FEATURE_NAMES:  # its 48-byte entries, each explained
                n = FeatureNameEntry.sizeof()
                for i in range(min(len(e["data"]) // n, 64)):
                    ent = FeatureNameEntry.parse(e["data"][i * n:(i + 1) * n])
                    rows.append(structure_row(
                        f"feature name entry: {cstr(ent.name) or i}", p,
                        e["host_offset"] + 8 + i * n, n, f"feature type {ent.type}, bit {ent.bit}",
                    ))
        if h.backing_file_offset:
            rows.append(
                structure_row(
                    "backing file name", p, h.backing_file_offset, h.backing_file_size,
                    self.backing_file,
                )
            )
        rows.append(
            structure_row("L1 table", p, h.l1_table_offset, h.l1_size * 8, f"{h.l1_size} entries")
        )
        rows.append(
            structure_row(
                "refcount table", p, h.refcount_table_offset, h.refcount_table_clusters * cs,
                f"{self.refcount_bits}-bit refcounts",
            )
        )
        try:
            reft = self.refcount_table()
        except CorruptImage as e:  # salvage: list the other structures
            if self.strict:
                raise
            self.finding("error", e.structure or "refcount table", e.offset, e.detail)
            reft = np.zeros(0, dtype=np.uint64)
        for i in np.flatnonzero(reft).tolist():
            off = int(reft[i]) & REFT_OFFSET_MASK
            if off:
                rows.append(
                    structure_row(
                        f"refcount block {i}", p, off, cs,
                        f"refcounts of {cs * 8 // self.refcount_bits} clusters",
                    )
                )
        if h.nb_snapshots:
            rows.append(
                structure_row(
                    "snapshot table", p, h.snapshots_offset, self.snapshot_table_length,
                    f"{h.nb_snapshots} snapshots",
                )
            )
            for s in self.snapshot_list:
                rows.append(structure_row(
                    f"snapshot table entry: {s.id}", p, s.host_offset, s.length,
                    f"snapshot {s.name!r}: header, extra data, "
                    "id, name",
                ))
                rows.append(
                    structure_row(
                        f"snapshot {s.id} L1 table", p, s.raw.l1_table_offset, s.raw.l1_size * 8,
                        f"snapshot {s.name!r}",
                    )
                )
        if self.bitmaps_ext is not None:
            b = self.bitmaps_ext
            rows.append(
                structure_row(
                    "bitmap directory", p, b.bitmap_directory_offset, b.bitmap_directory_size,
                    f"{b.nb_bitmaps} bitmaps",
                )
            )
        if self.crypto_ext is not None:
            rows.append(
                structure_row(
                    "encryption header", p, self.crypto_ext.offset, self.crypto_ext.length,
                    "LUKS header",
                )
            )
        l2_offsets = self.l1 & np.uint64(L1E_OFFSET_MASK)
        for i in np.flatnonzero(l2_offsets).tolist():  # a salvaged L1 may have 4 Mi entries
            off = int(l2_offsets[i])
            if off:
                rows.append(
                    structure_row(
                        f"L2 table {i}", p, off, cs, f"maps guest {i * cs * self.l2_entries:#x}..",
                    )
                )
        rows += data_structures(self.runs())
        return fit_int64(rows, "description")
