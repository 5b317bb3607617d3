"""Extended attributes: in-inode ones, the xattr block, values kept in EA inodes, and
the ``system.data`` attribute that holds the tail of inline data.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..base import Entry
from .inode import (
    FL_EA_INODE,
    XATTR_MAGIC,
    InodeRecord,
    XattrEntry,
    parse_xattr_entries,
)

if TYPE_CHECKING:
    pass


class XattrsMixin:
    """Extended attributes and inline data of :class:`ExtFileSystem`."""

    def inline_data(self, rec: InodeRecord) -> bytes:
        """The content of an inline-data inode: i_block, then the system.data xattr."""
        head = rec.i_block
        extra = b""
        for e in self._in_inode_xattrs(rec):
            if e.name == "system.data":
                extra = e.inline_value or b""
                break
        return head + extra

    # --- extended attributes ---------------------------------------------------------
    def _in_inode_xattrs(self, rec: InodeRecord) -> list[XattrEntry]:
        area = rec.in_inode_xattr_area()
        if area is None:
            return []
        data, off = area
        entries, problem = parse_xattr_entries(data, 0, 0, 1024)
        if problem:
            self.problem(f"inode {rec.number} xattrs", rec.offset, problem)
        return entries

    def _block_xattrs(self, rec: InodeRecord) -> list[XattrEntry]:
        if not rec.file_acl:
            return []
        where = f"inode {rec.number} xattr block"
        if rec.file_acl >= self.sb.blocks_count:
            self.problem(
                where, rec.offset + 0x68, f"xattr block {rec.file_acl} is outside the volume"
            )
            return []
        data = self.read_blocks(rec.file_acl, 1, where)
        if struct.unpack_from("<I", data, 0)[0] != XATTR_MAGIC:
            self.problem(where, rec.file_acl * self.block_size, "bad xattr block magic")
            return []
        entries, problem = parse_xattr_entries(data, 32, 0, 4096)
        if problem:
            self.problem(where, rec.file_acl * self.block_size, problem)
        return entries

    def xattrs(self, path: str | Entry) -> dict[str, bytes]:
        """Extended attributes of a file: in-inode ones, then the xattr block's."""
        rec = self.record_of(path)
        out: dict[str, bytes] = {}
        for e in self._in_inode_xattrs(rec) + self._block_xattrs(rec):
            if e.name in out:
                continue
            if e.value_inum:
                out[e.name] = self._ea_inode_value(e)
            else:
                out[e.name] = e.inline_value or b""
        return out

    def _ea_inode_value(self, e: XattrEntry) -> bytes:
        vrec = self.inode(e.value_inum)
        if not vrec.flags & FL_EA_INODE:
            self.problem(
                f"inode {e.value_inum}",
                vrec.offset,
                f"xattr {e.name} points at inode {e.value_inum}, not an EA inode",
            )
        size = min(e.value_size, vrec.size)
        return self.content_of(vrec, size).read(0, size)
