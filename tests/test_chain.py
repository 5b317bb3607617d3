"""Backing chains against qemu-img: relative names, subfolders, raw bases, depth 3 and 5,
missing and moved parents, loops, and the layer= view."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu
from tests.containers.test_qcow2 import (
    Built,
    K,
    M,
    Ops,
    _opt_int,
    assert_disk_map,
    assert_files_equal,
    assert_info_matches,
    assert_layers_match,
    assert_map_matches,
    assert_random_reads,
    assert_same_bytes,
    build_oracle,
    cli,
    mk,
    qemu_map,
)

pytestmark = needs_qemu


# --- chains ------------------------------------------------------------------------------------------
# Each builder returns the top image and the layer files, base first.


def c_flat3(d: Path):
    """Three layers in one folder, relative names, overlapping writes."""
    base = mk(d / "base.qcow2", 4 * M)
    Ops(d, 1).w(0, 3 * M).run(base)
    mid = mk(d / "mid.qcow2", 4 * M, backing="base.qcow2")
    Ops(d, 2).w(64 * K, 128 * K).z(M, 64 * K).w(2 * M - 100, 200).run(mid)
    top = mk(d / "top.qcow2", 4 * M, backing="mid.qcow2")
    Ops(d, 3).w(96 * K, 64 * K).z(M + 32 * K, 128 * K).w(3 * M + 7, 50 * K).run(top)
    return top, [base, mid, top]


def c_subfolders3(d: Path):
    """top/ -> layers/mid.qcow2 -> layers/base/base.qcow2, each name relative to its image."""
    (d / "layers" / "base").mkdir(parents=True)
    (d / "top").mkdir()
    base = mk(d / "layers" / "base" / "base.qcow2", 3 * M, "cluster_size=4096")
    Ops(d, 4).w(0, 2 * M).run(base)
    mid = mk(d / "layers" / "mid.qcow2", 3 * M, "compat=0.10", backing="base/base.qcow2")
    Ops(d, 5).w(4 * K, 8 * K).w(M, 100 * K).run(mid)
    top = mk(d / "top" / "top.qcow2", 3 * M, "cluster_size=512",
             backing="../layers/mid.qcow2")
    Ops(d, 6).w(0, 6 * K).z(M + 512, 4 * K).w(2 * M + 1, 64 * K).run(top)
    return top, [base, mid, top]


def c_raw_base3(d: Path):
    """A sparse raw base, a qcow2 with extended L2 over it, a v2 top; sizes differ."""
    base = d / "base.img"
    with open(base, "wb") as f:
        f.truncate(2 * M)
        f.seek(100 * K)
        f.write(os.urandom(300 * K))
        f.seek(M + 3)
        f.write(os.urandom(500 * K))
    mid = mk(d / "mid.qcow2", 3 * M, "extended_l2=on", backing="base.img", backing_fmt="raw")
    Ops(d, 7).w(2 * K, 2 * K).z(120 * K, 4 * K).w(2 * M + 10, 10 * K).run(mid)
    top = mk(d / "top.qcow2", 4 * M, "compat=0.10", "cluster_size=16384", backing="mid.qcow2")
    Ops(d, 8).w(110 * K, 20 * K).w(3 * M, 64 * K).run(top)
    return top, [base, mid, top]


def c_deep5(d: Path):
    """Five layers, each in its own subfolder, every one writing over the others."""
    files = []
    prev = None
    for k in range(5):
        folder = d / f"l{k}"
        folder.mkdir()
        opts = ["cluster_size=" + ("4096", "65536", "32768", "2M", "8192")[k]]
        if k == 2:
            opts.append("compression_type=zstd")
        backing = None if prev is None else os.path.relpath(prev, folder)
        img = mk(folder / f"layer{k}.qcow2", 4 * M + k * 512 * K, *opts, backing=backing)
        ops = Ops(d, 10 + k).w(k * 300 * K, 400 * K).p(0x10 + k, 3 * M + k * 4 * K, 4 * K)
        if k == 2:
            ops.c(M, 64 * K)
        if k >= 1:
            ops.z((k - 1) * 300 * K + 50 * K, 64 * K)
        ops.run(img)
        files.append(img)
        prev = img
    return files[-1], files


def c_short_and_long(d: Path):
    """A base longer than its child and a child longer than its own parent."""
    base = mk(d / "base.qcow2", 5 * M)
    Ops(d, 20).w(0, 5 * M).run(base)
    mid = mk(d / "mid.qcow2", 2 * M, backing="base.qcow2")  # shorter: hides base's tail
    Ops(d, 21).w(M, 64 * K).run(mid)
    top = mk(d / "top.qcow2", 4 * M, backing="mid.qcow2")  # longer: past mid's end is zero
    Ops(d, 22).w(3 * M, 64 * K).run(top)
    return top, [base, mid, top]


def c_absolute3(d: Path):
    """Absolute backing names, the base in a folder far from the others."""
    (d / "far" / "away").mkdir(parents=True)
    (d / "near").mkdir()
    base = mk(d / "far" / "away" / "base.qcow2", 2 * M)
    Ops(d, 23).w(0, 2 * M).run(base)
    mid = mk(d / "near" / "mid.qcow2", 2 * M, backing=str(base.resolve()))
    Ops(d, 24).w(M, 64 * K).run(mid)
    top = mk(d / "near" / "top.qcow2", 2 * M, backing=str(mid.resolve()))
    Ops(d, 25).z(0, 128 * K).w(M + 32 * K, 64 * K).run(top)
    return top, [base, mid, top]


def _unrecord_backing_format(img: Path) -> None:
    """Rename the backing-format header extension so that the format must be probed."""
    data = bytearray(img.read_bytes())
    i = data.index(struct.pack(">I", 0xE2792ACA), 72)
    data[i : i + 4] = struct.pack(">I", 0x7E570000)  # an unknown, ignorable extension
    img.write_bytes(bytes(data))


def c_probed3(d: Path):
    """No backing format recorded anywhere: both readers probe."""
    base = mk(d / "base.qcow2", 2 * M, "cluster_size=4096")
    Ops(d, 26).w(0, M).run(base)
    mid = mk(d / "mid.qcow2", 2 * M, backing="base.qcow2")
    Ops(d, 27).w(512 * K, 64 * K).run(mid)
    top = mk(d / "top.qcow2", 2 * M, backing="mid.qcow2")
    Ops(d, 28).w(M - 4 * K, 8 * K).run(top)
    _unrecord_backing_format(mid)
    _unrecord_backing_format(top)
    return top, [base, mid, top]


CHAINS = {
    "absolute3": c_absolute3,
    "probed3": c_probed3,
    "flat3": c_flat3,
    "subfolders3": c_subfolders3,
    "raw-base3": c_raw_base3,
    "deep5": c_deep5,
    "short-and-long": c_short_and_long,
}


@pytest.fixture(scope="session")
def chains(tmp_path_factory):
    cache: dict[str, tuple[Built, list[Path]]] = {}

    def get(name: str):
        if name not in cache:
            d = tmp_path_factory.mktemp(name)
            top, files = CHAINS[name](d)
            oracles = tmp_path_factory.mktemp(f"{name}-oracle")
            cache[name] = (Built(top, build_oracle(top, oracles)), files)
        return cache[name]

    return get


NAMES = sorted(CHAINS)


def root(files: list[Path]) -> Path:
    """The folder holding every layer: names that leave an image's own folder (``..``,
    absolute paths) are followed only inside a folder the caller allows (``search=``)."""
    return Path(os.path.commonpath([f.parent for f in files]))


@pytest.mark.parametrize("name", NAMES)
def test_chain_bytes(name, chains, tmp_path):
    built, files = chains(name)
    with vdinspect.open(built.top, search=root(files)) as disk:
        assert len(disk.layer_images) == len(files)
        assert_same_bytes(disk, built)
        assert_random_reads(disk, built, seed=7)
        disk.to_raw(tmp_path / "out.raw")
    assert_files_equal(tmp_path / "out.raw", built.oracle)


@pytest.mark.parametrize("name", NAMES)
def test_chain_map_info_layers(name, chains):
    built, files = chains(name)
    with vdinspect.open(built.top, search=root(files)) as disk:
        assert_disk_map(disk, built, qemu_map(built.top))
        assert_info_matches(disk, built.top)
        assert_layers_match(disk, built.top)
        assert [os.path.realpath(p) for p in disk.layers()["path"]] == [
            os.path.realpath(f) for f in files
        ]


def _no_backing(path: Path, fmt: str) -> str:
    spec = {"driver": fmt, "file": {"driver": "file", "filename": str(path)}}
    if fmt == "qcow2":
        spec["backing"] = None
    return "json:" + json.dumps(spec)


@pytest.mark.parametrize("name", NAMES)
def test_own_layer_maps(name, chains, tmp_path):
    """allocation(own_layer=k): layer k's own runs, against qemu-img map of that file alone."""
    built, files = chains(name)
    with vdinspect.open(built.top, search=root(files)) as disk:
        for k, (img, f) in enumerate(zip(disk.layer_images, files)):
            alone = _no_backing(f, img.format)
            oracle = tmp_path / f"alone{k}.raw"
            q.qemu_img("convert", "-O", "raw", alone, str(oracle))
            rows = disk.allocation(own_layer=k).to_dict("records")
            for r in rows:
                assert r["state"] in ("data", "zero", "unallocated")
                assert _opt_int(r["layer"]) in (None, k)
                r["layer"] = None if r["state"] == "unallocated" else 0

            def read(off, n, oracle=oracle):
                with open(oracle, "rb") as fh:
                    return os.pread(fh.fileno(), n, off)

            qm = json.loads(q.qemu_img("map", "--output=json", alone))
            assert_map_matches(rows, [img.format], read, qm, img.size)


@pytest.mark.parametrize("name", NAMES)
def test_layer_option(name, chains, tmp_path):
    """open(p, layer=k) reads what qemu-img convert of layer k's own file gives."""
    built, files = chains(name)
    n = len(files)
    for k in [0, n // 2, n - 1, -1, -n]:
        f = files[k]
        oracle = Built(f, build_oracle(f, tmp_path, name=f"layer{k}"))
        with vdinspect.open(built.top, layer=k, search=root(files)) as disk:
            assert len(disk.layer_images) == k % n + 1
            assert_same_bytes(disk, oracle)
        with vdinspect.open(built.top, search=root(files)) as disk, disk.layer(k) as view:
            assert_same_bytes(view, oracle)
    with pytest.raises(vdinspect.InvalidArgument):
        vdinspect.open(built.top, layer=n, search=root(files))


# --- missing and moved parents, loops ------------------------------------------------------------------


def _copy_chain(name, chains, dest: Path) -> tuple[Built, list[Path]]:
    """A private copy of a chain (same relative layout) to move files around in."""
    built, files = chains(name)
    root = Path(os.path.commonpath([f.parent for f in files]))
    shutil.copytree(root, dest)
    return built, [dest / f.relative_to(root) for f in files]


def test_missing_parent_names_every_path_tried(chains, tmp_path):
    built, files = _copy_chain("subfolders3", chains, tmp_path / "c")
    mid = files[1]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(mid, moved / mid.name)
    with pytest.raises(vdinspect.MissingParent) as e:
        vdinspect.open(files[2])
    msg = str(e.value)
    assert "../layers/mid.qcow2" in msg  # the name the image records
    assert e.value.tried and all(t in msg for t in e.value.tried)
    assert str(files[2].parent / "../layers/mid.qcow2") in msg or str(mid) in msg
    r = cli("info", files[2])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert all(t in r.stderr for t in e.value.tried)
    # parents= says where the moved file is: a folder, the file itself, a mapping
    for parents in (moved, moved / mid.name, {"../layers/mid.qcow2": str(moved / mid.name)},
                    [str(moved)]):
        # the moved middle layer names base/base.qcow2 relative to its new folder: missing
        # too, unless parents also says where the base is
        with pytest.raises(vdinspect.MissingParent):
            vdinspect.open(files[2], parents=parents)
    shutil.copytree(files[0].parent, moved / "base")
    for parents in (moved, moved / mid.name, {"../layers/mid.qcow2": str(moved / mid.name)},
                    [str(moved)]):
        with vdinspect.open(files[2], parents=parents) as disk:
            assert os.path.realpath(disk.layers()["path"].iloc[1]) == str(
                (moved / mid.name).resolve())
            assert_same_bytes(disk, built)
    r = cli("info", files[2], "--parents", moved)
    assert r.returncode == 0, r.stderr


def test_moved_base_found_by_parents_list(chains, tmp_path):
    built, files = _copy_chain("deep5", chains, tmp_path / "c")
    store = tmp_path / "store"
    store.mkdir()
    shutil.move(files[0], store / files[0].name)
    with pytest.raises(vdinspect.MissingParent) as e:
        vdinspect.open(files[-1], search=tmp_path / "c")
    assert files[0].name in str(e.value)
    with vdinspect.open(files[-1], parents=[store], search=tmp_path / "c") as disk:
        assert len(disk.layer_images) == 5
        assert_same_bytes(disk, built)
    # salvage: the base is damaged
    with vdinspect.open(files[-1], strict=False, search=tmp_path / "c") as disk:
        states = set(disk.allocation()["state"])
        assert "damaged" in states
        assert (disk.check()["structure"] == "parent").any()


def _set_backing_name(img: Path, name: str) -> None:
    data = bytearray(img.read_bytes())
    off, n = struct.unpack_from(">Q", data, 8)[0], struct.unpack_from(">I", data, 16)[0]
    raw = name.encode()
    assert len(raw) == n, "keep the name length so nothing else moves"
    data[off : off + n] = raw
    img.write_bytes(bytes(data))


def test_chain_loop(tmp_path):
    mk(tmp_path / "x.qcow2", M)
    a = mk(tmp_path / "a.qcow2", M, backing="x.qcow2")
    b = mk(tmp_path / "b.qcow2", M, backing="a.qcow2")
    c = mk(tmp_path / "c.qcow2", M, backing="b.qcow2")
    _set_backing_name(a, "c.qcow2")  # a -> c -> b -> a
    (tmp_path / "x.qcow2").unlink()
    for top in (a, b, c):
        with pytest.raises(vdinspect.CorruptImage) as e:
            vdinspect.open(top)
        assert "loop" in str(e.value)
        res = cli("info", top)
        assert res.returncode == 1 and "Traceback" not in res.stderr


def test_self_loop(tmp_path):
    mk(tmp_path / "x.qcow2", M)
    a = mk(tmp_path / "a.qcow2", M, backing="x.qcow2")
    _set_backing_name(a, "a.qcow2")
    with pytest.raises(vdinspect.CorruptImage):
        vdinspect.open(a)



def test_allocation_layer_is_now_own_layer():
    """``allocation(own_layer=k)`` (one layer's own runs) is named apart from
    ``open(..., layer=k)`` (the chain cut at k); ``layer=`` still works here, with a
    DeprecationWarning, and gives the same frame."""
    import pytest

    sample = Path(__file__).resolve().parent.parent / "sample_images" / "chain-top.qcow2"
    with vdinspect.open(sample) as disk:
        new = disk.allocation(own_layer=0)
        with pytest.warns(DeprecationWarning):
            old = disk.allocation(layer=0)
        assert new.equals(old)
        assert set(new["layer"].dropna()) <= {0}
        assert not disk.allocation(own_layer=-1).equals(new)
