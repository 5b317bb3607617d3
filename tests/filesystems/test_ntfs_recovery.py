"""NTFS recovery when the volume's own structures are damaged (issue 16).

Volumes are made by mkntfs and filled through the ntfs-3g FUSE driver (hard links, a big
folder with INDX blocks, deletions, record reuse); damage is done with dd-like writes or
by breaking QCOW2 clusters (salvage reads zeros there), or, for a cut $MFT runlist and
hand-made index slack, by spec-built edits (tests/ntfs_builder.py). What the truth is
comes from the bytes written and from The Sleuth Kit (fls, istat, icat) on the undamaged
image; TSK, ntfsls and ntfsundelete are run on the damaged image to compare.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import vdinspect
from tests import ntfs_builder as nb
from tests.conftest import SHARED_SAMPLES, needs_shared
from tests.filesystems.test_damaged_files import break_clusters
from tests.filesystems.test_ntfs import our_rows, tsk_rows
from tests.tools import fls_lines, run, sparse_copy
from vdinspect.errors import CorruptImage
from vdinspect.filesystems.base import FileSystem
from vdinspect.filesystems.ntfs import NTFS, mftscan, open_filesystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(
    not nb.have("mkntfs", "fls", "istat", "icat"), reason="mkntfs / The Sleuth Kit missing"
)

MIB = 1 << 20
CLUSTER = 4096



def ntfs(path: Path, strict: bool = True) -> NTFS:
    return open_filesystem(FileSource(path), strict=strict)


def fls_paths(img: Path, deleted: bool = False) -> dict[str, str]:
    """``fls -r -p`` (``-d``: deleted only) as path -> address; "" for a failed run."""
    args = ["fls", "-r", "-p"] + (["-d"] if deleted else [])
    return {r["path"]: r["addr"] for r in fls_lines(run(*args, img, check=False))}


def istat_clusters(img: Path, record: int, type_name: str) -> list[int]:
    """The clusters istat lists for the first attribute of a type ("$INDEX_ALLOCATION")."""
    out = run("istat", img, record)
    m = re.search(rf"Type: {re.escape(type_name)} .*\n((?:[\d ]+\n)+)", out)
    return [int(x) for x in m.group(1).split()] if m else []


def mft_offset(img: Path) -> int:
    bs = img.read_bytes()[:512]
    cs = struct.unpack_from("<H", bs, 11)[0] * bs[13]
    return struct.unpack_from("<Q", bs, 0x30)[0] * cs


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmp_mod(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ntfs_recovery")
    if not nb.fuse_works(tmp):
        pytest.skip("ntfs-3g cannot mount here (no FUSE)")
    return tmp


@pytest.fixture(scope="module")
def links(tmp_mod):
    """One file with 100 names in /d and one more in /e (ntfs-3g writes the extra
    $FILE_NAMEs into extension records listed by an $ATTRIBUTE_LIST)."""
    img = nb.mkntfs(tmp_mod / "links.img", 16 * MIB)
    with nb.mounted(img, tmp_mod / "mnt_links") as m:
        (m / "d").mkdir()
        (m / "e").mkdir()
        (m / "d" / "f000").write_bytes(b"linked\n")
        for i in range(1, 100):
            os.link(m / "d" / "f000", m / "d" / f"f{i:03d}")
        os.link(m / "d" / "f000", m / "e" / "x")
    return img


@pytest.fixture(scope="module")
def case(tmp_mod):
    """The recovery case volume of :func:`tests.ntfs_builder.recovery_case`."""
    return nb.recovery_case(tmp_mod)


def copy(img: Path, tmp: Path, name: str) -> Path:
    out = tmp / name
    return sparse_copy(img, out)


# --- 1. hard links ----------------------------------------------------------------------------


def test_every_hard_link_is_listed(links):
    """All 101 names of the record, in the recursive listing as in the folder's own (the
    recursive listing used to keep one $FILE_NAME per extension record: 16 of 100)."""
    theirs = {p for p in fls_paths(links) if p.startswith(("d/", "e/"))}
    assert len(theirs) == 101
    fs = ntfs(links)
    fast = {p[1:] for p in fs.files().path if p.startswith(("/d/", "/e/"))}
    walk = {e.path[1:] for e in fs.iter_entries("/d")} | {e.path[1:] for e in fs.iter_entries("/e")}
    folder = {"d/" + e.name for e in fs.list_dir(fs.lookup("/d"))}
    assert fast == theirs == walk
    assert our_rows(fs) == tsk_rows(nb.fls(links))  # kinds and TSK addresses too
    assert folder == {p for p in theirs if p.startswith("d/")}
    inode = fs.lookup("/d/f057").inode
    assert fs.read("/e/x") == b"linked\n" and fs.lookup("/e/x").inode == inode
    assert "Links: 101" in run("istat", links, inode) and fs.lookup("/d/f000").links == 101


# --- 2. a folder's index unreadable: its files placed through the MFT ---------------------------


def test_unreadable_index_children_found_through_the_mft(case, tmp_path):
    img, live, gone = case
    big = ntfs(img).lookup("/big").inode
    clusters = istat_clusters(img, big, "$INDEX_ALLOCATION")
    assert len(clusters) >= 3
    broken = clusters[:-1]  # all INDX blocks but the last: most of the names are there
    qcow = tmp_path / "case.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={CLUSTER}",
        img, qcow)
    bad = tmp_path / "bad.qcow2"
    break_clusters(qcow, bad, broken)
    fs = vdinspect.open(bad, strict=False).filesystem()
    df = fs.files().set_index("path")
    # the folder says what happened, and check() too
    note = df.loc["/big", "note"]
    assert isinstance(note, str) and f"{len(broken) * CLUSTER} bytes" in note
    assert any(r["message"].startswith("/big:") for r in fs.check_rows())
    # every live file is still at its path with its own bytes; those only the MFT knows
    # say so
    for p, b in live.items():
        assert df.loc[p, "deleted"] == False, p  # noqa: E712
        assert fs.read(p) == b, p
    big_rows = df[df.index.str.startswith("/big/file_") & ~df.deleted]
    assert (big_rows.found_by == "mft").sum() >= 100
    assert set(big_rows.found_by) <= {"mft", "index"}
    by_mft = big_rows[big_rows.found_by == "mft"]
    assert by_mft.note.str.contains("not in its directory's index").all()
    # the index walk (base class) agrees with the fast walk, row for row
    slow = {e.path: (e.found_by, e.deleted) for e in FileSystem.iter_entries(fs, "/")}
    assert slow == {p: (r.found_by, r.deleted) for p, r in df[["found_by", "deleted"]].iterrows()}
    # extraction names the folder as incomplete, and writes every file
    rep = fs.extract("/", tmp_path / "out")
    assert "/big" in dict(rep.incomplete)
    assert (tmp_path / "out" / "big" / "file_055.txt").read_bytes() == live["/big/file_055.txt"]
    cli = subprocess.run([sys.executable, "-m", "vdinspect", "extract", "--salvage", str(bad),
                          "/", str(tmp_path / "cli")], capture_output=True, text=True)
    assert cli.returncode == 1 and "/big" in cli.stdout + cli.stderr
    # the anchor: TSK on the same damage (zeros where the clusters were)
    zeroed = copy(img, tmp_path, "zeroed.img")
    with open(zeroed, "r+b") as f:
        for c in broken:
            f.seek(c * CLUSTER)
            f.write(bytes(CLUSTER))
    theirs = {p for p in fls_paths(zeroed) if p.startswith("big/")}
    ours = {p[1:] for p in df.index if p.startswith("/big/")}
    assert theirs <= ours  # TSK also places files through the MFT's parent references
    # the same damage as plain zeros (no damaged range to see): the INDX blocks fail their
    # checks, the fast walk says so and lists the folder as the index walk does
    zfs = ntfs(zeroed, strict=False)
    zdf = zfs.files().set_index("path")
    zbig = zdf[zdf.index.str.startswith("/big/file_") & ~zdf.deleted]
    assert len(zbig) == 135 and (zbig.found_by == "mft").sum() >= 100
    assert any(r["message"].startswith("/big: INDX block") for r in zfs.check_rows())
    zslow = {e.path: e.found_by for e in FileSystem.iter_entries(zfs, "/")}
    assert zslow == dict(zdf.found_by)


def test_orphans_when_the_parent_record_is_gone(case, tmp_path):
    """/big's own MFT record wiped: its files go under /$OrphanFiles as TSK puts them."""
    img, live, _gone = case
    bad = copy(img, tmp_path, "orph.img")
    vol = nb.Volume(bad)
    big = ntfs(img).lookup("/big").inode
    vol.write(vol.record_offset(big), bytes(vol.rs))
    theirs = {p for p in fls_paths(bad) if p.startswith("$OrphanFiles/")}
    fs = ntfs(bad, strict=False)
    df = fs.files().set_index("path")
    ours = {p[1:] for p in df.index if p.startswith("/$OrphanFiles/")}
    # TSK lists only the deleted ones there; the live files of the folder are orphans too
    assert theirs <= ours
    assert {"$OrphanFiles/" + p[5:] for p in live if p.startswith("/big/")} <= ours
    row = df.loc["/$OrphanFiles/file_055.txt"]
    assert row.found_by == "mft" and "parent directory" in row.note
    assert fs.read("/$OrphanFiles/file_055.txt") == live["/big/file_055.txt"]


# --- 3. $MFT damaged: $MFTMirr and the FILE record scan ------------------------------------------


def test_mft_start_zeroed_uses_mftmirr(case, tmp_path):
    img, live, _gone = case
    bad = copy(img, tmp_path, "z.img")
    with open(bad, "r+b") as f:
        f.seek(mft_offset(bad))
        f.write(bytes(CLUSTER))  # records 0-3 ($MFT, $MFTMirr, $LogFile, $Volume)
    with pytest.raises(CorruptImage, match="MFT record 0"):
        ntfs(bad)
    fs = ntfs(bad, strict=False)
    assert our_rows(fs) == tsk_rows(nb.fls(img))
    msgs = [r["message"] for r in fs.check_rows()]
    assert sum("$MFTMirr" in m for m in msgs) >= 4
    for p in ("/big/file_077.txt", "/keep/k5.bin", "/new/n3.txt"):
        assert fs.read(p) == live[p]
    assert fls_paths(bad) == {}  # TSK cannot open it
    if nb.have("ntfsls"):
        assert subprocess.run(["ntfsls", bad], capture_output=True).returncode != 0


def test_root_record_wiped_keeps_paths(case, tmp_path):
    """The first two $MFT clusters zeroed (records 0-7, the root's among them): records
    0-3 come from $MFTMirr, a stand-in root keeps every file at its path, and the records
    $MFT's $BITMAP says were in use (4 $AttrDef, 6 $Bitmap, 7 $Boot) are named as lost."""
    img, live, gone = case
    bad = copy(img, tmp_path, "z2.img")
    with open(bad, "r+b") as f:
        f.seek(mft_offset(bad))
        f.write(bytes(2 * CLUSTER))
    fs = ntfs(bad, strict=False)
    df = fs.files().set_index("path")
    truth = {p for p in fls_paths(img) if p.split("/")[0] in ("big", "keep", "new")}
    assert truth <= {p[1:] for p in df.index}
    for p, b in live.items():
        assert fs.read(p) == b
    msgs = " ".join(r["message"] for r in fs.check_rows())
    assert "root directory's record is unusable" in msgs and ": 4, 5, 6, 7" in msgs
    assert df.loc["/keep", "found_by"] == "mft" and df.loc["/keep/k5.bin", "found_by"] == "index"
    assert fls_paths(bad) == {}  # TSK cannot open it


def cut_mft_runlist(img: Path, clusters: int) -> None:
    """Record 0's $DATA runlist cut to its first ``clusters`` (spec-built edit)."""
    vol = nb.Volume(img)
    rec = vol.get(0)
    a = vol.find_attr(rec, 0x80)
    mp = struct.unpack_from("<H", rec, a + 0x20)[0]
    length = struct.unpack_from("<I", rec, a + 4)[0]
    ((lcn, _n),) = nb.decode_runs(bytes(rec[a + mp : a + length]))
    new = nb.encode_runlist([(lcn, clusters)])
    rec[a + mp : a + length] = new + bytes(length - mp - len(new))
    vol.put(0, rec)


def test_records_past_a_cut_mft_runlist_found_by_scanning(case, tmp_path):
    img, live, gone = case
    bad = copy(img, tmp_path, "cut.img")
    cut_mft_runlist(bad, 30)  # 120 records of 1 KiB mapped; the rest only on the disk
    with pytest.raises(CorruptImage, match="runlist maps"):
        ntfs(bad)
    fs = ntfs(bad, strict=False)
    truth = fls_paths(img)
    assert our_rows(fs) == tsk_rows(nb.fls(img))
    ours = {e.path[1:]: e for e in fs.iter_entries("/")}
    assert len(fs.rescued) == fs.nrecords - 120
    for p, b in live.items():
        assert fs.read(p) == b
    rescued = [e for e in ours.values() if e.inode in fs.rescued and e.found_by != "slack"]
    assert rescued and all("scanning the volume" in e.note for e in rescued)
    assert {e.found_by for e in rescued if e.deleted} <= {"scan", "slack"}
    assert any("found" in r["message"] and "FILE" in r["message"] for r in fs.check_rows())
    assert len(fls_paths(bad)) < len(truth) // 2  # TSK stops at the first lost record


def test_fake_file_records_stay_bounded_and_lose_to_the_real_ones(case, tmp_path, monkeypatch):
    """A file full of well-formed FILE records claiming the lost numbers: the real piece
    of $MFT still wins, and with a small budget the scan stops with a finding."""
    img, live, _gone = case
    bad = copy(img, tmp_path, "fake.img")
    cut_mft_runlist(bad, 30)
    vol = nb.Volume(bad)
    real = vol.read(mft_offset(bad) + 150 * vol.rs, vol.rs)  # record 150, fixups applied
    assert real[:4] == b"FILE"
    fakes = bytearray()
    for i in range(40):  # records naming 120.. at a distance the real ones do not share
        rec = nb.fixup_decode(bytearray(real))
        struct.pack_into("<I", rec, 0x2C, 120 + i)
        struct.pack_into("<Q", rec, 8, 1 << 40)  # a newer LSN than any real record
        fakes += nb.fixup_encode(rec)
    free = max(istat_clusters(img, 6, "$DATA")) + 200  # clusters past $Bitmap, unused
    vol.write(free * CLUSTER, bytes(fakes))  # a run of 40 at another distance
    fs = ntfs(bad, strict=False)
    at = mft_offset(bad)
    assert all(fs.rescued[n] == at + n * vol.rs for n in range(120, 160))  # the real ones
    assert fs.read("/keep/k5.bin") == live["/keep/k5.bin"]
    assert our_rows(fs) == tsk_rows(nb.fls(img))
    monkeypatch.setattr(mftscan, "MIN_HITS", 10)
    monkeypatch.setattr(mftscan, "HITS_PER_LOST", 0)
    small = ntfs(bad, strict=False)
    assert any("scan stopped" in r["message"] for r in small.check_rows())


# --- 4. names in index slack --------------------------------------------------------------------


def test_slack_names_and_no_phantoms(case):
    img, live, gone = case
    fs = ntfs(img)
    df = fs.files()
    dead = df[df.deleted & ~df.path.str.startswith("/$OrphanFiles")].set_index("path")
    assert set(dead.index) <= set(gone)  # no phantoms: every deleted row was a real file
    slack = dead[dead.found_by == "slack"]
    mft = dead[dead.found_by == "mft"]
    assert len(slack) >= 5 and len(mft) >= 5
    for p, r in slack.iterrows():  # its record now belongs to a file of /new (istat says)
        assert not r.recoverable and "reused" in r.note
        assert re.search(r"Name: n\d\.txt", run("istat", img, int(r.inode)))
        with pytest.raises(CorruptImage, match="index slack"):
            fs.read(fs.lookup(p, deleted=True))
    for p, r in mft.iterrows():
        assert r.recoverable and fs.read(fs.lookup(p, deleted=True)) == gone[p]
    # at least what TSK lists as deleted (it lists deleted records, not these names)
    theirs = {"/" + p for p in fls_paths(img, deleted=True) if not p.startswith("$Orphan")}
    assert theirs <= set(dead.index)
    # live names are never listed a second time as deleted
    live_rows = df[~df.deleted]
    assert not set(zip(live_rows.parent, live_rows.name)) & set(zip(dead.parent, dead.name))


def test_slack_rules_built_from_the_structure(case, tmp_path):
    """Entries written into /big's INDX slack by hand: a copy of a live entry, an entry
    of another folder, one naming a record past the MFT and a DOS twin are suppressed;
    a plausible name for a reused record is listed (found_by slack)."""
    img, _live, gone = case
    bad = copy(img, tmp_path, "slack.img")
    fs = ntfs(img)
    big = fs.lookup("/big").inode
    keep = fs.lookup("/keep").inode
    live_ref = fs.lookup("/big/file_055.txt").inode
    reused = fs.lookup("/new/n0.txt").inode
    seq = int(re.search(r"Sequence: (\d+)", run("istat", img, reused)).group(1))
    assert seq > 1  # the record held a deleted file before
    old = fs.lookup("/big/file_110.txt", deleted=True).inode  # deleted, record not reused
    oseq = int(re.search(r"Sequence: (\d+)", run("istat", img, old)).group(1))
    vol = nb.Volume(bad)
    lcn = istat_clusters(img, big, "$INDEX_ALLOCATION")[-1]
    off = lcn * CLUSTER
    blk = nb.fixup_decode(bytearray(vol.read(off, CLUSTER)))
    _eoff, used, alloc = struct.unpack_from("<III", blk, 0x18)
    fa = 0x20  # archive
    made = [
        nb.index_entry(live_ref, 1, nb.file_name_value(big, 1, "file_055.txt", fa, 1000)),
        nb.index_entry(reused, seq - 1, nb.file_name_value(keep, 1, "elsewhere.txt", fa, 10)),
        nb.index_entry(fs.nrecords + 5, 1, nb.file_name_value(big, 1, "beyond.txt", fa, 10)),
        nb.index_entry(reused, seq - 1, nb.file_name_value(big, 1, "SHORT~1.TXT", fa, 10, ns=2)),
        nb.index_entry(reused, seq - 1, nb.file_name_value(big, 1, "handmade name.txt", fa,
                                                           4321)),
        nb.index_entry(old, oseq - 1, nb.file_name_value(big, 1, "older name.txt", fa, 5070)),
        nb.index_entry(old, oseq - 1, nb.file_name_value(big, 1, "file_110.txt", fa, 5070)),
    ]
    body = b"".join(made)
    start = 0x18 + used + 64
    assert start + len(body) <= 0x18 + alloc
    blk[start : start + len(body)] = body
    vol.write(off, bytes(nb.fixup_encode(blk)))
    fs = ntfs(bad)
    dead = fs.files().set_index("path")
    names = set(dead.index)
    assert "/big/handmade name.txt" in names
    row = dead.loc["/big/handmade name.txt"]
    assert row.found_by == "slack" and row.deleted and row["size"] == 4321 and row.inode == reused
    assert not {"/big/beyond.txt", "/big/SHORT~1.TXT", "/keep/elsewhere.txt",
                "/big/elsewhere.txt"} & names
    assert (dead.index == "/big/file_055.txt").sum() == 1  # the live one only
    # another name of a deleted record that still holds its file: listed, recoverable,
    # its content that record's; the record's own name is not listed twice
    older = dead.loc["/big/older name.txt"]
    assert older.found_by == "slack" and older.recoverable and older.inode == old
    assert fs.read(fs.lookup("/big/older name.txt", deleted=True)) == gone["/big/file_110.txt"]
    assert (dead.index == "/big/file_110.txt").sum() == 1
    # the index walk gives the same rows
    slow = {e.path for e in FileSystem.iter_entries(fs, "/")}
    assert slow == names


@pytest.mark.skipif(not nb.have("ntfsundelete"), reason="ntfsundelete missing")
def test_at_least_what_ntfsundelete_finds(case):
    img, _live, gone = case
    out = run("ntfsundelete", "-s", "-f", img, check=False)
    theirs = set(re.findall(r"^\s*\d+\s+\S+\s+100%\s+\S+ \S+\s+\d+\s+(\S+)$", out, re.M))
    fs = ntfs(img)
    df = fs.files()
    ours = set(df[df.deleted & df.recoverable].name)
    assert theirs and theirs <= ours


def test_volume_full_of_fake_file_records_is_bounded(case, tmp_path):
    """8 MiB of well-formed FILE records claiming the lost numbers, on a volume whose
    $MFT runlist is cut: the volume still opens and lists, and the scan reports what it
    found; nothing is read past its caps."""
    img, _live, _gone = case
    bad = copy(img, tmp_path, "flood.img")
    cut_mft_runlist(bad, 30)
    vol = nb.Volume(bad)
    real = nb.fixup_decode(bytearray(vol.read(mft_offset(bad) + 150 * vol.rs, vol.rs)))
    flood = bytearray()
    for i in range(8 * MIB // vol.rs):
        struct.pack_into("<I", real, 0x2C, 120 + i % 200)  # lost numbers and beyond
        flood += nb.fixup_encode(bytearray(real))
    vol.write(16 * MIB, bytes(flood))
    fs = ntfs(bad, strict=False)
    assert len(fs.rescued) <= fs.nrecords
    df = fs.files()
    assert len(df) > 0
    assert any("a scan of the volume for FILE records" in r["message"] for r in fs.check_rows())


@needs_shared
@pytest.mark.parametrize("sample, part", [
    ("dfvfs/test_data/windows_volume.qcow2", None),
    ("strozfriedberg-vmdk-rs/data/monolithicSparse.vmdk", 1),
])
def test_real_windows_volumes_list_no_phantoms(sample, part, tmp_path):
    """Windows-made volumes: the deleted rows (records, index slack) are exactly TSK's
    ``fls -r -d -p`` on the same bytes, and the recovery passes add no finding."""
    path = SHARED_SAMPLES / sample
    if not path.exists():
        pytest.skip(f"{sample} absent")
    if not nb.have("qemu-img"):
        pytest.skip("qemu-img missing")
    raw = tmp_path / "disk.raw"
    run("qemu-img", "convert", "-O", "raw", path, raw)
    d = vdinspect.open(raw, format="raw")
    fs = d.filesystem() if part is None else d.filesystem(part=part)
    df = fs.files()
    assert fs.check_rows() == []
    assert set(df.found_by) <= {"index", "mft"}
    offset = None if part is None else int(d.partitions().set_index("index").loc[part, "start"])
    theirs = {r["path"] for r in nb.fls(raw, offset // 512 if offset else None) if r["deleted"]}
    ours = {p[1:] for p in df[df.deleted].path}
    assert ours == theirs


# --- $Bitmap lost: cluster use rebuilt from the runlists ------------------------------------


@pytest.fixture(scope="module")
def reused(tmp_mod):
    """8 MiB (4 KiB clusters) through ntfs-3g: d.bin and a.bin written and deleted, then c.bin
    written in a new session, which takes d.bin's clusters (TSK's istat says which)."""
    img = nb.mkntfs(tmp_mod / "reuse.img", 8 * MIB, "-c", "4096")
    with nb.mounted(img, tmp_mod / "mnt_reuse") as m:
        (m / "a.bin").write_bytes(nb.data_for(65536, 1))
        (m / "keep.bin").write_bytes(nb.data_for(65536, 2))
        (m / "d.bin").write_bytes(nb.data_for(30000, 3))
    with nb.mounted(img, tmp_mod / "mnt_reuse") as m:
        os.unlink(m / "a.bin")
        os.unlink(m / "d.bin")
    with nb.mounted(img, tmp_mod / "mnt_reuse") as m:
        (m / "c.bin").write_bytes(nb.data_for(65536, 4))
    return img


def _allocated_per_tsk(img: Path, clusters: list[int]) -> bool:
    """Whether TSK's blkstat calls any of these clusters allocated (intact $Bitmap)."""
    return any("Not Allocated" not in run("blkstat", img, c) for c in clusters)


@pytest.mark.parametrize("damage", ["runs zeroed", "record wiped"])
def test_bitmap_lost_rebuilt_from_runlists(case, reused, tmp_path, damage):
    """$Bitmap's data zeroed (or its MFT record wiped): cluster use is rebuilt from every
    in-use record's runlists, equal bit for bit to the intact $Bitmap (TSK's icat of record
    6), named in check(); a deleted file whose clusters another file took (TSK's istat and
    blkstat on the intact image) stays not recoverable, where ntfsundelete, reading the
    zeroed $Bitmap, calls it 100% recoverable."""
    for img in (case[0], reused):
        bad = copy(img, tmp_path, f"bm-{img.name}")
        with open(bad, "r+b") as f:
            if damage == "runs zeroed":
                for c in istat_clusters(img, 6, "$DATA"):
                    f.seek(c * CLUSTER)
                    f.write(bytes(CLUSTER))
            else:
                f.seek(mft_offset(bad) + 6 * 1024)
                f.write(bytes(1024))
        fs = ntfs(bad, strict=False)
        bm = fs.volume_bitmap()
        truth = bytearray(run("icat", img, 6, binary=True)[:bm.size])
        if damage == "record wiped":  # its own clusters: no runlist names them any more
            for c in istat_clusters(img, 6, "$DATA"):
                truth[c // 8] &= ~(1 << (c % 8))
        assert bm.read(0, bm.size) == bytes(truth)
        assert any("rebuilt from the runlists" in r["message"] for r in fs.check_rows())
        df = fs.files()
        dead = df[df.deleted & (df.kind == "file") & (df.found_by == "mft")]
        assert len(dead)
        for p, ino, rcv in zip(dead.path, dead.inode, dead.recoverable):
            clusters = istat_clusters(img, int(ino), "$DATA")
            assert rcv == (not clusters or not _allocated_per_tsk(img, clusters)), p
        if img == case[0]:  # every deleted file of the case is its own bytes again
            _img, _live, gone = case
            for p in dead[dead.recoverable].path:
                if p in gone:
                    assert fs.read(p) == gone[p]
        else:
            row = df.set_index("path").loc["/d.bin"]
            assert row.deleted and not row.recoverable
            if nb.have("ntfsundelete") and damage == "runs zeroed":
                out = run("ntfsundelete", "-s", "-f", bad, check=False)
                assert re.search(r"100%.*\sd\.bin$", out, re.M)  # the peer is misled
