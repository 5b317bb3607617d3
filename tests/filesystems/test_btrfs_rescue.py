"""Btrfs names lost with a DIR_INDEX leaf (issue 16): made by ``mkfs.btrfs --rootdir``;
which leaf holds which item comes from ``btrfs inspect-internal dump-tree`` of the intact
image, where the leaves lie from ``btrfs-map-logical``; what is expected is derived from
those and from the source tree, and ``btrfs restore`` of the damaged image is the peer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run, write_sparse
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(not have("mkfs.btrfs", "btrfs", "btrfs-map-logical"),
                                reason="needs btrfs-progs")
NODE = 4096


def _leaves(img: Path) -> dict[int, list[tuple[int, str, int]]]:
    """leaf address -> its item keys (objectid, type, offset), from dump-tree."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    out: dict[int, list] = {}
    leaf = None
    for line in text.splitlines():
        if m := re.match(r"^leaf (\d+) items", line):
            leaf = int(m.group(1))
            out[leaf] = []
        elif leaf is not None and (m := re.match(r"^\s+item \d+ key \((\d+) (\w+) (\d+)\)",
                                                 line)):
            out[leaf].append((int(m.group(1)), m.group(2), int(m.group(3))))
        elif line.startswith("node "):
            leaf = None
    return out


def _names(img: Path, dir_ino: int) -> dict[int, tuple[str, int]]:
    """DIR_INDEX offset -> (name, inode) of a directory, from dump-tree."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    return {int(m.group(1)): (m.group(3), int(m.group(2))) for m in re.finditer(
        rf"key \({dir_ino} DIR_INDEX (\d+)\).*\n\s+location key \((\d+) .*\n.*\n\s+name: (.*)",
        text)}


def _dir_item_leaves(img: Path, dir_ino: int) -> dict[int, int]:
    """inode -> the leaf holding the DIR_ITEM of ``dir_ino`` that names it (dump-tree)."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    out, leaf = {}, None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"^leaf (\d+) items", line):
            leaf = int(m.group(1))
        elif re.match(rf"^\s+item \d+ key \({dir_ino} DIR_ITEM \d+\)", line):
            out[int(re.search(r"location key \((\d+)", lines[i + 1]).group(1))] = leaf
    return out


@pytest.mark.parametrize("dir_item_too", [False, True])
def test_names_lost_with_a_dir_index_leaf(tmp_path, dir_item_too):
    """A leaf of /big's DIR_INDEX items zeroed, and the leaf that begins with the INODE_REF
    of one of its files (and, second case, the leaf of that file's DIR_ITEM): each name
    whose inode survives is listed at its path (back reference or DIR_ITEM) or under
    /$OrphanFiles, with its bytes or its damage said; btrfs restore loses them all."""
    src = tmp_path / "src"
    (src / "big" / "sub").mkdir(parents=True)
    want = {}
    for i in range(300):
        want[f"/big/file-with-a-long-name-{i}.txt"] = f"content {i}\n".encode()
    want["/big/sub/inner"] = b"inner\n"
    want["/keep"] = b"kept\n"
    for p, data in want.items():
        (src / p.lstrip("/")).write_bytes(data)
    (src / "links").mkdir()
    for i in range(0, 300, 4):  # hard links: a lost name of these has another way in
        os.link(src / f"big/file-with-a-long-name-{i}.txt", src / f"links/l{i}")
        want[f"/links/l{i}"] = want[f"/big/file-with-a-long-name-{i}.txt"]
    img = tmp_path / "b.raw"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    run("mkfs.btrfs", "-q", "-f", "-m", "single", "--nodesize", str(NODE), "--rootdir", src,
        img)
    leaves = _leaves(img)
    top = {n: i for n, i in _names(img, 256).values()}
    big = top["big"]
    names = _names(img, big)
    ino_of = {"/big/" + n: i for n, i in names.values()}
    # a leaf of /big's DIR_INDEX items (not its first), and a leaf that begins with the
    # INODE_REF of a file whose name is in it: that file keeps only its INODE_ITEM
    idx_leaves = [a for a, keys in leaves.items()
                  if any(k[0] == big and k[1] == "DIR_INDEX" for k in keys)]
    assert len(idx_leaves) >= 3
    where = {}  # (objectid, type) -> leaf; INODE_REFs also by (objectid, type, parent)
    for a, keys in leaves.items():
        for o, t, off in keys:
            where.setdefault((o, t), a)
            if t == "INODE_REF":
                where[(o, t, off)] = a
    leaf_of_name = {names[k[2]][1]: a for a in idx_leaves for k in leaves[a]
                    if k[0] == big and k[1] == "DIR_INDEX"}
    linked = {ino_of[f"/big/file-with-a-long-name-{i}.txt"] for i in range(0, 300, 4)}
    ref_cut = [a for a, keys in leaves.items() if keys and keys[0][1] == "INODE_REF"
               and keys[0][0] in leaf_of_name and keys[0][0] not in linked
               and a not in idx_leaves]
    cut = leaf_of_name[leaves[ref_cut[0]][0][0]] if ref_cut else idx_leaves[1]
    cut_names = {names[k[2]][0] for k in leaves[cut] if k[0] == big and k[1] == "DIR_INDEX"}
    zero = [cut] + ref_cut[:1]
    hashed = _dir_item_leaves(img, big)
    if dir_item_too:
        x = leaves[ref_cut[0]][0][0] if ref_cut else None
        if x is None or any(k[:2] != (big, "DIR_ITEM") for k in leaves[hashed[x]]):
            pytest.skip("the DIR_ITEM leaf holds other items too in this layout")
        zero.append(hashed[x])
    lost_leaves = set(zero)
    bad = tmp_path / "bad.raw"
    data = bytearray(img.read_bytes())
    for logical in zero:
        phys = int(re.search(r"physical (\d+)", run("btrfs-map-logical", "-l", logical,
                                                     img)).group(1))
        data[phys:phys + NODE] = bytes(NODE)
    write_sparse(bad, data)

    # what the damaged volume still holds, by the intact image's dump: every name of /,
    # /big, /big/sub and /links, where its DIR_INDEX, INODE_ITEM, INODE_REF and DIR_ITEM lie
    dirs = {256: "", big: "/big", top["links"]: "/links",
            {n: i for n, i in names.values()}["sub"]: "/big/sub"}
    entries = []  # (directory, path, inode, DIR_INDEX intact)
    for d, prefix in dirs.items():
        for off, (name, ino) in _names(img, d).items():
            at = next(a for a, keys in leaves.items() if (d, "DIR_INDEX", off) in keys)
            entries.append((d, f"{prefix}/{name}", ino, at not in lost_leaves))
    reached = {ino for _d, _p, ino, ok in entries if ok}
    expect_backup, expect_hashed, expect_orphan, expect_noinode = set(), set(), set(), set()
    missing: dict[str, int] = {}  # directory path -> bytes of its names not found
    ino_of = {p: ino for _d, p, ino, _ok in entries}
    for d, p, ino, ok in entries:
        name_len = len(p.rsplit("/", 1)[1].encode())
        item_lost = where[(ino, "INODE_ITEM")] in lost_leaves
        if ok:
            if item_lost and p != "/big/sub":
                expect_noinode.add(p)
            continue
        ref_ok = where.get((ino, "INODE_REF", d)) not in lost_leaves | {None}
        if item_lost or (ino in reached and not ref_ok):
            missing[dirs[d]] = missing.get(dirs[d], 0) + name_len  # counted, not named
        elif ref_ok:
            expect_backup.add(p)
        elif _dir_item_leaves(img, d)[ino] not in lost_leaves:
            expect_hashed.add(p)
        else:  # listed unnamed: its name is missing too
            expect_orphan.add(p)
            missing[dirs[d]] = missing.get(dirs[d], 0) + name_len
    assert expect_backup and (expect_orphan or expect_hashed or not ref_cut)

    fs = open_filesystem(FileSource(bad), strict=False)
    df = fs.files()
    got_backup = set(df[df.found_by == "backup"].path)
    assert got_backup == expect_backup | expect_hashed
    by_hash = set(df[df.note.fillna("").str.contains("DIR_ITEM")].path)
    assert by_hash == expect_hashed
    extents_lost = {p for p in want if p in ino_of
                    and where.get((ino_of[p], "EXTENT_DATA")) in lost_leaves}
    for p in got_backup - {"/big/sub"}:
        if p in extents_lost:  # its extent item went with the leaf: said, not read
            assert df.set_index("path").loc[p, "damaged"] > 0
        else:
            assert fs.read(p) == want[p]
    orphans = df[df.path.str.startswith("/$OrphanFiles/")]
    extra = {i: [(a, k) for a, ks in leaves.items() for k in ks if k[0] == i]
             for i in orphans.inode}
    assert {int(n.split("-")[1]) for n in orphans.name} == {ino_of[p] for p in expect_orphan}, (
        extra, zero)
    assert not orphans.deleted.any()
    noted = df[df.path == "/big"].note.iloc[0]
    assert "unreadable tree block" in noted
    for d, n in missing.items():  # a directory's size (twice its names' bytes) counts them
        assert f"names of {n} bytes are not found" in df[df.path == d].note.iloc[0]
    assert set(df[df.note.fillna("").str.contains("no INODE_ITEM")].path) == expect_noinode
    # phantoms: every row is a path of the source, /big/sub, or an orphan of it
    listed = set(df[~df.path.str.startswith("/$OrphanFiles")].path)
    assert listed <= set(want) | {"/big", "/big/sub", "/links"}
    # the generic walk (list_dir) and extraction say the same
    walk = {e.name for e in fs.list_dir(fs.lookup("/big")) if e.found_by == "backup"}
    assert walk == {p.rsplit("/", 1)[1] for p in expect_backup | expect_hashed}
    report = fs.extract("/", tmp_path / "out")
    assert any(p == "/big" for p, _w in report.incomplete)
    for p in expect_backup - {"/big/sub"} - extents_lost:
        assert (tmp_path / "out" / p.lstrip("/")).read_bytes() == want[p]
    # the peer: btrfs restore of the damaged image skips every name of the lost leaf
    rest = tmp_path / "restore"
    rest.mkdir()
    run("btrfs", "restore", "-i", bad, rest, check=False)
    restored = {"/" + str(q.relative_to(rest)) for q in rest.rglob("*") if q.is_file()}
    assert not restored & (expect_backup | expect_hashed)
    ours = set(df[df.kind == "file"].path)
    assert restored <= ours  # what restore gets back, we list too
    right = sum((rest / p.lstrip("/")).read_bytes() == want[p] for p in restored)
    files = df[df.kind == "file"].set_index("path")
    whole = set(files.index[files["damaged"].fillna(-1).to_numpy() == 0])
    ok = {p for p in whole if p in want and fs.read(p) == want[p]}
    said = {p for p in files.index if p in want and p not in ok}
    print(f"vdinspect right {len(ok)}, said lost {len(said)} + {len(orphans)} in $OrphanFiles, "
          f"silent {len(set(want) - ok - said) - len(orphans)}; restore wrong "
          f"{len(restored) - right}, missing {len(set(want) - restored)}")
    print(f"restore right: {right}; vdinspect: {len(got_backup)} by back reference "
          f"({len(by_hash)} by DIR_ITEM), {len(orphans)} unnamed, "
          f"{len(expect_noinode)} named without inode; btrfs restore: {len(restored)} of "
          f"{len(want)} files; {len(cut_names)} names in the lost leaf")
