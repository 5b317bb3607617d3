"""Byte sources (the read protocol) and the metadata cache."""

from .cache import LRUCache
from .checksums import crc32c, crc32c_records
from .fileobj import FileObjectSource
from .overlay import OverlaySource
from .paths import PathPolicy
from .sources import (
    ByteSource,
    Concat,
    DamageIndex,
    FileSource,
    FilledSource,
    HostRanges,
    MemorySource,
    Slice,
    Zero,
    all_zero,
    copy_range,
    cut_host_ranges,
    damaged_through,
    filled_bytes,
    join_host_ranges,
    merge_ranges,
    read_inside,
    send_range,
)

__all__ = ["ByteSource", "FilledSource", "FileSource", "FileObjectSource", "MemorySource",
           "Slice", "Concat", "HostRanges",
           "Zero", "LRUCache",
           "all_zero", "copy_range", "cut_host_ranges", "send_range", "DamageIndex", "damaged_through",
           "filled_bytes", "join_host_ranges", "merge_ranges", "read_inside", "crc32c",
           "crc32c_records",
           "OverlaySource", "PathPolicy"]
