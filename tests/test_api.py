"""The public API's promises: a light import, the docs/design.md schemas, read-only exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu
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
