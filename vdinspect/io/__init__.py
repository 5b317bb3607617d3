"""Byte sources (the read protocol) and the metadata cache."""

from .cache import LRUCache
from .paths import PathPolicy
from .sources import (
    ByteSource,
    Concat,
    DamageIndex,
    FileSource,
    MemorySource,
    Slice,
    Zero,
    all_zero,
    damaged_through,
    merge_ranges,
)

__all__ = ["ByteSource", "FileSource", "MemorySource", "Slice", "Concat", "Zero", "LRUCache",
           "all_zero", "DamageIndex", "damaged_through", "merge_ranges", "PathPolicy"]
