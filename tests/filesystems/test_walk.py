"""The one directory walk (vdinspect/filesystems/walk.py) against its documented rules,
with a tiny fake driver: the expected rows and findings are written from the rules in
docs/design.md "The walk", not taken from the walk's output."""

from __future__ import annotations

import numpy as np
import pytest

from vdinspect.errors import CorruptImage, UnsupportedFeature
from vdinspect.filesystems.base import DIR, FILE, MAX_DEPTH, MAX_PATH, Entry, FileSystem
from vdinspect.io import MemorySource

# inode -> children (name, inode, kind, deleted); inode 6 cannot be read
TREE = {
    1: [("a", 2, DIR, False), ("c", 4, DIR, False), ("gone", 5, DIR, True),
        ("unread", 6, DIR, False)],
    2: [("b", 3, DIR, False), ("alias", 3, DIR, False)],  # alias: a directory hard link
    3: [("up", 1, DIR, False), ("f", 10, FILE, False)],  # up: a loop to the root
    4: [("g", 11, FILE, False)],
    5: [("h", 12, FILE, True)],
}


class FakeFS(FileSystem):
    fstype = "fake"

    def __init__(self, tree=TREE, *, strict=False, deleted_listable=True, damaged=None,
                 error=CorruptImage):
        super().__init__(MemorySource(b"\0" * 512), name="fake", strict=strict)
        self.tree, self.deleted_listable, self.damaged_dirs = tree, deleted_listable, damaged
        self.error = error
        self.listed: list[int] = []

    def root(self) -> Entry:
        return Entry(name="", kind=DIR, path="/", inode=1, key=1)

    def list_dir(self, entry: Entry) -> list[Entry]:
        self.listed.append(entry.inode)
        if entry.inode == 6 and not callable(self.tree):
            raise self.error("fake: directory 6 is unreadable")
        kids = self.tree(entry.inode) if callable(self.tree) else self.tree.get(entry.inode, [])
        return [Entry(name=n, kind=k, inode=i, key=i, deleted=d) for n, i, k, d in kids]

    def content(self, entry: Entry):
        raise UnsupportedFeature("fake: no content")

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        return self.deleted_listable

    def volume_damaged(self) -> bool:
        return bool(self.damaged_dirs)

    def directory_damage(self, entry: Entry) -> int:
        return (self.damaged_dirs or {}).get(entry.inode, 0)


def messages(fs: FileSystem) -> list[str]:
    return [r["message"] for r in fs.check_rows()]


def test_order_loop_hard_link_deleted_and_unreadable():
    fs = FakeFS()
    rows = list(fs.iter_entries("/"))
    # a directory's children together, then each subdirectory's, depth first
    assert [e.path for e in rows] == ["/a", "/c", "/gone", "/unread", "/a/b", "/a/alias",
                                      "/a/b/up", "/a/b/f", "/c/g", "/gone/h"]
    assert [e.parent for e in rows][:5] == ["/", "/", "/", "/", "/a"]
    msgs = messages(fs)
    assert any(m.startswith("/a/b/up: directory loop") for m in msgs)
    assert any(m.startswith("/a/alias: directory already listed under another name")
               for m in msgs)
    assert any(m.startswith("/unread: unreadable directory") for m in msgs)
    # each directory is listed once: the loop and the hard link are not entered
    assert sorted(fs.listed) == [1, 2, 3, 4, 5, 6]
    unread = next(e for e in rows if e.path == "/unread")
    assert unread.note.startswith("unreadable directory")


def test_deleted_rules():
    live = [e.path for e in FakeFS().iter_entries("/", deleted=False)]
    assert "/gone" not in live and "/gone/h" not in live
    fs = FakeFS(deleted_listable=False)
    paths = [e.path for e in fs.iter_entries("/")]
    assert "/gone" in paths and "/gone/h" not in paths  # listed, not entered
    assert 5 not in fs.listed
    assert not any(m.startswith("/gone") for m in messages(fs))  # no finding for it


def test_not_recursive_lists_one_directory():
    assert [e.path for e in FakeFS().iter_entries("/", recursive=False)] == [
        "/a", "/c", "/gone", "/unread"]


def test_strict_mode_raises_what_is_not_corruption():
    with pytest.raises(UnsupportedFeature):
        list(FakeFS(strict=True, error=UnsupportedFeature).iter_entries("/"))
    # a corrupt directory is skipped with a finding in strict mode too
    assert "/unread" in [e.path for e in FakeFS(strict=True).iter_entries("/")]


def test_depth_limit():
    fs = FakeFS(lambda ino: [("d", ino + 1, DIR, False)])
    rows = list(fs.iter_entries("/"))
    # directories down to depth MAX_DEPTH - 1 are listed: their children are the rows
    assert len(rows) == MAX_DEPTH
    assert rows[-1].path.count("/") == MAX_DEPTH
    assert any(f"deeper than {MAX_DEPTH} levels" in m for m in messages(fs))


def test_path_length_limit():
    name = "x" * 1000
    fs = FakeFS(lambda ino: [(name, ino + 1, DIR, False)])
    rows = list(fs.iter_entries("/"))
    # the first path over MAX_PATH characters is a row but is not entered
    want = next(k for k in range(1, 100) if k * (len(name) + 1) > MAX_PATH)
    assert len(rows) == want
    assert len(rows[-1].path) > MAX_PATH >= len(rows[-2].path)
    assert any(f"path longer than {MAX_PATH} characters" in m for m in messages(fs))


def test_damaged_directory_note_and_finding():
    fs = FakeFS(damaged={4: 512})
    df = fs.files("/")
    why = "512 bytes of the directory could not be read: entries stored there are lost"
    assert df.set_index("path").at["/c", "note"] == why
    assert f"/c: {why}" in messages(fs)
    partial = []
    list(fs.walk_entries("/", on_partial=lambda e, w: partial.append(e.path)))
    assert partial == ["/c"]


def test_extraction_skips_what_the_walk_does_not_follow(tmp_path):
    report = FakeFS().extract("/", tmp_path / "out")
    skipped = dict(report.skipped)
    assert "/a/b/up" in skipped and "/a/alias" in skipped and "/unread" in skipped


def test_files_frame_builder_dtypes():
    """The one builder: columns as lists, arrays and masked arrays give the schema's
    dtypes (docs/design.md: int64 sizes, nullable ints, datetime64[us, UTC])."""
    from vdinspect.frames import files_columns_frame

    ns = np.array([1_500_000_000_123_456_789, np.iinfo(np.int64).min], dtype=np.int64)
    df = files_columns_frame({
        "path": ["/a", "/b"], "name": ["a", "b"], "parent": ["/", "/"],
        "kind": np.array([FILE, DIR], dtype=object), "size": np.array([5, 0]),
        "inode": np.ma.MaskedArray([7, 0], [False, True]),
        "modified": ns.view("datetime64[ns]"),
        "deleted": [False, True], "recoverable": np.zeros(2, dtype=bool),
        "damaged": np.ma.MaskedArray([0, 0], [False, True]),
        "flags": [1, None]}, {"flags": "Int64"})
    assert list(df.columns[:19]) == ["path", "name", "parent", "kind", "size", "allocated",
                                      "mode", "uid", "gid", "created", "modified",
                                      "accessed", "changed", "inode", "links", "deleted",
                                      "recoverable", "target", "damaged"]
    assert list(df.columns[19:]) == ["found_by", "note", "flags"]
    assert str(df["size"].dtype) == "int64" and str(df["inode"].dtype) == "Int64"
    assert df["inode"].isna().tolist() == [False, True]
    assert str(df["modified"].dtype) == "datetime64[us, UTC]"
    assert str(df.at[0, "modified"]) == "2017-07-14 02:40:00.123456+00:00"
    assert df["modified"].isna().tolist() == [False, True]
    assert df["allocated"].isna().all() and str(df["allocated"].dtype) == "Int64"
    assert df["damaged"].isna().tolist() == [False, True]
    assert str(df["flags"].dtype) == "Int64" and df["flags"].isna().tolist() == [False, True]


def test_a_lazy_listing_is_read_only_as_far_as_it_is_taken():
    import itertools

    made = []

    class Lazy(FakeFS):
        def list_dir(self, entry):
            def gen():
                for i in range(100_000):
                    made.append(i)
                    yield Entry(name=f"f{i}", kind=FILE, inode=100 + i, key=100 + i)
            return gen()

    rows = list(itertools.islice(Lazy().iter_entries("/", recursive=False), 10))
    assert [e.path for e in rows] == [f"/f{i}" for i in range(10)]
    assert len(made) <= 11


def test_merge_columns_interleaves_in_row_order():
    from vdinspect.frames import merge_columns

    t = np.array([10, 30], dtype="datetime64[us]")
    out = merge_columns([True, False, True],
                        {"n": np.array([1, 3]), "s": ["a", "c"], "t": t},
                        {"n": [None], "s": ["b"], "t": np.array(["NaT"], "datetime64[us]")})
    assert np.ma.getdata(out["n"]).tolist()[::2] == [1, 3]
    assert np.ma.getmaskarray(out["n"]).tolist() == [False, True, False]
    assert list(out["s"]) == ["a", "b", "c"]
    assert out["t"].astype("int64").tolist()[::2] == [10, 30] and np.isnat(out["t"][1])


def test_list_listings_follow_the_same_rules():
    """A fast path's children come as lists of tuples: same order and findings."""
    from vdinspect.filesystems.walk import Walk

    fs = FakeFS()

    def children(d):
        if d[4] == 6:
            raise CorruptImage("fake: directory 6 is unreadable")
        prefix = "/" if d[0] == "/" else d[0] + "/"
        return [(prefix + n, k == DIR, i, dl, i, (n, i)) for n, i, k, dl in TREE.get(d[4], [])]

    walk = Walk(fs, ("/", True, 1, False, 1, None), children,
                listable=lambda c: c[4] != 5)
    rows = [c[0] for _d, kids in walk for c in kids]
    assert rows == ["/a", "/c", "/gone", "/unread", "/a/b", "/a/alias", "/a/b/up",
                    "/a/b/f", "/c/g"]  # /gone is not listable here
    assert walk.notes == {3: "unreadable directory: fake: directory 6 is unreadable"}
    msgs = messages(fs)
    assert any(m.startswith("/a/b/up: directory loop") for m in msgs)
    assert any(m.startswith("/a/alias: directory already listed") for m in msgs)


def test_batch_listings_follow_the_same_rules():
    """A fast path may give a directory's rows as a Batch (columns, only subdirectories
    as Children): rows counted in order, subdirectories entered by the same rules
    (loops and directory hard links not followed, notes at the right rows)."""
    from vdinspect.filesystems.walk import Batch, Walk

    fs = FakeFS()

    def children(d):
        if d[4] == 6:
            raise CorruptImage("fake: directory 6 is unreadable")
        prefix = "/" if d[0] == "/" else d[0] + "/"
        kids = TREE.get(d[4], [])
        subdirs = [(k, (prefix + n, True, i, dl, i, None))
                   for k, (n, i, kind, dl) in enumerate(kids) if kind == DIR]
        return Batch(len(kids), subdirs, [prefix + n for n, _i, _k, _dl in kids])

    walk = Walk(fs, ("/", True, 1, False, 1, None), children,
                listable=lambda c: c[4] != 5)
    batches = [kids for _d, kids in walk]
    assert all(isinstance(b, Batch) for b in batches)
    rows = [p for b in batches for p in b.columns]
    # the rules of test_list_listings_follow_the_same_rules, written out again
    assert rows == ["/a", "/c", "/gone", "/unread", "/a/b", "/a/alias", "/a/b/up",
                    "/a/b/f", "/c/g"]
    assert walk.rows == len(rows)
    assert walk.notes == {3: "unreadable directory: fake: directory 6 is unreadable"}
    msgs = messages(fs)
    assert any(m.startswith("/a/b/up: directory loop") for m in msgs)
    assert any(m.startswith("/a/alias: directory already listed") for m in msgs)


def test_batch_not_recursive_lists_one_directory():
    from vdinspect.filesystems.walk import Batch, Walk

    def children(d):
        return Batch(2, [(0, ("/a", True, 2, False, 2, None))], ["/a", "/f"])

    walk = Walk(FakeFS(), ("/", True, 1, False, 1, None), children, recursive=False)
    assert [kids.columns for _d, kids in walk] == [["/a", "/f"]]


def test_paused_gc_restores_the_collector():
    import gc

    from vdinspect.filesystems.walk import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(KeyError), paused_gc():
        raise KeyError("x")
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that turned it off keeps it off
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_paused_gc_overlapping_threads():
    """Pauses in two threads that overlap without nesting (A starts, B starts, A ends, B
    ends): the collector stays off until the last one ends, then comes back on; when it
    was off before the first began, it stays off after the last."""
    import gc
    import threading

    from vdinspect.filesystems.walk import paused_gc

    def overlap(before: bool) -> list[bool]:
        seen: list[bool] = []
        b_in, a_out = threading.Event(), threading.Event()

        def b() -> None:
            with paused_gc():
                b_in.set()
                assert a_out.wait(10)
                seen.append(gc.isenabled())  # A has ended, B still walks

        (gc.enable if before else gc.disable)()
        try:
            t = threading.Thread(target=b)
            with paused_gc():  # A
                t.start()
                assert b_in.wait(10)
            a_out.set()
            t.join(10)
            seen.append(gc.isenabled())  # both ended
        finally:
            gc.enable()
        return seen

    assert overlap(True) == [False, True]
    assert overlap(False) == [False, False]


def test_merge_columns_few_rows_inserted_and_consumed():
    """``b`` giving a few rows: text columns as lists or object arrays with the rows
    inserted at their places; ``consume`` empties the inputs."""
    from vdinspect.frames import merge_columns

    a = {"s": ["a", "c", "d", "f"], "o": np.array(["A", "C", "D", "F"], dtype=object),
         "n": np.array([1, 3, 4, 6])}
    b = {"s": ["b", "e"], "o": [None, "E"], "n": [2, None]}
    which = [True, False, True, True, False, True]
    out = merge_columns(which, a, b, consume=True)
    assert out["s"] == ["a", "b", "c", "d", "e", "f"]
    assert out["o"].tolist() == ["A", None, "C", "D", "E", "F"]
    assert np.ma.getdata(out["n"]).tolist() == [1, 2, 3, 4, 0, 6]
    assert np.ma.getmaskarray(out["n"]).tolist() == [False] * 4 + [True, False]
    assert a == {} and b == {}


def test_text_array_nulls_and_undecodable_names():
    import pandas as pd

    from vdinspect.frames import text_array

    vals = ["a", None, "b\udcff", float("nan")]
    for given in (vals, np.array(vals, dtype=object), iter(vals)):
        arr = text_array(given)
        assert arr.dtype == pd.StringDtype("python")
        assert arr[0] == "a" and arr[2] == "b\udcff"
        assert pd.isna(arr[1]) and pd.isna(arr[3])
    assert list(text_array([1, "x"])) == ["1", "x"]  # not text: converted as before
