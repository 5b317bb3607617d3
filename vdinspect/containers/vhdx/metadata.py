"""The VHDX metadata region: its table of items, the items the reader needs (block size,
disk size, sector sizes, page 83 data) and the parent locator of a differencing file."""

from __future__ import annotations

import uuid

from ...errors import CorruptImage, UnsupportedFeature
from ...units import is_pow2
from ..base import ParentHint
from .structs import (
    ENTRY_SIZE,
    HAS_PARENT,
    ITEM_IS_REQUIRED,
    LEAVE_BLOCKS_ALLOCATED,
    MAX_ITEM_LENGTH,
    MAX_TABLE_ENTRIES,
    MAX_VIRTUAL_SIZE,
    METADATA_NAMES,
    METADATA_SIGNATURE,
    METADATA_TABLE_SIZE,
    REQUIRED_ITEMS,
    FileParameters,
    FileParametersValues,
    MetadataItemGuid,
    MetadataTableEntryValues,
    MetadataTableHeader,
    ParentLocatorEntry,
    ParentLocatorHeader,
    guid_str,
)

M = 1 << 20
FORMAT = "vhdx"


class MetadataItems:
    """Mixin of :class:`VhdxImage`: the metadata table and the items it points to."""

    def _parse_metadata(self) -> None:
        mr = self.metadata_region
        base = mr.file_offset
        table = self.host_read(base, min(METADATA_TABLE_SIZE, mr.length), "metadata table")
        mh = MetadataTableHeader.parse(table)
        if mh.signature != METADATA_SIGNATURE:
            self.fail(CorruptImage, "bad metadata table signature", "metadata table", base)
        if mh.entry_count > MAX_TABLE_ENTRIES:
            self.fail(CorruptImage, f"{mh.entry_count} metadata entries (at most 2047)", "metadata table", base)
        self.metadata_table = mh
        self.metadata_entries = []
        items: dict[bytes, bytes] = {}
        first = MetadataTableHeader.sizeof()
        for i in range(mh.entry_count):
            where = base + first + ENTRY_SIZE * i
            me = MetadataTableEntryValues.parse(table[first + ENTRY_SIZE * i : first + ENTRY_SIZE * (i + 1)])
            self.metadata_entries.append(me)
            name = METADATA_NAMES.get(me.item_id)
            if name is None:
                if me.flags & ITEM_IS_REQUIRED:
                    self.fail(UnsupportedFeature, f"required metadata item {guid_str(me.item_id)} is not understood", "metadata table entry", where)
                continue
            if me.item_id in items:
                self.fail(CorruptImage, f"metadata item {name} listed twice", "metadata table entry", where)
            if me.length > MAX_ITEM_LENGTH or (
                me.length and (me.offset < METADATA_TABLE_SIZE or me.offset + me.length > mr.length)
            ):
                self.fail(CorruptImage, f"metadata item {name} at +{me.offset:#x} ({me.length} bytes) lies "
                    "outside the metadata region", "metadata table entry", where)
            items[me.item_id] = self.host_read(base + me.offset, me.length, f"metadata {name}")
        for g in REQUIRED_ITEMS:
            if g not in items:
                self.fail(CorruptImage, f"required metadata item {METADATA_NAMES[g]} is missing", "metadata table", base)

        def need(g: bytes, n: int) -> bytes:
            v = items[g]
            if len(v) < n:
                self.fail(CorruptImage, f"metadata item {METADATA_NAMES[g]} is {len(v)} bytes, {n} needed", f"metadata {METADATA_NAMES[g]}", base)
            return v

        def number(g: bytes, n: int) -> int:
            return int.from_bytes(need(g, n)[:n], "little")

        fp = FileParametersValues.parse(need(MetadataItemGuid.FILE_PARAMETERS, FileParameters.sizeof()))
        self.file_parameters = fp
        self.block_size = fp.block_size
        self.leave_blocks_allocated = bool(fp.flags & LEAVE_BLOCKS_ALLOCATED)
        self.has_parent = bool(fp.flags & HAS_PARENT)
        self.virtual_disk_size = number(MetadataItemGuid.VIRTUAL_DISK_SIZE, 8)
        self.page83_data = need(MetadataItemGuid.PAGE_83_DATA, 16)[:16]
        self.virtual_disk_id = guid_str(self.page83_data)
        self.logical_sector_size = number(MetadataItemGuid.LOGICAL_SECTOR_SIZE, 4)
        self.physical_sector_size = number(MetadataItemGuid.PHYSICAL_SECTOR_SIZE, 4)
        self.metadata_items = items
        bs = self.block_size
        if bs < M or bs > 256 * M or not is_pow2(bs):
            self.fail(CorruptImage, f"block size {bs} is not a power of 2 in 1 MiB..256 MiB", "metadata file parameters", base)
        if self.logical_sector_size not in (512, 4096):
            self.fail(CorruptImage, f"logical sector size {self.logical_sector_size} (512 or 4096 expected)", "metadata logical sector size", base)
        if self.physical_sector_size not in (512, 4096):
            self.finding(
                "warning",
                "metadata physical sector size",
                base,
                f"physical sector size {self.physical_sector_size} (512 or 4096 expected)",
            )
        vs = self.virtual_disk_size
        if vs > MAX_VIRTUAL_SIZE or vs % self.logical_sector_size:
            self.fail(CorruptImage, f"virtual disk size {vs} is above 64 TiB or not a multiple of the sector size", "metadata virtual disk size", base)
        self.size = vs
        self.cluster_size = bs
        self.parent_locator: dict[str, str] = {}
        self.parent_locator_type: str | None = None
        if MetadataItemGuid.PARENT_LOCATOR in items:
            self.parent_locator_type, self.parent_locator = self.parse_parent_locator(
                items[MetadataItemGuid.PARENT_LOCATOR], base
            )
        elif self.has_parent:
            self.fail(CorruptImage, "HasParent is set but there is no parent locator", "metadata table", base)

    def parse_parent_locator(self, data: bytes, base: int) -> tuple[str, dict[str, str]]:
        """The parent locator item: its type (GUID text) and its key/value pairs."""
        where = "metadata parent locator"
        first = ParentLocatorHeader.sizeof()
        if len(data) < first:
            self.fail(CorruptImage, "parent locator shorter than its header", where, base)
        ph = ParentLocatorHeader.parse(data)
        size = ParentLocatorEntry.sizeof()
        if first + size * ph.key_value_count > len(data):
            self.fail(CorruptImage, f"{ph.key_value_count} parent locator entries do not fit in {len(data)} bytes", where, base)
        out: dict[str, str] = {}
        for i in range(ph.key_value_count):
            e = ParentLocatorEntry.parse(data[first + size * i : first + size * (i + 1)])
            if (
                e.key_offset + e.key_length > len(data)
                or e.value_offset + e.value_length > len(data)
                or e.key_length % 2
                or e.value_length % 2
            ):
                self.fail(CorruptImage, f"parent locator entry {i} points outside the item", where, base)
            key = data[e.key_offset : e.key_offset + e.key_length].decode("utf-16-le", "replace")
            val = data[e.value_offset : e.value_offset + e.value_length].decode(
                "utf-16-le", "replace"
            )
            out[key] = val
        return guid_str(ph.locator_type), out


def parent_hint_from_locator(loc: dict[str, str]) -> ParentHint | None:
    """Where a differencing file's parent may be, from its parent locator's entries:
    ``relative_path`` first, then the file names of ``absolute_win32_path`` and
    ``volume_path``; ``parent_linkage`` is the parent's DataWriteGuid."""
    names = []
    if loc.get("relative_path"):
        names.append(loc["relative_path"])
    for key in ("absolute_win32_path", "volume_path"):
        if loc.get(key):
            names.append(windows_basename(loc[key]))
    if not names:
        return None
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return ParentHint(
        path=seen[0],
        format=FORMAT,
        uuid=norm_guid_text(loc.get("parent_linkage")),
        alternatives=seen[1:],
        extra=dict(loc),
    )


def norm_guid_text(text: str | None) -> str | None:
    """A GUID written as text ("{...}", any case) in one lowercase form; None when empty."""
    if not text:
        return None
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except ValueError:
        return text.strip().lower()


def windows_basename(path: str) -> str:
    """The last part of a Windows (or POSIX) path."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
