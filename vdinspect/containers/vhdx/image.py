"""The VHDX reader: :class:`VhdxImage` puts the header section, log, metadata and BAT
together (one mixin per module) and answers the Image protocol."""

from __future__ import annotations

from ...errors import CorruptImage
from ...io import ByteSource, LRUCache, OverlaySource
from ...lazy import np
from ..base import Image, ParentHint
from .bat import BlockMap, describe_bat_entry
from .check import Reports
from .headers import HeaderSection
from .log import LogEntry, LogReplay
from .metadata import MetadataItems, norm_guid_text, parent_hint_from_locator
from .structs import (
    BAT_ENTRY_DTYPE,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_ZERO,
    SIGNATURE,
    guid_str,
)

FORMAT = "vhdx"
BITMAP_CACHE_BLOCKS = 256  # sector bitmaps of partially present blocks kept decoded


def probe(head: bytes) -> bool:
    """VHDX files start with the file identifier signature "vhdxfile"."""
    return len(head) >= 8 and head[:8] == SIGNATURE


class VhdxImage(HeaderSection, LogReplay, MetadataItems, BlockMap, Reports, Image):
    """A VHDX file: fixed, dynamic or differencing (.avhdx)."""

    format = FORMAT

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        super().__init__(source, path=path, strict=strict)
        #: the host file as the replayed log leaves it (in memory; the file is unchanged)
        self.host = OverlaySource(source, name=self.path)
        self.log_entries: list[LogEntry] = []
        self.log_replay: dict | None = None
        self.bitmap_cache: LRUCache = LRUCache(BITMAP_CACHE_BLOCKS)
        self.has_parent = self.leave_blocks_allocated = False
        self._parse_file_identifier()
        self._parse_headers()
        self._replay_log()
        if not self.host.segments and self.host.size == source.size:
            # nothing replayed: the file itself, so that a read is one pread and a copy
            # can go host file to host file (``host_ranges``)
            self.host = source
        self._parse_region_tables()
        self._parse_metadata()
        self._read_bat()

    def host_read(self, offset: int, length: int, structure: str, source=None) -> bytes:
        """Bytes of the (replayed) host file, refused when they run past its end."""
        src = source if source is not None else self.host
        if offset < 0 or length < 0 or offset + length > src.size:
            self.fail(CorruptImage, f"{structure} ({length} bytes) runs past the end of the file ({src.size} bytes)", structure, offset)
        return src.read(offset, length)

    # --- parents ---------------------------------------------------------------------
    @property
    def parent_hint(self) -> ParentHint | None:
        if not self.has_parent:
            return None
        return parent_hint_from_locator(self.parent_locator)

    def verify_parent(self, parent: Image) -> None:
        """The parent's DataWriteGuid must be this file's parent_linkage (or linkage2)."""
        want = {
            norm_guid_text(self.parent_locator.get(k))
            for k in ("parent_linkage", "parent_linkage2")
        } - {None}
        if not isinstance(parent, VhdxImage):
            self.finding(
                "warning",
                "parent locator",
                None,
                f"parent {parent.path} is not a VHDX file; its identity cannot be checked",
            )
            return
        have = guid_str(parent.header.data_write_guid)
        if want and have not in want:
            msg = (
                f"parent {parent.path} has DataWriteGuid {have}, but this file expects "
                f"parent_linkage {self.parent_locator.get('parent_linkage')}: the parent "
                "changed after this differencing file was made"
            )
            self.problem("parent locator", None, msg)
        if parent.size != self.size:
            self.finding(
                "warning",
                "parent locator",
                None,
                f"parent virtual size {parent.size} differs from this file's {self.size}",
            )

    # --- reports ---------------------------------------------------------------------
    @property
    def subformat(self) -> str:
        if self.has_parent:
            return "differencing"
        if not self.leave_blocks_allocated:
            return "dynamic"
        light = self.payload_states_light()  # info: without numpy when the BAT is small
        if light is not None:
            fixed = all(s in (PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_ZERO) for s in light)
        else:
            st = self.payload_state
            fixed = bool(np.all((st == PAYLOAD_BLOCK_FULLY_PRESENT) | (st == PAYLOAD_BLOCK_ZERO)))
        return "fixed" if fixed else "dynamic"

    @property
    def data_write_guid(self) -> str:
        return guid_str(self.header.data_write_guid)

    @property
    def file_write_guid(self) -> str:
        return guid_str(self.header.file_write_guid)

    def flags(self) -> list[str]:
        out = []
        if self.has_parent:
            out.append("has parent")
        if self.leave_blocks_allocated:
            out.append("leave blocks allocated")
        if self.log_replay:
            out.append("log replayed in memory")
        return out

    TABLES = ((r"bat", BAT_ENTRY_DTYPE, "describe_bat_entry"),)

    def describe_bat_entry(self, v: int) -> str:
        """What a BAT entry says: its state and, when present, the block's file offset."""
        return describe_bat_entry(v)

    def info_fields(self) -> dict:
        h = self.header
        return dict(
            uuid=self.virtual_disk_id,
            creator=self.creator,
            block_size=self.block_size,
            logical_sector_size=self.logical_sector_size,
            physical_sector_size=self.physical_sector_size,
            data_write_guid=self.data_write_guid,
            file_write_guid=self.file_write_guid,
            has_parent=self.has_parent,
            leave_blocks_allocated=self.leave_blocks_allocated,
            parent_locator=dict(self.parent_locator) if self.parent_locator else None,
            log_guid=self.log_guid,
            log_version=h.log_version,
            log_offset=h.log_offset,
            log_length=h.log_length,
            log_replayed=self.log_replay["entries"] if self.log_replay else 0,
            header_sequence_number=h.sequence_number,
            current_header=self.current_header + 1,
        )


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> VhdxImage:
    """Open a VHDX file (log replayed in memory if one is pending)."""
    return VhdxImage(source, path=path or getattr(source, "path", None), strict=strict)
