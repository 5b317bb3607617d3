"""NTFS files() through the column walk (ntfs/columns.py): the frame against The Sleuth
Kit's fls and against the per-directory $I30 index walk (a different reading of the
volume: indexes and records, not the one-pass MFT catalog)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from tests import ntfs_builder as nb
from tests.filesystems.test_ntfs import tsk_rows
from vdinspect.filesystems.base import FileSystem
from vdinspect.filesystems.ntfs import open_filesystem
from vdinspect.filesystems.ntfs.columns import int_column
from vdinspect.frames import infer_column, to_column
from vdinspect.io import FileSource

MIB = 1 << 20

pytestmark = pytest.mark.skipif(not nb.have("mkntfs", "ntfs-3g", "fls"),
                                reason="mkntfs, ntfs-3g and fls are needed")


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """populate_rich's volume (ADS, hard links, reparse points, compressed, sparse,
    deleted files) plus a file with 20 names (extension records, attribute list)."""
    tmp = tmp_path_factory.mktemp("ntfs_columns")
    if not nb.fuse_works(tmp):
        pytest.skip("ntfs-3g cannot mount here (no FUSE)")
    img = nb.mkntfs(tmp / "rich.img", 64 * MIB, label="Cols")
    with nb.mounted(img, tmp / "mnt") as m:
        nb.populate_rich(m)
        (m / "many").mkdir()
        (m / "many" / "n00").write_bytes(b"named twenty times\n")
        for i in range(1, 20):
            os.link(m / "many" / "n00", m / "many" / f"n{i:02d}")
    return img


def test_files_frame_against_fls(rich):
    """Every row of files() is a row of ``fls -r -p`` (path, kind, deleted, TSK address)
    and the other way round."""
    fs = open_filesystem(FileSource(str(rich)))
    df = fs.files()
    ours = set()
    for r in df.itertuples():
        orphan = r.path == "/$OrphanFiles" or r.path.startswith("/$OrphanFiles/OrphanFile-")
        addr = r.tsk_addr if not pd.isna(r.tsk_addr) else None
        if addr is None and not orphan:
            continue
        if addr is None and not pd.isna(r.inode):
            addr = str(r.inode)
        kind = r.kind
        if kind == "symlink":  # TSK types a reparse point by its record
            kind = "dir" if fs.lookup(r.path, deleted=r.deleted).raw.is_dir else "file"
        ours.add((r.path[1:], kind, r.deleted, addr))
    theirs = tsk_rows(nb.fls(rich))
    assert sorted(theirs - ours) == [] and sorted(ours - theirs) == []
    assert len(ours) > 400
    assert df.stream.notna().sum() >= 2 and df.kind.eq("symlink").any()
    assert (df.compressed == "lznt1").any() and df["sparse"].fillna(False).any()
    assert df[df.path.str.startswith("/many/n")].inode.nunique() == 1
    assert len(df[df.path.str.startswith("/many/n")]) == 20


@pytest.mark.parametrize("deleted", [True, False])
def test_files_frame_equals_index_walk(rich, deleted):
    """The column walk's frame equals the frame of the generic walk over each directory's
    $I30 index (Entries, times converted from datetimes): every column, every dtype."""
    fs = open_filesystem(FileSource(str(rich)))
    fast = fs.files(deleted=deleted)
    slow = FileSystem.files(open_filesystem(FileSource(str(rich))), deleted=deleted)
    pd.testing.assert_frame_equal(fast, slow)


@pytest.mark.parametrize("values", [
    [1, None, 3], [None, None], [1 << 63, 2], [-(1 << 63), None], [0] * 5, [],
])
def test_int_column_types_as_the_frame_infers(values):
    """A column given as a masked array gets the dtype and values the frame's own
    inference gives the list (past int64 or all absent: left to the frame)."""
    got = to_column(int_column(values), None)
    want = infer_column(values)
    assert got.dtype == want.dtype
    assert list(got) == list(want) or all(pd.isna(a) and pd.isna(b) for a, b in zip(got, want))


def test_plain_records_decoded_column_wise_as_one_by_one(rich):
    """Every record the numpy decoder (recordcols.plain_infos) takes gets the Info the
    record-by-record decoder gives it, field by field; most file records are taken."""
    from dataclasses import fields

    from vdinspect.filesystems.ntfs.catalog import Info, quick_info
    from vdinspect.filesystems.ntfs.recordcols import plain_infos
    from vdinspect.volumes.multisector import fixup_many

    fs = open_filesystem(FileSource(str(rich)))
    rs = fs.record_size
    arr, has_magic, ok = fixup_many(fs.mft.read(0, fs.nrecords * rs), rs)
    got = plain_infos(arr, has_magic & ok, 0, Info)
    names = [f.name for f in fields(Info)]
    for i, info in got.items():
        want = quick_info(arr[i].data, i, fs.clusters)
        assert want is not None
        assert [getattr(info, f) for f in names] == [getattr(want, f) for f in names]
    files = [i for i in range(len(arr)) if has_magic[i] and i >= 24
             and fs.record(i).in_use and not fs.record(i).is_dir]
    assert len(got) > len(files) // 2
