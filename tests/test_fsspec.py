"""The vdinspect:// fsspec protocol: files inside images read with pandas and fsspec.

Images are made by real tools (mke2fs -d, mkfs.fat + mcopy, sfdisk, qemu-img) from a
folder of source files; what fsspec reads is compared with those files, with debugfs's
listing, and with what qemu-io wrote.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, have
from tests.qemu_tools import qemu_img, qemu_io, run

fsspec = pytest.importorskip("fsspec")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from vdinspect.fsspec import ReadOnlyError, VDInspectFileSystem, register  # noqa: E402

pytestmark = pytest.mark.skipif(
    not have("qemu-img", "qemu-io", "mke2fs", "debugfs", "sfdisk", "mkfs.fat", "mcopy"),
    reason="needs qemu-img, qemu-io, e2fsprogs, sfdisk, mkfs.fat and mtools")

MiB = 1 << 20
P1_START, P1_SECTORS = 2048, 16384  # FAT: 8 MiB at 1 MiB
P2_START, P2_SECTORS = 18432, 32768  # ext4: 16 MiB at 9 MiB


@pytest.fixture(autouse=True, scope="module")
def registered():
    register()
    yield
    VDInspectFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A source folder and images made from it: a partitioned qcow2 (FAT p1, ext4 p2),
    its raw form inside a zip, and a qcow2 of a bare ext4 with an internal snapshot."""
    tmp = tmp_path_factory.mktemp("fsspec")
    src = tmp / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    df = pd.DataFrame({"n": range(500), "x": [i / 7 for i in range(500)],
                       "name": [f"row {i}" for i in range(500)]})
    df.to_csv(src / "data.csv", index=False)
    df.to_parquet(src / "data.parquet")
    (src / "hello.txt").write_bytes(b"hello, world\n" * 1000)
    (src / "sub" / "deeper" / "deep.bin").write_bytes(os.urandom(100_000))
    (src / "sub" / "notes.txt").write_text("a note\n")
    (src / "what?.txt").write_bytes(b"a question mark in a name\n")
    os.symlink("data.csv", src / "link.csv")

    ext = tmp / "ext.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, ext, "16M")
    fat = tmp / "fat.img"
    run("mkfs.fat", "-C", fat, str(P1_SECTORS // 2))
    run("mcopy", "-i", fat, src / "hello.txt", src / "data.csv", "::/")

    raw = tmp / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate((P2_START + P2_SECTORS) * 512 + MiB)
    subprocess.run(["sfdisk", "-q", str(raw)], check=True, text=True, input=(
        "label: dos\n"
        f"start={P1_START}, size={P1_SECTORS}, type=c\n"
        f"start={P2_START}, size={P2_SECTORS}, type=83\n"))
    with open(raw, "r+b") as f:
        f.seek(P1_START * 512)
        f.write(fat.read_bytes())
        f.seek(P2_START * 512)
        f.write(ext.read_bytes())
    disk = tmp / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk))
    zipped = tmp / "disk.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as z:
        z.write(raw, "disk.raw")

    snap = tmp / "snap.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(ext), str(snap))
    qemu_img("snapshot", "-c", "clean", str(snap))
    block = int(run("debugfs", "-R", "bmap /hello.txt 0", ext).split()[-1])
    qemu_io(snap, f"write -P 0x41 {block * 4096} 4096")
    return dict(tmp=tmp, src=src, ext=ext, raw=raw, disk=disk, zip=zipped, snap=snap)


def url(path: str, image: Path) -> str:
    return f"vdinspect://{path}::file://{image}"


def source_tree(src: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for n in dirnames + filenames:
            out.add(n if rel == "." else f"{rel}/{n}")
    return out


def test_pandas_reads_csv_and_parquet_from_an_ext4_partition(images):
    src, disk = images["src"], images["disk"]
    want = pd.read_csv(src / "data.csv")
    pd.testing.assert_frame_equal(pd.read_csv(url("p2/data.csv", disk)), want)
    pd.testing.assert_frame_equal(pd.read_parquet(url("p2/data.parquet", disk)),
                                  pd.read_parquet(src / "data.parquet"))
    # the link is followed inside the filesystem; FAT on p1 reads too
    pd.testing.assert_frame_equal(pd.read_csv(url("p2/link.csv", disk)), want)
    pd.testing.assert_frame_equal(pd.read_csv(url("p1/DATA.CSV", disk)), want)


def test_open_seek_and_cat_file_ranges(images):
    src, disk = images["src"], images["disk"]
    data = (src / "sub" / "deeper" / "deep.bin").read_bytes()
    with fsspec.open(url("p2/sub/deeper/deep.bin", disk)) as f:
        assert f.size == len(data)
        f.seek(70_000)
        assert f.read(10) == data[70_000:70_010]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        f.seek(3)
        assert f.tell() == 3 and f.read(4) == data[3:7]
    fs, path = fsspec.core.url_to_fs(url("p2/sub/deeper/deep.bin", disk))
    assert isinstance(fs, VDInspectFileSystem) and path == "p2/sub/deeper/deep.bin"
    assert fs.cat_file(path) == data
    assert fs.cat_file(path, 4095, 8193) == data[4095:8193]
    assert fs.cat_file(path, -100) == data[-100:]
    assert fs.cat_file(path, 10, -10) == data[10:-10]
    assert fs.cat_file(path, 99_990, 200_000) == data[99_990:]
    assert fs.cat_file(path, 500, 400) == b""
    with fsspec.open(url("p2/sub/notes.txt", disk), "rt") as f:
        assert f.read() == "a note\n"
    # "?" starts options only in a vdinspect:// URL; plain paths keep it
    assert fs.cat_file("p2/what?.txt") == (src / "what?.txt").read_bytes()


def test_listings_equal_debugfs_and_the_source_tree(images):
    src, disk, ext = images["src"], images["disk"], images["ext"]
    fs = fsspec.filesystem("vdinspect", fo=str(disk))
    assert fs.ls("", detail=False) == ["p1", "p2"]
    top = fs.info("p2")
    assert top["type"] == "directory" and top["filesystem"] == "ext4"

    # debugfs -p: /inode/mode/uid/gid/name/size/
    oracle = {}
    for line in run("debugfs", "-R", "ls -p /", ext).splitlines():
        f = line.strip().split("/")
        if len(f) >= 7 and f[5] not in (".", ".."):
            oracle[f[5]] = dict(inode=int(f[1]), mode=int(f[2], 8), size=int(f[6] or 0))
    got = {d["name"].split("/", 1)[1]: d for d in fs.ls("p2", detail=True)}
    assert set(got) == set(oracle)
    for name, want in oracle.items():
        assert got[name]["inode"] == want["inode"]
        assert got[name]["mode"] == want["mode"]
        if got[name]["type"] == "file":
            assert got[name]["size"] == want["size"]
    assert got["sub"]["type"] == "directory" and got["link.csv"]["type"] == "link"
    assert got["link.csv"]["destination"] == "data.csv"

    everything = set(fs.find("p2", withdirs=True))
    want = {f"p2/{p}" for p in source_tree(src)} | {"p2", "p2/lost+found"}  # fsspec adds p2
    assert everything == want
    assert set(fs.find("p2/sub")) == {"p2/sub/notes.txt", "p2/sub/deeper/deep.bin"}
    assert sorted(fs.glob("p2/*.csv")) == ["p2/data.csv", "p2/link.csv"]
    assert fs.glob("p2/**/*.bin") == ["p2/sub/deeper/deep.bin"]
    files = fsspec.open_files(url("p2/*.csv", disk))
    assert [f.path for f in files] == ["p2/data.csv", "p2/link.csv"]
    with files[0] as f:
        assert f.read() == (src / "data.csv").read_bytes()
    assert fs.isdir("p2/sub") and fs.isfile("p2/hello.txt") and not fs.isfile("p2/sub")
    assert fs.exists("p2/data.parquet") and not fs.exists("p2/nothing")
    assert not fs.exists("p7/data.csv")
    info = fs.info("p2/hello.txt")
    st = (src / "hello.txt").stat()
    assert info["size"] == st.st_size and info["type"] == "file"
    assert int(info["mtime"]) == int(st.st_mtime)
    assert fs.modified("p2/hello.txt").timestamp() == info["mtime"]
    with pytest.raises(FileNotFoundError):
        fs.info("p2/nothing")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("p2/sub")


def test_an_image_inside_a_zip(images):
    src, z = images["src"], images["zip"]
    chained = f"vdinspect://p2/data.csv::zip://disk.raw::file://{z}"
    pd.testing.assert_frame_equal(pd.read_csv(chained), pd.read_csv(src / "data.csv"))
    fs, _ = fsspec.core.url_to_fs(chained)
    assert set(fs.find("p2/sub")) == {"p2/sub/notes.txt", "p2/sub/deeper/deep.bin"}
    assert fs.cat_file("p1/HELLO.TXT") == (src / "hello.txt").read_bytes()


def test_a_filesystem_without_a_partition_table_and_the_shortcut(images, tmp_path):
    src = images["src"]
    # a bare ext4: paths start at its root
    fs = fsspec.filesystem("vdinspect", fo=str(images["ext"]))
    assert set(fs.ls("", detail=False)) == {p.name for p in src.iterdir()} | {"lost+found"}
    assert fs.cat_file("sub/notes.txt") == b"a note\n"
    # one partition (GPT): the volume may be named or left out
    one = tmp_path / "one.raw"
    with open(one, "wb") as f:
        f.truncate(2 * MiB + 16 * MiB + MiB)
    subprocess.run(["sfdisk", "-q", str(one)], check=True, text=True,
                   input=f"label: gpt\nstart=4096, size={P2_SECTORS}, type=L\n")
    with open(one, "r+b") as f:
        f.seek(4096 * 512)
        f.write(images["ext"].read_bytes())
    fs = fsspec.filesystem("vdinspect", fo=str(one))
    assert fs.ls("", detail=False) == ["p1"]
    want = (src / "hello.txt").read_bytes()
    assert fs.cat_file("p1/hello.txt") == want and fs.cat_file("hello.txt") == want
    assert sorted(fs.glob("sub/*")) == ["sub/deeper", "sub/notes.txt"]
    assert sorted(fs.glob("p1/sub/*")) == ["p1/sub/deeper", "p1/sub/notes.txt"]


def test_lvm_logical_volumes_are_vg_slash_lv(images, tmp_path):
    from tests import volume_builder as vb

    src, ext = images["src"], 2 * MiB
    lv_ext = tmp_path / "lv.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-d", src, lv_ext, "4M")
    lv_fat = tmp_path / "fat.img"
    run("mkfs.fat", "-C", lv_fat, "2048")
    run("mcopy", "-i", lv_fat, src / "hello.txt", "::/")
    buf = bytearray(12 * MiB)
    uid, pe_start = vb.lvm_uuid("fsspecpv"), 2048
    one = dict(type="striped", stripe_count=1)
    text = vb.vg_text(
        "vg", vg_id=vb.lvm_uuid("fsspecvg"), seqno=1, extent_size=ext // 512,
        pvs=[dict(uuid=uid, dev_size=len(buf) // 512, pe_start=pe_start, pe_count=5)],
        lvs=[vb.LV("data", [dict(one, start_extent=0, extent_count=2, stripes=["pv0", 0])]),
             vb.LV("logs", [dict(one, start_extent=0, extent_count=1, stripes=["pv0", 3])])])
    vb.write_pv(buf, 0, len(buf), uid, text, pe_start=pe_start)
    base = pe_start * 512
    buf[base:base + 2 * ext] = lv_ext.read_bytes()
    buf[base + 3 * ext:base + 3 * ext + 2 * MiB] = lv_fat.read_bytes()
    image = tmp_path / "lvm.raw"
    image.write_bytes(buf)

    fs = fsspec.filesystem("vdinspect", fo=str(image))
    assert fs.ls("", detail=False) == ["vg"]
    assert sorted(fs.ls("vg", detail=False)) == ["vg/data", "vg/logs"]
    assert fs.info("vg/data")["filesystem"] == "ext4"
    pd.testing.assert_frame_equal(pd.read_csv(url("vg/data/data.csv", image)),
                                  pd.read_csv(src / "data.csv"))
    assert fs.cat_file("vg/logs/HELLO.TXT") == (src / "hello.txt").read_bytes()
    assert set(fs.find("vg/data/sub")) == {"vg/data/sub/notes.txt",
                                           "vg/data/sub/deeper/deep.bin"}


def test_layer_option_on_a_backing_chain(images, tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(images["ext"]), str(base))
    top = tmp_path / "top.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    block = int(run("debugfs", "-R", "bmap /hello.txt 0", images["ext"]).split()[-1])
    qemu_io(top, f"write -P 0x42 {block * 4096} 4096")
    old = (images["src"] / "hello.txt").read_bytes()
    with fsspec.open(url("hello.txt", top)) as f:
        assert f.read(4) == b"BBBB"
    with fsspec.open(url("hello.txt", top), vdinspect={"layer": 0}) as f:
        assert f.read() == old
    with fsspec.open(f"vdinspect://hello.txt?layer=0::file://{top}") as f:
        assert f.read() == old
    got = pd.read_csv(url("data.csv", top), storage_options={"vdinspect": {"layer": 0}})
    pd.testing.assert_frame_equal(got, pd.read_csv(images["src"] / "data.csv"))
    # through another store the parent is not looked for: strict raises, salvage reads
    from vdinspect import MissingParent

    mem = fsspec.filesystem("memory")
    mem.pipe("/chain/top.qcow2", top.read_bytes())
    try:
        with pytest.raises(MissingParent):
            fsspec.open("vdinspect://hello.txt::memory://chain/top.qcow2").open()
        fs, _ = fsspec.core.url_to_fs("vdinspect://::memory://chain/top.qcow2",
                                      vdinspect={"strict": False})
        assert [img.format for img in fs.disk.layer_images] == ["missing", "qcow2"]
        fs.close()
    finally:
        mem.rm("/chain/top.qcow2")


def test_snapshot_option_reads_the_old_content(images):
    snap, old = images["snap"], (images["src"] / "hello.txt").read_bytes()
    with fsspec.open(url("hello.txt", snap)) as f:
        now = f.read()
    assert now[:4096] == b"A" * 4096 and now[4096:] == old[4096:]
    with fsspec.open(url("hello.txt", snap), vdinspect={"snapshot": "clean"}) as f:
        assert f.read() == old
    with fsspec.open(f"vdinspect://hello.txt?snapshot=clean::file://{snap}") as f:
        assert f.read() == old
    # a snapshot through a non-local store (memory) reads through the same file object
    mem = fsspec.filesystem("memory")
    mem.pipe("/images/snap.qcow2", snap.read_bytes())
    try:
        with fsspec.open("vdinspect://hello.txt::memory://images/snap.qcow2",
                         vdinspect={"snapshot": "clean"}) as f:
            assert f.read() == old
        with fsspec.open("vdinspect://hello.txt::memory://images/snap.qcow2") as f:
            assert f.read() == now
    finally:
        mem.rm("/images/snap.qcow2")
    with pytest.raises(FileNotFoundError):
        fsspec.open(url("hello.txt", snap), vdinspect={"snapshot": "nope"}).open()
    # an open Disk or a file object as the image: each its own instance (never cached by
    # repr, which the two views share)
    import vdinspect

    with vdinspect.open(snap) as now_disk, vdinspect.open(snap, snapshot="clean") as old_disk:
        a = fsspec.filesystem("vdinspect", fo=now_disk)
        b = fsspec.filesystem("vdinspect", fo=old_disk)
        assert a is not b
        assert a.cat_file("hello.txt") == now and b.cat_file("hello.txt") == old
        a.close()  # a Disk given by the caller stays open: the caller closes it
        assert a.cat_file("hello.txt") == now
    with open(snap, "rb") as f:
        fs = fsspec.filesystem("vdinspect", fo=f, snapshot="clean")
        assert fs.cat_file("hello.txt") == old
        fs.close()
        assert not f.closed  # the caller's file object stays the caller's


def test_writes_raise(images):
    fs = fsspec.filesystem("vdinspect", fo=str(images["disk"]))
    before = images["disk"].read_bytes()
    calls = [lambda: fs.open("p2/new.txt", "wb"), lambda: fs.open("p2/hello.txt", "ab"),
             lambda: fs.pipe("p2/new.txt", b"x"), lambda: fs.rm("p2/hello.txt"),
             lambda: fs.rm_file("p2/hello.txt"), lambda: fs.mkdir("p2/newdir"),
             lambda: fs.makedirs("p2/a/b"), lambda: fs.rmdir("p2/sub"),
             lambda: fs.touch("p2/hello.txt"), lambda: fs.mv("p2/hello.txt", "p2/x.txt"),
             lambda: fs.cp_file("p2/hello.txt", "p2/y.txt"),
             lambda: fs.put_file(str(images["src"] / "hello.txt"), "p2/z.txt"),
             lambda: fs.put(str(images["src"] / "hello.txt"), "p2/z.txt"),
             lambda: fs.copy("p2/hello.txt", "p2/y.txt"), lambda: fs.cp("p2/sub", "p2/s2"),
             lambda: fs.rename("p2/hello.txt", "p2/x.txt"), lambda: fs.delete("p2/sub"),
             lambda: fs.makedir("p2/d"), lambda: fs.mkdirs("p2/d/e"),
             lambda: fs.write_text("p2/t.txt", "x"), lambda: fs.write_bytes("p2/t", b"x"),
             lambda: fs.pipe({"p2/a": b"x"})]
    for call in calls:
        with pytest.raises(ReadOnlyError) as e:
            call()
        assert isinstance(e.value, PermissionError)
    with pytest.raises(PermissionError):
        with fsspec.open(url("p2/new.txt", images["disk"]), "w") as f:
            f.write("x")
    assert images["disk"].read_bytes() == before


def test_close_releases_the_image_and_reopens(images):
    disk = str(images["disk"])

    def open_fds() -> int:
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return fds.count(disk)

    fs = VDInspectFileSystem(fo=disk, skip_instance_cache=True)
    base = open_fds()
    assert fs.cat_file("p2/sub/notes.txt") == b"a note\n"
    assert open_fds() == base + 1
    fs.close()
    assert open_fds() == base
    f = fs.open("p2/hello.txt")
    assert fs.cat_file("p2/sub/notes.txt") == b"a note\n"  # opened again on use
    fs.close()
    from vdinspect import VDInspectError

    with pytest.raises(VDInspectError, match="closed"):
        f.read()
    f.close()


def test_bad_image_and_bad_paths(images, tmp_path):
    from vdinspect import InvalidArgument, VDInspectError

    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\xff" * 1020)
    fs = fsspec.filesystem("vdinspect", fo=str(bad))
    with pytest.raises(VDInspectError):
        fs.ls("")
    mem = fsspec.filesystem("memory")
    mem.pipe("/bad.qcow2", bad.read_bytes())
    try:
        with pytest.raises(VDInspectError):
            fsspec.open("vdinspect://x::memory://bad.qcow2").open()
    finally:
        mem.rm("/bad.qcow2")
    empty = tmp_path / "zeros.raw"
    empty.write_bytes(bytes(1 << 16))
    fs = fsspec.filesystem("vdinspect", fo=str(empty))
    assert fs.ls("") == []
    with pytest.raises(FileNotFoundError, match="none readable"):
        fs.cat_file("x")
    with pytest.raises(InvalidArgument):
        fsspec.open("vdinspect://x?colour=red::file:///nowhere").open()
    fs = fsspec.filesystem("vdinspect", fo=str(images["disk"]))
    with pytest.raises(FileNotFoundError):
        fs.cat_file("data.csv")  # two filesystems: the partition must be named
    with pytest.raises(InvalidArgument):
        fs.cat_file("p2/sub/../data.csv")  # as vdinspect's lookup answers


def test_entry_point_and_registration():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = meta["project"]["entry-points"]["fsspec.specs"]["vdinspect"]
    module, _, name = spec.partition(":")
    assert getattr(importlib.import_module(module), name) is VDInspectFileSystem
    assert "fsspec" in meta["project"]["optional-dependencies"]
    register()
    assert fsspec.get_filesystem_class("vdinspect") is VDInspectFileSystem


def test_entry_point_registers_the_protocol_through_fsspec(images, tmp_path):
    """fsspec's own entry-point loader, fed the entry point pyproject.toml declares (in a
    throw-away dist-info, as an install would write it), finds the protocol on import."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["fsspec.specs"]
    info = tmp_path / "vdinspect_ep_check-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vdinspect-ep-check\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text(
        "[fsspec.specs]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    code = ("import fsspec, pandas as pd, vdinspect.fsspec as m\n"
            f"assert m.__file__.startswith({str(ROOT)!r}), m.__file__\n"
            "assert fsspec.get_filesystem_class('vdinspect') is m.VDInspectFileSystem\n"
            f"df = pd.read_csv({url('p2/data.csv', images['disk'])!r})\n"
            "print(len(df))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "500"


def test_pickled_filesystem_reads_again(images):
    import pickle

    fs = fsspec.filesystem("vdinspect", fo=str(images["disk"]), skip_instance_cache=True)
    assert fs.cat_file("p2/sub/notes.txt") == b"a note\n"
    again = pickle.loads(pickle.dumps(fs))
    assert again.cat_file("p2/sub/notes.txt") == b"a note\n"
    fs.close()
    again.close()


def test_import_vdinspect_does_not_import_fsspec(images):
    code = ("import sys, vdinspect\n"
            f"d = vdinspect.open({str(images['disk'])!r}); d.partitions()\n"
            "d.filesystem(2).files()\n"
            "assert 'fsspec' not in sys.modules, 'fsspec imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_file_object_source():
    import io
    import threading

    from vdinspect import InvalidArgument
    from vdinspect.io import FileObjectSource

    data = os.urandom(1 << 20)
    src = FileObjectSource(io.BytesIO(data), name="mem")
    assert src.size == len(data) and src.read(1000, 24) == data[1000:1024]
    buf = bytearray(4096)
    src.readinto(len(data) - 4096, buf)
    assert bytes(buf) == data[-4096:]
    with pytest.raises(InvalidArgument):
        src.read(len(data) - 10, 11)

    class NoReadinto:  # read/seek only
        def __init__(self, b):
            self.f = io.BytesIO(b)

        def seek(self, *a):
            return self.f.seek(*a)

        def read(self, n=-1):
            return self.f.read(min(n, 1000))  # short reads

    assert FileObjectSource(NoReadinto(data)).read(5, 5000) == data[5:5005]
    # one lock: threads reading at once each get their own bytes
    errors = []

    def reader(k):
        for i in range(200):
            off = (k * 7919 + i * 4099) % (len(data) - 512)
            if src.read(off, 512) != data[off:off + 512]:
                errors.append((k, off))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with pytest.raises(InvalidArgument):
        FileObjectSource(object())
    src.close()
    with pytest.raises(InvalidArgument):
        src.read(0, 1)
