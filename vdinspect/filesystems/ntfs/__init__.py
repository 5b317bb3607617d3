"""NTFS: boot sector, MFT, attributes, runlists, directory indexes, LZNT1 and WOF files."""

from .file import NtfsFile, Stream
from .fs import NTFS, open_filesystem

__all__ = ["NTFS", "NtfsFile", "Stream", "open_filesystem"]
