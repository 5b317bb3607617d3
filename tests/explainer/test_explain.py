"""The structure explorer against independent decodings of the same bytes.

Field offsets and values are checked with Python's ``struct`` module at the offsets the
specifications give (QEMU's qcow2 and qcow documents, Microsoft's VHD and VHDX
specifications, VirtualBox's VDI header, VMware's sparse extent header, QEMU's
parallels document), and against ``qemu-img info`` and the values in the real samples'
MANIFEST.md.
"""

from __future__ import annotations

import bz2
import json
import struct

import pytest

import vdinspect
from tests.conftest import SAMPLE_IMAGES, SHARED_SAMPLES, needs_qemu, needs_shared
from vdinspect.containers import qcow2, vhd
from vdinspect.errors import InvalidArgument
from vdinspect.explainer import COLUMNS, Explanation, explain_bytes

# QEMU docs/interop/qcow2.txt: (name, offset, struct format) of the header fields
QCOW2_SPEC = [
    ("magic", 0, "4s"),
    ("version", 4, "I"),
    ("backing_file_offset", 8, "Q"),
    ("backing_file_size", 16, "I"),
    ("cluster_bits", 20, "I"),
    ("size", 24, "Q"),
    ("crypt_method", 32, "I"),
    ("l1_size", 36, "I"),
    ("l1_table_offset", 40, "Q"),
    ("refcount_table_offset", 48, "Q"),
    ("refcount_table_clusters", 56, "I"),
    ("nb_snapshots", 60, "I"),
    ("snapshots_offset", 64, "Q"),
]
QCOW2_V3_SPEC = [
    ("incompatible_features", 72, "Q"),
    ("compatible_features", 80, "Q"),
    ("autoclear_features", 88, "Q"),
    ("refcount_order", 96, "I"),
    ("header_length", 100, "I"),
]


def spec_values(data: bytes, spec, endian: str = ">") -> dict:
    return {name: struct.unpack_from(endian + fmt, data, off)[0] for name, off, fmt in spec}


def rows(e: Explanation) -> dict:
    return {r.field: r for r in e.frame.itertuples()}


@pytest.mark.parametrize("name", ["chain-base.qcow2", "chain-mid.qcow2", "chain-top.qcow2"])
def test_qcow2_v3_header_matches_struct_decoding(name):
    layer = ["chain-base.qcow2", "chain-mid.qcow2", "chain-top.qcow2"].index(name)
    raw = (SAMPLE_IMAGES / name).read_bytes()[:4096]
    want = spec_values(raw, QCOW2_SPEC + QCOW2_V3_SPEC)
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        e = disk.explain("header", layer=layer)
    assert list(e.frame.columns) == COLUMNS
    got = rows(e)
    for field, off, fmt in QCOW2_SPEC + QCOW2_V3_SPEC:
        r = got[field]
        assert r.offset == off and r.size == struct.calcsize(">" + fmt), field
        assert r.value == want[field], field
        assert r.raw.replace(" ", "") == raw[off : off + r.size].hex()
        assert r.meaning  # every field carries its one-line comment
    hl = want["header_length"]
    assert e.size == hl and e.host_offset == 0 and e.data == raw[:hl]
    if hl > 104:
        assert got["compression_type"].offset == 104 and got["compression_type"].value == raw[104]
        assert got["padding"].offset == 105 and got["padding"].size == hl - 105
    # the headline values also agree with qemu-img info
    info = json.loads((SAMPLE_IMAGES / f"{name}.info.json").read_text())
    info = info[0] if isinstance(info, list) else info
    assert 1 << got["cluster_bits"].value == info["cluster-size"]
    assert got["size"].value == info["virtual-size"]
    assert 1 << got["refcount_order"].value == info["format-specific"]["data"]["refcount-bits"]
    assert got["nb_snapshots"].value == len(info.get("snapshots", []))


def test_chain_top_known_values():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        e = disk.explain()
    got = rows(e)
    assert (got["version"].offset, got["version"].value) == (4, 3)
    assert (got["cluster_bits"].offset, got["cluster_bits"].value) == (20, 16)
    assert (got["size"].offset, got["size"].value) == (24, 4194304)
    assert e["nb_snapshots"] == 2


def test_hexdump_and_text():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        e = disk.explain("header")
    html = e.hexdump_html()
    for f in e.fields:
        assert f'data-field="{f.field}"' in html
        assert f.field in str(e)
    # one coloured span per covered byte (hex column), each with a tooltip
    assert html.count("data-field=") == sum(f.size for f in e.fields if f.leaf)
    assert "title=" in html and "00000000" in html
    full = e._repr_html_()
    assert "<table" in full and "vdinspect-hexdump" in full
    # titled with the spec's words ("the file header"), not a Python or C struct name
    assert "qcow2 header (version 3)" in repr(e)
    assert str(e).splitlines()[0].startswith("qcow2 header (version 3): 112 bytes")
    assert "QCowHeaderFull" not in full
    # text columns left-aligned, colours from JupyterLab's variables, height capped
    assert "text-align:left" in full and "var(--jp-ui-font-color1" in full
    assert "max-height:" in full and "overflow:auto" in full


def test_zero_lines_and_empty_entries_collapse():
    with vdinspect.open(SAMPLE_IMAGES / "vhd-dynamic.vhd") as disk:
        e = disk.explain("DynamicDiskHeader")
    assert e.size == 1024 and len(e.frame) == 53  # the frame keeps every field
    shown = [f.field for f in e.shown_fields()]
    # entry 0 of the 8 all-zero parent locators is shown, entries 1..7 are one row
    assert "parent_locator_entries[0].platform_code" in shown
    assert "parent_locator_entries[1..7]" in shown
    assert not any(n.startswith("parent_locator_entries[3]") for n in shown)
    assert len(shown) == 53 - 7 * 5 + 1
    text = str(e)
    assert "parent_locator_entries[1..7]" in text and len(text.splitlines()) == len(shown) + 2
    # the hexdump shows the first zero line of a run, then one '*' line for the rest
    dump = e.hexdump_html()
    assert "(60 more lines of zeros)" in dump
    assert dump.count("\n") < 1024 // 16
    assert "00000230" in dump and "00000240" not in dump and "000005f0" not in dump


def test_explain_struct_with_bytes_version2():
    raw = (SAMPLE_IMAGES / "v2.qcow2").read_bytes()[:512]
    e = vdinspect.explain(qcow2.QCowHeader, raw)
    want = spec_values(raw, QCOW2_SPEC)
    assert [r.field for r in e.frame.itertuples()] == [n for n, _o, _f in QCOW2_SPEC]
    assert {r.field: r.value for r in e.frame.itertuples()} == want
    assert want["version"] == 2
    assert e.size == qcow2.QCowHeader.sizeof() == 72 == int(e.frame["size"].sum())
    # and through the image: a v2 header is the 72-byte structure
    with vdinspect.open(SAMPLE_IMAGES / "v2.qcow2") as disk:
        assert disk.explain().name == "qcow2 header (version 2 fields)"


def test_variable_length_header_built_from_the_spec():
    # a v3 header with header_length 104 (no compression byte) and one with 120
    fields = [b"QFI\xfb", 3, 0, 0, 16, 1 << 30, 0, 2, 0x30000, 0x10000, 1, 0, 0, 0, 0, 0, 4]
    fmt = ">4sIQIIQIIQQIIQQQQI"
    for hl in (104, 120):
        data = struct.pack(fmt + "I", *fields, hl) + (b"\x01" if hl > 104 else b"")
        data += bytes(hl - len(data)) + b"\xee" * 64  # trailing bytes are not the header's
        e = explain_bytes(qcow2.QCowHeaderFull, data)
        got = rows(e)
        assert e.size == hl
        assert got["header_length"].offset == 100 and got["header_length"].value == hl
        if hl == 104:
            assert "compression_type" not in got and "padding" not in got
        else:
            assert got["compression_type"].value == 1
            assert (got["padding"].offset, got["padding"].size) == (105, 15)


def test_explain_struct_at_offset_in_image():
    raw = (SAMPLE_IMAGES / "chain-top.qcow2").read_bytes()[:4096]
    hl = struct.unpack_from(">I", raw, 100)[0]
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        e = disk.explain(qcow2.HeaderExtension, offset=hl)
    # QEMU's spec: the first extension after the header; 0xe2792aca = backing format name
    ext_type, ext_len = struct.unpack_from(">II", raw, hl)
    assert e["type"] == ext_type == 0xE2792ACA and e["length"] == ext_len
    assert e.host_offset == hl


def test_top_level_explain_forms(tmp_path):
    import vdinspect.explainer  # importing the module must not shadow the function

    path = SAMPLE_IMAGES / "chain-top.qcow2"
    a = vdinspect.explain(str(path))
    b = vdinspect.explain(path, layer=0)
    with vdinspect.open(path) as disk:
        c = vdinspect.explain(disk)
        d = vdinspect.explain(disk.top)
    assert a.data == c.data == d.data != b.data
    assert b.host_file.endswith("chain-base.qcow2")


def test_errors_are_invalid_argument(tmp_path):
    with pytest.raises(InvalidArgument):
        vdinspect.explain(qcow2.QCowHeader)  # no data
    with pytest.raises(InvalidArgument, match="does not parse"):
        vdinspect.explain(qcow2.QCowHeader, b"QFI\xfb\0\0")
    with pytest.raises(InvalidArgument):
        vdinspect.explain(42)
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(1 << 20))
    with vdinspect.open(raw) as disk:
        with pytest.raises(InvalidArgument, match="no binary header"):
            disk.explain()
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        with pytest.raises(InvalidArgument, match="nothing called"):
            disk.explain("no such thing")
        with pytest.raises(InvalidArgument):
            disk.explain(layer=7)
        with pytest.raises(InvalidArgument, match="offset"):
            disk.explain(qcow2.HeaderExtension)


def test_image_without_a_matching_struct():
    from construct import Container

    from vdinspect.containers.base import Image
    from vdinspect.io import MemorySource

    class Odd(Image):
        format = "odd"

        def __init__(self):
            super().__init__(MemorySource(bytes(512), name="odd.img"))
            self.size = 512
            self.header = Container(alpha=1, beta=2)

    with pytest.raises(InvalidArgument, match="header_struct"):
        vdinspect.explain(Odd())


# --- the other formats, made by qemu-img ------------------------------------------------------


def _file(p) -> bytes:
    return p.read_bytes()


FORMATS = {
    # fmt: (explained struct, where the spec puts it, checks as (field, struct fmt, offset))
    "qcow": ("QcowHeader", lambda b: 0, [("version", ">I", 4), ("size", ">Q", 24)]),
    "vpc": (
        "HardDiskFooter",
        lambda b: len(b) - 512,
        [("current_size", ">Q", 48), ("disk_type", ">I", 60)],
    ),
    "vdi": ("VDIHEADER1", lambda b: 72, [("cbHeader", "<I", 0), ("cbDisk", "<Q", 296)]),
    "vhdx": ("VhdxHeader", None, [("sequence_number", "<Q", 8), ("log_offset", "<Q", 72)]),
    "vmdk": ("SparseExtentHeader", lambda b: 0, [("capacity", "<Q", 12), ("grainSize", "<Q", 20)]),
    "parallels": ("ParallelsHeader", lambda b: 0, [("nb_sectors", "<Q", 36)]),
}


@needs_qemu
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_other_formats_header(fmt, tmp_path):
    from tests.qemu_tools import create, qemu_img

    p = create(tmp_path / f"t.{fmt}", "32M", fmt)
    data = _file(p)
    want_struct, where, checks = FORMATS[fmt]
    with vdinspect.open(p) as disk:
        e = disk.explain()
    assert e.name == want_struct
    if where is None:  # VHDX: the current header is the one with the larger sequence number
        seqs = {off: struct.unpack_from("<Q", data, off + 8)[0] for off in (65536, 131072)}
        off = max(seqs, key=seqs.get)
    else:
        off = where(data)
    assert e.host_offset == off
    for field, f, rel in checks:
        assert e[field] == struct.unpack_from(f, data, off + rel)[0], field
        assert rows(e)[field].offset == rel
    info = json.loads(qemu_img("info", "--output=json", str(p)))
    size = {
        "qcow": lambda: e["size"],
        "vdi": lambda: e["cbDisk"],
        "vmdk": lambda: e["capacity"] * 512,
        "parallels": lambda: e["nb_sectors"] * 512,
        "vpc": lambda: info["virtual-size"],
        "vhdx": lambda: info["virtual-size"],
    }[fmt]()
    assert size == info["virtual-size"]


@needs_qemu
def test_vhd_named_structures(tmp_path):
    from tests.qemu_tools import create

    p = create(tmp_path / "d.vpc", "32M", "vpc")
    data = _file(p)
    with vdinspect.open(p) as disk:
        footer = disk.explain("footer")
        copy = disk.explain("footer copy")
        dyn = disk.explain("dynamic disk header")
        by_name = disk.explain("DynamicDiskHeader")
    assert footer.host_offset == len(data) - 512 and copy.host_offset == 0
    assert footer["cookie"] == copy["cookie"] == b"conectix"
    table_offset = struct.unpack_from(">Q", data, 16)[0]  # footer data_offset -> header
    assert dyn.host_offset == by_name.host_offset == table_offset
    assert dyn["cookie"] == b"cxsparse"
    assert dyn["table_offset"] == struct.unpack_from(">Q", data, table_offset + 16)[0]
    # nested: the eight parent locator entries of 24 bytes from offset 576
    got = rows(dyn)
    assert got["parent_locator_entries"].offset == vhd.LOCATORS_AT == 576
    for j in range(8):
        assert got[f"parent_locator_entries[{j}].platform_code"].offset == 576 + 24 * j
        assert got[f"parent_locator_entries[{j}].platform_data_offset"].offset == 576 + 24 * j + 16
    assert got["reserved2"].offset == 768 and dyn.size == 1024


# --- real images (../shared/samples) ----------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(
    "name,struct_name,checks",
    [
        # MANIFEST.md: Virtual PC writes creator "vpc " 1.0
        (
            "qemu-iotests-v7.2.0/sample_images/virtualpc-dynamic.vhd.bz2",
            "HardDiskFooter",
            dict(creator_application=b"vpc ", cookie=b"conectix"),
        ),
        # MANIFEST.md: Hyper-V 2012 R2, creator "win " 6.3, current_size 136365211648
        (
            "qemu-iotests-v7.2.0/sample_images/hyperv2012r2-dynamic.vhd.bz2",
            "HardDiskFooter",
            dict(
                creator_application=b"win ", creator_version=0x00060003, current_size=136365211648
            ),
        ),
        # MANIFEST.md: ploop image with a format extension, 64 GiB virtual
        (
            "qemu-iotests-v7.2.0/sample_images/parallels-with-bitmap.bz2",
            "ParallelsHeader",
            dict(magic=b"WithouFreSpacExt", nb_sectors=64 * 2**30 // 512),
        ),
        # MANIFEST.md: VMware monolithicSparse, 10 MiB
        (
            "strozfriedberg-vmdk-rs/data/monolithicSparse.vmdk",
            "SparseExtentHeader",
            dict(magicNumber=b"KDMV", capacity=10 * 2**20 // 512),
        ),
    ],
)
def test_real_samples(name, struct_name, checks, tmp_path):
    src = SHARED_SAMPLES / name
    if not src.exists():
        pytest.skip(f"{name} absent")
    if name.endswith(".bz2"):
        p = tmp_path / src.name[:-4]
        p.write_bytes(bz2.decompress(src.read_bytes()))
    else:
        p = src
    with vdinspect.open(p) as disk:
        e = disk.explain()
    assert e.name == struct_name
    for field, value in checks.items():
        assert e[field] == value, field


def test_qcow2_snapshot_entries_and_refcounts_explained(tmp_path):
    """Each snapshot table entry decodes field by field (id and name as qemu-img lists
    them); refcount blocks decode entry by entry (the header cluster is used once, as the
    QCOW2 specification requires)."""
    import shutil
    import subprocess

    if not shutil.which("qemu-img"):
        pytest.skip("qemu-img missing")
    img = SAMPLE_IMAGES / "chain-top.qcow2"
    listed = subprocess.run(["qemu-img", "snapshot", "-l", str(img)], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    want = {line.split()[0]: line.split()[1] for line in listed
            if line.split() and line.split()[0].isdigit()}
    with vdinspect.open(img) as d:
        names = [r["name"] for r in d.structure_rows()]
        entries = [n for n in names if n.startswith("snapshot table entry: ")]
        assert len(entries) == len(want)
        for n in entries:
            e = d.explain(n)
            assert e["id_str"].decode() == n.split(": ")[1]
            assert want[e["id_str"].decode()] == e["name"].decode()
        rc = d.explain("refcount block 0")
        assert rc.frame["meaning"].iloc[0] == "used once"


def test_qcow2_feature_name_entries_explained():
    """qemu-img writes the feature name table: each 48-byte entry is a structures() row
    and decodes to the (type, bit) the QCOW2 specification gives its feature."""
    spec = {"dirty bit": (0, 0), "corrupt bit": (0, 1), "external data file": (0, 2),
            "compression type": (0, 3), "extended L2 entries": (0, 4),
            "lazy refcounts": (1, 0), "bitmaps": (2, 0), "raw external data": (2, 1)}
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as d:
        rows = [r for r in d.structure_rows()
                if r["name"].startswith("feature name entry: ") and r["layer"] == 2]
        assert rows
        for r in rows:
            e = d.explain(r["name"])
            name = e["name"].rstrip(b"\0").decode()
            assert r["name"] == f"feature name entry: {name}"
            assert (e["type"], e["bit"]) == spec[name]
