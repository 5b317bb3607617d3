"""ext2/3/4 extended attributes: in-inode ones, the xattr block, values kept in EA inodes, and
the ``system.data`` attribute that holds the tail of inline data.
"""

from __future__ import annotations

from construct import Array, Enum, Int8ul, Int16ul, Int32ul, Struct

from ...layout import flag_values, offset_of, struct_format
from ..base import Entry
from .inode import FL_EA_INODE, INODE_CLASSIC, Inode, InodeRecord

_FILE_ACL_AT = offset_of(Inode, "i_file_acl_lo")


# --- codes -----------------------------------------------------------------------------

#: e_name_index: each code stands for the prefix of the attribute's full name
NamePrefix = Enum(
    Int8ul,
    **{
        "user.": 1,
        "system.posix_acl_access": 2,
        "system.posix_acl_default": 3,
        "trusted.": 4,
        "security.": 6,
        "system.": 7,
        "system.richacl": 8,
    },
)
_PREFIX = {v: k for k, v in flag_values(NamePrefix).items()}
XATTR_MAGIC = 0xEA020000

# --- on-disk structures ----------------------------------------------------------------

ExtAttrHeader = Struct(
    "h_magic" / Int32ul * "0xEA020000",
    "h_refcount" / Int32ul * "inodes sharing this block",
    "h_blocks" / Int32ul * "blocks used (1)",
    "h_hash" / Int32ul * "hash of all attributes",
    "h_checksum" / Int32ul * "crc32c (metadata_csum)",
    "h_reserved" / Array(3, Int32ul) * "zero",
)  # 32 bytes at the start of an extended attribute block

ExtAttrEntry = Struct(
    "e_name_len" / Int8ul * "name length",
    "e_name_index" / NamePrefix * "name prefix index (1 user., 4 trusted., 6 security., ...)",
    "e_value_offs" / Int16ul * "value offset (block start, or first in-inode entry)",
    "e_value_inum" / Int32ul * "inode holding the value (ea_inode), else 0",
    "e_value_size" / Int32ul * "value length, bytes",
    "e_hash" / Int32ul * "hash of name and value",
)  # 16 bytes, then the name, padded to 4 bytes

_HEADER = struct_format(ExtAttrHeader)
_ENTRY = struct_format(ExtAttrEntry)
_ENTRY_SIZE = _ENTRY.size  # the name follows


def in_inode_area(rec: InodeRecord) -> tuple[bytes, int] | None:
    """(bytes after the magic, their offset in the record) when in-inode xattrs exist."""
    start = INODE_CLASSIC + rec.extra_isize
    if rec.extra_isize == 0 or start + 4 > len(rec.raw):
        return None
    if int.from_bytes(rec.raw[start : start + 4], "little") != XATTR_MAGIC:
        return None
    return rec.raw[start + 4 :], start + 4


class XattrEntry:
    """One extended attribute: its full name and where its value is."""

    __slots__ = ("name", "value_offset", "value_size", "value_inum", "inline_value")

    def __init__(
        self,
        name: str,
        value_offset: int,
        value_size: int,
        value_inum: int,
        inline_value: bytes | None,
    ) -> None:
        self.name = name
        self.value_offset = value_offset
        self.value_size = value_size
        self.value_inum = value_inum
        self.inline_value = inline_value

    def __repr__(self) -> str:
        return f"<XattrEntry {self.name} {self.value_size} bytes>"


def parse_xattr_entries(
    area: bytes, first: int, value_base: int, limit: int
) -> tuple[list[XattrEntry], str | None]:
    """Entries of an xattr area: ``area[first:]`` holds the entries; values are found at
    ``value_base + e_value_offs`` inside ``area``. Returns (entries, problem or None).
    """
    out: list[XattrEntry] = []
    pos = first
    end = len(area)
    for _ in range(limit):
        if pos + 4 > end or area[pos : pos + 4] == b"\0\0\0\0":
            return out, None
        if pos + _ENTRY_SIZE > end:
            return out, f"entry at {pos} runs past the end of the area"
        name_len, index, voff, vinum, vsize, _hash = _ENTRY.unpack_from(area, pos)
        if pos + _ENTRY_SIZE + name_len > end:
            return out, f"entry name at {pos} runs past the end of the area"
        raw_name = area[pos + _ENTRY_SIZE : pos + _ENTRY_SIZE + name_len]
        prefix = _PREFIX.get(index, f"index{index}." if index else "")
        name = prefix + raw_name.decode("utf-8", "backslashreplace")
        value = None
        if vinum == 0:
            vstart = value_base + voff
            if vsize and (vstart < 0 or vstart + vsize > end):
                return out, f"value of {name} at {vstart} (+{vsize}) outside the area"
            value = area[vstart : vstart + vsize]
        out.append(XattrEntry(name, value_base + voff, vsize, vinum, value))
        pos += (_ENTRY_SIZE + name_len + 3) & ~3
    return out, "too many entries"


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
        area = in_inode_area(rec)
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
                where,
                rec.offset + _FILE_ACL_AT,
                f"xattr block {rec.file_acl} is outside the volume",
            )
            return []
        data = self.read_blocks(rec.file_acl, 1, where)
        if _HEADER.unpack_from(data, 0)[0] != XATTR_MAGIC:
            self.problem(where, rec.file_acl * self.block_size, "bad xattr block magic")
            return []
        entries, problem = parse_xattr_entries(data, _HEADER.size, 0, 4096)
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
