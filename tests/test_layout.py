"""vdinspect.layout: fast paths generated from construct declarations.

The ext driver's generated formats are compared with the formats its hot loops used to
type by hand (checked against the kernel's ext4 documentation), so a change to a Struct
that moves a field shows up here.
"""

from __future__ import annotations

import struct

import construct as cs
import numpy as np
import pytest

from vdinspect.layout import (
    field_format,
    flag_names,
    flag_values,
    leaves,
    numpy_dtype,
    offset_of,
    plain,
    size_of,
    struct_format,
)

Toy = cs.Struct(
    "a" / cs.Int16ul * "first",
    "flags" / cs.FlagsEnum(cs.Int8ul, x=1, y=2) * "flags",
    "pad" / cs.Padding(1),
    "inner" / cs.Struct("b" / cs.Int32ul, "c" / cs.Bytes(3)),
    "arr" / cs.Array(2, cs.Int16ul) * "two values",
)


def test_leaves_and_offsets():
    got = [(x.name, x.offset, x.size) for x in leaves(Toy)]
    assert got == [
        ("a", 0, 2),
        ("flags", 2, 1),
        ("pad", 3, 1),
        ("inner.b", 4, 4),
        ("inner.c", 8, 3),
        ("arr", 11, 4),
    ]
    assert offset_of(Toy, "inner.c") == 8 and size_of(Toy, "arr") == 4


def test_struct_format_whole_and_picked():
    data = bytes(range(15))
    whole = struct_format(Toy)
    assert whole.size == Toy.sizeof() == 15
    parsed = plain(Toy).parse(data)
    a, flags, b, c, arr = whole.unpack(data)
    assert (a, flags, b, c, arr) == (
        parsed.a,
        parsed.flags,
        parsed.inner.b,
        parsed.inner.c,
        struct.pack("<2H", *parsed.arr),
    )
    picked = struct_format(Toy, "flags", "inner.b")
    assert picked.format == "<2xB1xL" and picked.unpack_from(data, 0) == (flags, b)
    with pytest.raises(ValueError):
        struct_format(Toy, "inner.b", "a")
    with pytest.raises(KeyError):
        struct_format(Toy, "nope")


# a big-endian header with a little-endian checksum inside, as XFS lays out its CRCs
Mixed = cs.Struct(
    "magic" / cs.Int32ub,
    "words" / cs.Array(3, cs.Int16ub),
    "crc" / cs.Int32ul,
    "tail" / cs.Int64ub,
)


def test_field_format_unpacks_one_field_at_its_place():
    """field_format reads a field alone, at its offset, as construct parses it; the
    order can be forced (a host-order copy of a big-endian field)."""
    data = bytes(range(15))
    parsed = plain(Toy).parse(data)
    b = field_format(Toy, "inner.b")
    assert b.size == 4 and b.unpack_from(data, offset_of(Toy, "inner.b"))[0] == parsed.inner.b
    be = field_format(Toy, "a", order=">")
    assert be.unpack_from(data)[0] == int.from_bytes(data[:2], "big")


def test_struct_format_upto_order_and_array_values():
    """The variants XFS and Btrfs use, against construct's own parse of the same bytes."""
    data = bytes(range(1, 23))
    parsed = Mixed.parse(data)
    with pytest.raises(TypeError):  # mixed byte orders need ``order``
        struct_format(Mixed, arrays=True)
    forced = struct_format(Mixed, order=">", arrays=True)
    assert forced.unpack(data) == (parsed.magic, *parsed.words,
                                   int.from_bytes(data[10:14], "big"), parsed.tail)
    assert struct_format(Mixed, order=">").unpack(data)[1] == data[4:10]  # raw bytes
    head = struct_format(Mixed, upto="crc", arrays=True)
    assert head.size == 10 and head.unpack(data[:10]) == (parsed.magic, *parsed.words)
    assert struct_format(Toy, arrays=True).unpack(bytes(range(15)))[-2:] == tuple(
        plain(Toy).parse(bytes(range(15))).arr)


def test_numpy_dtype_reads_each_field_in_its_order():
    data = bytes(range(1, 23)) * 2
    rec = np.frombuffer(data, numpy_dtype(Mixed))
    want = [Mixed.parse(data[i:i + 22]) for i in (0, 22)]
    assert rec["crc"].tolist() == [w.crc for w in want]
    assert rec["tail"].tolist() == [w.tail for w in want]


def test_numpy_dtype_matches_construct():
    data = bytes(range(30))
    rec = np.frombuffer(data, dtype=numpy_dtype(Toy), count=2)
    for i in range(2):
        p = plain(Toy).parse(data[15 * i : 15 * (i + 1)])
        assert rec["a"][i] == p.a and rec["inner.b"][i] == p.inner.b
        assert rec["arr"][i] == struct.pack("<2H", *p.arr)
    short = numpy_dtype(Toy, itemsize=7)
    assert short.itemsize == 7 and short.names == ("a", "flags")


def test_plain_reads_codes_as_integers():
    assert Toy.parse(bytes(15)[:2] + b"\x03" + bytes(12)).flags.x is True
    assert plain(Toy).parse(b"\0\0\x03" + bytes(12)).flags == 3
    assert plain(Toy).subcons[1].docs == "flags"


def test_mixed_byte_order_refused():
    mixed = cs.Struct("a" / cs.Int16ul, "b" / cs.Int16ub)
    with pytest.raises(TypeError):
        struct_format(mixed)


def test_flag_values():
    assert flag_values(Toy.subcons[1]) == {"x": 1, "y": 2}
    assert flag_values(cs.Enum(cs.Int8ul, a=1, b=2)) == {"a": 1, "b": 2}


def test_ext_formats_equal_the_hand_typed_ones():
    from vdinspect.filesystems.ext import dirs, extents, inode, journal, xattrs

    fast = ("i_mode", "i_dtime", "i_links_count", "i_flags")
    tag = ("t_blocknr", "t_checksum", "t_flags")
    same = {
        struct_format(inode.Inode): "<HHIIIIIHHIII60sIIIIHHHHHH",
        struct_format(inode.Inode, *fast): "<H18xI2xH4xI",
        struct_format(extents.ExtentHeader): "<HHHHI",
        struct_format(extents.Extent): "<IHHI",
        struct_format(extents.ExtentIdx): "<IIHH",
        struct_format(dirs.DirEntry2): "<IHBB",
        struct_format(xattrs.ExtAttrEntry): "<BBHIII",
        struct_format(journal.JournalHeader): ">III",
        struct_format(journal.JournalBlockTag3): ">IIII",
        struct_format(journal.JournalBlockTag, *tag): ">IHH",
    }
    for got, want in same.items():
        assert struct.calcsize(got.format) == struct.calcsize(want), want
        sample = bytes(range(got.size))
        assert got.unpack(sample) == struct.unpack(want, sample), want
    assert offset_of(inode.InodeLarge, "i_crtime_extra") == 0x94
    assert offset_of(inode.Inode, "i_block") == 0x28
    assert offset_of(dirs.DxRoot, "dx_root_info.reserved_zero") == 24
    assert offset_of(journal.CommitBlock, "h_commit_sec") == 0x30


def test_is_pow2():
    from vdinspect.units import is_pow2

    powers = {1 << k for k in range(70)}
    assert [n for n in range(-5, 5000) if is_pow2(n)] == sorted(p for p in powers if p < 5000)
    assert all(is_pow2(p) for p in powers)
    assert not any(is_pow2(p + 1) for p in powers if p > 1)


# the places the specifications give (typed from the documents, not from our Structs):
# (layout, field, byte offset, field size)
SPEC_OFFSETS = [
    # XFS: xfs_format.h struct xfs_dsb
    ("xfs_layout.Superblock", "sb_uuid", 32, 16),
    ("xfs_layout.Superblock", "sb_fname", 108, 12),
    ("xfs_layout.Superblock", "sb_crc", 224, 4),
    # Btrfs: btrfs_tree.h struct btrfs_super_block
    ("btrfs_layout.Superblock", "fsid", 0x20, 16),
    ("btrfs_layout.Superblock", "magic", 0x40, 8),
    ("btrfs_layout.Superblock", "dev_item.devid", 0xC9, 8),
    ("btrfs_layout.Superblock", "label", 0x12B, 256),
    ("btrfs_layout.Superblock", "sys_chunk_array", 0x32B, 2048),
    # swap.h union swap_header, from byte 1024 of the page
    ("linux_layout.SwapHeader", "sws_uuid", 12, 16),
    ("linux_layout.SwapHeader", "sws_volume", 28, 16),
    # LUKS1 spec 1.2.3 and the LUKS2 on-disk format
    ("linux_layout.Luks1Header", "payloadOffset", 104, 4),
    ("linux_layout.Luks1Header", "uuid", 168, 40),
    ("linux_layout.Luks2BinaryHeader", "label", 24, 48),
    ("linux_layout.Luks2BinaryHeader", "uuid", 168, 40),
    ("linux_layout.Luks2BinaryHeader", "hdr_offset", 256, 8),
    # md_p.h struct mdp_superblock_1
    ("linux_layout.MdSuperblock1", "set_uuid", 16, 16),
    ("linux_layout.MdSuperblock1", "set_name", 32, 32),
    # ECMA-119 8.4 (primary volume descriptor)
    ("optical_layout.VolumeDescriptor", "volume_id", 40, 32),
    ("optical_layout.VolumeDescriptor", "volume_space_size", 80, 4),
    ("optical_layout.VolumeDescriptor", "escape", 88, 32),
    ("optical_layout.VolumeDescriptor", "root_directory_record", 156, 34),
    ("optical_layout.VolumeDescriptor", "creation_date.digits", 813, 16),
    ("optical_layout.VolumeDescriptor", "modification_date.digits", 830, 16),
    ("optical_layout.VolumeDescriptor", "file_structure_version", 881, 1),
    # ECMA-167 3/10.2 (anchor), 3/10.1 (primary volume), 3/10.6 (logical volume)
    ("optical_layout.AnchorVolumeDescriptorPointer", "DescriptorTag.TagLocation", 12, 4),
    ("optical_layout.AnchorVolumeDescriptorPointer",
     "MainVolumeDescriptorSequenceExtent.ExtentLength", 16, 4),
    ("optical_layout.PrimaryVolumeDescriptorHead", "VolumeIdentifier", 24, 32),
    ("optical_layout.LogicalVolumeDescriptorHead", "LogicalVolumeIdentifier", 84, 128),
    # Inside Macintosh: Files (MDB) and TN1150 (HFS Plus volume header, B-tree nodes)
    ("hfs_layout.MasterDirectoryBlock", "drAlBlkSiz", 0x14, 4),
    ("hfs_layout.MasterDirectoryBlock", "drAlBlSt", 0x1C, 2),
    ("hfs_layout.MasterDirectoryBlock", "drVN", 0x24, 28),
    ("hfs_layout.MasterDirectoryBlock", "drEmbedSigWord", 0x7C, 2),
    ("hfs_layout.MasterDirectoryBlock", "drEmbedExtent.startBlock", 0x7E, 2),
    ("hfs_layout.VolumeHeader", "blockSize", 0x28, 4),
    ("hfs_layout.VolumeHeader", "finderInfo", 0x50, 32),
    ("hfs_layout.VolumeHeader", "catalogFile.logicalSize", 0x110, 8),
    ("hfs_layout.VolumeHeader", "catalogFile.extents", 0x120, 64),
    ("hfs_layout.BTHeaderRec", "firstLeafNode", 24 - 14, 4),
    ("hfs_layout.BTHeaderRec", "nodeSize", 32 - 14, 2),
]
SPEC_SIZES = [
    ("xfs_layout.Superblock", 264), ("btrfs_layout.Superblock", 4096),
    ("linux_layout.Luks1Header", 208), ("optical_layout.VolumeDescriptor", 2048),
    ("optical_layout.DescriptorTag", 16), ("hfs_layout.MasterDirectoryBlock", 162),
    ("hfs_layout.VolumeHeader", 512), ("hfs_layout.ForkData", 80),
    ("hfs_layout.BTNodeDescriptor", 14),
]


def _layout(dotted: str):
    import importlib

    module, name = dotted.split(".")
    return getattr(importlib.import_module(f"vdinspect.volumes.{module}"), name)


@pytest.mark.parametrize("layout,field,offset,size", SPEC_OFFSETS)
def test_volume_layouts_put_fields_where_the_specs_do(layout, field, offset, size):
    from vdinspect.layout import offset_of, size_of

    st = _layout(layout)
    assert (offset_of(st, field), size_of(st, field)) == (offset, size)


@pytest.mark.parametrize("layout,size", SPEC_SIZES)
def test_volume_layout_sizes(layout, size):
    assert _layout(layout).sizeof() == size


def test_drivers_reexport_the_one_superblock_declaration():
    from vdinspect.filesystems.btrfs import structs as btrfs
    from vdinspect.filesystems.xfs import structs as xfs
    from vdinspect.volumes import btrfs_layout, xfs_layout

    assert xfs.Superblock is xfs_layout.Superblock
    assert btrfs.Superblock is btrfs_layout.Superblock
    assert btrfs.DevItem is btrfs_layout.DevItem


def test_flag_names_follow_construct():
    """The names of the set flags are the ones construct's FlagsEnum parse sets to True;
    bits no flag names are shown as hex only when asked."""
    codes = cs.FlagsEnum(cs.Int16ul, a=1, b=4, c=0x100)
    for value in (0, 1, 5, 0x105, 0x8104):
        parsed = codes.parse(value.to_bytes(2, "little"))
        want = [n for n in ("a", "b", "c") if parsed[n]]
        assert flag_names(codes, value) == want
        extra = value & ~0x105
        assert flag_names(codes, value, unknown=True) == want + ([hex(extra)] if extra else [])
