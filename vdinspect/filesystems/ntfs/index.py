"""Directory indexes: $INDEX_ROOT, INDX blocks of $INDEX_ALLOCATION, and their entries.

Facts from the Linux-NTFS project documentation ("Index record", "INDEX_ROOT",
"Index entry"). An index is a B+ tree: the root node sits in $INDEX_ROOT, other nodes in
INDX blocks (multi-sector protected like FILE records) addressed by VCN inside
$INDEX_ALLOCATION; $BITMAP marks the blocks in use. Each entry may point to a child node
that holds the keys sorting before it; the last entry of a node has no key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from construct import Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

from ...layout import flag_values, offset_of, struct_format
from ...volumes.multisector import MultiSectorHeader, apply_fixup
from .mft import AttributeType, RecordError

CollationRule = Enum(
    Int32ul,
    BINARY=0x00,
    FILE_NAME=0x01,
    UNICODE_STRING=0x02,
    NTOFS_ULONG=0x10,
    NTOFS_SID=0x11,
    NTOFS_SECURITY_HASH=0x12,
    NTOFS_ULONGS=0x13,
)
IndexHeaderFlags = FlagsEnum(Int8ul, LARGE_INDEX=0x1)  # entries have child nodes
IndexEntryFlags = FlagsEnum(Int16ul, NODE=0x1, END=0x2)

IndexRoot = Struct(
    "attribute_type" / AttributeType * "indexed attribute ($FILE_NAME for $I30), 0 for views",
    "collation_rule" / CollationRule * "how keys sort: FILE_NAME = upcase order of names",
    "index_block_size" / Int32ul * "bytes of an INDX block",
    "clusters_per_index_block" / Int8ul * "clusters, or log2 of 512-byte units when smaller",
    Padding(3),
)  # 16 bytes, then an IndexHeader

IndexHeader = Struct(
    "entries_offset" / Int32ul * "offset of the first entry from this header, bytes",
    "index_length" / Int32ul * "bytes used (from this header)",
    "allocated_size" / Int32ul * "bytes available (from this header)",
    "flags" / IndexHeaderFlags * "LARGE_INDEX: entries have child nodes",
    Padding(3),
)  # 16 bytes

IndexBlockHeader = Struct(
    *MultiSectorHeader.subcons,
    "lsn" / Int64ul * "$LogFile sequence number",
    "index_block_vcn" / Int64ul * "this block's VCN inside $INDEX_ALLOCATION",
)  # 24 bytes, then an IndexHeader

IndexEntryHeader = Struct(
    "indexed_file" / Int64ul * "file reference of the indexed file ($I30) / data offset+length",
    "length" / Int16ul * "bytes of the entry (multiple of 8)",
    "key_length" / Int16ul * "bytes of the key",
    "flags" / IndexEntryFlags * "NODE: a child node's VCN is the entry's last 8 bytes; END: last",
    Padding(2),
)  # 16 bytes, then the key

IndexEntryChild = Struct(
    "child_vcn" / Int64ul * "VCN of the child node (the last 8 bytes of a NODE entry)",
)

_EF = flag_values(IndexEntryFlags)
ENTRY_NODE, ENTRY_END = _EF["NODE"], _EF["END"]
MAX_DEPTH = 64

# fast paths, from the declarations above
_HEADER = struct_format(IndexHeader)
_ENTRY = struct_format(IndexEntryHeader)
_VCN = struct_format(IndexEntryChild)
_ROOT = struct_format(IndexRoot)
ROOT_HEADER_AT = IndexRoot.sizeof()  # where the root node's IndexHeader starts
BLOCK_HEADER_AT = IndexBlockHeader.sizeof()  # where an INDX block's IndexHeader starts
_BLOCK_VCN = struct_format(Struct(IndexBlockHeader.index_block_vcn))
_BLOCK_VCN_AT = offset_of(IndexBlockHeader, "index_block_vcn")


def index_block_size(root_value: bytes) -> int | None:
    """The INDX block size an $INDEX_ROOT value names (None when it is too short)."""
    if len(root_value) < _ROOT.size:
        return None
    return _ROOT.unpack_from(root_value, 0)[2]


@dataclass(slots=True)
class IndexEntry:
    """One index entry with a key: the file reference and the key bytes."""

    ref: int
    key: bytes


@dataclass
class IndexWalk:
    """The entries of an index in order, and the problems met on the way."""

    entries: list[IndexEntry] = field(default_factory=list)
    problems: list[tuple[int | None, str]] = field(default_factory=list)  # (offset, message)


def parse_node(buf, off: int) -> tuple[list[tuple[int, int, bytes, int | None]], int]:
    """Entries of the node whose IndexHeader is at ``off``: (ref, flags, key, child vcn).

    Returns the entries and the header flags; RecordError when malformed.
    """
    if off + _HEADER.size > len(buf):
        raise RecordError("index header runs past the block")
    eoff, used, _alloc, hflags = _HEADER.unpack_from(buf, off)
    pos = off + eoff
    end = off + used
    if eoff < _HEADER.size or end > len(buf) or pos > end:
        raise RecordError(f"index header: entries at {eoff}, used {used} do not fit")
    out = []
    while True:
        if pos + _ENTRY.size > end:
            raise RecordError(f"index entry at {pos:#x} runs past the node (no last entry)")
        ref, length, klen, eflags = _ENTRY.unpack_from(buf, pos)
        if length < _ENTRY.size or length & 7 or pos + length > end:
            raise RecordError(f"index entry at {pos:#x} has a bad length {length}")
        child = None
        if eflags & ENTRY_NODE:
            if length < _ENTRY.size + _VCN.size:
                raise RecordError(f"index entry at {pos:#x} is too short for a child pointer")
            child = _VCN.unpack_from(buf, pos + length - _VCN.size)[0]
        if eflags & ENTRY_END:
            out.append((0, eflags, b"", child))
            return out, hflags
        if _ENTRY.size + klen > length:
            raise RecordError(f"index entry at {pos:#x}: key of {klen} bytes outside it")
        key = pos + _ENTRY.size
        out.append((ref, eflags, bytes(buf[key : key + klen]), child))
        pos += length


def walk_index(
    root_value: bytes,
    read_block: Callable[[int], bytes] | None,
    block_in_use: Callable[[int], bool] | None = None,
) -> IndexWalk:
    """All keyed entries of an index, in collation order.

    ``root_value`` is the $INDEX_ROOT value; ``read_block(vcn)`` returns the raw INDX block
    at a VCN (or raises RecordError/VDInspectError). Damaged nodes are recorded in
    ``problems`` and skipped; child-pointer loops are detected.
    """
    walk = IndexWalk()
    if len(root_value) < ROOT_HEADER_AT + _HEADER.size:
        walk.problems.append((None, "$INDEX_ROOT is too short"))
        return walk
    try:
        root_entries, _ = parse_node(root_value, ROOT_HEADER_AT)
    except RecordError as e:
        walk.problems.append((None, f"$INDEX_ROOT: {e}"))
        return walk
    seen: set[int] = set()

    def visit(entries, depth: int) -> None:
        for ref, _flags, key, child in entries:
            if child is not None:
                descend(child, depth + 1)
            if key:
                walk.entries.append(IndexEntry(ref, key))

    def descend(vcn: int, depth: int) -> None:
        if read_block is None:
            walk.problems.append((None, f"child node at VCN {vcn} but no $INDEX_ALLOCATION"))
            return
        if vcn in seen:
            walk.problems.append((None, f"index node at VCN {vcn} is referenced twice (loop)"))
            return
        if depth > MAX_DEPTH:
            walk.problems.append((None, f"index deeper than {MAX_DEPTH} levels"))
            return
        seen.add(vcn)
        if block_in_use is not None and not block_in_use(vcn):
            walk.problems.append((None, f"index node at VCN {vcn} is free in the index $BITMAP"))
        try:
            raw = bytearray(read_block(vcn))
            apply_fixup(raw, b"INDX")
            (own_vcn,) = _BLOCK_VCN.unpack_from(raw, _BLOCK_VCN_AT)
            if own_vcn != vcn:
                raise RecordError(f"block says it is VCN {own_vcn}")
            entries, _ = parse_node(raw, BLOCK_HEADER_AT)
        except (RecordError, ValueError) as e:
            walk.problems.append((vcn, f"INDX block at VCN {vcn}: {e}"))
            return
        visit(entries, depth)

    visit(root_entries, 0)
    return walk


def all_blocks(
    read_block: Callable[[int], bytes],
    nblocks: int,
    vcn_per_block: int,
    block_in_use: Callable[[int], bool] | None = None,
) -> IndexWalk:
    """Every keyed entry of every in-use INDX block, block by block (no tree order).

    The fallback when the tree is damaged: leaves and inner nodes alike hold entries.
    """
    walk = IndexWalk()
    for i in range(nblocks):
        vcn = i * vcn_per_block
        if block_in_use is not None and not block_in_use(vcn):
            continue
        try:
            raw = bytearray(read_block(vcn))
            apply_fixup(raw, b"INDX")
            entries, _ = parse_node(raw, BLOCK_HEADER_AT)
        except (RecordError, ValueError) as e:
            walk.problems.append((vcn, f"INDX block at VCN {vcn}: {e}"))
            continue
        walk.entries.extend(IndexEntry(r, k) for r, _f, k, _c in entries if k)
    return walk


MAX_SLACK_ENTRIES = 4096  # candidates taken from one INDX block's slack


def block_slack(raw: bytes, vcn: int, whole: bool = False) -> tuple[list[IndexEntry], bool]:
    """Index entries left in an INDX block's slack: past the bytes in use, up to the bytes
    allocated (a deletion moves the entries after it down and leaves copies behind).

    Only the entry's framing is checked here (lengths, flags, a key that fits); whether
    the key is a plausible $FILE_NAME is the caller's rule. Returns the candidates and
    whether the block is a usable INDX block at all. A free block (its bit clear in the
    index $BITMAP) is all slack: pass its raw bytes too; its entries come back as well.
    """
    buf = bytearray(raw)
    try:
        apply_fixup(buf, b"INDX")
        (own_vcn,) = _BLOCK_VCN.unpack_from(buf, _BLOCK_VCN_AT)
        if own_vcn != vcn:
            return [], False
        eoff, used, alloc, _hflags = _HEADER.unpack_from(buf, BLOCK_HEADER_AT)
    except (RecordError, ValueError):
        return [], False
    end = min(len(buf), BLOCK_HEADER_AT + alloc)
    pos = BLOCK_HEADER_AT + (eoff if whole else max(used, eoff))
    pos = (pos + 7) & ~7
    out: list[IndexEntry] = []
    while pos + _ENTRY.size <= end and len(out) < MAX_SLACK_ENTRIES:
        ref, length, klen, eflags = _ENTRY.unpack_from(buf, pos)
        if (
            klen
            and not eflags & ENTRY_END
            and eflags <= ENTRY_NODE | ENTRY_END
            and length >= _ENTRY.size + klen
            and not length & 7
            and pos + length <= end
        ):
            out.append(IndexEntry(ref, bytes(buf[pos + _ENTRY.size : pos + _ENTRY.size + klen])))
            pos += length
        else:
            pos += 8  # entries start on 8-byte boundaries
    return out, True
