"""The public API's promises: a light import, the docs/design.md schemas, read-only exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu
from tests.tools import blkid_tags, run
from vdinspect import frames


def test_import_is_light():
    code = ("import sys, vdinspect; bad = [m for m in ('matplotlib', 'ipywidgets', 'pandas') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


@pytest.fixture
def chain(tmp_path):
    base = q.create(tmp_path / "base.qcow2", "8M")
    q.qemu_io(base, "write -P 0x11 0 1M", "write -P 0x12 6M 64k")
    top = q.create(tmp_path / "top.qcow2", "8M", backing="base.qcow2")
    q.qemu_io(top, "write -P 0x21 512k 1M", "write -z 6M 64k")
    q.qemu_img("snapshot", "-c", "s1", str(top))
    return top


@needs_qemu
def test_schemas(chain):
    with vdinspect.open(chain) as disk:
        info = disk.info()
        assert list(info.index[: len(frames.INFO_FIELDS)]) == frames.INFO_FIELDS
        assert info["layers"] == 2 and info["virtual_size"] == 8 << 20
        alloc = disk.allocation()
        assert list(alloc.columns) == frames.ALLOCATION_COLUMNS
        assert str(alloc["state"].dtype) == "category"
        assert str(alloc["layer"].dtype) == "Int64"
        assert str(alloc["host_offset"].dtype) == "Int64"
        assert alloc["start"].dtype == "int64" and alloc["compressed"].dtype == bool
        # gap-free and ordered
        assert alloc["start"].iloc[0] == 0 and alloc["end"].iloc[-1] == disk.size
        assert (alloc["start"].iloc[1:].to_numpy() == alloc["end"].iloc[:-1].to_numpy()).all()
        layers = disk.layers()
        assert list(layers.columns) == frames.LAYER_COLUMNS
        assert layers["layer"].tolist() == [0, 1]
        assert list(disk.check().columns) == frames.CHECK_COLUMNS
        snaps = disk.snapshots()
        for col in ["id", "name", "created", "vm_clock", "vm_state_size", "virtual_size"]:
            assert col in snaps.columns
        assert snaps["name"].tolist() == ["s1"]
        assert isinstance(snaps["created"].dtype, pd.DatetimeTZDtype)
        st = disk.structures()
        assert {"name", "host_file", "host_offset", "length", "description"} <= set(st.columns)
        assert "<Disk top.qcow2" in repr(disk)
        assert "Disk" in disk._repr_html_()


@needs_qemu
def test_to_raw_refuses_to_overwrite_an_input(chain, tmp_path):
    with vdinspect.open(chain) as disk:
        with pytest.raises(vdinspect.InvalidArgument):
            disk.to_raw(tmp_path / "base.qcow2")


@needs_qemu
def test_read_past_end_is_a_bad_call(chain):
    with vdinspect.open(chain) as disk:
        with pytest.raises(vdinspect.InvalidArgument):
            disk.read(disk.size - 10, 20)
        with pytest.raises(ValueError):
            disk.read(-1, 1)


def test_filesystems_share_the_api_grammar():
    """info() is a Series that starts with the same facts on every filesystem; check() and
    structures() are DataFrames in the documented schemas (empty check() for sound volumes);
    the facts agree with what the partition table and the probes say."""
    import pandas as pd

    from vdinspect.frames import CHECK_COLUMNS, FS_INFO_FIELDS, STRUCTURE_COLUMNS

    sample = Path(__file__).resolve().parent.parent / "sample_images" / "gpt-fat32-ext4-ntfs.qcow2"
    with vdinspect.open(sample) as disk:
        parts = disk.partitions().dropna(subset=["index"])
        for _, p in parts.iterrows():
            fs = disk.filesystem(int(p["index"]))
            info = fs.info()
            assert isinstance(info, pd.Series)
            assert list(info.index[: len(FS_INFO_FIELDS)]) == FS_INFO_FIELDS
            assert info["fstype"] == p["filesystem"] and info["label"] == p["label"]
            assert 0 < info["size"] <= p["length"] and info["block_size"] >= 512
            assert info["dirty"] is False
            check, structures = fs.check(), fs.structures()
            assert isinstance(check, pd.DataFrame) and list(check.columns) == CHECK_COLUMNS
            # a sound volume has no problem rows (info rows may say what a bounded
            # recovery scan did not examine)
            assert check[check["severity"] != "info"].empty
            assert isinstance(structures, pd.DataFrame) and not structures.empty
            assert list(structures.columns[: len(STRUCTURE_COLUMNS)]) == STRUCTURE_COLUMNS
            assert list(structures["name"]) == [r["name"] for r in fs.structure_rows()]


def test_volume_takes_part_like_filesystem():
    """One name for a partition everywhere: ``volume(part)`` as ``filesystem(part)``; the old
    ``key=`` still works for a release, with a DeprecationWarning. The bytes are the
    partition's, as sfdisk's table (in the sample's .sfdisk answer) places it."""
    sample = Path(__file__).resolve().parent.parent / "sample_images" / "gpt-fat32-ext4-ntfs.qcow2"
    with vdinspect.open(sample) as disk:
        row = disk.partitions().set_index("index").loc[2]
        vol = disk.volume(2)
        assert vol.size == row["length"]
        assert vol.read(0, 4096) == disk.read(int(row["start"]), 4096)
        with pytest.warns(DeprecationWarning):
            old = disk.volume(key=2)
        assert old.read(0, 4096) == vol.read(0, 4096)
        with pytest.raises(vdinspect.InvalidArgument):
            disk.volume()


# --- one grammar on every public object (issue 15 item 5) -----------------------------------
MiB = 1 << 20
GRAMMAR_TOOLS = ("qemu-img", "qemu-io", "sfdisk", "mke2fs", "mkfs.fat", "mcopy", "blkid")
needs_grammar_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in GRAMMAR_TOOLS), reason="a disk-building tool is missing")
EXT_LABEL, FAT_LABEL = "GRAMMAREXT", "GRAMMARFAT"
PAYLOAD = b"one grammar\n" * 500


@pytest.fixture(scope="module")
def grammar_chain(tmp_path_factory) -> dict:
    """A QCOW2 chain (base + overlay, made by qemu-img/qemu-io) over a GPT disk (sfdisk) with
    an ext4 volume (mke2fs -d) and a FAT volume (mkfs.fat, mcopy); what the tools say about
    it (qemu-img info, sfdisk --json, blkid) is the truth the tests compare with."""
    d = tmp_path_factory.mktemp("grammar")
    raw = d / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(48 * MiB)
    basic_data = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    run("sfdisk", "-q", raw, input="label: gpt\nstart=2048, size=32768, name=linux\n"
                                     f"start=34816, size=40960, type={basic_data}, name=data\n")
    table = json.loads(run("sfdisk", "--json", raw))["partitiontable"]
    root = d / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(PAYLOAD)
    ext, fat = d / "ext.img", d / "fat.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-L", EXT_LABEL, "-d", root, ext, "16M")
    with open(fat, "wb") as f:
        f.truncate(20 * MiB)
    run("mkfs.fat", "-F", "16", "-n", FAT_LABEL, fat)
    run("mcopy", "-i", fat, root / "hello.txt", "::/HELLO.TXT",
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    with open(raw, "r+b") as f:
        for part, vol in zip(table["partitions"], (ext, fat), strict=True):
            f.seek(part["start"] * 512)
            f.write(vol.read_bytes())
    tags = [blkid_tags(raw, p["start"] * 512, p["size"] * 512) for p in table["partitions"]]
    base = d / "base.qcow2"
    q.qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(base))
    top = q.create(d / "top.qcow2", 48 * MiB, backing="base.qcow2")
    q.qemu_io(top, "write -P 0x5a 46M 64k")  # free space past the partitions
    infos = [json.loads(q.qemu_img("info", "--output=json", str(p))) for p in (base, top)]
    return dict(top=top, base=base, table=table, tags=tags, infos=infos,
                checks=[q.qemu_check(p) for p in (base, top)])


def _layer(k):
    return lambda disk: disk.layer_images[k]


#: name -> how to reach the object from the Disk
GRAMMAR_OBJECTS = {
    "disk": lambda disk: disk,
    "base image": _layer(0),
    "top image": _layer(1),
    "volume list": lambda disk: disk.volumes(),
    "volume 1": lambda disk: disk.volumes().find(1),
    "volume 2": lambda disk: disk.volumes().find(2),
    "ext4": lambda disk: disk.filesystem(1),
    "fat": lambda disk: disk.filesystem(2),
}


@needs_grammar_tools
@pytest.mark.parametrize("name", list(GRAMMAR_OBJECTS))
def test_one_grammar_on_every_object(grammar_chain, name):
    """``info()`` is a Series; ``check()`` and ``structures()`` (where the object has them)
    are DataFrames in the documented schemas, built from the row lists ``check_rows()`` /
    ``structure_rows()``; a fresh chain has no problem rows, as ``qemu-img check`` says."""
    from vdinspect.schemas import CHECK_COLUMNS, STRUCTURE_COLUMNS

    with vdinspect.open(grammar_chain["top"]) as disk:
        obj = GRAMMAR_OBJECTS[name](disk)
        assert isinstance(obj.info(), pd.Series)
        if not hasattr(obj, "check"):
            return
        check, structures = obj.check(), obj.structures()
        assert isinstance(check, pd.DataFrame) and list(check.columns) == CHECK_COLUMNS
        assert isinstance(structures, pd.DataFrame)
        assert list(structures.columns[: len(STRUCTURE_COLUMNS)]) == STRUCTURE_COLUMNS
        rows, srows = obj.check_rows(), obj.structure_rows()
        assert isinstance(rows, list) and len(rows) == len(check)
        assert isinstance(srows, list) and [r["name"] for r in srows] == list(structures["name"])
        assert all(c["format"] == "qcow2" and c.get("check-errors", 0) == c.get("corruptions", 0)
                   == c.get("leaks", 0) == 0 for c in grammar_chain["checks"])
        assert check[~check["severity"].isin(["info"])].empty, check


@needs_grammar_tools
@pytest.mark.parametrize("k", [0, 1])
def test_image_info_agrees_with_qemu_img(grammar_chain, k):
    """A layer's ``info()`` says what ``qemu-img info`` says of that file; its structures lie
    inside the file (the header at 0, as QCOW2 places it)."""
    truth = grammar_chain["infos"][k]
    with vdinspect.open(grammar_chain["top"]) as disk:
        img = disk.layer_images[k]
        info = img.info()
        assert list(info.index[: len(frames.INFO_FIELDS)]) == frames.INFO_FIELDS
        assert info["format"] == truth["format"] == "qcow2"
        assert info["virtual_size"] == truth["virtual-size"]
        assert info["cluster_size"] == truth["cluster-size"]
        assert info["file_size"] == os.stat(truth["filename"]).st_size
        st = img.structures()
        assert (st["host_offset"] + st["length"] <= info["file_size"]).all()
        assert st.loc[st["host_offset"] == 0, "name"].str.contains("header").any()


@needs_grammar_tools
def test_volume_and_filesystem_info_agree_with_sfdisk_and_blkid(grammar_chain):
    """Volumes' ``info()`` places each partition where sfdisk put it; the table's ``info()``
    names the scheme and the partitions; each filesystem's label and UUID are blkid's."""
    table, tags = grammar_chain["table"], grammar_chain["tags"]
    with vdinspect.open(grammar_chain["top"]) as disk:
        vols = disk.volumes()
        vinfo = vols.info()
        assert vinfo["scheme"] == table["label"] == "gpt"
        assert str(vinfo["disk_id"]).lower() == table["id"].lower()
        for k, (part, tag) in enumerate(zip(table["partitions"], tags, strict=True), start=1):
            info = vols.find(k).info()
            assert info["start"] == part["start"] * 512 and info["length"] == part["size"] * 512
            assert str(info["name"]) == part["name"]
            fs = disk.filesystem(k).info()
            assert fs["label"] == tag["LABEL"] and str(fs["uuid"]).lower() == tag["UUID"].lower()


@needs_grammar_tools
def test_disk_group_grammar(grammar_chain):
    """A group of disks answers with DataFrames: ``info()`` one row per disk (qemu-img's
    virtual sizes), ``check()`` / ``structures()`` each disk's rows under its path."""
    paths = [grammar_chain["base"], grammar_chain["top"]]
    with vdinspect.open(paths) as group:
        info = group.info()
        assert isinstance(info, pd.DataFrame)
        assert list(info["virtual_size"]) == [i["virtual-size"] for i in grammar_chain["infos"]]
        for df, one in ((group.check(), "check"), (group.structures(), "structures")):
            assert isinstance(df, pd.DataFrame) and df.columns[0] == "disk"
            per_disk = [len(getattr(d, one)()) for d in group]
            assert list(df.groupby("disk", sort=False).size().reindex(
                [d.path for d in group], fill_value=0)) == per_disk


def test_optional_image_members_are_declared_on_the_base():
    """What callers ask of any Image is declared on the base class (None or empty when a
    format has no such thing), so no caller looks it up with getattr."""
    from vdinspect.containers.base import Image

    for member in ("flags", "find_parent", "verify_parent", "explain_delegate",
                   "header_struct", "header_offset", "header_file", "path_notes", "owned_sources",
                   "check_rows", "structure_rows", "info_fields", "info", "check",
                   "structures"):
        assert hasattr(Image, member), member


@needs_grammar_tools
def test_browser_takes_part(grammar_chain):
    """The browser names the partition ``part`` too; ``volume=`` still works for a release,
    with a DeprecationWarning, and opens the same filesystem (FAT: mcopy's file is there)."""
    from vdinspect.widgets.controller import BrowserController

    with vdinspect.open(grammar_chain["top"]) as disk:
        new = BrowserController(disk, part=2)
        with pytest.warns(DeprecationWarning, match="part="):
            old = BrowserController(disk, volume=2)
        assert new.volume == old.volume == "2"
        assert new.fs.info()["label"] == old.fs.info()["label"] == FAT_LABEL
        assert new.fs.open("/HELLO.TXT").read() == PAYLOAD


@needs_qemu
def test_vmdk_extents_share_the_grammar(tmp_path):
    """A VMDK's extents (``disk.top.extents``) answer in the same grammar; each extent's
    ``info()`` says what ``qemu-img info`` says of it (file, size, grain size), and its
    structures lie inside its own file."""
    from vdinspect.schemas import CHECK_COLUMNS, STRUCTURE_COLUMNS

    path = q.create(tmp_path / "x.vmdk", "10M", "vmdk", "subformat=twoGbMaxExtentSparse")
    q.qemu_io(path, "write -P 0x33 1M 128k", fmt="vmdk")
    truth = json.loads(q.qemu_img("info", "--output=json", str(path)))
    extents = truth["format-specific"]["data"]["extents"]
    with vdinspect.open(path) as disk:
        assert len(disk.top.extents) == len(extents)
        for ext, t in zip(disk.top.extents, extents, strict=True):
            info = ext.info()
            assert isinstance(info, pd.Series)
            assert info["file"] == os.path.basename(t["filename"])
            assert info["size"] == t["virtual-size"]
            assert info["grain_size"] == t["cluster-size"]
            check, st = ext.check(), ext.structures()
            assert list(check.columns) == CHECK_COLUMNS and check.empty
            assert list(st.columns[: len(STRUCTURE_COLUMNS)]) == STRUCTURE_COLUMNS
            assert (st["host_offset"] + st["length"] <= os.path.getsize(info["path"])).all()
            assert list(st["name"]) == [r["name"] for r in ext.structure_rows()]
