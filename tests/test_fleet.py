"""A fleet inventory (issue 21): ``vdinspect.inventory`` serially and on a process pool,
``vdinspect.dask.inventory`` / ``files`` on a real ``LocalCluster`` with 2 workers.

Values are checked against ``qemu-img info --backing-chain --output=json`` (format, virtual
size, chain length), the samples' sfdisk dumps (partition counts) and their ``fls -r -p``
listings (files); a broken chain, a missing file and a file of no format get an ``error``
row or a plain raw row instead of an exception.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import vdinspect
from tests import tools
from tests.conftest import SAMPLE_IMAGES
from tests.test_sample_images import fls_live_paths

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")

IMAGES = ["gpt-fat32-ext4-ntfs.qcow2", "mbr-logical.qcow2", "chain-top.qcow2",
          "vhd-dynamic.vhd", "vmdk-sparse.vmdk", "vdi-dynamic.vdi"]


@pytest.fixture
def fleet(tmp_path) -> list[Path]:
    paths = [SAMPLE_IMAGES / n for n in IMAGES]
    broken = tmp_path / "orphan.qcow2"  # its backing file is not there
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(tmp_path / "gone.qcow2"),
              "-F", "qcow2", "-u", broken, "1M")
    return paths + [broken, tmp_path / "missing.qcow2"]


def qemu_facts(path: Path) -> dict:
    chain = json.loads(tools.run("qemu-img", "info", "--backing-chain", "--output=json", path))
    return {"format": chain[0]["format"], "virtual_size": chain[0]["virtual-size"],
            "layers": len(chain)}


def test_inventory_rows_agree_with_qemu_img(fleet):
    inv = vdinspect.inventory(fleet)
    assert list(inv["path"]) == [str(p) for p in fleet]
    by = inv.set_index("path")
    for p in fleet[:len(IMAGES)]:
        row = by.loc[str(p)]
        want = qemu_facts(p)
        assert row["format"] == want["format"].replace("vpc", "vhd")
        assert row["virtual_size"] == want["virtual_size"]
        assert row["layers"] == want["layers"]
        assert row["error"] is pd_na()
    gpt = json.loads((SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2.sfdisk.json").read_text())
    row = by.loc[str(SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2")]
    assert row["partitions"] == len(gpt["partitiontable"]["partitions"])
    assert row["scheme"] == "gpt"
    assert row["filesystems"].split(", ") == ["fat32", "ext4", "ntfs"]
    assert "MissingParent" in by.loc[str(fleet[-2]), "error"]
    assert "FileNotFoundError" in by.loc[str(fleet[-1]), "error"]


def pd_na():
    import pandas as pd

    return pd.NA


def test_process_pool_gives_the_same_rows(fleet):
    serial = vdinspect.inventory(fleet)
    with ProcessPoolExecutor(2) as ex:
        pooled = vdinspect.inventory(fleet, executor=ex)
    assert serial.equals(pooled)


dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as c:
        yield c


def test_dask_inventory_on_a_local_cluster(fleet, client):
    import vdinspect.dask as vdd

    ddf = vdd.inventory(fleet)
    assert ddf.npartitions == len(fleet)
    got = ddf.compute().reset_index(drop=True)
    want = vdinspect.inventory(fleet)
    assert list(got.columns) == list(want.columns)
    assert got.astype(object).equals(want.astype(object))  # dask keeps text as Arrow strings


def test_dask_files_match_fls(fleet, client):
    import vdinspect.dask as vdd

    name = "gpt-fat32-ext4-ntfs.qcow2"
    df = vdd.files(fleet).compute()
    mine = df[(df["image"] == str(SAMPLE_IMAGES / name)) & df["error"].isna()]
    for part in ("1", "2", "3"):
        want = fls_live_paths((SAMPLE_IMAGES / f"{name}.p{part}.fls.txt").read_text())
        rows = mine[(mine["part"] == part) & ~mine["deleted"].astype(bool)
                    & mine["kind"].isin(["file", "dir"])]
        ours = {(p.strip("/"), k) for p, k in zip(rows["path"], rows["kind"])
                if not any(c.startswith("$") for c in p.strip("/").split("/"))}
        assert ours == want, part
    # the broken and the missing image are one error row each, not an exception
    errs = df[df["error"].notna()]
    assert set(errs["image"]) >= {str(fleet[-2]), str(fleet[-1])}
