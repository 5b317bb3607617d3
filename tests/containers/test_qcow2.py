"""QCOW2 against qemu-img as the oracle: bytes, random reads, maps, info, layers, check.

Every image is made here by qemu-img / qemu-io; every expected value comes from
qemu-img (convert, map, info, check), never from vdinspect itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
CHUNK = 8 * M


# --- building images ------------------------------------------------------------------------


class Ops:
    """qemu-io commands for one image; random payloads go through small files (write -s)."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder
        self.rng = random.Random(seed)
        self.cmds: list[str] = []
        self.n = 0

    def _payload(self, length: int) -> Path:
        self.n += 1
        p = self.folder / f"payload-{self.n}.bin"
        p.write_bytes(self.rng.randbytes(length))
        return p

    def w(self, off: int, length: int) -> Ops:
        """Random bytes."""
        self.cmds.append(f"write -q -s {self._payload(length)} {off} {length}")
        return self

    def c(self, off: int, length: int) -> Ops:
        """Compressed write (whole clusters); half random, half repetitive."""
        p = self._payload(length)
        data = bytearray(p.read_bytes())
        data[length // 2 :] = bytes([self.rng.randrange(256)]) * (length - length // 2)
        p.write_bytes(bytes(data))
        self.cmds.append(f"write -q -c -s {p} {off} {length}")
        return self

    def p(self, byte: int, off: int, length: int) -> Ops:
        self.cmds.append(f"write -q -P {byte:#x} {off} {length}")
        return self

    def z(self, off: int, length: int, unmap: bool = False) -> Ops:
        self.cmds.append(f"write -q -z {'-u ' if unmap else ''}{off} {length}")
        return self

    def run(self, img: Path, fmt: str = "qcow2") -> Path:
        for i in range(0, len(self.cmds), 200):
            args = ["qemu-io", "-f", fmt]
            for c in self.cmds[i : i + 200]:
                args += ["-c", c]
            q.run(*args, img.name, cwd=img.parent)  # data file names are relative to cwd
        for f in self.folder.glob("payload-*.bin"):
            f.unlink()
        return img


def mk(path: Path, size, *opts: str, backing=None, backing_fmt=None) -> Path:
    """qemu-img create run in the image's folder (relative data file names land there)."""
    args = ["create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", str(backing), "-F", backing_fmt or "qcow2"]
    for o in opts:
        args += ["-o", o]
    q.qemu_img(*args, path.name, str(size), cwd=path.parent)
    return path


def raw_source(path: Path, size: int, seed: int) -> Path:
    """A raw file with random, repetitive and zero stretches (for convert -c)."""
    rng = random.Random(seed)
    buf = bytearray(size)
    pos = 0
    while pos < size:
        n = min(size - pos, rng.choice([512, 3000, 4 * K, 40 * K, 100 * K]))
        kind = rng.randrange(3)
        if kind == 0:
            buf[pos : pos + n] = rng.randbytes(n)
        elif kind == 1:
            buf[pos : pos + n] = bytes([rng.randrange(1, 256)]) * n
        pos += n
    path.write_bytes(bytes(buf))
    return path


def b_v2_4k(d: Path) -> Path:
    img = mk(d / "v2.qcow2", 5 * M, "compat=0.10", "cluster_size=4096")
    ops = Ops(d, 1).w(0, 10 * K).w(2 * M - 3 * K, 8 * K).p(0x55, 4 * M + 512, 100 * K)
    return ops.w(M - 4 * K, 80 * K).z(M, 64 * K).run(img)


def b_v2_64k_backing(d: Path) -> Path:
    base = mk(d / "base.qcow2", 4 * M, "compat=0.10")
    Ops(d, 2).w(0, M).w(3 * M - 1000, 2000).run(base)
    top = mk(d / "top.qcow2", 4 * M, "compat=0.10", backing="base.qcow2", backing_fmt="qcow2")
    return Ops(d, 3).z(128 * K, 64 * K).w(512 * K + 100, 5000).p(0x77, 3 * M, 64 * K).run(top)


def b_v3_512(d: Path) -> Path:
    img = mk(d / "c512.qcow2", M + 1000, "cluster_size=512")
    ops = Ops(d, 4).w(0, 40 * K).w(100 * K - 700, 70 * K).z(10 * K, 2 * K)
    ops.p(0xAA, 512 * K + 1, 1000).c(800 * K, 4 * K).w(M, 1000)
    return ops.run(img)


def b_v3_4k(d: Path) -> Path:
    img = mk(d / "c4k.qcow2", 5 * M, "cluster_size=4096")
    ops = Ops(d, 5).w(2 * M - 6 * K, 12 * K).z(2 * M, 4 * K).c(3 * M, 8 * K)
    return ops.p(0x31, 4 * M - 10, 20).w(100, 5000).run(img)


def b_v3_64k(d: Path) -> Path:
    img = mk(d / "c64k.qcow2", 4 * M)
    ops = Ops(d, 6).w(0, 100 * K).w(M - 7, 200 * K).p(0x42, 3 * M + 65535, 2)
    return ops.z(32 * K, 64 * K).w(4 * M - 64 * K, 64 * K).run(img)


def b_v3_2m(d: Path) -> Path:
    img = mk(d / "c2m.qcow2", 5 * M + 4 * K, "cluster_size=2M")
    ops = Ops(d, 7).w(M, 2 * M).z(4 * M, 512 * K).p(0x12, 4 * M + 512 * K, 4 * K)
    return ops.w(5 * M, 4 * K).run(img)


def b_sparse_l2_boundary(d: Path) -> Path:
    # 64 KiB clusters: one L2 table covers 512 MiB; read across it
    img = mk(d / "sparse.qcow2", 520 * M)
    return Ops(d, 8).p(0x01, 0, 4 * K).w(512 * M - 5 * K, 10 * K).run(img)


def b_zero_over_backing(d: Path) -> Path:
    base = mk(d / "base.qcow2", 4 * M)
    Ops(d, 9).w(0, 2 * M).w(3 * M, 64 * K).run(base)
    top = mk(d / "top.qcow2", 4 * M, backing="base.qcow2", backing_fmt="qcow2")
    ops = Ops(d, 10).z(64 * K, 128 * K)  # zero clusters hide the backing data
    ops.w(M, 256 * K).z(M + 64 * K, 64 * K)  # zero on allocated: preallocated zero
    ops.z(M + 128 * K + 100, 1000)  # part of a cluster: written as zeros
    ops.z(M + 192 * K, 64 * K, unmap=True)  # zero and free
    ops.z(3 * M, 64 * K).z(3 * M + 128 * K, 64 * K)
    ops.cmds.append(f"discard -q {2 * M - 128 * K} {64 * K}")  # discard over backing data
    return ops.run(top)


def b_zero_refcount1(d: Path) -> Path:
    img = mk(d / "rc1.qcow2", 2 * M, "refcount_bits=1", "cluster_size=4096")
    return Ops(d, 11).w(0, 64 * K).z(8 * K, 16 * K).z(100 * K, 8 * K).w(M, 3).run(img)


def b_refcount64(d: Path) -> Path:
    img = mk(d / "rc64.qcow2", 2 * M, "refcount_bits=64", "cluster_size=4096")
    return Ops(d, 12).w(0, 64 * K).c(M, 12 * K).run(img)


def _convert(d: Path, name: str, size: int, seed: int, *opts: str) -> Path:
    src = raw_source(d / f"{name}.src.raw", size, seed)
    out = d / name
    args = ["convert", "-q", "-c", "-f", "raw", "-O", "qcow2"]
    for o in opts:
        args += ["-o", o]
    q.qemu_img(*args, str(src), str(out))
    src.unlink()
    return out


def b_zlib_convert(d: Path) -> Path:
    return _convert(d, "zlib.qcow2", 3 * M + 5000, 13)


def b_zstd_convert(d: Path) -> Path:
    return _convert(d, "zstd.qcow2", 3 * M, 14, "compression_type=zstd")


def b_zlib_convert_512(d: Path) -> Path:
    return _convert(d, "zlib512.qcow2", 600 * K, 15, "cluster_size=512")


def b_zlib_convert_4k(d: Path) -> Path:
    return _convert(d, "zlib4k.qcow2", 2 * M, 16, "cluster_size=4096")


def b_zstd_convert_2m(d: Path) -> Path:
    return _convert(d, "zstd2m.qcow2", 5 * M, 17, "cluster_size=2M", "compression_type=zstd")


def b_zlib_qemu_io(d: Path) -> Path:
    img = mk(d / "wc.qcow2", 2 * M)
    ops = Ops(d, 18).c(0, 128 * K).w(256 * K, 64 * K).c(512 * K, 64 * K)
    return ops.w(512 * K + 1000, 100).c(M + 64 * K, 64 * K).run(img)


def b_frag_mixed(d: Path) -> Path:
    # host order B, A; guest order A, compressed, B: fragmentation counting across compressed
    img = mk(d / "frag.qcow2", M)
    return Ops(d, 30).w(128 * K, 64 * K).w(0, 64 * K).c(64 * K, 64 * K).run(img)


def b_zstd_qemu_io(d: Path) -> Path:
    img = mk(d / "wcz.qcow2", 2 * M, "compression_type=zstd", "cluster_size=4096")
    ops = Ops(d, 19).c(0, 32 * K).w(40 * K, 4 * K).c(M, 4 * K).c(M + 8 * K, 8 * K)
    return ops.z(4 * K, 4 * K).run(img)


def b_extl2_backing(d: Path) -> Path:
    base = mk(d / "base.qcow2", 4 * M)
    Ops(d, 20).w(0, 2 * M).run(base)
    top = mk(d / "top.qcow2", 4 * M, "extended_l2=on", backing="base.qcow2", backing_fmt="qcow2")
    ops = Ops(d, 21).w(2 * K, 2 * K).w(64 * K + 6 * K, 4 * K).z(128 * K + 2 * K, 2 * K)
    ops.z(192 * K, 64 * K).w(M + 1000, 3000).c(M + 512 * K, 64 * K).w(2 * M + 512 * K, 2 * K)
    ops.z(64 * K + 8 * K, 2 * K)  # zero a sub-cluster of an allocated cluster
    return ops.z(2 * M + 256 * K + 4 * K, 6 * K).p(0x66, 3 * M + 62 * K, 4 * K).run(top)


def b_extl2_32k(d: Path) -> Path:
    img = mk(d / "xl2.qcow2", 3 * M, "extended_l2=on", "cluster_size=32768")
    ops = Ops(d, 22).w(K, K).w(40 * K, 3 * K).z(40 * K + K, K).w(M - 500, 1000)
    return ops.z(2 * M, 64 * K).c(2 * M + 128 * K, 32 * K).run(img)


def b_data_file(d: Path) -> Path:
    img = mk(d / "df.qcow2", 3 * M, "data_file=df.data")
    return Ops(d, 23).w(0, 100 * K).w(M + 10, 300 * K).z(32 * K, 64 * K).run(img)


def b_data_file_raw(d: Path) -> Path:
    img = mk(d / "dfr.qcow2", 3 * M, "data_file=dfr.data", "data_file_raw=on")
    return Ops(d, 24).w(0, 100 * K).w(M + 10, 300 * K).z(32 * K, 64 * K).run(img)


def b_raw_backing(d: Path) -> Path:
    base = d / "base.raw"
    with open(base, "wb") as f:
        f.truncate(3 * M)
        rng = random.Random(25)
        for off in (0, 700 * K, 2 * M + 123):
            f.seek(off)
            f.write(rng.randbytes(150 * K))
    top = mk(d / "top.qcow2", 4 * M, backing="base.raw", backing_fmt="raw")
    return Ops(d, 26).w(64 * K, 64 * K).z(700 * K, 64 * K).w(3 * M - 10, 1000).run(top)


def b_shuffled(d: Path, cluster: int, n: int, seed: int) -> Path:
    size = 2 * M
    img = mk(d / f"shuffled{cluster}.qcow2", size, f"cluster_size={cluster}")
    rng = random.Random(seed)
    slots = rng.sample(range(size // cluster), n)
    ops = Ops(d, seed + 1)
    for s in slots:
        if rng.random() < 0.8:
            ops.w(s * cluster, cluster)
        else:
            ops.p(rng.randrange(1, 256), s * cluster, cluster)
    return ops.run(img)


def b_shuffled_4k(d: Path) -> Path:
    return b_shuffled(d, 4096, 300, 27)


def b_shuffled_512(d: Path) -> Path:
    return b_shuffled(d, 512, 400, 28)


def b_shuffled_64k(d: Path) -> Path:
    return b_shuffled(d, 64 * K, 20, 29)


def b_bitmaps(d: Path) -> Path:
    img = mk(d / "bm.qcow2", 4 * M, "cluster_size=4096")
    q.qemu_img("bitmap", "--add", "-g", "16k", img.name, "b0", cwd=d)
    q.qemu_img("bitmap", "--add", img.name, "b1", "--disable", cwd=d)
    return Ops(d, 31).w(0, 100 * K).p(0x4, 3 * M, 8 * K).run(img)


def b_prealloc(d: Path, mode: str) -> Path:
    img = mk(d / f"pre-{mode}.qcow2", 2 * M, f"preallocation={mode}", "cluster_size=4096")
    return Ops(d, 32).w(100 * K, 10 * K).z(M, 8 * K).run(img)


def b_prealloc_metadata(d: Path) -> Path:
    return b_prealloc(d, "metadata")


def b_prealloc_falloc(d: Path) -> Path:
    return b_prealloc(d, "falloc")


def b_shrunk(d: Path) -> Path:
    img = mk(d / "shrunk.qcow2", 4 * M, "cluster_size=4096")
    Ops(d, 33).w(0, 3 * M).run(img)
    q.qemu_img("resize", "-q", "--shrink", img.name, str(2 * M + 5 * 512), cwd=d)
    return img


def b_lazy_dirty(d: Path) -> Path:
    # lazy refcounts, then qemu-io aborts: dirty bit set and refcounts really stale
    img = mk(d / "lazy.qcow2", M, "lazy_refcounts=on", "cluster_size=4096")
    cmds = ["write -q -P 0x5 0 64k", "write -q -P 0x6 512k 8k", "flush", "abort"]
    args = ["qemu-io", "-f", "qcow2"] + [x for c in cmds for x in ("-c", c)] + [img.name]
    r = subprocess.run(args, cwd=d, capture_output=True)
    assert r.returncode != 0  # it aborted, as asked
    return img


VARIANTS = {
    "v2-4k": b_v2_4k,
    "v2-64k-backing": b_v2_64k_backing,
    "v3-512": b_v3_512,
    "v3-4k": b_v3_4k,
    "v3-64k": b_v3_64k,
    "v3-2m": b_v3_2m,
    "sparse-l2-boundary": b_sparse_l2_boundary,
    "zero-over-backing": b_zero_over_backing,
    "refcount1-zero": b_zero_refcount1,
    "refcount64": b_refcount64,
    "zlib-convert": b_zlib_convert,
    "zstd-convert": b_zstd_convert,
    "zlib-convert-512": b_zlib_convert_512,
    "zlib-convert-4k": b_zlib_convert_4k,
    "zstd-convert-2m": b_zstd_convert_2m,
    "zlib-qemu-io": b_zlib_qemu_io,
    "zstd-qemu-io": b_zstd_qemu_io,
    "frag-mixed": b_frag_mixed,
    "lazy-dirty": b_lazy_dirty,
    "bitmaps": b_bitmaps,
    "prealloc-metadata": b_prealloc_metadata,
    "prealloc-falloc": b_prealloc_falloc,
    "shrunk": b_shrunk,
    "extl2-backing": b_extl2_backing,
    "extl2-32k": b_extl2_32k,
    "data-file": b_data_file,
    "data-file-raw": b_data_file_raw,
    "raw-backing": b_raw_backing,
    "shuffled-4k": b_shuffled_4k,
    "shuffled-512": b_shuffled_512,
    "shuffled-64k": b_shuffled_64k,
}


class Built:
    """An image and its oracle: qemu-img convert -O raw output kept as a file."""

    def __init__(self, top: Path, oracle: Path) -> None:
        self.top = top
        self.oracle = oracle
        self.size = oracle.stat().st_size

    def oracle_read(self, off: int, n: int) -> bytes:
        with open(self.oracle, "rb") as f:
            return os.pread(f.fileno(), n, off)


def build_oracle(top: Path, folder: Path, snapshot: str | None = None, name: str = "") -> Path:
    out = folder / f"{name or top.name}.oracle.raw"
    args = ["convert"]
    if snapshot is not None:
        args += ["-l", f"snapshot.name={snapshot}"]
    q.qemu_img(*args, "-O", "raw", str(top), str(out), cwd=top.parent)
    return out


@pytest.fixture(scope="session")
def variants(tmp_path_factory):
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            d = tmp_path_factory.mktemp(name)
            top = VARIANTS[name](d)
            oracle_dir = tmp_path_factory.mktemp(f"{name}-oracle")
            cache[name] = Built(top, build_oracle(top, oracle_dir))
        return cache[name]

    return get


# --- comparing with the oracle ------------------------------------------------------------------


def assert_same_bytes(disk, built: Built) -> None:
    """Disk.read over the whole disk (in one call when small) equals qemu-img convert."""
    assert disk.size == built.size
    if built.size <= 64 * M:
        data = disk.read(0, built.size)
        assert data == built.oracle_read(0, built.size)
        return
    for pos in range(0, built.size, CHUNK):
        n = min(CHUNK, built.size - pos)
        assert disk.read(pos, n) == built.oracle_read(pos, n), f"chunk at {pos:#x}"


def assert_files_equal(a: Path, b: Path) -> None:
    assert a.stat().st_size == b.stat().st_size
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            assert x == y
            if not x:
                break


def boundaries(disk) -> list[int]:
    """Cluster, sub-cluster and L2-table boundaries of every layer, inside the disk."""
    out = {0, disk.size}
    for img in disk.layer_images:
        cs = getattr(img, "cluster_size", None)
        if not cs:
            continue
        steps = [cs, getattr(img, "subcluster_size", cs)]
        l2 = getattr(img, "l2_entries", None)
        if l2:
            steps.append(cs * l2)
        for step in steps:
            if disk.size // step <= 4096:
                out.update(range(0, disk.size + 1, step))
            else:
                out.update(range(0, 4096 * step, step))
    return sorted(b for b in out if 0 <= b <= disk.size)


def random_reads(disk, n: int = 200, seed: int = 0):
    """(offset, length) pairs that straddle cluster and L2 boundaries, plus a few anywhere."""
    rng = random.Random(seed)
    bounds = boundaries(disk)
    small = min(64 * K, max(512, min(getattr(i, "cluster_size", 0) or 64 * K for i in
                                     disk.layer_images)))
    out = []
    for i in range(n):
        if i % 10 == 9:
            off = rng.randrange(disk.size)
            length = rng.randrange(0, min(disk.size - off, 4 * small) + 1)
        else:
            b = rng.choice(bounds)
            before = rng.randrange(1, 2 * small)
            after = rng.randrange(1, 2 * small)
            off = max(0, b - before)
            length = min(disk.size, b + after) - off
        out.append((off, length))
    return out


def assert_random_reads(disk, built: Built, seed: int = 0) -> None:
    for off, length in random_reads(disk, 200, seed):
        assert disk.read(off, length) == built.oracle_read(off, length), (off, length)


def _kind(state: str) -> str:
    return {"data": "data", "backing": "data", "zero": "zero"}.get(state, state)


def _opt_int(v):
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v)


def assert_map_matches(rows: list[dict], formats: list[str], oracle_read, qemu_map: list[dict],
                       size: int) -> None:
    """Our allocation rows against qemu-img map, per byte.

    Compared: data vs not, zero vs unallocated, the supplying layer, host offsets. qemu
    reports a host-file hole inside allocated data as zero (and a raw base's hole as
    zero); that is accepted where the oracle bytes are zero. qemu's map gives compressed
    data no offset.
    """
    assert rows[0]["start"] == 0 and rows[-1]["end"] == size
    for x, y in zip(rows, rows[1:]):
        assert x["end"] == y["start"] and x["end"] - x["start"] == x["length"]
    theirs = q.qemu_intervals(qemu_map, len(formats))
    assert theirs[0][0] == 0 and theirs[-1][1] == size
    cuts = sorted({r["start"] for r in rows} | {t[0] for t in theirs} | {size})
    i = j = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        while rows[i]["end"] <= a:
            i += 1
        while theirs[j][1] <= a:
            j += 1
        o, t, e = rows[i], theirs[j], qemu_map[j]
        o_kind, t_kind, t_layer = _kind(o["state"]), t[2], t[3]
        o_layer = None if o_kind == "unallocated" else _opt_int(o["layer"])
        where = f"[{a:#x}, {b:#x}) ours={o['state']}@{o_layer} qemu={t_kind}@{t_layer}"
        if o_kind == "data" and t_kind == "zero" and o_layer == t_layer:
            assert oracle_read(a, b - a) == bytes(b - a), where
            continue
        if o_kind == "unallocated" and t_kind == "zero" and formats[t_layer] == "raw":
            assert oracle_read(a, b - a) == bytes(b - a), where
            continue
        assert (o_kind, o_layer) == (t_kind, t_layer), where
        if o_kind == "data":
            assert bool(o["compressed"]) == ("offset" not in e), where
            if "offset" in e:
                host = _opt_int(o["host_offset"])
                assert host + (a - o["start"]) == e["offset"] + (a - e["start"]), where


def assert_disk_map(disk, built: Built, qemu_map: list[dict]) -> None:
    rows = disk.allocation().to_dict("records")
    formats = [img.format for img in disk.layer_images]
    assert_map_matches(rows, formats, built.oracle_read, qemu_map, disk.size)


def qemu_info(path: Path, chain: bool = False):
    args = ["info", "--output=json"] + (["--backing-chain"] if chain else [])
    return json.loads(q.qemu_img(*args, str(path), cwd=Path(path).parent))


def qemu_map(path: Path, *opts: str) -> list[dict]:
    return json.loads(q.qemu_img("map", "--output=json", *opts, str(path), cwd=Path(path).parent))


def qemu_check(path: Path) -> dict:
    r = subprocess.run(["qemu-img", "check", "--output=json", str(path)], capture_output=True,
                       text=True, cwd=Path(path).parent)
    assert r.stdout.strip(), r.stderr
    return json.loads(r.stdout)


def assert_info_matches(disk, path: Path) -> None:
    info = disk.info()
    qi = qemu_info(path)
    assert info["virtual_size"] == qi["virtual-size"]
    assert info["cluster_size"] == qi["cluster-size"]
    assert info["format"] == qi["format"]
    assert info["backing_file"] == qi.get("backing-filename")
    assert info["backing_format"] == qi.get("backing-filename-format")
    if "full-backing-filename" in qi:
        assert os.path.realpath(info["parent"]) == os.path.realpath(qi["full-backing-filename"])
    else:
        assert info["parent"] is None
    assert bool(info["dirty"]) == qi.get("dirty-flag", False)
    spec = qi["format-specific"]["data"]
    assert info["compat"] == spec["compat"]
    assert info["subformat"] == ("v2" if spec["compat"] == "0.10" else "v3")
    assert info["refcount_bits"] == spec["refcount-bits"]
    assert info["lazy_refcounts"] == spec.get("lazy-refcounts", False)
    assert info["corrupt"] == spec.get("corrupt", False)
    assert info["extended_l2"] == spec.get("extended-l2", False)
    if "compression-type" in spec:
        assert info["compression_type"] == spec["compression-type"]
    assert info["data_file"] == spec.get("data-file")
    if "data-file-raw" in spec:
        assert info["data_file_raw"] == spec["data-file-raw"]
    assert info["snapshots"] == len(qi.get("snapshots", []))
    assert info["bitmaps"] == [b["name"] for b in spec.get("bitmaps", [])]


def assert_layers_match(disk, path: Path) -> None:
    df = disk.layers()
    chain = qemu_info(path, chain=True)[::-1]  # qemu lists the top first
    assert len(df) == len(chain) == disk.info()["layers"]
    assert list(df["layer"]) == list(range(len(chain)))
    for row, qi in zip(df.itertuples(index=False), chain):
        assert os.path.realpath(row.path) == os.path.realpath(qi["filename"])
        assert row.format == qi["format"]
        assert row.virtual_size == qi["virtual-size"]
    for k in range(1, len(df)):
        assert df["parent_path"].iloc[k] == df["path"].iloc[k - 1]
        assert df["parent_ok"].iloc[k]


def check_counts(disk) -> tuple[int, int]:
    """Errors and leaks of the image's own check (what qemu-img check counts): the rows
    of the partition tables, ``layer`` NA, are not qemu's business."""
    df = disk.check()
    df = df[df["layer"].notna()]
    return int((df["severity"] == "error").sum()), int((df["severity"] == "leak").sum())


def assert_check_matches(disk, path: Path) -> dict:
    qc = qemu_check(path)
    assert "check-errors" in qc, qc
    ours = check_counts(disk)
    assert ours == (qc.get("corruptions", 0), qc.get("leaks", 0)), (
        disk.check().to_dict("records"),
        qc,
    )
    return qc


def assert_summary_matches(disk, qc: dict) -> None:
    s = disk.top.check_summary()
    assert s["allocated_clusters"] == qc.get("allocated-clusters", 0)
    assert s["compressed_clusters"] == qc.get("compressed-clusters", 0)
    assert s["fragmented_clusters"] == qc.get("fragmented-clusters", 0)
    assert s["total_clusters"] == qc["total-clusters"]


# --- every variant, every comparison ------------------------------------------------------------

NAMES = sorted(VARIANTS)


@pytest.mark.parametrize("name", NAMES)
def test_whole_disk_bytes(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        assert_same_bytes(disk, built)


@pytest.mark.parametrize("name", NAMES)
def test_to_raw(name, variants, tmp_path):
    built = variants(name)
    out = tmp_path / "out.raw"
    with vdinspect.open(built.top) as disk:
        written = disk.to_raw(out)
    assert_files_equal(out, built.oracle)
    assert 0 <= written <= built.size


@pytest.mark.parametrize("name", NAMES)
def test_random_reads(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        assert_random_reads(disk, built, seed=len(name))


@pytest.mark.parametrize("name", NAMES)
def test_allocation_map(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        assert_disk_map(disk, built, qemu_map(built.top))


@pytest.mark.parametrize("name", NAMES)
def test_info(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        assert_info_matches(disk, built.top)


@pytest.mark.parametrize("name", NAMES)
def test_layers(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        assert_layers_match(disk, built.top)


@pytest.mark.parametrize("name", NAMES)
def test_check(name, variants):
    built = variants(name)
    with vdinspect.open(built.top) as disk:
        qc = assert_check_matches(disk, built.top)
        assert_summary_matches(disk, qc)
        if name == "lazy-dirty":
            assert check_counts(disk)[0] > 0  # stale refcounts are reported, as QEMU does
            assert "dirty" in disk.info()["flags"]
        else:
            assert check_counts(disk) == (0, 0), qc


# --- check() against qemu-img check on damaged copies ---------------------------------------------


class Raw:
    """Just enough independent QCOW2 parsing (struct, from the spec) to damage a copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.b = bytearray(path.read_bytes())
        self.cluster_bits = self.u32(20)
        self.cs = 1 << self.cluster_bits
        self.l1_size = self.u32(36)
        self.l1_off = self.u64(40)
        self.reft_off = self.u64(48)
        v3 = self.u32(4) >= 3
        self.refcount_bits = 1 << self.u32(96) if v3 else 16  # v2: always 16 bits
        self.l2_entries = self.cs // 8

    def u32(self, off: int) -> int:
        return struct.unpack_from(">I", self.b, off)[0]

    def u64(self, off: int) -> int:
        return struct.unpack_from(">Q", self.b, off)[0]

    def put64(self, off: int, v: int) -> None:
        struct.pack_into(">Q", self.b, off, v)

    def l1(self, i: int) -> int:
        return self.u64(self.l1_off + 8 * i)

    def l2_entry_at(self, i: int, j: int) -> int:
        """Host offset of L2 entry j of the table that L1 entry i points to."""
        return (self.l1(i) & 0x00FFFFFFFFFFFE00) + 8 * j

    def entries(self, compressed: bool | None = False):
        """(where, entry) of every allocated L2 entry in the active tables."""
        out = []
        for i in range(self.l1_size):
            if not self.l1(i) & 0x00FFFFFFFFFFFE00:
                continue
            for j in range(self.l2_entries):
                where = self.l2_entry_at(i, j)
                e = self.u64(where)
                is_comp = bool(e & (1 << 62))
                if not e or (compressed is not None and is_comp != compressed):
                    continue
                if not is_comp and not e & 0x00FFFFFFFFFFFE00:
                    continue
                out.append((where, e))
        return out

    def refcount_pos(self, cluster: int) -> tuple[int, int, int]:
        """(byte offset, bit shift, bit width) of a cluster's refcount entry."""
        per_block = self.cs * 8 // self.refcount_bits
        block = self.u64(self.reft_off + 8 * (cluster // per_block)) & ~0x1FF
        assert block, "no refcount block for that cluster"
        bit = (cluster % per_block) * self.refcount_bits
        return block + bit // 8, bit % 8, self.refcount_bits

    def set_refcount(self, cluster: int, value: int) -> None:
        pos, shift, width = self.refcount_pos(cluster)
        if width >= 8:
            self.b[pos : pos + width // 8] = value.to_bytes(width // 8, "big")
        else:
            mask = ((1 << width) - 1) << shift
            self.b[pos] = (self.b[pos] & ~mask) | (value << shift)

    def get_refcount(self, cluster: int) -> int:
        pos, shift, width = self.refcount_pos(cluster)
        if width >= 8:
            return int.from_bytes(self.b[pos : pos + width // 8], "big")
        return (self.b[pos] >> shift) & ((1 << width) - 1)

    def save(self, path: Path) -> Path:
        path.write_bytes(bytes(self.b))
        return path


MASK = 0x00FFFFFFFFFFFE00
COPIED = 1 << 63


def dmg_leak_extra_cluster(r: Raw) -> None:
    n = len(r.b) // r.cs + (1 if len(r.b) % r.cs else 0)
    r.b.extend(bytes(n * r.cs - len(r.b) + r.cs))
    r.set_refcount(n, 1)


def dmg_bump_used_refcount(r: Raw) -> None:
    _, e = r.entries()[1]
    c = (e & MASK) // r.cs
    r.set_refcount(c, r.get_refcount(c) + 1)


def dmg_zero_used_refcount(r: Raw) -> None:
    _, e = r.entries()[2]
    r.set_refcount((e & MASK) // r.cs, 0)


def dmg_zero_l2_table_refcount(r: Raw) -> None:
    r.set_refcount((r.l1(0) & MASK) // r.cs, 0)


def dmg_l2_duplicate(r: Raw) -> None:
    (_, e0), (w1, _) = r.entries()[:2]
    r.put64(w1, e0)  # two guest clusters now share one host cluster


def dmg_l2_misaligned(r: Raw) -> None:
    w, e = r.entries()[3]
    r.put64(w, e + 512)


def dmg_l2_past_eof(r: Raw) -> None:
    w, e = r.entries()[0]
    far = (len(r.b) // r.cs + 10) * r.cs
    r.put64(w, (e & ~MASK) | far)


def dmg_l2_into_l1(r: Raw) -> None:
    w, e = r.entries()[1]
    r.put64(w, (e & ~MASK) | r.l1_off)


def dmg_l2_into_refblock(r: Raw) -> None:
    w, e = r.entries()[1]
    r.put64(w, (e & ~MASK) | (r.u64(r.reft_off) & MASK))


def dmg_l2_reserved_bit(r: Raw) -> None:
    w, e = r.entries()[0]
    r.put64(w, e | 2)


def dmg_l1_misaligned(r: Raw) -> None:
    r.put64(r.l1_off, r.l1(0) + 512)


def dmg_l1_dropped(r: Raw) -> None:
    r.put64(r.l1_off + 8, 0)  # the second L2 table and its data leak


def dmg_l1_reserved_bit(r: Raw) -> None:
    r.put64(r.l1_off, r.l1(0) | 4)


def dmg_compressed_copied(r: Raw) -> None:
    w, e = r.entries(compressed=True)[0]
    r.put64(w, e | COPIED)


def dmg_copied_cleared(r: Raw) -> None:
    w, e = r.entries()[0]
    r.put64(w, e & ~COPIED)


def dmg_refblock_past_eof(r: Raw) -> None:
    r.put64(r.reft_off, (len(r.b) // r.cs + 100) * r.cs)


def dmg_refblock_misaligned(r: Raw) -> None:
    r.put64(r.reft_off, r.u64(r.reft_off) + 512)


def dmg_truncated_data(r: Raw) -> None:
    last = max(e & MASK for _, e in r.entries())
    del r.b[last:]  # the last data cluster is gone


def dmg_truncated_tail(r: Raw) -> None:
    last = max(e & MASK for _, e in r.entries())
    del r.b[last + 100 :]  # QEMU tolerates a short last cluster


DAMAGES = {f.__name__[4:]: f for f in [
    dmg_leak_extra_cluster, dmg_bump_used_refcount, dmg_zero_used_refcount,
    dmg_zero_l2_table_refcount, dmg_l2_duplicate, dmg_l2_misaligned, dmg_l2_past_eof,
    dmg_l2_into_l1, dmg_l2_into_refblock, dmg_l2_reserved_bit, dmg_l1_misaligned,
    dmg_l1_dropped, dmg_l1_reserved_bit, dmg_compressed_copied, dmg_copied_cleared,
    dmg_refblock_past_eof, dmg_refblock_misaligned, dmg_truncated_data, dmg_truncated_tail,
]}
HARMLESS = {"truncated_tail"}


@pytest.fixture(scope="session")
def damage_bases(tmp_path_factory):
    """Clean images with two L2 tables, data in both, and a compressed cluster."""
    out = {}
    for cs, rbits in ((4096, 16), (65536, 8)):
        d = tmp_path_factory.mktemp(f"damage{cs}")
        span = cs * cs // 8
        img = mk(d / "clean.qcow2", span + 64 * cs, f"cluster_size={cs}",
                 f"refcount_bits={rbits}")
        ops = Ops(d, cs).w(0, 3 * cs).w(5 * cs, cs).c(8 * cs, cs).w(span + cs, 2 * cs)
        out[cs] = ops.w(10 * cs, cs).run(img)
    return out


@pytest.mark.parametrize("cs", [4096, 65536])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_check_damaged(damage, cs, damage_bases, tmp_path):
    r = Raw(damage_bases[cs])
    DAMAGES[damage](r)
    bad = r.save(tmp_path / "damaged.qcow2")
    qc = qemu_check(bad)
    if damage not in HARMLESS:
        assert qc.get("corruptions", 0) + qc.get("leaks", 0) > 0, qc  # the damage is real
    with vdinspect.open(bad) as disk:
        assert_check_matches(disk, bad)
        if qc.get("check-errors"):  # QEMU could not read some refcounts: we say so too
            assert (disk.check()["severity"] == "warning").any()


# --- header flags: dirty and corrupt bits ----------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3], ids=["dirty", "corrupt", "dirty+corrupt"])
def test_dirty_and_corrupt_bits(bits, variants, tmp_path):
    built = variants("v3-64k")
    img = tmp_path / "flagged.qcow2"
    data = bytearray(built.top.read_bytes())
    feats = struct.unpack_from(">Q", data, 72)[0]
    struct.pack_into(">Q", data, 72, feats | bits)
    img.write_bytes(bytes(data))
    qi = qemu_info(img)
    qc = qemu_check(img)
    with vdinspect.open(img) as disk:
        info = disk.info()
        assert info["dirty"] == qi["dirty-flag"] == bool(bits & 1)
        assert info["corrupt"] == qi["format-specific"]["data"]["corrupt"] == bool(bits & 2)
        assert ("dirty" in info["flags"]) == bool(bits & 1)
        assert ("corrupt" in info["flags"]) == bool(bits & 2)
        df = disk.check()
        warned = " ".join(df.loc[df["severity"] == "warning", "message"])
        assert ("dirty" in warned) == bool(bits & 1)
        assert ("corrupt" in warned) == bool(bits & 2)
        assert check_counts(disk) == (qc.get("corruptions", 0), qc.get("leaks", 0))
        assert disk.read(0, disk.size) == built.oracle_read(0, built.size)  # still readable


# --- encrypted images --------------------------------------------------------------------------------


def _make_encrypted(d: Path, kind: str) -> tuple[Path, str]:
    secret = ["--object", "secret,id=sec0,data=abc"]
    img = d / f"{kind}.qcow2"
    if kind == "aes":
        opts = "encryption=on,encrypt.key-secret=sec0"
    else:
        opts = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
    for _ in range(3):  # LUKS key setup times PBKDF2 and can fail on a coarse CPU clock
        r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *secret, "-o", opts,
                            img.name, "1M"], cwd=d, capture_output=True, text=True)
        if r.returncode == 0:
            return img, "qemu-img"
    # qemu-img refused: take a plain image and set crypt_method in a copy
    plain = mk(d / "plain.qcow2", M)
    data = bytearray(plain.read_bytes())
    struct.pack_into(">I", data, 32, 1 if kind == "aes" else 2)
    img.write_bytes(bytes(data))
    return img, "patched"


@pytest.mark.parametrize("kind", ["aes", "luks"])
def test_encrypted(kind, tmp_path):
    img, how = _make_encrypted(tmp_path, kind)
    method = struct.unpack(">I", img.read_bytes()[32:36])[0]
    assert method == (1 if kind == "aes" else 2), how
    with pytest.raises(vdinspect.EncryptedImage) as e:
        vdinspect.open(img)
    assert str(img) in str(e.value) and ("AES" if kind == "aes" else "LUKS") in str(e.value)
    r = cli("info", img)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "encrypt" in r.stderr


# --- internal snapshots ------------------------------------------------------------------------------


def _snapshot(img: Path, name: str) -> None:
    q.qemu_img("snapshot", "-c", name, img.name, cwd=img.parent)


@pytest.fixture(scope="session")
def snap_images(tmp_path_factory):
    """Images with internal snapshots and writes (and a resize) between them."""
    out = {}
    # v3 over a backing file, with a resize after the first snapshot
    d = tmp_path_factory.mktemp("snap-v3")
    base = mk(d / "base.qcow2", 4 * M)
    Ops(d, 40).w(0, 2 * M).run(base)
    img = mk(d / "snap.qcow2", 3 * M, backing="base.qcow2", backing_fmt="qcow2")
    Ops(d, 41).w(0, 64 * K).p(0x21, 2 * M, 8 * K).run(img)
    _snapshot(img, "first")
    q.qemu_img("resize", "-q", img.name, str(4 * M), cwd=d)
    Ops(d, 42).w(64 * K, 64 * K).z(0, 32 * K).c(M, 64 * K).w(3 * M + 5, 100).run(img)
    _snapshot(img, "second")
    Ops(d, 43).w(0, 300 * K).z(M, 64 * K).run(img)
    _snapshot(img, "third")
    Ops(d, 44).w(2 * M, 300 * K).run(img)  # the current state differs from every snapshot
    out["v3-backing"] = img
    # v2, 4 KiB clusters, no backing
    d = tmp_path_factory.mktemp("snap-v2")
    img = mk(d / "snap2.qcow2", 2 * M, "compat=0.10", "cluster_size=4096")
    Ops(d, 45).w(0, 100 * K).run(img)
    _snapshot(img, "a")
    Ops(d, 46).w(50 * K, 100 * K).run(img)
    _snapshot(img, "b b")  # a name with a space
    Ops(d, 47).p(0x33, 0, 10 * K).run(img)
    out["v2"] = img
    return out


def snapshot_oracle(img: Path, ident: str, folder: Path, by: str = "name") -> Path:
    """The snapshot's disk as qemu sees it after reverting a copy to it (snapshot -a)."""
    copy_dir = folder / f"revert-{by}-{ident}".replace(" ", "_")
    copy_dir.mkdir()
    for f in img.parent.glob("*.qcow2"):
        shutil.copy(f, copy_dir / f.name)
    copy = copy_dir / img.name
    q.qemu_img("snapshot", "-a", ident, copy.name, cwd=copy_dir)
    return build_oracle(copy, folder, name=f"{img.name}@{by}-{ident}")


SNAPS = [("v3-backing", "first", "1"), ("v3-backing", "second", "2"),
         ("v3-backing", "third", "3"), ("v2", "a", "1"), ("v2", "b b", "2")]


@pytest.mark.parametrize("image, name, ident", SNAPS)
def test_snapshot_contents(image, name, ident, snap_images, tmp_path):
    img = snap_images[image]
    reverted = Built(img, snapshot_oracle(img, name, tmp_path))
    # qemu-img convert -l reads the snapshot's tables at the current virtual size
    loaded = Built(img, build_oracle(img, tmp_path, snapshot=name, name="loaded"))
    with vdinspect.open(img, snapshot=name) as disk:
        assert_same_bytes(disk, reverted)
        n = min(disk.size, loaded.size)
        assert disk.read(0, n) == loaded.oracle_read(0, n)
        assert_random_reads(disk, reverted, seed=3)
        disk.to_raw(tmp_path / "snap.raw")
        assert_files_equal(tmp_path / "snap.raw", reverted.oracle)
        assert disk.info()["snapshot"] == name
    for key in (ident, int(ident)):  # by id, as a string and as a number
        with vdinspect.open(img, snapshot=key) as disk:
            assert_same_bytes(disk, reverted)
    with vdinspect.open(img) as disk, disk.at(name) as at:
        assert_same_bytes(at, reverted)


@pytest.mark.parametrize("image", ["v3-backing", "v2"])
def test_snapshot_list(image, snap_images):
    img = snap_images[image]
    qs = qemu_info(img)["snapshots"]
    with vdinspect.open(img) as disk:
        df = disk.snapshots()
    assert list(df["id"]) == [s["id"] for s in qs]
    assert list(df["name"]) == [s["name"] for s in qs]
    assert list(df["vm_state_size"]) == [s["vm-state-size"] for s in qs]
    assert [int(t.timestamp()) for t in df["created"]] == [s["date-sec"] for s in qs]
    assert [t.value for t in df["vm_clock"]] == [
        s["vm-clock-sec"] * 10**9 + s["vm-clock-nsec"] for s in qs
    ]
    assert list(df["layer"]) == [len(disk.layer_images) - 1] * len(qs)


def test_snapshot_vm_state_size(snap_images, tmp_path):
    """A snapshot with saved VM state (sizes patched in a copy): both the 32-bit field and
    the 64-bit extra-data field, as qemu reads them."""
    src = snap_images["v2"]
    img = tmp_path / src.name
    data = bytearray(src.read_bytes())
    pos = struct.unpack_from(">Q", data, 64)[0]  # snapshots_offset
    extra = struct.unpack_from(">I", data, pos + 36)[0]
    struct.pack_into(">I", data, pos + 32, 123456)
    if extra >= 8:
        struct.pack_into(">Q", data, pos + 40, 123456)
    img.write_bytes(bytes(data))
    qs = qemu_info(img)["snapshots"]
    with vdinspect.open(img) as disk:
        assert list(disk.snapshots()["vm_state_size"]) == [s["vm-state-size"] for s in qs]
    assert qs[0]["vm-state-size"] == 123456


def test_snapshot_unknown(snap_images):
    with pytest.raises(vdinspect.NotFound):
        vdinspect.open(snap_images["v2"], snapshot="nope")


# --- the command line ----------------------------------------------------------------------------------


def cli(*args) -> subprocess.CompletedProcess:
    """The vdinspect command, run in this process (a fresh interpreter costs a second)."""
    from vdinspect.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def cli_proc(*args) -> subprocess.CompletedProcess:
    """``python -m vdinspect ...`` in a new interpreter."""
    return subprocess.run([sys.executable, "-m", "vdinspect", *map(str, args)],
                          capture_output=True, text=True)


def cli_json(*args):
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", ["v2-64k-backing", "extl2-backing", "zstd-convert"])
def test_cli_json(name, variants, tmp_path):
    from vdinspect import frames

    built = variants(name)
    qi = qemu_info(built.top)
    chain = qemu_info(built.top, chain=True)
    info = cli_json("info", built.top)
    assert info["virtual_size"] == qi["virtual-size"]
    assert info["layers"] == len(chain)
    assert info["cluster_size"] == qi["cluster-size"]
    layers = cli_json("layers", built.top)
    assert [set(r) for r in layers] == [set(frames.LAYER_COLUMNS)] * len(chain)
    assert [r["virtual_size"] for r in layers] == [c["virtual-size"] for c in chain[::-1]]
    assert [r["format"] for r in layers] == [c["format"] for c in chain[::-1]]
    rows = cli_json("map", built.top)
    assert all(set(r) == set(frames.ALLOCATION_COLUMNS) for r in rows)
    formats = [c["format"] for c in chain[::-1]]
    assert_map_matches(rows, formats, built.oracle_read, qemu_map(built.top), built.size)
    check = cli_json("check", built.top)
    assert all(set(r) == set(frames.CHECK_COLUMNS) for r in check)
    qc = qemu_check(built.top)
    assert sum(r["severity"] == "error" for r in check) == qc.get("corruptions", 0)
    out = tmp_path / "cli.raw"
    r = cli("convert", built.top, out)
    assert r.returncode == 0, r.stderr
    assert_files_equal(out, built.oracle)


def test_cli_check_damaged(damage_bases, tmp_path):
    r = Raw(damage_bases[4096])
    dmg_l2_duplicate(r)
    bad = r.save(tmp_path / "bad.qcow2")
    qc = qemu_check(bad)
    r = cli("check", bad, "--json")
    assert r.returncode == (1 if qc["corruptions"] else 0), r.stderr  # qemu-img: 2 then
    rows = json.loads(r.stdout)
    assert sum(x["severity"] == "error" for x in rows) == qc["corruptions"]
    assert sum(x["severity"] == "leak" for x in rows) == qc["leaks"]


def test_cli_snapshots_and_convert(snap_images, tmp_path):
    img = snap_images["v3-backing"]
    qs = qemu_info(img)["snapshots"]
    rows = cli_json("snapshots", img)
    assert [(r["id"], r["name"]) for r in rows] == [(s["id"], s["name"]) for s in qs]
    out = tmp_path / "second.raw"
    r = cli("convert", "--snapshot", "second", img, out)
    assert r.returncode == 0, r.stderr
    assert_files_equal(out, snapshot_oracle(img, "second", tmp_path))
    out = tmp_path / "base.raw"
    r = cli("convert", "--layer", "0", img, out)
    assert r.returncode == 0, r.stderr
    assert_files_equal(out, build_oracle(img.parent / "base.qcow2", tmp_path))


def test_cli_exit_codes(damage_bases, tmp_path):
    good = damage_bases[4096]
    # bad image: cluster_bits out of range
    data = bytearray(good.read_bytes())
    struct.pack_into(">I", data, 20, 40)
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(bytes(data))
    for args in (("info", bad), ("map", bad), ("check", bad), ("convert", bad, tmp_path / "o"),
                 ("info", tmp_path / "missing.qcow2")):
        r = cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()
    r = cli("info", bad)
    assert str(bad) in r.stderr and "cluster_bits" in r.stderr
    # usage errors
    for args in ((), ("frobnicate", good), ("info",), ("info", good, "--layer", "x"),
                 ("info", good, "--layer", "7")):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert cli("info", good).returncode == 0
    r = cli("info", good, "--snapshot", "nope")
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "nope" in r.stderr


def test_cli_python_m(damage_bases, tmp_path):
    """The real entry point: exit codes 0 / 1 (one line, no traceback) / 2."""
    good = damage_bases[4096]
    r = cli_proc("info", "--json", good)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["virtual_size"] == qemu_info(good)["virtual-size"]
    data = bytearray(good.read_bytes())
    struct.pack_into(">I", data, 20, 40)
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(bytes(data))
    r = cli_proc("map", bad)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr
    r = cli_proc("map", good, "--start", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("image", ["v3-backing", "v2"])
def test_snapshot_image_check(image, snap_images):
    """Snapshots share clusters (refcount > 1, COPIED cleared): check() still agrees."""
    img = snap_images[image]
    with vdinspect.open(img) as disk:
        qc = assert_check_matches(disk, img)
        assert_summary_matches(disk, qc)


def test_snapshot_damaged_check(snap_images, tmp_path):
    """A shared cluster whose refcount drops to 1: COPIED and refcount errors, as qemu."""
    r = Raw(snap_images["v2"])
    shared = [e for _, e in r.entries() if not e & COPIED]
    assert shared
    r.set_refcount((shared[0] & MASK) // r.cs, 1)
    bad = r.save(tmp_path / "bad.qcow2")
    with vdinspect.open(bad) as disk:
        qc = assert_check_matches(disk, bad)
        assert qc["corruptions"] > 0
