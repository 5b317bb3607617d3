"""Byte sources (the read protocol) and the metadata cache."""

from .cache import LRUCache
from .sources import ByteSource, Concat, FileSource, MemorySource, Slice, Zero, all_zero

__all__ = ["ByteSource", "FileSource", "MemorySource", "Slice", "Concat", "Zero", "LRUCache",
           "all_zero"]
