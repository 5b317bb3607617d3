"""Runs at scale: a valid QCOW2 with extended L2 entries can change state every 2 KiB
subcluster, so a file of a few hundred KiB names a million runs. The states must match
qemu-img map (the oracle), the bytes qemu-img convert, and memory must stay a few tens of
bytes per run (columns, not one Python object each).

The images are written from the specification by tests/qcow2_builder.py (no qemu-img
writes extended L2 bitmaps of our choosing).
"""

from __future__ import annotations

import gc
import struct
import tracemalloc

import numpy as np

import vdinspect
from tests import qcow2_builder as b
from tests import qemu_tools as q
from tests.conftest import needs_qemu

pytestmark = needs_qemu

K = 1 << 10
SUB = 2 * K  # subcluster of a 64 KiB cluster
PER_L2 = 4096  # extended L2 entries (16 bytes) in a 64 KiB table
ALT_ZERO = 0x55555555 << 32  # even subclusters read as zero, odd ones unallocated


def per_subcluster(intervals, size: int) -> np.ndarray:
    """A state name per subcluster from (start, end, state) intervals."""
    out = np.full(size // SUB, "", dtype=object)
    for s, e, kind in intervals:
        assert s % SUB == 0 and e % SUB == 0
        out[s // SUB : e // SUB] = kind
    assert (out != "").all()
    return out


def oracle_states(path, size: int) -> np.ndarray:
    return per_subcluster([(s, e, k) for s, e, k, _ in q.qemu_intervals(q.qemu_map(path), 1)],
                          size)


def our_states(runs, size: int) -> np.ndarray:
    return per_subcluster([(r.start, r.end, r.state) for r in runs], size)


def mixed(tmp_path):
    """Data clusters whose subclusters cycle data / zero / unallocated, then whole clusters
    without data whose subclusters alternate zero / unallocated."""
    n_data, n_empty = 24, 40
    clusters, bitmaps, l2 = {}, {}, {}
    rng = np.random.default_rng(7)
    for g in range(n_data):
        clusters[g] = rng.integers(1, 256, 64 * K, dtype=np.uint8).tobytes()
        alloc = sum(1 << i for i in range(32) if (i + g) % 3 == 0)
        zero = sum(1 << i for i in range(32) if (i + g) % 3 == 1)
        bitmaps[g] = alloc | zero << 32
    for g in range(n_data, n_data + n_empty):
        l2[g] = (0, ALT_ZERO)
    size = (n_data + n_empty + 8) * 64 * K  # and a tail no entry describes
    return b.write(tmp_path / "mixed.qcow2", b.Qcow2(
        size=size, cluster_bits=16, extended_l2=True, clusters=clusters, bitmaps=bitmaps,
        l2=l2)), size


def test_mixed_subclusters_match_qemu(tmp_path):
    path, size = mixed(tmp_path)
    with vdinspect.open(str(path)) as disk:
        runs = disk.runs()
        assert (our_states(runs, size) == oracle_states(path, size)).all()
        # every data run sits where qemu-img map says its bytes are
        offsets = {e["start"]: e["offset"] for e in q.qemu_map(path) if e.get("data")}
        data = [r for r in runs if r.state == "data"]
        assert data and all(offsets[r.start] == r.host_offset for r in data)
        df = disk.allocation()
        assert list(df.state.astype(str)) == [r.state for r in runs]
        assert (df.end - df.start == df.length).all()
        assert df.host_offset.isna().sum() == sum(r.host_offset is None for r in runs)
        assert disk.read(0, size) == q.to_raw_bytes(path, tmp_path)
        # a window that cuts runs in the middle agrees with the whole map
        lo, hi = 5 * 64 * K + 777, 30 * 64 * K + 5
        part = disk.runs(lo, hi - lo)
        assert part[0].start == lo and part[-1].end == hi
        whole = {(r.start, r.state) for r in runs}
        assert all((r.start, r.state) in whole for r in part[1:])


def hostile(tmp_path, tables: int):
    size = tables * PER_L2 * 64 * K
    return b.write(tmp_path / "alternating.qcow2", b.Qcow2(
        size=size, cluster_bits=16, extended_l2=True,
        l2={g: (0, ALT_ZERO) for g in range(tables * PER_L2)})), size


def test_alternating_subclusters_stay_columns(tmp_path):
    path, size = hostile(tmp_path, 1)  # one L2 table: 131072 runs from a 320 KiB file
    n = size // SUB
    with vdinspect.open(str(path)) as disk:
        disk.read(0, 512)  # header and tables decoded before we count
        gc.collect()
        tracemalloc.start()
        try:
            runs = disk.runs()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(runs) == n
        # columns: ~50 bytes a run (one Python object each held ~360)
        assert held < 100 * n and peak < 250 * n, (held / n, peak / n)
        assert (our_states(runs, size) == oracle_states(path, size)).all()
        df = disk.allocation()
        assert len(df) == n
        assert (df.state.astype(str).to_numpy()[0::2] == "zero").all()
        assert (df.state.astype(str).to_numpy()[1::2] == "unallocated").all()
        assert df.layer.isna().sum() == n // 2 and (df.layer.dropna() == 0).all()
        assert disk.read(0, 1 << 20) == bytes(1 << 20)


def test_alternating_top_over_a_base(tmp_path):
    """A chain resolves a hostile top column by column: the unallocated half of every
    cluster falls through to the base."""
    base = tmp_path / "base.qcow2"
    q.create(base, 8 << 20)
    q.qemu_io(base, "write -P 0x5a 0 8M")
    size = 8 << 20
    top = b.write(tmp_path / "top.qcow2", b.Qcow2(
        size=size, cluster_bits=16, extended_l2=True, backing="base.qcow2",
        l2={g: (0, ALT_ZERO) for g in range(size // (64 * K))}))
    with vdinspect.open(str(top)) as disk:
        runs = disk.runs()
        ours = [(r.start, r.end, r.state, r.layer) for r in runs]
        theirs = q.qemu_intervals(q.qemu_map(top), 2)
        expect = [(s, e, "backing" if k == "data" and layer == 0 else k, layer)
                  for s, e, k, layer in theirs]
        assert ours == expect
        assert disk.read(0, size) == q.to_raw_bytes(top, tmp_path)


def test_vhd_alternating_sector_bitmap(tmp_path):
    """A dynamic VHD block whose sector bitmap alternates (written here from the VHD
    specification: footer -> dynamic header -> BAT -> bitmap): one run per sector, as
    columns, and reads follow the bitmap (present sectors the data, the others zeros)."""
    path = tmp_path / "alt.vhd"
    q.create(path, 8 << 20, "vpc")
    q.qemu_io(path, "write -q -P 0x33 0 2M", fmt="vpc")  # allocates block 0
    data = bytearray(path.read_bytes())
    footer = len(data) - 512
    dyn = struct.unpack_from(">Q", data, footer + 16)[0]  # Data Offset
    bat = struct.unpack_from(">Q", data, dyn + 16)[0]  # Table Offset
    block = struct.unpack_from(">I", data, bat)[0] * 512  # sector of block 0's bitmap
    data[block : block + 512] = b"\x55" * 512  # MSB first: even sectors absent, odd present
    path.write_bytes(bytes(data))
    with vdinspect.open(str(path)) as disk:
        runs = disk.runs(0, 2 << 20)
        assert len(runs) == 4096
        assert [r.state for r in runs[:4]] == ["unallocated", "data"] * 2
        assert runs.total("data") == 1 << 20
        got = np.frombuffer(disk.read(0, 2 << 20), dtype=np.uint8).reshape(4096, 512)
        assert (got[0::2] == 0).all() and (got[1::2] == 0x33).all()
