"""NTFS: boot sector, MFT, attributes, runlists, directory indexes, LZNT1 and WOF files."""

from .fs import NTFS, NtfsFile, Stream, open_filesystem

__all__ = ["NTFS", "NtfsFile", "Stream", "open_filesystem"]
