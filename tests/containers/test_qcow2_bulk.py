"""QCOW2 ``runs()`` reads sound L2 tables in bulk and decodes only their nonzero entries:
its runs and findings must be those of the table-by-table path, sound or damaged, strict
or salvage, over the whole disk or part of it, however the tables are batched."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import vdinspect
from vdinspect.containers.qcow2 import clusters

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_images"
NAMES = ["gpt-fat32-ext4-ntfs", "small-clusters", "zero-clusters", "zlib", "zstd", "v2",
         "datafile2", "mbr-logical", "extl2"]


def outcome(path: Path, strict: bool):
    """Runs of the whole disk and of a few ranges, and every layer's findings."""
    try:
        with vdinspect.open(str(path), strict=strict) as disk:
            size = disk.size
            ranges = [(0, size), (size // 3, size // 2), (4096 + 7, 3 * 65536 + 5),
                      (size - 1, 1)]
            runs = [list(disk.runs(a, n)) for a, n in ranges]
            return runs, [list(img.findings) for img in disk.chain.layers]
    except vdinspect.VDInspectError as e:
        return type(e).__name__, str(e)


def per_table(monkeypatch, path: Path, strict: bool):
    with monkeypatch.context() as m:
        m.setattr(clusters.ClusterMap, "_bulk_runs", lambda self, *a: None)
        return outcome(path, strict)


def damaged(src: Path, out: Path, how: str) -> Path:
    shutil.copy(src, out)
    with vdinspect.open(str(src)) as disk:
        img = disk.chain.layers[0]
        l2 = [int(e) & clusters.L1E_OFFSET_MASK for e in img.l1 if int(e)]
        size = img.file.size
    with open(out, "r+b") as f:
        if how in ("truncated", "cut"):  # cut: the last cluster (data) loses 100 bytes
            f.truncate(size - 100 if how == "cut" else size - size // 4 - 100)
            return out
        data = f.read()
        o = l2[len(l2) // 2]
        k = next(i for i in range(len(data[o:o + 65536]) // 8)
                 if struct.unpack_from(">Q", data, o + 8 * i)[0])
        entry = size + (1 << 20) if how == "outside" else 1 << 63 | 4096 + 512
        f.seek(o + 8 * k)
        f.write(struct.pack(">Q", entry))
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [4 << 20, 1])
def test_bulk_runs_are_the_table_runs(name, batch, monkeypatch):
    path = SAMPLES / f"{name}.qcow2"
    monkeypatch.setattr(clusters, "BULK_BYTES", batch)  # 1: a table per batch
    for strict in (True, False):
        assert outcome(path, strict) == per_table(monkeypatch, path, strict)


@pytest.mark.parametrize("how", ["outside", "misaligned", "truncated", "cut"])
@pytest.mark.parametrize("name", ["gpt-fat32-ext4-ntfs", "zlib", "small-clusters"])
def test_bulk_runs_of_damaged_tables(name, how, tmp_path, monkeypatch):
    path = damaged(SAMPLES / f"{name}.qcow2", tmp_path / "d.qcow2", how)
    for strict in (True, False):
        got = outcome(path, strict)
        assert got == per_table(monkeypatch, path, strict)
        if not strict and how in ("outside", "truncated"):
            assert any(got[1]), "the damage is reported"
