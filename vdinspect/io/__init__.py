"""Byte sources (the read protocol) and the metadata cache."""

from .cache import LRUCache
from .checksums import crc32c, crc32c_records
from .fileobj import FileObjectSource
from .hostcopy import HostCopier, copy_range, send_range
from .overlay import OverlaySource
from .paths import PathPolicy
from .sources import (
    NOT_STORED,
    ByteSource,
    Concat,
    DamageIndex,
    FileSource,
    FilledSource,
    HostPieces,
    HostRanges,
    MemorySource,
    Slice,
    Zero,
    all_zero,
    cut_host_ranges,
    damaged_through,
    filled_bytes,
    join_host_ranges,
    merge_ranges,
    read_inside,
    stored_only,
)

__all__ = ["ByteSource", "FilledSource", "FileSource", "FileObjectSource", "MemorySource",
           "Slice", "Concat", "HostRanges", "HostPieces", "NOT_STORED", "HostCopier",
           "Zero", "LRUCache",
           "all_zero", "copy_range", "cut_host_ranges", "send_range", "DamageIndex", "damaged_through",
           "filled_bytes", "join_host_ranges", "merge_ranges", "read_inside", "stored_only", "crc32c",
           "crc32c_records",
           "OverlaySource", "PathPolicy"]
