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
