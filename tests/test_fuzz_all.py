"""One mutation fuzzer over every container format, partition scheme and filesystem.

docs/design.md "Errors and bad input", across the whole stack: whatever the bytes, opening an
image (strict and ``strict=False``) and walking the public path (``info``, ``layers``,
``allocation``, ``check``, ``structures``, ``read``, ``partitions``, and for each partition
with a filesystem ``filesystem(n).files()``, ``check()`` and reading a few files) either
works or raises a ``VDInspectError`` that names the file, within the bounds of
tests/test_bad_input.py (2 s, 256 MB per input and mode, measured the same way: its
``timed`` and ``traced`` helpers are imported). ``Disk.check()`` never raises.

Seeds: the container samples of ``sample_images/`` (VMDK sparse and stream-optimized, VHD
dynamic, VDI dynamic, Parallels, QCOW v1, compressed QCOW2), the two partitioned samples
converted to raw with ``Disk.to_raw`` (GPT with FAT32, ext4 and NTFS; MBR with logical FAT16
and ext2) so that partition tables and filesystem metadata are mutated directly, and, when
``/work/shared/samples`` is present, small real images from it (VHDX, VHD, VMDK version 3,
Parallels, qcow2/vmdk with ext2, a raw XFS v5, a raw Btrfs), decompressed into a temporary folder; and the hostile
samples of tests/hostile.py (file names leading out of the image's folder, blocks claimed at
impossible places), built in a temporary folder, with fewer examples each by default
(``HYPOTHESIS_FUZZ_HOSTILE_EXAMPLES``).

Every walk also records, with an audit hook, the files opened: none may lie outside the
image's folder, whatever names the mutated image records.

Mutations (one to four per input): byte and bit edits, and little- or big-endian 2/4/8-byte
fields set to extreme values (0, 1, 2**31, 2**32-1, 2**63, 2**64-1, and the file size and
its neighbours), aimed at the first 64 KiB and at the regions ``structures()`` lists (for
the raw seeds also the partition tables and each filesystem's ``structures()``, so that
tables deep in the file get hit); and cuts, anywhere or just after a structure's start.

The default run is derandomized (the same examples every time) and bounded; for a deep,
randomized run with many more examples::

    HYPOTHESIS_PROFILE=deep python -m pytest tests/test_fuzz_all.py -q -x -n 2

``HYPOTHESIS_FUZZ_ALL_EXAMPLES=N`` overrides the number of examples per seed.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vdinspect
from tests import hostile
from tests.conftest import SHARED_SAMPLES
from tests.test_bad_input import (
    DEEP,
    EXTREMES,
    fuzz_settings,
    make_attempt,
    timed,
    traced,
)
from tests.tools import dig_holes
from vdinspect import VDInspectError

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_ALL_EXAMPLES", 400 if DEEP else 25))
HEAD = 64 << 10  # the first 64 KiB: headers, descriptors, most small tables
REGION = 4096  # how far into a listed structure mutations reach
FILES_READ = 4  # files read per filesystem
FILE_BYTES = 64 << 10  # bytes read per file (streamed: a garbage size must not matter)

#: container samples of sample_images/ used as they are
CONTAINER_SEEDS = [
    "vmdk-sparse.vmdk",
    "vmdk-stream.vmdk",
    "vhd-dynamic.vhd",
    "vdi-dynamic.vdi",
    "parallels.hds",
    "v1.qcow",
    "zlib.qcow2",
]
#: partitioned samples, converted to raw so their tables and filesystems are exposed
RAW_SEEDS = ["gpt-fat32-ext4-ntfs.qcow2", "mbr-logical.qcow2"]
#: small real images of /work/shared/samples (relative path; .bz2 is decompressed)
SHARED_SEEDS = [
    "qemu-iotests-v7.2.0/sample_images/iotest-dirtylog-10G-4M.vhdx.bz2",
    "qemu-iotests-v7.2.0/sample_images/iotest-version3.vmdk.bz2",
    "qemu-iotests-v7.2.0/sample_images/virtualpc-dynamic.vhd.bz2",
    "qemu-iotests-v7.2.0/sample_images/parallels-with-bitmap.bz2",
    "dfvfs/test_data/ext2.qcow2",
    "dfvfs/test_data/ext2.vmdk",
    "strozfriedberg-vmdk-rs/data/streamOptimized.vmdk",
    "KhaledEmaraDev-xfuse/resources/xfs_preallocated.img.zst",  # XFS v5, whole disk
    "cyberus-technology-virtualbox-kvm/ValidationKit-tests-api/tdAppliance1-t2.ova",  # OVA
    "cyberus-technology-virtualbox-kvm/ValidationKit-tests-api/tdAppliance1-t3.ova",  # gzip
    # Btrfs, whole disk: zlib, LZO and zstd extents (100 MiB, mostly zeros)
    "kdave-btrfs-progs/tests/misc-tests/025-zstd-compression/compress.raw.xz",
]
#: hostile samples of tests/hostile.py (names leading out of the folder, blocks at impossible
#: places), built in the seed folder; a Parallels bundle is seeded by its DiskDescriptor.xml
HOSTILE_SEEDS = [f"hostile/{n}" for n in hostile.GENERATORS
                 if n != "parallels-descriptor-symlink"]  # its descriptor is a link out
HOSTILE_EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_HOSTILE_EXAMPLES", 100 if DEEP else 4))


# --- seeds -------------------------------------------------------------------------------------


class Seed:
    """A file to mutate and the (offset, length) regions worth aiming at."""

    def __init__(self, name: str, path: Path, regions: list[tuple[int, int]]) -> None:
        self.name = name
        self.path = path
        self.size = path.stat().st_size
        self.regions = sorted({(o, n) for o, n in regions if 0 <= o < self.size and n > 0})

    def __repr__(self) -> str:  # short: hypothesis prints the arguments of a failing example
        return f"<Seed {self.name}>"


def _regions(path: Path) -> list[tuple[int, int]]:
    """Host regions of the structures the image and its filesystems list (clean seed)."""
    out = [(0, HEAD)]
    try:
        disk = vdinspect.open(path)
    except VDInspectError:  # a hostile seed: salvage mode, else the head alone
        try:
            disk = vdinspect.open(path, strict=False)
        except VDInspectError:
            return out
    with disk:
        s = disk.structures()
        own = s[s.layer == 0]
        out += [(int(o), int(n)) for o, n in zip(own.host_offset, own.length)]
        if disk.info()["format"] != "raw":
            return out
        for v in disk.volumes():  # partition tables and filesystem metadata of a raw disk
            if v.start is None:
                continue
            out.append((int(v.start), min(int(v.length or REGION), HEAD)))
            if not v.filesystem:
                continue
            with contextlib.suppress(VDInspectError):
                fs = disk.filesystem(v.index if v.index is not None else v.name)
                out += [(int(v.start) + r["host_offset"], r["length"]) for r in fs.structure_rows()]
    return out


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_all_seeds")


def _seed(name: str, d: Path) -> Seed:
    if name in HOSTILE_SEEDS:
        p = hostile.make(name.split("/", 1)[1], d / name.split("/", 1)[1])
        if p.is_dir():  # a Parallels bundle: its descriptor is the file to mutate
            p = p / "DiskDescriptor.xml"
    elif name in CONTAINER_SEEDS:
        p = d / name
        shutil.copyfile(SAMPLES / name, p)
    elif name in RAW_SEEDS:
        p = d / (Path(name).stem + ".raw")
        with vdinspect.open(SAMPLES / name) as disk:
            disk.to_raw(p)
    else:
        src = SHARED_SAMPLES / name
        if not src.exists():
            pytest.skip(f"{src} not present")
        p = d / Path(name).name.removesuffix(".bz2").removesuffix(".zst").removesuffix(".xz")
        if name.endswith((".bz2", ".xz")):
            with (bz2.open(src) if name.endswith(".bz2") else lzma.open(src)) as f, \
                    open(p, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
        elif name.endswith(".zst"):
            zstandard = pytest.importorskip("zstandard")
            with open(src, "rb") as f, open(p, "wb") as out:
                zstandard.ZstdDecompressor().copy_stream(f, out)
        else:
            shutil.copyfile(src, p)
    if p.is_file():
        dig_holes(p)  # copies and decompressed samples: their zeros need no disk space
    seed = Seed(name, p, _regions(p))
    walk(seed.path, True, ())  # warm up lazy imports outside the timed bounds
    walk(seed.path, False, ())
    return seed


_SEEDS: dict[str, Seed] = {}


@pytest.fixture(scope="module")
def get_seed(seed_dir):
    def get(name: str) -> Seed:
        if name not in _SEEDS:
            _SEEDS[name] = _seed(name, seed_dir)
        return _SEEDS[name]

    yield get
    _SEEDS.clear()


# --- mutations ---------------------------------------------------------------------------------


def _value(size: int):
    relative = [size, size - 1, size + 1, size // 512, size // 512 + 1, size >> 9 << 9]
    return st.sampled_from(EXTREMES + [v for v in relative if v >= 0])


@st.composite
def mutations(draw, seed: Seed):
    """One to four edits, then maybe a cut: a list of tuples for the example's report."""

    def position():
        region = draw(st.sampled_from(seed.regions))
        return min(seed.size - 1, region[0] + draw(st.integers(0, min(region[1], REGION) - 1)))

    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "bit", "field"]))
        pos = position()
        if kind == "byte":
            edits.append(("byte", pos, draw(st.integers(0, 255))))
        elif kind == "bit":
            edits.append(("bit", pos, draw(st.integers(0, 7))))
        else:
            width = draw(st.sampled_from([2, 4, 8]))
            order = draw(st.sampled_from(["little", "big"]))
            edits.append(("field", pos, width, order, draw(_value(seed.size))))
    cut = draw(st.sampled_from([None, None, None, "anywhere", "structure"]))
    if cut == "anywhere":
        edits.append(("cut", draw(st.integers(0, seed.size - 1))))
    elif cut == "structure":
        edits.append(("cut", min(seed.size, position() + draw(st.sampled_from([0, 1, 8, 512])))))
    return edits


def apply(seed: Seed, edits, dest: Path) -> Path:
    """A copy of the seed in ``dest`` with the edits made (patched in place, so a 44 MiB raw
    seed costs one file copy, not a Python-level rewrite)."""
    p = dest / seed.path.name
    shutil.copyfile(seed.path, p)
    with open(p, "r+b") as f:
        for e in edits:
            if e[0] == "byte":
                f.seek(e[1])
                f.write(bytes([e[2]]))
            elif e[0] == "bit":
                f.seek(e[1])
                b = f.read(1)
                f.seek(e[1])
                f.write(bytes([b[0] ^ (1 << e[2])]))
            elif e[0] == "field":
                _, pos, width, order, value = e
                f.seek(pos)
                f.write((value % (1 << (8 * width))).to_bytes(width, order))
            else:
                f.truncate(e[1])
    return p


# --- the public path ------------------------------------------------------------------------


def walk(path: Path, strict: bool, other_files=()) -> dict[str, str]:
    """Open ``path`` and walk the public path down to file contents; return {step: error
    class} of the steps that raised a VDInspectError (anything else fails the test). No
    file outside the image's folder may be opened (an image is untrusted input: the names
    it records are confined to its folder; tests/hostile.py records the opens)."""
    path = Path(path)
    with hostile.opens() as opened:
        outcome = _walk(path, strict, other_files)
    folder = path if path.is_dir() else path.parent
    out = hostile.outside(opened, folder)
    assert not out, f"{path.name} (strict={strict}) opened files outside its folder: {out}"
    return outcome


def _walk(path: Path, strict: bool, other_files) -> dict[str, str]:
    outcome: dict[str, str] = {}
    attempt = make_attempt([str(path), *map(str, other_files)], strict, outcome)
    disk = attempt("open", lambda: vdinspect.open(path, strict=strict))
    if disk is None:
        return outcome
    try:
        attempt("info", disk.info)
        attempt("layers", disk.layers)
        attempt("allocation", disk.allocation)
        attempt("structures", disk.structures)
        size = disk.size
        for off, n in ((0, 4096), (size // 2 & ~511, 8192), (max(0, size - 512), 512)):
            n = min(n, size - off)
            if n > 0:
                attempt(f"read({off:#x}, {n})", lambda off=off, n=n: disk.read(off, n))
        try:  # check() reports; it never raises for a damaged image
            frame = disk.check()
        except Exception as e:
            raise AssertionError(f"check() (strict={strict}) raised {type(e).__name__}: {e}") from e
        assert list(frame.columns)[:5] == [
            "severity",
            "layer",
            "structure",
            "host_offset",
            "message",
        ]
        if not strict:  # salvage mode: once open, the container path never refuses
            refused = {k: v for k, v in outcome.items() if k != "open"}
            assert not refused, f"salvage mode (strict=False) refused: {refused}"
        parts = attempt("partitions", disk.partitions)
        vols = attempt("volumes", disk.volumes) or []
        if parts is not None:
            for v in vols:
                if v.filesystem:
                    _walk_filesystem(disk, v, attempt)
    finally:
        disk.close()
    return outcome


def _walk_filesystem(disk, vol, attempt) -> None:
    key = vol.index if vol.index is not None else vol.name
    fs = attempt(f"filesystem({key})", lambda: disk.filesystem(key))
    if fs is None:
        return
    attempt(f"filesystem({key}).info", fs.info)
    attempt(f"filesystem({key}).check", fs.check)
    frame = attempt(f"filesystem({key}).files", fs.files)
    if frame is None or not len(frame):
        return
    regular = frame[frame.kind == "file"].head(FILES_READ)
    for path in regular.path:

        def read(path=path):
            with fs.open(path) as f:
                return f.read(FILE_BYTES)

        attempt(f"filesystem({key}).read({path!r})", read)


def bounded(path: Path) -> tuple[dict, dict]:
    """The public path in strict and salvage mode, each timed and then traced."""
    outcome = {}
    for strict in (True, False):
        mode = "strict" if strict else "strict=False"
        with timed(f"{path.name} ({mode})"):
            outcome[strict] = walk(path, strict)
        with traced(f"{path.name} ({mode})"):
            walk(path, strict)
    return outcome[True], outcome[False]


# --- the clean seeds and the fuzzer ---------------------------------------------------------------

ALL_SEEDS = CONTAINER_SEEDS + RAW_SEEDS + SHARED_SEEDS + HOSTILE_SEEDS


@pytest.mark.parametrize("name", CONTAINER_SEEDS + RAW_SEEDS)
def test_clean_seed_walks(get_seed, tmp_path, name):
    """Unmutated, every seed opens and walks without errors (else the fuzzer proves little)."""
    seed = get_seed(name)
    strict, salvage = bounded(apply(seed, [], tmp_path))
    assert strict == {} and salvage == {}, (strict, salvage)


@pytest.mark.parametrize("name", HOSTILE_SEEDS)
def test_hostile_seed_walks(get_seed, tmp_path, name):
    """Each hostile sample, copied alone to a new folder, walks within the bounds and opens
    nothing outside that folder (walk() checks), strict and in salvage mode."""
    bounded(apply(get_seed(name), [], tmp_path))


@pytest.mark.parametrize("name", ALL_SEEDS)
def test_fuzz(get_seed, tmp_path_factory, name):
    seed = get_seed(name)
    work = tmp_path_factory.mktemp("fuzz")

    @fuzz_settings(HOSTILE_EXAMPLES if name in HOSTILE_SEEDS else EXAMPLES)
    @given(edits=mutations(seed))
    def run(edits):
        p = apply(seed, edits, work)
        try:
            bounded(p)
        finally:
            p.unlink()

    run()


# --- regressions: the concrete inputs of defects this fuzzer found ---------------------------


def test_regression_qcow2_check_huge_l1_garbage_refblocks(tmp_path):
    """zlib.qcow2 with byte 36 (the top byte of the big-endian ``l1_size``) set to 1: salvage
    mode reads the L1 table up to QEMU's 32 MiB limit, so compressed data is taken for L1
    and L2 entries. ``check()`` looked up the stored refcount of each garbage cluster and
    allocated a zero refcount block per distinct missing block index: 830 MB at its peak.
    Missing refcount blocks now share one zero block."""
    p = tmp_path / "zlib.qcow2"
    data = bytearray((SAMPLES / "zlib.qcow2").read_bytes())
    data[36] = 1
    p.write_bytes(bytes(data))
    with pytest.raises(vdinspect.CorruptImage, match="L1 table") as e:
        vdinspect.open(p)
    assert str(p) in str(e.value)
    with vdinspect.open(p, strict=False) as disk:
        with traced(f"{p.name} check()"):
            found = disk.check()
        assert (found.structure == "L1 table").any()
    bounded(p)


def test_regression_ext_inode_size_beyond_int64(tmp_path):
    """dfvfs ext2.vmdk with byte 13828 (the top byte of i_size_high of inode 861, a deleted
    inode listed under /$OrphanFiles) set to 3: its size becomes 0xa346ee0700001000, negative as
    Linux reads it; files() must list it (size 0) and check() must say why."""
    src = SHARED_SAMPLES / "dfvfs/test_data/ext2.vmdk"
    if not src.exists():
        pytest.skip(f"{src} not present")
    p = tmp_path / "ext2.vmdk"
    data = bytearray(src.read_bytes())
    data[13828] = 3
    p.write_bytes(bytes(data))
    with vdinspect.open(p, strict=False) as disk:
        fs = disk.filesystem()
        df = fs.files()
        # Linux reads i_size as signed and refuses the inode: listed with size 0, reported
        row = df[df["inode"] == 861]
        assert len(row) == 1 and row["size"].iloc[0] == 0
        fs.read(row["path"].iloc[0])
        assert any("inode 861" in f["message"] and "i_size" in f["message"]
                   for f in fs.check_rows())


def test_regression_vmdk_leak_check_structure_past_int64(tmp_path):
    """Found by the atheris harness: vmdk-sparse.vmdk with byte 63 (the top byte of
    gdOffset, the primary grain directory's sector) set to 0x3f and a descriptor byte
    changed: the grain directory's host offset no longer fits an int64, and check()'s leak
    pass let OverflowError escape while listing the structures. Structures outside the file
    cannot hide leaked space and are left out of it."""
    data = bytearray((SAMPLES / "vmdk-sparse.vmdk").read_bytes())
    data[12629] = 20
    data[63] = 63
    p = tmp_path / "x.vmdk"
    p.write_bytes(bytes(data))
    for strict in (True, False):
        assert walk(p, strict) is not None
        with contextlib.suppress(VDInspectError), vdinspect.open(p, strict=strict) as disk:
            rows = disk.check()
            assert list(rows.columns)[:2] == ["severity", "layer"]


def test_regression_vmdk_huge_capacity_unreadable_directory(tmp_path):
    """Found by the atheris harness: vmdk-sparse.vmdk with bit 0 of byte 17 flipped (in
    capacity: 2**40 + 2048 sectors, 512 TiB) asks for a 16 Mi-entry grain directory that the file cannot
    hold. Salvage mode made it a 128 MiB array of "damaged" markers, and runs() built an
    int64 temporary of the same size: 320 MB traced for a 200 KiB file. Now read-only
    broadcast views and int8 kinds: the walk stays far inside the bounds."""
    data = bytearray((SAMPLES / "vmdk-sparse.vmdk").read_bytes())
    data[17] ^= 1
    p = tmp_path / "x.vmdk"
    p.write_bytes(bytes(data))
    strict, salvage = bounded(p)
    assert strict.get("open") == "CorruptImage" and salvage == {}
    with vdinspect.open(p, strict=False) as disk:
        runs = disk.allocation()
        assert disk.size == (2**40 + 2048) * 512 and (runs.state == "damaged").all()
