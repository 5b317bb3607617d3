"""NTFS recovery on damaged volumes: vdinspect vs The Sleuth Kit vs ntfsundelete.

Builds the volume of tests/filesystems/test_ntfs_recovery.py (mkntfs + ntfs-3g: /big with
150 files, /keep, /new; 16 files deleted, some of their records reused), damages copies
of it, and counts per tool: files recovered with the right sha256, files named but lost
(listed, said unrecoverable or unreadable), files lost silently, and phantoms (deleted
rows naming no file that ever existed; mkntfs's reserved empty records 16-23, which every
tool lists as OrphanFile-N, are left out). Needs root + FUSE (ntfs-3g).

    python3 benchmarks/recovery_ntfs.py      # prints the table of docs/recovery.md
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import ntfs_builder as nb  # noqa: E402
from vdinspect.errors import VDInspectError  # noqa: E402
from vdinspect.filesystems.ntfs import open_filesystem  # noqa: E402
from vdinspect.io import FileSource  # noqa: E402

MIB = 1 << 20
CLUSTER = 4096



def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def build(tmp: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    return nb.recovery_case(tmp)


def clusters_of(img: Path, record: int, type_name: str) -> list[int]:
    out = nb.run("istat", img, record)
    m = re.search(rf"Type: {re.escape(type_name)} .*\n((?:[\d ]+\n)+)", out)
    return [int(x) for x in m.group(1).split()] if m else []


def record_of(img: Path, path: str) -> int:
    for r in nb.fls(img):
        if r["path"] == path:
            return int(r["addr"].split("-")[0])
    raise KeyError(path)


def damage(img: Path, tmp: Path) -> dict[str, Path]:
    bs = img.read_bytes()[:512]
    cs = struct.unpack_from("<H", bs, 11)[0] * bs[13]
    mft = struct.unpack_from("<Q", bs, 0x30)[0] * cs
    cases = {"intact (deletions only)": img}

    def copy(name: str) -> Path:
        out = tmp / name
        shutil.copyfile(img, out)
        return out

    big = record_of(img, "big")
    p = copy("index.img")
    with open(p, "r+b") as f:
        for c in clusters_of(img, big, "$INDEX_ALLOCATION")[:-1]:
            f.seek(c * cs)
            f.write(bytes(cs))
    cases["/big index blocks zeroed (all but one)"] = p
    p = copy("folder.img")
    vol = nb.Volume(p)
    vol.write(vol.record_offset(big), bytes(vol.rs))
    cases["/big MFT record zeroed"] = p
    p = copy("mft1.img")
    with open(p, "r+b") as f:
        f.seek(mft)
        f.write(bytes(cs))
    cases["$MFT first cluster zeroed (records 0-3)"] = p
    p = copy("mft2.img")
    with open(p, "r+b") as f:
        f.seek(mft)
        f.write(bytes(2 * cs))
    cases["$MFT first 2 clusters zeroed (records 0-7, root)"] = p
    p = copy("cut.img")
    vol = nb.Volume(p)
    rec = vol.get(0)
    a = vol.find_attr(rec, 0x80)
    mp = struct.unpack_from("<H", rec, a + 0x20)[0]
    length = struct.unpack_from("<I", rec, a + 4)[0]
    ((lcn, _n),) = nb.decode_runs(bytes(rec[a + mp : a + length]))
    new = nb.encode_runlist([(lcn, 30)])
    rec[a + mp : a + length] = new + bytes(length - mp - len(new))
    vol.put(0, rec)
    cases["$MFT runlist cut to 30 clusters"] = p
    p = copy("bitmap.img")
    with open(p, "r+b") as f:
        for c in clusters_of(img, 6, "$DATA"):
            f.seek(c * cs)
            f.write(bytes(cs))
    cases["$Bitmap's data zeroed"] = p
    return cases


def score(found: dict[str, bytes | None], named_lost: set[str], phantoms: int,
          truth: dict[str, bytes]) -> tuple[int, int, int, int]:
    """found: base name -> bytes read (None: unreadable). Returns recovered, named but
    lost, silently lost, phantoms."""
    want = {p.rsplit("/", 1)[1]: sha(b) for p, b in truth.items()}
    ok = {n for n, b in found.items() if b is not None and n in want and sha(b) == want[n]}
    named = ({n for n in found if n in want} | (named_lost & set(want))) - ok
    return len(ok), len(named), len(want) - len(ok) - len(named), phantoms


def ours(img: Path, truth: dict[str, bytes]) -> tuple:
    try:
        fs = open_filesystem(FileSource(img), strict=False)
        df = fs.files()
    except VDInspectError:
        return score({}, set(), 0, truth)
    names = set(os.path.basename(p) for p in truth)
    found: dict[str, bytes | None] = {}
    lost: set[str] = set()
    phantoms = 0
    for r in df.itertuples():
        if r.kind != "file" or ":" in r.name:
            continue
        if r.name not in names:
            if r.deleted and not re.fullmatch(r"OrphanFile-\d+", r.name):
                phantoms += 1
            continue
        if r.deleted and not r.recoverable:
            lost.add(r.name)
            continue
        try:
            b = fs.read(r.path) if not r.deleted else fs.read(fs.lookup(r.path, deleted=True))
        except VDInspectError:
            lost.add(r.name)
            continue
        if found.get(r.name) is None or sha(b) == sha(truth_of(truth, r.name)):
            found[r.name] = b
    return score(found, lost, phantoms, truth)


def truth_of(truth: dict[str, bytes], name: str) -> bytes:
    return next(b for p, b in truth.items() if p.endswith("/" + name))


def tsk(img: Path, truth: dict[str, bytes]) -> tuple:
    names = set(os.path.basename(p) for p in truth)
    found: dict[str, bytes | None] = {}
    phantoms = 0
    for r in nb.fls(img):
        name = r["path"].rsplit("/", 1)[-1]
        if r["dtype"] == "d" or ":" in name:
            continue
        if name not in names:
            if r["deleted"] and not re.fullmatch(r"OrphanFile-\d+", name):
                phantoms += 1
            continue
        try:
            b = nb.icat(img, r["addr"])
        except RuntimeError:
            b = None
        if found.get(name) is None or (b is not None and sha(b) == sha(truth_of(truth, name))):
            found[name] = b
    return score(found, set(), phantoms, truth)


def undelete(img: Path, truth: dict[str, bytes], gone: dict[str, bytes], tmp: Path) -> tuple:
    out = tmp / "und"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(["ntfsundelete", str(img), "-u", "-m", "*", "-d", str(out)],
                   capture_output=True)
    names = {os.path.basename(p) for p in truth}
    found = {f.name: f.read_bytes() for f in out.iterdir() if f.name in names}
    phantoms = sum(1 for f in out.iterdir() if f.name not in names)
    padded = 0
    for n, b in found.items():  # it writes whole clusters: the file, then zeros
        want = truth_of(truth, n)
        if len(b) > len(want) and b[: len(want)] == want and not b[len(want) :].strip(b"\0"):
            found[n] = want
            padded += 1
    rec, named, silent, ph = score(found, set(), phantoms, gone)  # deleted files only
    return (f"{rec}{'*' if padded else ''}", named, silent, ph)


def main() -> None:
    if not nb.have("mkntfs", "ntfs-3g", "fls", "icat", "istat"):
        sys.exit("needs mkntfs, ntfs-3g and The Sleuth Kit")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        img, live, gone = build(tmp)
        truth = {**live, **gone}
        print(f"{len(live)} live files, {len(gone)} deleted "
              "(recovered / named but lost / lost silently / phantoms)\n")
        print("\\* written padded with zeros to whole clusters (the bytes before are right)\n")
        print("| damage | vdinspect | TSK fls+icat | ntfsundelete (deleted only) |")
        print("|---|---|---|---|")
        for label, p in damage(img, tmp).items():
            cols = [ours(p, truth), tsk(p, truth)]
            und = undelete(p, truth, gone, tmp) if nb.have("ntfsundelete") else None
            cells = [" / ".join(map(str, c)) for c in cols]
            cells.append(" / ".join(map(str, und)) if und else "n/a")
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
