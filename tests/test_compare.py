"""Diff between two states (issue 21): blocks against ``qemu-img compare`` and a sector
comparison of ``qemu-img convert -O raw`` outputs; files against The Sleuth Kit's listings
of both states and the changes the test made with debugfs.

Chains are made by qemu-img (``convert -B`` writes only the clusters that differ from the
backing file), internal snapshots by ``qemu-img snapshot -c`` and ``qemu-io``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import pytest

import vdinspect
from tests import tools

MIB = 1 << 20
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("qemu-img", "qemu-io", "mke2fs", "debugfs", "fls")),
    reason="needs qemu-img, qemu-io, e2fsprogs and sleuthkit")


def raw_of(img: Path, out: Path, snapshot: str | None = None) -> bytes:
    args = ["qemu-img", "convert", "-O", "raw"]
    if snapshot:
        args += ["-l", f"snapshot.name={snapshot}"]
    tools.run(*args, img, out)
    return out.read_bytes()


def differing_sectors(x: bytes, y: bytes) -> list[tuple[int, int]]:
    """(start, end) of runs of 512-byte sectors that differ (the shorter padded with zeros)."""
    n = max(len(x), len(y))
    x, y = x.ljust(n, b"\0"), y.ljust(n, b"\0")
    out: list[tuple[int, int]] = []
    for s in range(0, n, 512):
        if x[s:s + 512] != y[s:s + 512]:
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], s + 512)
            else:
                out.append((s, s + 512))
    return out


def qemu_compare_first(a: Path, b: Path) -> int | None:
    out = tools.run("qemu-img", "compare", a, b, check=False)
    m = re.search(r"mismatch at offset (\d+)", out)
    return int(m.group(1)) if m else None


@pytest.fixture
def chain(tmp_path):
    """base.qcow2 (4 MiB of random data, holes) and top.qcow2 over it with qemu-io writes:
    new data, a rewrite of identical bytes, and zeroed clusters."""
    rnd = random.Random(21)
    base = tmp_path / "base.qcow2"
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", base,
              "8M")
    tools.run("qemu-io", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 5M 1M", base)
    top = tmp_path / "top.qcow2"
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", "-b",
              base.name, "-F", "qcow2", top)
    off = rnd.randrange(0, 64) * 512
    tools.run("qemu-io",
              "-c", f"write -P 0x33 {MIB + off} 1536",   # three sectors inside a cluster
              "-c", "write -P 0x11 2M 64k",              # the same bytes the base holds
              "-c", "write -z 5M 128k",                  # zeroes over base data
              "-c", "write -P 0x44 7M 4k",               # data where the base has none
              top)
    return base, top


def test_chain_blocks_match_qemu(chain, tmp_path):
    base, top = chain
    a_raw, b_raw = raw_of(base, tmp_path / "a.raw"), raw_of(top, tmp_path / "b.raw")
    want = differing_sectors(a_raw, b_raw)
    with vdinspect.open(top, layer=0) as old, vdinspect.open(top) as new:
        d = old.diff(new)
        got = [(r["start"], r["start"] + r["length"]) for r in d.block_rows()]
        assert got == want
        assert {r["how"] for r in d.block_rows()} == {"data"}
        assert got[0][0] == qemu_compare_first(base, top)
        df = d.blocks
        assert list(df.columns) == ["start", "length", "end", "how"]
        assert (df["end"] == df["start"] + df["length"]).all()
        # metadata alone: the clusters the top layer holds, including the identical rewrite
        meta = old.diff(new, compare_data=False).block_rows()
        written = sum(r["length"] for r in meta)
        top_own = [r for r in new.runs() if r.layer == 1 or r.state == "zero"]
        assert written == sum(r.length for r in top_own if r.state != "unallocated")
        assert any(r["start"] <= 2 * MIB < r["start"] + r["length"] for r in meta)
        assert not any(s <= 2 * MIB < e for s, e in got)  # same bytes: not a change


def test_identical_states_have_no_changes(chain):
    base, top = chain
    with vdinspect.open(top) as a, vdinspect.open(top) as b:
        d = a.diff(b)
        assert d.block_rows() == [] and d.changed_bytes == 0
    assert qemu_compare_first(top, top) is None


def test_internal_snapshot_against_current_state(tmp_path):
    img = tmp_path / "snap.qcow2"
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", img, "4M")
    tools.run("qemu-io", "-c", "write -P 0x55 0 2M", img)
    tools.run("qemu-img", "snapshot", "-c", "before", img)
    tools.run("qemu-io", "-c", "write -P 0x66 512k 4k", "-c", "write -P 0x77 3M 8k", img)
    want = differing_sectors(raw_of(img, tmp_path / "s.raw", "before"),
                             raw_of(img, tmp_path / "c.raw"))
    with vdinspect.open(img) as now:
        d = now.at("before").diff(now)
        assert [(r["start"], r["start"] + r["length"]) for r in d.block_rows()] == want
        # shared clusters were decided from metadata: unchanged clusters are never listed
        assert sum(r["length"] for r in d.block_rows()) == 12 * 1024


def test_different_sizes_compare_the_tail_with_zeros(tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", a, "1M")
    tools.run("qemu-img", "create", "-q", "-f", "qcow2", b, "2M")
    tools.run("qemu-io", "-c", "write -P 1 1536k 1k", b)
    with vdinspect.open(a) as da, vdinspect.open(b) as db:
        rows = da.diff(db).block_rows()
    assert rows == [{"start": 1536 * 1024, "length": 1024, "how": "size"}]


# --- files -----------------------------------------------------------------------------
def fls_paths(raw: Path) -> dict[str, str]:
    """path -> kind letter of every live entry, from The Sleuth Kit."""
    return {"/" + r["path"]: r["dtype"] for r in tools.fls_lines(tools.run("fls", "-r", "-p", "-u", raw))
            if r["path"] not in (".", "..") and not r["path"].startswith("$Orphan")}


@pytest.fixture
def ext_states(tmp_path):
    """old.raw made by mke2fs -d; new.raw the same after debugfs: a file removed, one
    added, one renamed, one rewritten with other content of the same size and times."""
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "keep.txt").write_bytes(b"kept\n" * 100)
    (src / "docs" / "gone.txt").write_bytes(b"removed\n" * 10)
    (src / "docs" / "old-name.bin").write_bytes(bytes(range(256)) * 40)
    (src / "big.bin").write_bytes(random.Random(5).randbytes(200_000))
    old = tmp_path / "old.raw"
    with open(old, "wb") as f:
        f.truncate(16 * MIB)
    tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, old)
    new = tmp_path / "new.raw"
    shutil.copy(old, new)
    added = tmp_path / "added.txt"
    added.write_bytes(b"new file\n")
    tools.run("debugfs", "-w", "-R", "rm /docs/gone.txt", new)
    tools.run("debugfs", "-w", "-R", f"write {added} /docs/added.txt", new)
    tools.run("debugfs", "-w", "-R", "ln /docs/old-name.bin /new-name.bin", new)
    tools.run("debugfs", "-w", "-R", "unlink /docs/old-name.bin", new)
    # overwrite big.bin's first data block in place: same size, same times, other bytes
    blocks = tools.run("debugfs", "-R", "blocks /big.bin", new).split()
    with open(new, "r+b") as f:
        f.seek(int(blocks[0]) * 4096 + 100)
        f.write(b"CHANGED")
    return old, new


def test_files_added_removed_renamed_modified(ext_states, tmp_path):
    old, new = ext_states
    A, B = fls_paths(old), fls_paths(new)
    assert set(B) - set(A) == {"/docs/added.txt", "/new-name.bin"}  # the oracle agrees
    assert set(A) - set(B) == {"/docs/gone.txt", "/docs/old-name.bin"}
    base = tmp_path / "old.qcow2"
    tools.run("qemu-img", "convert", "-O", "qcow2", old, base)
    top = tmp_path / "new.qcow2"  # only the clusters that differ from old
    tools.run("qemu-img", "convert", "-O", "qcow2", "-B", base.name, "-F", "qcow2", new, top,
              cwd=tmp_path)
    with vdinspect.open(top, layer=0) as a, vdinspect.open(top) as b:
        d = a.diff(b)
        rows = {r["path"]: r for r in d.file_rows()}
        frame = d.files
    assert rows["/docs/gone.txt"]["change"] == "removed"
    assert rows["/docs/added.txt"]["change"] == "added"
    assert rows["/new-name.bin"]["change"] == "renamed"
    assert rows["/new-name.bin"]["old_path"] == "/docs/old-name.bin"
    assert rows["/big.bin"]["change"] == "modified" and rows["/big.bin"]["what"] == "content"
    assert "/docs/keep.txt" not in rows
    # every path the oracle sees added or removed is in the diff, nothing else but the
    # folders whose entries changed and the modified file
    assert {p for p, r in rows.items() if r["kind"] != "dir"} == {
        "/docs/gone.txt", "/docs/added.txt", "/new-name.bin", "/big.bin"}
    assert list(frame.columns) == ["part", "path", "change", "kind", "old_path", "old_size",
                                   "new_size", "old_modified", "new_modified", "what"]
    # the content check agrees with the bytes
    ha = hashlib.sha256(tools.run("icat", old, _inode(old, "big.bin"), binary=True))
    hb = hashlib.sha256(tools.run("icat", new, _inode(new, "big.bin"), binary=True))
    assert ha.digest() != hb.digest()


def _inode(raw: Path, name: str) -> str:
    for line in tools.run("fls", "-p", raw).splitlines():
        if line.endswith("\t" + name):
            return re.search(r"(\d+):", line).group(1)
    raise AssertionError(name)


def test_cli_diff(ext_states, tmp_path, capsys):
    from vdinspect.cli import main

    old, new = ext_states
    assert main(["diff", "--json", "--files", str(old), str(new)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["path"]: r["change"] for r in rows if r["kind"] != "dir"} == {
        "/docs/gone.txt": "removed", "/docs/added.txt": "added", "/new-name.bin": "renamed",
        "/big.bin": "modified"}
    assert main(["diff", "--json", "--blocks", str(old), str(new)]) == 0
    blocks = json.loads(capsys.readouterr().out)
    want = differing_sectors(old.read_bytes(), new.read_bytes())
    assert [(r["start"], r["start"] + r["length"]) for r in blocks] == want
    assert main(["diff", str(old), str(new)]) == 0
    text = capsys.readouterr().out
    assert "renamed" in text and "/new-name.bin" in text


def test_top_level_diff_and_picture(chain):
    import matplotlib

    matplotlib.use("Agg")
    base, top = chain
    d = vdinspect.diff(top, top, layer=0)  # open options apply to both paths here
    assert d.block_rows() == []
    with vdinspect.open(top, layer=0) as old, vdinspect.open(top) as new:
        d = vdinspect.diff(old, new)
        ax = d.plot()
        spans = [p for p in ax.patches]
        assert len(spans) == 1 + len(d.block_rows())  # the pale disk, then one per range
        assert ax.get_xlim() == (0, 8 * MIB)
        assert "changed ranges" in repr(d) and "Diff" in d._repr_html_()
