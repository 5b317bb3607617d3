"""FAT and exFAT when their own structures are damaged (issue 16): long labels, phantoms,
damaged directories, lost directories found by scanning, the second FAT.

Volumes are made by mkfs.vfat/mtools and mkfs.exfat; damage is done with byte edits that
follow the Microsoft FAT and exFAT specifications (never with vdinspect's structs). The
truth comes from The Sleuth Kit (``fls -r -d -p``, ``icat``, ``fsstat``) and from the
data the test wrote.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from tests import tools
from vdinspect.filesystems import exfat as exmod
from vdinspect.filesystems import fat as fatmod
from vdinspect.io import FileSource

MIB = 1 << 20


def have(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


needs_exfat = pytest.mark.skipif(not have("mkfs.exfat", "fsstat"),
                                 reason="needs exfatprogs and The Sleuth Kit")
needs_fat = pytest.mark.skipif(not have("mkfs.vfat", "mcopy", "mmd", "fls", "icat"),
                               reason="needs dosfstools, mtools and The Sleuth Kit")


def run(*cmd, **kw):
    return tools.run(*cmd, **{"timeout": 60, **kw})


def blob(seed: str, n: int) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{k}".encode()).digest()
        k += 1
    return bytes(out[:n])


# --- exFAT geometry from the specification (boot sector field offsets) -------------------

def exfat_geometry(d: bytes) -> tuple[int, int, int]:
    """(cluster heap offset, cluster size, root cluster) of an exFAT volume, by the spec:
    ClusterHeapOffset at 88, FirstClusterOfRootDirectory at 96, the shifts at 108/109."""
    ss = 1 << d[108]
    cs = ss << d[109]
    return struct.unpack_from("<I", d, 88)[0] * ss, cs, struct.unpack_from("<I", d, 96)[0]


@needs_exfat
def test_exfat_label_of_15_characters(tmp_path):
    """A Volume Label entry with CharacterCount 15 (the last 4 units in the Reserved bytes,
    as exfat-utils' mkexfatfs writes it) reads whole, as TSK's fsstat shows it."""
    p = tmp_path / "label.img"
    with open(p, "wb") as f:
        f.truncate(8 * MIB)
    run("mkfs.exfat", "-L", "SHORT", p)
    d = bytearray(p.read_bytes())
    heap, cs, root = exfat_geometry(d)
    at = heap + (root - 2) * cs
    label = "Fifteen chars!!"
    for i in range(at, at + cs, 32):
        if d[i] == 0x83:  # the Volume Label entry
            d[i + 1] = len(label)
            d[i + 2 : i + 32] = label.encode("utf-16-le")
            break
    else:
        pytest.fail("mkfs.exfat wrote no volume label entry")
    tools.write_sparse(p, d)
    tsk = run("fsstat", p)
    assert f"Volume Label (from root directory): {label}" in tsk
    fs = exmod.open_filesystem(FileSource(p))
    assert fs.label == label and fs.info()["label"] == label
    from vdinspect.volumes.probes import probe  # the partitions() label too

    assert probe(FileSource(p)).label == label


# --- a directory whose clusters cannot be read (issue 16: nothing lost silently) ---------

TREE = {"docs/a.txt": 100, "docs/b.bin": 10_000, "docs/inner/c.bin": 6000,
        "docs/inner/d.txt": 50, "top.txt": 30}
KINDS = ("fat16", "fat32", "exfat")
needs_damage = pytest.mark.skipif(
    not have("qemu-img", "mkfs.vfat", "mcopy", "mmd", "mkfs.exfat", "fls", "istat"),
    reason="needs qemu-img, dosfstools, mtools, exfatprogs and The Sleuth Kit")


def make_tree_volume(kind: str, path: Path, src: Path) -> None:
    """``TREE`` on a new FAT16, FAT32 or exFAT volume with 4 KiB clusters (mkfs.vfat aligns
    the data area to them, so a QCOW2 cluster holds one volume cluster): the FATs by mkfs.vfat + mmd/mcopy, exFAT by mkfs.exfat + the spec builder."""
    with open(path, "wb") as f:
        f.truncate((260 if kind == "fat32" else 16) * MIB)  # FAT32: 65525 clusters at least
    if kind == "exfat":
        from tests.fs_builder import ExfatImage

        run("mkfs.exfat", "-c", "4096", path)
        img = ExfatImage(path.read_bytes())
        docs = img.add(img.root, "docs", is_dir=True)
        for name in ("a.txt", "b.bin"):
            img.add(docs, name, (src / "docs" / name).read_bytes())
        inner = img.add(docs, "inner", is_dir=True)
        for name in ("c.bin", "d.txt"):
            img.add(inner, name, (src / "docs" / "inner" / name).read_bytes())
        img.add(img.root, "top.txt", (src / "top.txt").read_bytes())
        tools.write_sparse(path, img.image())
        return
    if kind == "fat16":
        run("mkfs.vfat", "-F", "16", "-s", "8", path)
    else:
        run("mkfs.vfat", "-F", "32", "-s", "8", path)
    run("mmd", "-i", path, "::/docs")
    run("mcopy", "-i", path, src / "docs/a.txt", src / "docs/b.bin", "::/docs/")
    run("mmd", "-i", path, "::/docs/inner")
    run("mcopy", "-i", path, src / "docs/inner/c.bin", src / "docs/inner/d.txt",
        "::/docs/inner/")
    run("mcopy", "-i", path, src / "top.txt", "::/top.txt")


def tsk_sectors(raw: Path, inode: int) -> list[int]:
    """The sectors ``istat`` lists for an inode (FAT and exFAT list 512-byte sectors)."""
    out = run("istat", raw, inode).splitlines()
    head = max(i for i, line in enumerate(out) if line.startswith("Sectors:"))
    return [int(x) for line in out[head + 1:] for x in line.split() if x.isdigit()]


def tsk_inode(raw: Path, path: str) -> int:
    for line in run("fls", "-r", "-p", raw).splitlines():
        meta, name = line.split(":\t", 1)
        if name == path:
            return int(meta.split()[-1].split("-")[0])
    raise AssertionError(f"fls does not list {path}")


@pytest.fixture(scope="module")
def cut_dirs(tmp_path_factory):
    """{kind: (intact raw, QCOW2 whose guest clusters holding /docs are broken)}."""
    from tests.filesystems.test_damaged_files import CLUSTER, break_clusters

    tmp = tmp_path_factory.mktemp("cutdir")
    src = tmp / "src"
    (src / "docs" / "inner").mkdir(parents=True)
    for rel, n in TREE.items():
        (src / rel).write_bytes(blob(rel, n))
    out = {}
    for kind in KINDS:
        raw = tmp / f"{kind}.raw"
        make_tree_volume(kind, raw, src)
        qcow = tmp / f"{kind}.qcow2"
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o",
            f"cluster_size={CLUSTER}", raw, qcow)
        sectors = tsk_sectors(raw, tsk_inode(raw, "docs"))
        guest = sorted({s * 512 // CLUSTER for s in sectors})
        inner = {s * 512 // CLUSTER for s in tsk_sectors(raw, tsk_inode(raw, "docs/inner"))}
        assert not inner & set(guest), "the test must leave docs/inner readable"
        bad = tmp / f"{kind}-cut.qcow2"
        break_clusters(qcow, bad, guest)
        cut_raw = tmp / f"{kind}-cut.raw"  # the same damage as zeros, for TSK
        run("cp", "--sparse=always", raw, cut_raw)
        with open(cut_raw, "r+b") as f:
            for g in guest:
                f.seek(g * CLUSTER)
                f.write(bytes(CLUSTER))
        out[kind] = (raw, bad, cut_raw)
    return out


def tsk_files(raw: Path) -> dict[str, bytes]:
    """Every regular file ``fls -r -p`` lists (orphans too) with its ``icat`` bytes."""
    out = {}
    for line in run("fls", "-r", "-p", raw).splitlines():
        meta, name = line.split(":\t", 1)
        if meta.startswith("r/r") and not name.split("/")[-1].startswith("$"):
            ino = meta.split()[-1].split("-")[0]
            out[name] = run("icat", raw, ino, binary=True)
    return out


@needs_damage
@pytest.mark.parametrize("kind", KINDS)
def test_cut_directory_is_reported(cut_dirs, kind, tmp_path):
    """/docs's clusters read as zeros: its row has a note, check() an error naming it,
    extraction an 'incomplete' line; the rest of the volume is whole."""
    import vdinspect

    _raw, bad, _cut = cut_dirs[kind]
    with vdinspect.open(bad, strict=False) as disk:
        fs = disk.filesystem()
        df = fs.files().set_index("path")
        assert "could not be read" in df.loc["/docs", "note"]
        chk = fs.check()
        assert ((chk.severity == "error") & chk.message.str.startswith("/docs:")).any()
        rep = fs.extract("/", tmp_path / "out")
        assert "/docs" in {p for p, _r in rep.incomplete}
        assert (tmp_path / "out" / "top.txt").read_bytes() == blob("top.txt", 30)
    from vdinspect.cli import main

    assert main(["extract", "--salvage", str(bad), "/", str(tmp_path / "cli")]) == 1


@needs_damage
@pytest.mark.parametrize("kind", KINDS)
def test_cut_directory_children_found_by_scan(cut_dirs, kind):
    """/docs/inner's entry was in the cut cluster: the scan finds its cluster ('.'/'..' on
    FAT: under /docs, which '..' names; a checksummed entry set on exFAT: under /$Lost),
    and its files read back whole. TSK finds none of them (its orphan search misses
    them); every file TSK does find is ours too, byte for byte."""
    import vdinspect

    raw, bad, cut = cut_dirs[kind]
    with vdinspect.open(bad, strict=False) as disk:
        fs = disk.filesystem()
        df = fs.files()
        lost = df[df.found_by == "scan"]
        home = "/docs" if kind != "exfat" else "/$Lost"
        rows = lost[(lost.parent == home) & (lost.kind == "dir")]
        assert len(rows) == 1 and "name unknown" in rows.note.iloc[0]
        where = rows.path.iloc[0]
        got = {n: fs.read(f"{where}/{n}") for n in ("c.bin", "d.txt")}
        assert got == {n: blob(f"docs/inner/{n}", TREE[f"docs/inner/{n}"])
                       for n in ("c.bin", "d.txt")}
        assert (df[df.parent == where].found_by == "index").all()
        if kind != "exfat":  # a.txt's and b.bin's chains: their bytes, then slack
            chains = df[df.name.str.startswith("lost_file_")]
            heads = sorted((fs.read(p) for p in chains.path), key=len)
            assert len(heads) == 2 and heads[0][:100] == blob("docs/a.txt", 100)
            assert heads[1][:10_000] == blob("docs/b.bin", 10_000)
        ours = {p.lstrip("/"): fs.read(p) for p in df[df.kind == "file"].path}
        for name, data in tsk_files(cut).items():
            assert ours.get(name) == data, name
    # no phantom: the intact volume has no scan rows at all
    with vdinspect.open(raw) as disk:
        df = disk.filesystem().files()
        assert (df.found_by == "index").all()
        assert not df.path.str.contains("lost_dir", regex=False).any()


# --- no phantoms: deleted slots that are no entry are not listed ------------------------

def fat16_root(d: bytes) -> tuple[int, int]:
    """(byte offset, entries) of a FAT12/16 root directory, from the BPB (fatgen103):
    BPB_BytsPerSec at 11, BPB_RsvdSecCnt at 14, BPB_NumFATs at 16, BPB_RootEntCnt at 17,
    BPB_FATSz16 at 22."""
    ss, rsvd = struct.unpack_from("<H", d, 11)[0], struct.unpack_from("<H", d, 14)[0]
    nfats, ents = d[16], struct.unpack_from("<H", d, 17)[0]
    fatsz = struct.unpack_from("<H", d, 22)[0]
    return (rsvd + nfats * fatsz) * ss, ents


def tsk_deleted(raw: Path) -> dict[str, int]:
    """Deleted names and sizes TSK lists (``fls -r -d -p`` and ``istat``)."""
    out = {}
    for line in run("fls", "-r", "-d", "-p", raw).splitlines():
        meta, name = line.split(":\t", 1)
        ino = meta.split()[-1].split("-")[0]
        size = [x for x in run("istat", raw, ino).splitlines() if x.startswith("Size: ")]
        out[name] = int(size[0].split()[1]) if size else -1
    return out


@needs_fat
def test_leftover_slots_are_not_deleted_files(tmp_path):
    """Three kinds of leftover bytes in deleted slots, written by the spec after the
    entries mcopy made: a long-name piece whose padding reads as 4294967295 bytes, a
    stale copy of a live entry, a slot with control bytes in its name. None is listed;
    a real deleted file next to them is (as TSK lists it, with its size)."""
    p = tmp_path / "left.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.vfat", "-F", "16", p)
    (tmp_path / "KEEP.TXT").write_bytes(blob("keep", 700))
    (tmp_path / "GONE.TXT").write_bytes(blob("gone", 900))
    run("mcopy", "-i", p, tmp_path / "KEEP.TXT", tmp_path / "GONE.TXT", "::/")
    run("mdel", "-i", p, "::/GONE.TXT")
    d = bytearray(p.read_bytes())
    root, ents = fat16_root(d)
    slots = [d[root + 32 * i : root + 32 * i + 32] for i in range(ents)]
    keep = next(s for s in slots if s[:11] == b"KEEP    TXT")
    free = next(i for i, s in enumerate(slots) if s[0] == 0)
    # an LFN piece with its first byte marked deleted and its attribute byte lost: name
    # characters, then 0xFFFF padding where the cluster and the size of an entry lie
    piece = bytearray(b"\xe5" + "tail".encode("utf-16-le") + b"\x00\x00" + b"\xff" * 21)
    piece[11] = 0x20
    stale = bytearray(keep)
    stale[0] = 0xE5  # a deleted copy of KEEP.TXT: same name, clusters and size
    ctrl = bytearray(b"\xe5\x01\x02BAD  TXT") + bytearray(21)
    for k, s in enumerate((piece, stale, ctrl)):
        assert len(s) == 32
        at = root + 32 * (free + k)
        d[at : at + 32] = s
    tools.write_sparse(p, d)
    fs = fatmod.open_filesystem(FileSource(p))
    df = fs.files()
    dead = df[df.deleted]
    assert list(dead.name) == ["_ONE.TXT"] and list(dead["size"]) == [900]
    assert fs.read("/_ONE.TXT") == blob("gone", 900)
    assert not (df["size"] == 0xFFFFFFFF).any()
    tsk = tsk_deleted(p)
    assert tsk.get("_ONE.TXT") == 900  # TSK's deleted file is ours too


# --- the second FAT when the first is damaged ----------------------------------------------

def fat_area(d: bytes) -> tuple[int, int, int]:
    """(offset of FAT 1, bytes per FAT, entry width in bits) from the BPB (fatgen103):
    BPB_FATSz16 at 22, else BPB_FATSz32 at 36; FAT32 when BPB_FATSz16 is 0 (this test's
    FAT16 volumes are well inside FAT16's cluster counts)."""
    ss, rsvd = struct.unpack_from("<H", d, 11)[0], struct.unpack_from("<H", d, 14)[0]
    fz16 = struct.unpack_from("<H", d, 22)[0]
    fz = fz16 or struct.unpack_from("<I", d, 36)[0]
    return rsvd * ss, fz * ss, 16 if fz16 else 32


def fat_volume(tmp_path: Path, bits: int) -> tuple[Path, dict[str, bytes]]:
    """A FAT16/FAT32 volume with a fragmented file (mcopy fills the hole mdel left)."""
    p = tmp_path / f"f{bits}.img"
    with open(p, "wb") as f:
        f.truncate((40 if bits == 32 else 16) * MIB)
    run("mkfs.vfat", "-F", str(bits), "-s", "1", p)
    run("mmd", "-i", p, "::/dir")
    files = {"one.bin": blob("one", 3000), "two.bin": blob("two", 5000),
             "big.bin": blob("big", 20_000)}
    for name in ("one.bin", "two.bin"):
        (tmp_path / name).write_bytes(files[name])
        run("mcopy", "-i", p, tmp_path / name, f"::/dir/{name}")
    run("mdel", "-i", p, "::/dir/one.bin")
    del files["one.bin"]
    (tmp_path / "big.bin").write_bytes(files["big.bin"])
    run("mcopy", "-i", p, tmp_path / "big.bin", "::/dir/big.bin")  # in the hole, then on
    return p, files


@needs_fat
@pytest.mark.parametrize("bits", (16, 32))
def test_first_fat_zeroed_reads_through_the_second(tmp_path, bits):
    """FAT 1 zeroed (as dd would): every file still reads whole, in strict mode too, and
    check() says FAT 1 is damaged and FAT 2 is used (fsck.fat -n: "FATs differ - using
    second FAT"). TSK reads FAT 1 only: it lists the files as deleted."""
    p, files = fat_volume(tmp_path, bits)
    d = bytearray(p.read_bytes())
    at, size, _ = fat_area(d)
    d[at : at + size] = bytes(size)
    tools.write_sparse(p, d)
    if have("fsck.fat"):
        out = run("fsck.fat", "-n", p, check=False)
        assert "using second FAT" in out
    fs = fatmod.open_filesystem(FileSource(p))
    for name, data in files.items():
        assert fs.read(f"/dir/{name}") == data, name
    chk = fs.check()
    assert ((chk.severity == "error") & (chk.structure == "FAT 1")
            & chk.message.str.contains("using FAT 2")).any()
    assert fs.info()["active_fat"] == 2


@needs_fat
def test_fat_copies_disagree(tmp_path):
    """FAT 2 differs from FAT 1 at one cluster (big.bin's second): check() names that
    cluster; FAT 1 is used, so big.bin still reads whole."""
    p, files = fat_volume(tmp_path, 16)
    d = bytearray(p.read_bytes())
    at, size, bits = fat_area(d)
    ino = tsk_inode(p, "dir/big.bin")
    second = tsk_sectors(p, ino)[1]  # 512-byte clusters: sector -> cluster below
    ss, rsvd = struct.unpack_from("<H", d, 11)[0], struct.unpack_from("<H", d, 14)[0]
    root_secs = (struct.unpack_from("<H", d, 17)[0] * 32 + ss - 1) // ss
    first_data = rsvd + d[16] * (size // ss) + root_secs
    cluster = second - first_data + 2
    struct.pack_into("<H", d, at + size + 2 * cluster, 0xFFF7)  # FAT 2: "bad cluster"
    tools.write_sparse(p, d)
    fs = fatmod.open_filesystem(FileSource(p))
    msgs = fs.check().message
    assert msgs.str.contains(f"FAT 2 differs from FAT 1 in 1 entries (first at cluster "
                             f"{cluster})", regex=False).any()
    assert fs.read("/dir/big.bin") == files["big.bin"]


# --- deleted children of deleted folders ---------------------------------------------------

def tsk_deleted_rows(raw: Path) -> dict[int, tuple[str, str]]:
    """inode -> (name, kind letter) of every deleted entry ``fls -r -d -p`` lists."""
    out = {}
    for line in run("fls", "-r", "-d", "-p", raw).splitlines():
        meta, name = line.split(":\t", 1)
        out[int(meta.split()[-1].split("-")[0])] = (name.rsplit("/", 1)[-1], meta[2])
    return out


def deleted_tree(tmp_path: Path) -> Path:
    """A FAT16 volume (512-byte clusters) where mdeltree removed /big: 40 long-named
    files, and /big/sub with 11 more (file number i is 300*i bytes)."""
    p = tmp_path / "tree.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.vfat", "-F", "16", "-s", "1", p)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(1, 41):
        name = f"file number {i}.dat"
        (src / name).write_bytes(blob(name, 300 * i))
    run("mmd", "-i", p, "::/big")
    run("mmd", "-i", p, "::/big/sub")
    run("mcopy", "-i", p, *sorted(src.iterdir()), "::/big/")
    run("mcopy", "-i", p, *sorted(src.glob("file number 1*.dat")), "::/big/sub/")
    run("mdeltree", "-i", p, "::/big")
    return p


@needs_fat
def test_deleted_folder_reused_first_cluster(tmp_path):
    """/big's first cluster is taken again (file bytes written over it, its FAT entries
    set to end of chain, as a new file whose entry is elsewhere would leave it): the
    deleted entries in its later, free clusters, and /big/sub (a deleted folder no entry
    names now) with its entries, are still found by the scan, under /$Lost, each with the
    name TSK gives the same slot (TSK: $OrphanFiles)."""
    p = deleted_tree(tmp_path)
    d = bytearray(p.read_bytes())
    at, size, _ = fat_area(d)
    root, ents = fat16_root(d)
    slot = next(root + 32 * i for i in range(ents) if d[root + 32 * i + 1 : root + 32 * i + 3]
                == b"IG")
    c = struct.unpack_from("<H", d, slot + 26)[0]
    first_data = root + ents * 32
    ss = struct.unpack_from("<H", d, 11)[0]
    d[first_data + (c - 2) * ss : first_data + (c - 1) * ss] = blob("new", ss)
    for copy in (at, at + size):
        struct.pack_into("<H", d, copy + 2 * c, 0xFFFF)
    tools.write_sparse(p, d)
    tsk = tsk_deleted_rows(p)
    fs = fatmod.open_filesystem(FileSource(p))
    dead = {e.inode: e for e in fs.iter_entries("/") if e.deleted}
    orphans = {i: v for i, v in tsk.items() if i not in (3,)}
    assert len(orphans) > 30
    for ino, (name, _kind) in orphans.items():
        e = dead[ino]
        assert e.path.startswith("/$Lost/")  # found by the scan, or in a folder it found
        assert name in (e.name, "_" + e.extra["short_name"][1:])


@needs_fat
def test_deleted_folder_children_match_tsk(tmp_path):
    """A folder of 40 long-named files (and a subfolder of 11) deleted with mdeltree: the
    folder's later clusters are freed with it, so only its first cluster is under its
    deleted entry. Every deleted entry TSK lists (by its inode, the slot) is ours too,
    with TSK's name (or the long name whose short form TSK shows) and its size; what we
    read back for them is the files' own bytes wherever TSK's is."""
    p = deleted_tree(tmp_path)
    tsk = tsk_deleted_rows(p)
    fs = fatmod.open_filesystem(FileSource(p))
    df = fs.files()
    dead = df[df.deleted].set_index("inode")
    entries = {e.inode: e for e in fs.iter_entries("/") if e.deleted}
    assert len(tsk) == 53 and len(dead) == 53  # 51 files, 2 folders
    assert (df[df.found_by == "scan"].deleted | (df.path == "/$Lost")).all()
    tsk_ok = ours_ok = 0
    for ino, (name, kind) in tsk.items():
        row = dead.loc[ino]
        assert name in (row["name"], "_" + row["short_name"][1:]), (name, row["name"])
        if kind == "r":
            want = blob(f"file number {row['size'] // 300}.dat", row["size"])  # sizes differ
            tsk_bytes = run("icat", p, ino, binary=True)
            assert len(tsk_bytes) == row["size"], name
            tsk_ok += tsk_bytes == want
            if row["recoverable"]:  # recoverable means the bytes are the file's own
                assert fs.read(entries[ino]) == want, name
                ours_ok += 1
    assert ours_ok >= tsk_ok > 0


@needs_fat
def test_lost_directories_whose_parents_loop(tmp_path):
    """Hostile: two folders whose entries are gone and whose ".." name each other, and a
    third whose ".." names itself. The scan ends, lists all three under /$Lost (their
    parents form a loop) and says so in check()."""
    p = tmp_path / "loop.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.vfat", "-F", "16", p)
    for name in ("A", "B", "C"):
        run("mmd", "-i", p, f"::/{name}")
    (tmp_path / "in.txt").write_bytes(blob("in", 333))
    run("mcopy", "-i", p, tmp_path / "in.txt", "::/A/in.txt")
    d = bytearray(p.read_bytes())
    root, ents = fat16_root(d)
    ss, spc = struct.unpack_from("<H", d, 11)[0], d[13]
    first_data = root + ents * 32

    def first_cluster(slot: int) -> int:
        return struct.unpack_from("<H", d, slot + 26)[0]  # DIR_FstClusLO

    slots = {bytes(d[root + 32 * i : root + 32 * i + 11]).rstrip(): root + 32 * i
             for i in range(ents)}
    cl = {n: first_cluster(slots[n.encode()]) for n in ("A", "B", "C")}
    parent = {"A": cl["B"], "B": cl["A"], "C": cl["C"]}
    for n in ("A", "B", "C"):
        d[slots[n.encode()]] = 0xE5  # the entries are gone (clusters still in use)
        dotdot = first_data + (cl[n] - 2) * ss * spc + 32
        struct.pack_into("<H", d, dotdot + 26, parent[n])
    tools.write_sparse(p, d)
    fs = fatmod.open_filesystem(FileSource(p))
    df = fs.files()
    lost = df[(df.found_by == "scan") & (df.kind == "dir")]
    assert sorted(lost.path) == sorted(["/$Lost"] + [f"/$Lost/lost_dir_{cl[n]}" for n in "ABC"])
    assert fs.read(f"/$Lost/lost_dir_{cl['A']}/in.txt") == blob("in", 333)
    assert fs.check().message.str.contains("parents form a loop").sum() == 3


@needs_exfat
def test_exfat_texfat_second_fat(tmp_path):
    """NumberOfFats=2 (TexFAT), written by the spec into a mkfs.exfat volume (FAT 2 after
    FAT 1, before the heap; both boot region checksums renewed): with FAT 1, the active
    one, zeroed, a fragmented file still reads whole through FAT 2, with an error."""
    from tests.fs_builder import ExfatImage

    p = tmp_path / "tex.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.exfat", "-c", "4096", p)
    img = ExfatImage(p.read_bytes())
    data = blob("frag", 20_000)
    img.add(img.root, "frag.bin", data, fragment=True)
    b = img.buf
    fat_off, fat_len = (struct.unpack_from("<I", b, 80)[0],
                        struct.unpack_from("<I", b, 84)[0])  # FatOffset, FatLength
    assert fat_off + 2 * fat_len <= struct.unpack_from("<I", b, 88)[0]  # room before heap
    ss = img.ss
    fat1 = bytes(b[fat_off * ss : (fat_off + fat_len) * ss])
    b[(fat_off + fat_len) * ss : (fat_off + 2 * fat_len) * ss] = fat1  # FAT 2 = FAT 1
    for base in (0, 12 * ss):  # NumberOfFats at 110, in both boot regions
        b[base + 110] = 2
        img.fix_boot_checksum(base)
    good = bytes(b)
    fs = exmod.open_filesystem(FileSource(_write(tmp_path / "good.img", good)))
    assert fs.info()["fats"] == 2 and fs.read("/frag.bin") == data
    b[fat_off * ss : (fat_off + fat_len) * ss] = bytes(fat_len * ss)  # FAT 1 zeroed
    fs = exmod.open_filesystem(FileSource(_write(tmp_path / "bad.img", bytes(b))))
    assert fs.read("/frag.bin") == data
    chk = fs.check()
    assert ((chk.severity == "error") & (chk.structure == "FAT 1")
            & chk.message.str.contains("using FAT 2")).any()


def _write(path: Path, data: bytes) -> Path:
    tools.write_sparse(path, data)
    return path


@needs_fat
def test_folder_whose_chain_is_cut_is_found_whole(tmp_path):
    """A folder of 60 files spans 4 clusters; both FATs end its chain after the first
    (as a lost FAT update leaves it). The files named in its later clusters are found by
    the scan under /$Lost/dir_part_<cluster> with their own bytes; with those under
    /many, every file is found once. TSK finds only those of the first cluster."""
    p = tmp_path / "cut.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.vfat", "-F", "16", "-s", "1", p)
    src = tmp_path / "src"
    src.mkdir()
    data = {f"F{i:03d}.BIN": blob(f"f{i}", 100 + 37 * i) for i in range(60)}
    for name, b in data.items():
        (src / name).write_bytes(b)
    run("mmd", "-i", p, "::/many")
    run("mcopy", "-i", p, *sorted(src.iterdir()), "::/many/")
    d = bytearray(p.read_bytes())
    at, size, _ = fat_area(d)
    root, _ents = fat16_root(d)
    first = next(struct.unpack_from("<H", d, root + 32 * i + 26)[0] for i in range(16)
                 if d[root + 32 * i : root + 32 * i + 4] == b"MANY")
    assert struct.unpack_from("<H", d, at + 2 * first)[0] < 0xFFF8  # more than 1 cluster
    for copy in (at, at + size):
        struct.pack_into("<H", d, copy + 2 * first, 0xFFFF)  # end of chain after it
    tools.write_sparse(p, d)
    fs = fatmod.open_filesystem(FileSource(p))
    df = fs.files()
    files = df[df.kind == "file"]
    assert sorted(files.name) == sorted(data)  # each file once
    for path, name in zip(files.path, files.name):
        assert fs.read(path) == data[name], path
    parts = df[(df.found_by == "scan") & df.name.str.startswith("dir_part_")]
    assert len(parts) == 1 and (files.parent == parts.path.iloc[0]).sum() > 0
    tsk = tsk_files(p)
    assert len(tsk) < len(data)
    assert all(data[k.rsplit("/", 1)[-1]] == v for k, v in tsk.items())


@needs_exfat
def test_exfat_deleted_folder_children_match_tsk(tmp_path):
    """An exFAT folder of 24 long-named files, the files' entry sets then the folder's
    deleted (bit 7 cleared, clusters freed, by the spec builder): every deleted file TSK
    names is ours with its size, and reads back its own bytes; TSK's nameless orphans of
    size 0 (file data read as entries) are not listed."""
    from tests.fs_builder import ExfatImage

    p = tmp_path / "del.img"
    with open(p, "wb") as f:
        f.truncate(16 * MIB)
    run("mkfs.exfat", "-c", "4096", p)
    img = ExfatImage(p.read_bytes())
    folder = img.add(img.root, "folder", is_dir=True)
    kids = [img.add(folder, f"a file with a long name {i}.bin", blob(str(i), 1000 * i + 5))
            for i in range(1, 25)]
    for k in kids:
        img.delete(k)
    img.delete(folder)
    tools.write_sparse(p, img.image())
    tsk = {name: kind for name, kind in tsk_deleted_rows(p).values()}
    fs = exmod.open_filesystem(FileSource(p))
    dead = {e.name: e for e in fs.iter_entries("/") if e.deleted}
    named = {n for n, k in tsk.items() if not n.startswith("OrphanFile-")}
    assert named == set(dead) and len(dead) == 25
    for name, e in dead.items():
        if e.kind == "file":
            i = int(name.rsplit(" ", 1)[1].split(".")[0])
            assert e.recoverable and fs.read(e) == blob(str(i), 1000 * i + 5)


@pytest.mark.parametrize("name", ["fat", "fat16_noheads", "small-fat32", "exfat"])
def test_real_samples_have_nothing_to_scan(name, tmp_path):
    """util-linux's real FAT and exFAT images (made by their formatters, no damage, no
    deleted entries per TSK): the scans add no row, nothing is listed as deleted."""
    import lzma

    from tests.conftest import SHARED_SAMPLES

    xz = SHARED_SAMPLES / "util-linux-2.38.1" / "images-fs" / f"{name}.img.xz"
    if not xz.is_file():
        pytest.skip("util-linux samples absent")
    p = tmp_path / f"{name}.img"
    tools.write_sparse(p, lzma.decompress(xz.read_bytes()))
    mod = exmod if name == "exfat" else fatmod
    df = mod.open_filesystem(FileSource(p)).files()
    assert (df.found_by == "index").all() and not df.deleted.any()
    if have("fls"):
        lines = run("fls", "-r", "-d", "-p", p, check=False).splitlines()
        assert not [x for x in lines if "$OrphanFiles" not in x and "$FAT" not in x
                    and "$MBR" not in x]


@needs_fat
def test_scan_caps_say_what_was_not_examined(tmp_path, monkeypatch):
    """Hostile volumes could hold millions of chain heads or free clusters to probe: the
    caps hold, and an info finding says how much was not examined."""
    from vdinspect.filesystems.fat import scan as fat_scan

    p = deleted_tree(tmp_path)
    for name in ("x1.bin", "x2.bin", "x3.bin", "x4.bin"):  # live chains: chain heads
        (tmp_path / name).write_bytes(blob(name, 1000))
        run("mcopy", "-i", p, tmp_path / name, f"::/{name}")
    run("mdel", "-i", p, "::/x4.bin")  # (the copies took /big's slot: a deletion again)
    monkeypatch.setattr(fat_scan, "MAX_HEADS", 2)
    monkeypatch.setattr(fat_scan, "MAX_FREE_PROBES", 3)
    fs = fatmod.open_filesystem(FileSource(p))
    fs.files()
    msgs = fs.check().message
    assert msgs.str.contains("were not examined for lost directories").any()
    assert msgs.str.contains("were not examined for deleted entries").any()


@needs_exfat
def test_exfat_scan_cap(cut_dirs, monkeypatch):
    """The exFAT scan examines at most MAX_CANDIDATES unreached clusters and says so."""
    import vdinspect
    from vdinspect.filesystems.exfat import scan as ex_scan

    if not have("qemu-img", "istat"):
        pytest.skip("needs qemu-img and The Sleuth Kit")
    monkeypatch.setattr(ex_scan, "MAX_CANDIDATES", 1)
    _raw, bad, _cut = cut_dirs["exfat"]
    with vdinspect.open(bad, strict=False) as disk:
        fs = disk.filesystem()
        fs.files()
        assert fs.check().message.str.contains("were not examined for lost directories").any()
