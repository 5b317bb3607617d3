"""Parallels expandable images against qemu-img, images built from the spec, and real samples.

- qemu-img / qemu-io write v2 ("WithouFreSpacExt") images with several cluster sizes (one of
  63 sectors, not a power of two); bytes, random reads, allocation and virtual size are
  compared with ``qemu-img convert``, ``map``, ``info`` and ``check``; snapshot deltas over a
  raw base are written and read by qemu through a ``backing`` option.
- tests/parallels_builder.py writes v1 ("WithoutFreeSpace") images, data_off 0, and the
  Format Extension with dirty bitmaps; qemu-img opens them (it checks the extension), and
  qemu-nbd exports the bitmaps so ``qemu-img map`` can say which clusters are dirty.
- Real Parallels / Virtuozzo images and QEMU's negative cases come from ../shared/samples,
  with the values of its MANIFEST.md; libphdi's header fragment is parsed as well.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import vdinspect
from tests import parallels_builder as pb
from tests import qemu_tools as q
from tests.conftest import SHARED_SAMPLES, have, needs_qemu, needs_shared
from vdinspect.chain import Chain
from vdinspect.containers import parallels, registry
from vdinspect.disk import Disk
from vdinspect.errors import CorruptImage, NotRecognized, UnsupportedFeature, VDInspectError
from vdinspect.io import FileSource

K, M, G = 1 << 10, 1 << 20, 1 << 30
SAMPLES = SHARED_SAMPLES / "qemu-iotests-v7.2.0" / "sample_images"

# --- qemu-made images ---------------------------------------------------------------------------


def qemu_write(spec: str, writes: list[tuple[int, int]], seed: int, fmt="parallels") -> None:
    """qemu-io writes of random bytes (through small payload files), in the order given."""
    rng = random.Random(seed)
    args = ["qemu-io"] + (["-f", fmt] if fmt else [])
    with tempfile.TemporaryDirectory() as tmp:
        for k, (off, n) in enumerate(writes):
            p = Path(tmp) / f"payload{k}"
            p.write_bytes(rng.randbytes(n))
            args += ["-c", f"write -q -s {p} {off} {n}"]
        q.run(*args, spec)


def shuffled_writes(size: int, cluster: int, seed: int, n: int = 10) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            b = rng.randrange(0, size // cluster + 1) * cluster
            off = max(0, b - rng.randrange(1, 40) * 512)
        else:
            off = rng.randrange(0, size // 512) * 512
        length = min(size - off, rng.choice([512, 4 * K, 37 * 512, 100 * K, 300 * K]))
        if length > 0:
            out.append((off, length))
    rng.shuffle(out)
    return out


QEMU_VARIANTS = {
    # name: (cluster size, virtual size, seed)
    "c64K-5M": (64 * K, 5 * M, 1),
    "c1M-6M+512": (M, 6 * M + 512, 2),
    "c4K-2M": (4 * K, 2 * M, 3),
    "c63s-3M": (63 * 512, 3 * M + 1024, 4),  # the old 63-sector cluster: not a power of two
    "c256K-20G": (256 * K, 20 * G, 5),
}
SMALL = [n for n in QEMU_VARIANTS if QEMU_VARIANTS[n][1] < G]


class Built:
    def __init__(self, path: Path, oracle: Path | None, size: int) -> None:
        self.path, self.oracle, self.size = path, oracle, size

    def read(self, off: int, n: int) -> bytes:
        if self.oracle is None:
            return qemu_read(self.path, off, n)
        with open(self.oracle, "rb") as f:
            return os.pread(f.fileno(), n, off)


def qemu_read(path: Path, off: int, n: int) -> bytes:
    """Bytes as qemu reads them (a raw window over the image node, converted by qemu-img)."""
    out = path.parent / "qemu-read.raw"
    a, b = off // 512 * 512, -(-(off + n) // 512) * 512
    spec = f"driver=raw,offset={a},size={b - a},file.driver=parallels,file.file.filename={path}"
    q.qemu_img("convert", "-O", "raw", "--image-opts", spec, str(out))
    data = out.read_bytes()
    out.unlink()
    return data[off - a : off - a + n]


def qemu_info(path: Path) -> dict:
    return json.loads(q.qemu_img("info", "--output=json", "-f", "parallels", str(path)))


@pytest.fixture(scope="session")
def qemu_images(tmp_path_factory):
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            cs, size, seed = QEMU_VARIANTS[name]
            d = tmp_path_factory.mktemp(name)
            img = d / f"{name}.hds"
            q.qemu_img(
                "create", "-q", "-f", "parallels", "-o", f"cluster_size={cs}", str(img), str(size)
            )
            writes = shuffled_writes(min(size, 8 * M), cs, seed)
            if size > G:
                writes += [(size - M - 512, 5000), (13 * G + 7 * 512, M)]
            qemu_write(str(img), writes, seed)
            oracle = None
            if size < G:
                oracle = d / "oracle.raw"
                q.qemu_img("convert", "-f", "parallels", "-O", "raw", str(img), str(oracle))
            cache[name] = Built(img, oracle, qemu_info(img)["virtual-size"])
        return cache[name]

    return get


def random_reads(size: int, block: int, n: int = 200, seed: int = 0):
    rng = random.Random(seed)
    bounds = sorted({0, size, *range(0, min(size, 64 * block), block)})
    for i in range(n):
        if i % 10 == 9:
            off = rng.randrange(size)
            length = rng.randrange(0, min(size - off, 3 * block) + 1)
        else:
            b = rng.choice(bounds)
            span = rng.choice([3, 700, 5000, block // 2, block + 1000])
            off = max(0, b - rng.randrange(1, span + 1))
            length = min(size, b + rng.randrange(1, span + 1)) - off
        yield off, length


def assert_map_matches_qemu(disk, spec: str, nlayers: int = 1) -> None:
    """qemu's data runs are ours (same host offset, same layer); its holes are ours."""
    theirs = q.qemu_map(spec)
    ours = disk.runs()
    assert ours[-1].end == theirs[-1]["start"] + theirs[-1]["length"] == disk.size
    cuts = sorted({r.start for r in ours} | {t["start"] for t in theirs} | {disk.size})
    i = j = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        while ours[i].end <= a:
            i += 1
        while theirs[j]["start"] + theirs[j]["length"] <= a:
            j += 1
        o, t = ours[i], theirs[j]
        where = f"[{a:#x}, {b:#x}) ours={o} qemu={t}"
        if t["data"]:
            assert o.state in ("data", "backing"), where
            assert o.layer == nlayers - 1 - t["depth"], where
            if o.host_file == disk.layer_images[o.layer].path and "offset" in t:
                assert o.host_offset + (a - o.start) == t["offset"] + (a - t["start"]), where
        else:
            assert o.state == "unallocated", where


@needs_qemu
@pytest.mark.parametrize("name", SMALL)
def test_qemu_whole_disk_and_random_reads(name, qemu_images):
    built = qemu_images(name)
    cs = QEMU_VARIANTS[name][0]
    with vdinspect.open(built.path) as disk:
        assert disk.info()["format"] == "parallels"
        assert disk.size == built.size
        assert disk.read(0, disk.size) == built.oracle.read_bytes()
        for off, n in random_reads(disk.size, cs, 200, seed=len(name)):
            assert disk.read(off, n) == built.read(off, n), (off, n)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_allocation_map(name, qemu_images):
    built = qemu_images(name)
    with vdinspect.open(built.path) as disk:
        assert_map_matches_qemu(disk, str(built.path))


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_info_and_check(name, qemu_images):
    built = qemu_images(name)
    cs, size, _ = QEMU_VARIANTS[name]
    qc = q.qemu_check(built.path)
    with vdinspect.open(built.path) as disk:
        info = disk.info()
        assert info["virtual_size"] == size == built.size
        assert info["cluster_size"] == cs and info["tracks"] == cs // 512
        assert info["subformat"] == "expandable v2" and info["magic"] == "WithouFreSpacExt"
        assert info["allocated_clusters"] == qc["allocated-clusters"]
        assert info["bat_entries"] == qc["total-clusters"]
        assert info["in_use"].startswith("none")
        assert disk.check().empty, disk.check().to_dict("records")
        assert "corruptions" not in qc and "leaks" not in qc
        rows = disk.structures()
        assert rows["name"].tolist()[:2] == ["header", "BAT"]
        assert rows.loc[rows["name"] == "data", "length"].sum() == info["allocated"]
        if size > G:
            assert len(disk.runs()) < 40


@needs_qemu
def test_detected_by_magic_not_name(qemu_images, tmp_path):
    built = qemu_images("c64K-5M")
    other = tmp_path / "disk.vdi"
    shutil.copyfile(built.path, other)
    src = FileSource(other)
    try:
        assert registry.detect(src).name == "parallels"
    finally:
        src.close()


# --- qemu check on damaged copies ---------------------------------------------------------------


def patch(path: Path, at: int, fmt: str, *values) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, at, *values)
    path.write_bytes(bytes(data))


def bat(path: Path) -> list[int]:
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 32)[0]
    return list(struct.unpack_from(f"<{n}I", data, 64))


@needs_qemu
@pytest.mark.parametrize("case", ["unclean", "outside", "leak", "outside+unclean"])
def test_check_counts_like_qemu_img_check(case, qemu_images, tmp_path):
    p = tmp_path / f"{case}.hds"
    shutil.copyfile(qemu_images("c64K-5M").path, p)
    if "unclean" in case:
        patch(p, 44, "<I", parallels.INUSE_OPEN)
    if "outside" in case:
        used = [i for i, e in enumerate(bat(p)) if e]
        patch(p, 64 + 4 * used[0], "<I", 100000)
    if case == "leak":
        with open(p, "ab") as f:
            f.write(b"\xaa" * (150 * K))
    qc = q.qemu_check(p)
    strict = "outside" not in case
    if not strict:
        with pytest.raises(CorruptImage, match="past the end of the file"):
            vdinspect.open(p)
    with vdinspect.open(p, strict=strict) as disk:
        rows = disk.check()
        assert (rows["severity"] == "error").sum() == qc.get("corruptions", 0)
        leaks = rows[rows["severity"] == "leak"]
        assert len(leaks) == qc.get("leaks", 0)  # one row per leaked cluster, as qemu counts
        if qc.get("leaks"):
            assert leaks["host_offset"].iloc[0] == qc["image-end-offset"]
        if "unclean" in case:
            assert "in use (not closed correctly)" in disk.info()["flags"]


# --- snapshot deltas: an expandable image over a parent ---------------------------------------


def json_spec(child: Path, base: Path, base_fmt: str) -> str:
    return "json:" + json.dumps(
        {
            "driver": "parallels",
            "file": {"driver": "file", "filename": str(child)},
            "backing": {"driver": base_fmt, "file": {"driver": "file", "filename": str(base)}},
        }
    )


@needs_qemu
@pytest.mark.parametrize("base_fmt", ["raw", "parallels"])
def test_delta_over_parent_like_qemu_backing(base_fmt, tmp_path):
    """A delta written by qemu-io through a backing node reads the same with ``parent=``."""
    size = 4 * M
    if base_fmt == "raw":  # a "plain" Parallels disk is raw data
        base = tmp_path / "base.hds"
        base.write_bytes(random.Random(1).randbytes(size))
    else:
        base = tmp_path / "base-expanding.hds"
        q.qemu_img(
            "create", "-q", "-f", "parallels", "-o", "cluster_size=32K", str(base), str(size)
        )
        qemu_write(str(base), shuffled_writes(size, 32 * K, 2), 2)
    child = tmp_path / "delta.hds"
    q.qemu_img("create", "-q", "-f", "parallels", "-o", "cluster_size=64K", str(child), str(size))
    spec = json_spec(child, base, base_fmt)
    qemu_write(spec, shuffled_writes(size, 64 * K, 3, n=6), 3, fmt=None)
    out = tmp_path / "oracle.raw"
    q.qemu_img("convert", "-O", "raw", spec, str(out))
    want = out.read_bytes()
    src = FileSource(child)
    top = parallels.open_image(src, path=str(child), parent=base)
    assert top.parent_hint.path == str(base)
    parent = registry.open_image(str(base), format=base_fmt)
    disk = Disk(Chain([parent, top]), path=str(child))
    with disk:
        assert disk.read(0, size) == want
        for off, n in random_reads(size, 64 * K, 100, seed=4):
            assert disk.read(off, n) == want[off : off + n]
        assert_map_matches_qemu(disk, spec, nlayers=2)
        assert disk.layers()["parent_ok"].tolist()[1] is True
        assert disk.info()["parent_file"] == str(base)
    # the parent may also be given as an opened image
    with parallels.open_image(FileSource(child), path=str(child), parent=parent) as t2:
        assert t2.parent_image is parent and t2.parent_hint.path == str(base)
    parent.close()


# --- builder images: v1, data_off, the Format Extension --------------------------------------


def build(tmp_path: Path, name: str, **kw) -> tuple[Path, pb.Prl]:
    p = pb.Prl(**kw)
    return pb.write(tmp_path / name, p), p


BUILDER_VARIANTS = {
    "v1": dict(v2=False, size=3 * M + 5 * 512, cluster=32 * K),
    "v1-data_off-0": dict(v2=False, size=2 * M, cluster=16 * K, data_off=0),
    "v1-gap": dict(v2=False, size=2 * M, cluster=64 * K, data_gap=7),  # not cluster-aligned
    "v2": dict(size=5 * M, cluster=128 * K),
    "v2-bitmaps": dict(
        size=6 * M,
        cluster=8 * K,
        bitmaps=[
            pb.Bitmap(granularity=16, dirty={0, 1, 2, 5, 77, 78, 767}),
            pb.Bitmap(granularity=1, dirty=set(range(0, 12288, 5))),
            pb.Bitmap(granularity=2, dirty=set(range(6144))),  # all set: L1 entry 1
            pb.Bitmap(granularity=4, dirty=set()),  # all clear: L1 entry 0
        ],
    ),
}


@needs_qemu
@pytest.mark.parametrize("name", list(BUILDER_VARIANTS))
def test_builder_images_against_qemu(name, tmp_path):
    kw = dict(BUILDER_VARIANTS[name])
    rng = random.Random(len(name))
    n = -(-kw["size"] // kw["cluster"])
    kw["clusters"] = {
        g: rng.randbytes(rng.choice([kw["cluster"], 1000])) for g in rng.sample(range(n), n // 2)
    }
    p, spec = build(tmp_path, f"{name}.hds", **kw)
    want = pb.expected_bytes(spec)
    assert q.to_raw_bytes(p, tmp_path, fmt="parallels") == want  # qemu accepts the layout
    with vdinspect.open(p) as disk:
        assert disk.read(0, disk.size) == want
        for off, n2 in random_reads(disk.size, spec.cluster, 200, seed=len(name)):
            assert disk.read(off, n2) == want[off : off + n2]
        assert_map_matches_qemu(disk, str(p))
        info = disk.info()
        assert info["subformat"] == ("expandable v2" if spec.v2 else "expandable v1")
        rows = disk.check()
        assert rows.empty, rows.to_dict("records")
        assert q.qemu_check(p).get("corruptions", 0) == 0
        top = disk.top
        assert [b.dirty() for b in top.bitmaps] == [pb.dirty_ranges(b.dirty) for b in spec.bitmaps]
        if spec.bitmaps:
            assert info["bitmaps"][0]["id"] == str(spec.bitmaps[0].id)
            assert info["bitmaps"][0]["dirty_clusters"] == "0-2, 5, 77-78, 767"
            assert info["features"] == ["dirty bitmap"] * 4 + ["end of features"]
            assert info["extension_checksum_ok"] is True
            names = disk.structures()["name"].tolist()
            assert "format extension" in names
            # one row per bitmap (feature and L1 table), one per bitmap data cluster
            assert sum(n3.startswith("dirty bitmap") for n3 in names) == 4 + 2


def qemu_nbd_dirty(path: Path, bitmap: str, tmp: Path) -> list[tuple[int, int]]:
    """Dirty ranges (bytes, inclusive) as qemu-nbd exports a Parallels bitmap."""
    sock = tmp / "nbd.sock"
    proc = subprocess.Popen(
        ["qemu-nbd", "--persistent", "-r", "-f", "parallels", "-B", bitmap, "-k", str(sock),
         str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(200):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert sock.exists(), proc.stderr.read() if proc.poll() is not None else "no socket"
        spec = (
            f"driver=nbd,server.type=unix,server.path={sock},"
            f"x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}"
        )
        rows = json.loads(q.qemu_img("map", "--output=json", "--image-opts", spec))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # with x-dirty-bitmap, qemu-img map reports dirty areas as "data": false
    return [(r["start"], r["start"] + r["length"] - 1) for r in rows if not r["data"]]


def ours_in_bytes(bm) -> list[tuple[int, int]]:
    g = bm.granularity
    size = bm.image.size
    return [(a * g, min(size, (b + 1) * g) - 1) for a, b in bm.dirty()]


@pytest.mark.skipif(not have("qemu-nbd", "qemu-img"), reason="qemu-nbd missing")
def test_builder_bitmaps_against_qemu_nbd(tmp_path):
    spec = pb.Prl(
        size=8 * M,
        cluster=4 * K,
        bitmaps=[
            pb.Bitmap(granularity=8, dirty={3, 4, 5, 1000, 2047}),
            pb.Bitmap(granularity=1, dirty=set(range(100, 16384, 3)) | set(range(9000, 9100))),
        ],
    )
    p = pb.write(tmp_path / "bm.hds", spec)
    with vdinspect.open(p) as disk:
        for bm in disk.top.bitmaps:
            assert ours_in_bytes(bm) == qemu_nbd_dirty(p, bm.id, tmp_path), bm.id


# --- real samples ---------------------------------------------------------------------------------


def unpack(name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    out.write_bytes(bz2.decompress((SAMPLES / f"{name}.bz2").read_bytes()))
    return out


PATTERN_SHA = "15faf41ebc93b5f734341cb7a2d909001e3f7306960f9d8bc63894f2a8e5bc45"


@needs_shared
@pytest.mark.parametrize("name, magic", [("parallels-v1", "WithoutFreeSpace"),
                                         ("parallels-v2", "WithouFreSpacExt")])  # fmt: skip
def test_parallels_samples(name, magic, tmp_path):
    p = unpack(name, tmp_path)
    with vdinspect.open(p) as disk:
        info = disk.info()
        assert info["magic"] == magic and info["virtual_size"] == 2 * M
        assert info["tracks"] == 128 and info["cluster_size"] == 64 * K
        for k, b in enumerate([0x11, 0x22, 0x33, 0x44]):
            assert disk.read(k * 64 * K, 64 * K) == bytes([b]) * (64 * K)
        assert disk.read(256 * K, 2 * M - 256 * K) == bytes(2 * M - 256 * K)
        assert hashlib.sha256(disk.read(0, disk.size)).hexdigest() == PATTERN_SHA
        assert [r.state for r in disk.runs()] == ["data", "unallocated"]
        assert disk.check().empty


@needs_shared
def test_parallels_with_bitmap_sample(tmp_path):
    p = unpack("parallels-with-bitmap", tmp_path)
    with vdinspect.open(p) as disk:
        info = disk.info()
        assert info["virtual_size"] == 64 * G and info["in_use"] == "closed"
        assert info["cluster_size"] == M
        (bm,) = info["bitmaps"]
        assert bm["id"] == "e4f2eed0-37fe-4539-b50b-85d2e7fd235f"
        assert bm["granularity"] == 64 * K
        assert bm["dirty_clusters"] == "5-6, 10-12, 30"
        assert disk.top.bitmaps[0].dirty() == [(5, 6), (10, 12), (30, 30)]
        assert info["extension_checksum_ok"] is True
        # qemu-img 7.2 reports the extension and bitmap clusters as leaked; they are not
        assert disk.check().empty
        rows = disk.structures().set_index("name")
        assert rows.loc["format extension", "host_offset"] == 2 * M
        assert rows.loc["dirty bitmap e4f2eed0-37fe-4539-b50b-85d2e7fd235f data 0",
                        "host_offset"] == M  # fmt: skip
        row = rows.loc["dirty bitmap e4f2eed0-37fe-4539-b50b-85d2e7fd235f"]
        assert row["host_offset"] == 2 * M + 48 and row["length"] == 40
        assert row["description"].endswith("dirty: 5-6, 10-12, 30")
        assert [r.state for r in disk.runs()] == ["unallocated"]


@needs_shared
@pytest.mark.parametrize(
    "at, value, words",
    [
        (0x20, 0xFFFFFFFF, "catalog too large"),
        (0x20, 0x7FFFFFFF, "catalog too large"),
        (0x20, 0x1FFFFFFF, "BAT of 536870911 entries .* runs past the end"),
        (0x1C, 0, "zero sectors per track"),
        (0x1C, 0xFFFFFFFF, "too big"),
    ],
)
def test_sample_negative_cases(at, value, words, tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples absent")
    p = unpack("parallels-v1", tmp_path)
    patch(p, at, "<I", value)
    with pytest.raises(CorruptImage, match=words) as e:
        vdinspect.open(p)
    assert str(p) in str(e.value) and e.value.offset is not None


@needs_shared
def test_libphdi_header_fragment():
    data = (SHARED_SAMPLES / "libyal-fragments" / "libphdi" / "sparse_image_header.1").read_bytes()
    assert parallels.probe(data)
    h = parallels.parse_header(data)
    assert h.magic == b"WithoutFreeSpace" and h.version == 2
    assert (h.heads, h.cylinders, h.tracks) == (16, 1640, 2048)
    assert h.bat_entries == 410 and h.nb_sectors == 839680
    assert h.data_off == 2048 and h.flags == 0 and h.ext_off == 0
    assert h.bat_entries * h.tracks >= h.nb_sectors


@needs_shared
def test_libphdi_fragment_alone_is_not_a_whole_image(tmp_path):
    p = tmp_path / "header-only.hds"
    shutil.copyfile(SHARED_SAMPLES / "libyal-fragments" / "libphdi" / "sparse_image_header.1", p)
    with pytest.raises(CorruptImage, match="BAT of 410 entries"):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as disk:
        assert disk.size == 839680 * 512
        assert [r.state for r in disk.runs()] == ["damaged"]
        rows = disk.check()
        assert rows["message"].str.contains("BAT of 410 entries").any()
        assert rows["message"].str.contains("in_use is 0x32326470").any()


# --- bad input ------------------------------------------------------------------------------------


def small(tmp_path: Path, **kw) -> tuple[Path, pb.Prl]:
    rng = random.Random(7)
    kw.setdefault("size", 1 * M)
    kw.setdefault("cluster", 64 * K)
    kw.setdefault("clusters", {g: rng.randbytes(64 * K) for g in (0, 3, 5)})
    return build(tmp_path, kw.pop("name", "s.hds"), **kw)


def test_truncated_files(tmp_path):
    p, spec = small(tmp_path)
    data = p.read_bytes()
    for n in [0, 30, 63, 64, 100]:
        t = tmp_path / f"cut{n}.hds"
        t.write_bytes(data[:n])
        with pytest.raises(VDInspectError) as e:
            vdinspect.open(t, format="parallels")
        assert isinstance(e.value, CorruptImage | NotRecognized), (n, e.value)
    t = tmp_path / "cut-data.hds"
    t.write_bytes(data[: 64 * K + 64 * K + 1000])  # header+BAT cluster, one cluster and a bit
    with pytest.raises(CorruptImage, match="past the end of the file") as e:
        vdinspect.open(t)
    assert e.value.structure == "BAT"
    want = pb.expected_bytes(spec)
    with vdinspect.open(t, strict=False) as disk:
        runs = disk.runs()
        assert sum(r.state == "damaged" for r in runs) == 2
        for r in runs:
            if r.state != "damaged":
                assert disk.read(r.start, r.length) == want[r.start : r.end]
        rows = disk.check()
        assert rows["message"].str.contains("outside image").sum() == 2


def test_unsupported_version_and_magic(tmp_path):
    p, _ = small(tmp_path)
    patch(p, 16, "<I", 3)
    with pytest.raises(NotRecognized):
        vdinspect.open(p, format="parallels")
    src = FileSource(p)
    try:
        with pytest.raises(UnsupportedFeature, match="version 3"):
            parallels.open_image(src, path=str(p))
    finally:
        src.close()
    assert not parallels.probe(b"WithoutFreeSpace" + bytes(48))  # version 0


@pytest.mark.parametrize(
    "what, words",
    [
        ("bad-checksum", "checksum"),
        ("ext-past-eof", "lies outside the file"),
        ("bad-ext-magic", "magic"),
        ("bitmap-l1-past-eof", "past the end of the file"),
        ("bitmap-l1-size", "L1 table"),
        ("feature-overrun", "overruns"),
    ],
)
def test_bad_format_extension(what, words, tmp_path):
    bm = pb.Bitmap(granularity=1, dirty=set(range(0, 2048, 9)))
    p, spec = small(tmp_path, bitmaps=[bm], bad_checksum=what == "bad-checksum")
    data = bytearray(p.read_bytes())
    ext = struct.unpack_from("<Q", data, 56)[0] * 512
    cs = spec.cluster
    if what == "ext-past-eof":
        struct.pack_into("<Q", data, 56, len(data) // 512)
    elif what == "bad-ext-magic":
        data[ext] ^= 0xFF
    elif what in ("bitmap-l1-past-eof", "bitmap-l1-size", "feature-overrun"):
        feat = ext + 24
        if what == "bitmap-l1-past-eof":
            struct.pack_into("<Q", data, feat + 24 + 32, 10**9)
        elif what == "bitmap-l1-size":
            struct.pack_into("<I", data, feat + 24 + 28, 2)
        else:
            struct.pack_into("<I", data, feat + 16, cs)
        rest = bytes(data[ext + 24 : ext + cs])
        data[ext + 8 : ext + 24] = hashlib.md5(rest, usedforsecurity=False).digest()
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptImage, match=words):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as disk:  # the disk itself is fine
        assert disk.read(0, disk.size) == pb.expected_bytes(spec)
        rows = disk.check()
        assert rows["message"].str.contains(words).any()
    if have("qemu-img") and what != "bitmap-l1-past-eof":  # qemu refuses these too
        r = subprocess.run(
            ["qemu-img", "info", "-f", "parallels", str(p)], capture_output=True, text=True
        )
        assert r.returncode != 0


def test_unknown_feature_and_flags_are_reported(tmp_path):
    p, spec = small(
        tmp_path,
        extra_features=[(0x1122334455667788, 2, b"opaque data")],
        bitmaps=[pb.Bitmap(dirty={1})],
        flags=1 | 4,
        inuse=0x12345678,
    )
    with vdinspect.open(p) as disk:
        assert disk.read(0, disk.size) == pb.expected_bytes(spec)
        rows = disk.check()
        msgs = " | ".join(rows["message"])
        assert "unknown feature 0x1122334455667788" in msgs
        assert "empty-image flag" in msgs and "unknown header flags 0x4" in msgs
        assert "in_use is 0x12345678" in msgs
        assert (rows["severity"] == "warning").all()
        assert disk.info()["features"] == ["unknown", "dirty bitmap", "end of features"]
        assert "empty image" in disk.info()["flags"]


def test_duplicates_and_bat_past_size(tmp_path):
    rng = random.Random(9)
    p, spec = small(
        tmp_path,
        clusters={0: rng.randbytes(64 * K), 1: rng.randbytes(64 * K)},
        bat_entries=20,  # 1 MiB needs 16 entries; more entries are fine
    )
    bat_now = bat(p)
    patch(p, 64 + 4 * 7, "<I", bat_now[0])  # cluster 7 shares cluster 0's data
    # a cluster claimed twice: strict refuses; salvage reads the second claim as damaged
    with pytest.raises(CorruptImage, match=r"BAT entry 7 .* \(duplicate offset\)"):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as disk:
        assert disk.read(0, 64 * K) == spec.clusters[0]
        assert disk.read(7 * 64 * K, 64 * K) == bytes(64 * K)
        assert [r.state for r in disk.runs(7 * 64 * K, 64 * K)] == ["damaged"]
        rows = disk.check()
        assert rows["message"].tolist() == [
            "1 BAT entry puts its cluster at an impossible place (over the header, the BAT, "
            "the format extension or another cluster): read as damaged",
            "duplicate offset in BAT entry 7"]
    # a BAT shorter than nb_sectors: the rest reads as unallocated (QEMU: zeros or parent)
    short = tmp_path / "short.hds"
    shutil.copyfile(p, short)
    patch(short, 32, "<I", 4)
    with vdinspect.open(short) as disk:
        assert disk.size == M
        assert [r.state for r in disk.runs(2 * 64 * K)] == ["unallocated"]
        assert disk.check()["message"].str.contains("cover").any()


def exercise(path: Path, strict: bool) -> None:
    """Everything a user might call; only VDInspectError may come out."""
    try:
        with vdinspect.open(path, strict=strict) as disk:
            disk.info()
            disk.allocation()
            disk.check()
            disk.structures()
            disk.layers()
            for off in (0, disk.size // 2, max(0, disk.size - M)):
                disk.read(off, min(M, disk.size - off))
    except VDInspectError:
        pass


FIELDS = [(16, "<I"), (20, "<I"), (24, "<I"), (28, "<I"), (32, "<I"), (36, "<Q"), (44, "<I"),
          (48, "<I"), (52, "<I"), (56, "<Q"), (64, "<I"), (68, "<I"), (72, "<I")]  # fmt: skip
VALUES = [0, 1, 2, 127, 128, 511, 512, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def test_fuzzed_fields_fail_cleanly(tmp_path):
    """Header fields, BAT entries and extension bytes set to extreme values."""
    rng = random.Random(2024)
    base, _ = small(tmp_path, name="base.hds", bitmaps=[pb.Bitmap(dirty={1, 2, 9})])
    data = base.read_bytes()
    ext = struct.unpack_from("<Q", data, 56)[0] * 512
    fields = FIELDS + [(ext + k, "<Q") for k in (0, 24, 32, 40, 48, 56, 80)]
    for k in range(60):
        buf = bytearray(data)
        for at, fmt in rng.sample(fields, rng.choice([1, 1, 2, 3])):
            v = rng.choice(VALUES + [rng.getrandbits(32)])
            if fmt == "<Q" and rng.random() < 0.5:
                v = rng.getrandbits(64)
            struct.pack_into(fmt, buf, at, v)
        p = tmp_path / f"f{k}.hds"
        p.write_bytes(bytes(buf))
        exercise(p, True)
        exercise(p, False)
