"""The pictures: checked pixel by pixel against qemu-img's answers and hand-built runs.

Allocation and layering pictures of the sample chain are compared with the saved
``qemu-img map --output=json`` of each image; the partition bar with ``sfdisk --json``
and ``blkid``; the treemap with the sizes of the files copied in by ``mcopy`` and with
the worked example of the squarified-treemap paper; the 2 TiB map with a brute-force
count over the runs that built it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vdinspect  # noqa: E402
from tests.conftest import SAMPLE_IMAGES, have  # noqa: E402
from vdinspect.containers.base import Run  # noqa: E402
from vdinspect.errors import CorruptImage, InvalidArgument  # noqa: E402
from vdinspect.viz import (  # noqa: E402
    plot_allocation,
    plot_host_layout,
    plot_layers,
    plot_partitions,
    plot_sizes,
    squarify,
)
from vdinspect.viz.colors import KIND_COLORS, STATE_COLORS, human, layer_color, rgb  # noqa: E402

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
CHAIN = ["chain-base.qcow2", "chain-mid.qcow2", "chain-top.qcow2"]
KINDS = ("header", "table", "data", "compressed data", "other", "unused")


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    """No picture function may call plt.show(); every figure is closed afterwards."""

    def forbidden(*a, **k):
        raise AssertionError("plt.show() called")

    monkeypatch.setattr(plt, "show", forbidden)
    yield
    plt.close("all")


def qemu_map(name: str) -> list[dict]:
    return json.loads((SAMPLE_IMAGES / f"{name}.map.json").read_text())


def qemu_state(e: dict) -> str:
    """Our state name for a ``qemu-img map`` entry of the top image."""
    if not e["present"]:
        return "unallocated"
    if e["data"]:
        return "data" if e["depth"] == 0 else "backing"
    return "zero"


def column(img: np.ndarray, col: int) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in px) for px in img[:, col]]


def colours_in(img, col) -> set:
    return set(column(img, col))


def C(hexcolour: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in rgb(hexcolour))


# --- import hygiene --------------------------------------------------------------------------


def test_import_vdinspect_does_not_import_matplotlib():
    code = (
        "import sys, vdinspect, vdinspect.viz, vdinspect.explainer\n"
        f"d = vdinspect.open({str(SAMPLE_IMAGES / 'chain-top.qcow2')!r})\n"
        "e = d.explain('header'); str(e); e.hexdump_html()\n"
        "from vdinspect.viz.allocation import run_arrays, allocation_image\n"
        "allocation_image(run_arrays(d))\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "assert 'ipywidgets' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- allocation map --------------------------------------------------------------------------


def test_allocation_matches_qemu_map():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        ax = plot_allocation(disk, width=1024)
    pic = ax.vdinspect_image
    assert len(ax.images) == 1 and pic.image.shape == (48, 1024, 3)
    checked = 0
    for e in qemu_map("chain-top.qcow2"):
        want = C(STATE_COLORS[qemu_state(e)])
        # every column wholly inside the qemu entry is that state's colour, top to bottom
        first = -(-e["start"] * 1024 // disk.size)
        last = (e["start"] + e["length"]) * 1024 // disk.size
        for col in range(first, last):
            assert colours_in(pic.image, col) == {want}, (e, col)
            checked += 1
    assert checked > 900
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    labels = [t for t in labels if not t.startswith("a part-height bar")]  # the note
    totals: dict[str, int] = {}
    for e in qemu_map("chain-top.qcow2"):
        totals[qemu_state(e)] = totals.get(qemu_state(e), 0) + e["length"]
    assert sorted(labels) == sorted(f"{s} ({human(n)})" for s, n in totals.items())


def test_allocation_by_layer_matches_qemu_depth():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        ax = plot_allocation(disk, by="layer", width=512)
    pic = ax.vdinspect_image
    n = 3
    for e in qemu_map("chain-top.qcow2"):
        want = layer_color(n - 1 - e["depth"], n) if e["present"] else STATE_COLORS["unallocated"]
        mid = (e["start"] + e["length"] // 2) * 512 // disk.size
        assert colours_in(pic.image, mid) == {C(want)}, e
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    labels = [t for t in labels if not t.startswith("a part-height bar")]  # the note
    assert any(lab.startswith("layer 0: chain-base.qcow2") for lab in labels)


def test_allocation_zoom_and_raster():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        lo, hi = 1 * MiB, 1 * MiB + 256 * KiB
        ax = plot_allocation(disk, start=lo, end=hi, width=256)
        assert ax.get_xlim() == (lo, hi)
        pic = ax.vdinspect_image
        for e in qemu_map("chain-top.qcow2"):
            for off in range(max(lo, e["start"]), min(hi, e["start"] + e["length"]), 4 * KiB):
                assert tuple(pic.pixel(off)) == C(STATE_COLORS[qemu_state(e)])
        fig, ax2 = plt.subplots()
        assert plot_allocation(disk, ax2, rows=8, width=64) is ax2
        pic = ax2.vdinspect_image
        assert pic.image.shape[0] == 8 * (pic.cell_pixels + 1)
        for e in qemu_map("chain-top.qcow2"):
            off = e["start"] + e["length"] // 2
            for share in (0.0, 0.5, 0.99):
                assert tuple(pic.pixel(off, share)) == C(STATE_COLORS[qemu_state(e)])
        with pytest.raises(InvalidArgument):
            plot_allocation(disk, start=hi, end=lo)
        with pytest.raises(InvalidArgument):
            plot_allocation(disk, by="colour")


def synthetic_runs():
    """2 TiB in ~100k runs: landmarks at known places, random states in between."""
    rng = np.random.default_rng(7)
    runs = [Run(0, 256 * GiB, "data"), Run(256 * GiB, 256 * GiB, "unallocated")]
    cuts = np.unique(rng.integers(512 * GiB // 65536, 1536 * GiB // 65536, 100_000)) * 65536
    bounds = np.concatenate([[512 * GiB], cuts[cuts > 512 * GiB], [1536 * GiB]])
    states = np.array(["data", "zero", "unallocated", "backing"])[rng.integers(0, 4, len(bounds))]
    runs += [Run(int(a), int(b - a), str(s)) for a, b, s in zip(bounds[:-1], bounds[1:], states)]
    runs += [
        Run(1536 * GiB, 64 * KiB, "damaged"),
        Run(1536 * GiB + 64 * KiB, 512 * GiB - 64 * KiB, "zero"),
    ]
    return runs


def brute_shares(runs, lo: int, hi: int) -> dict[str, float]:
    out: dict[str, int] = {}
    for r in runs:
        a, b = max(lo, r.start), min(hi, r.start + r.length)
        if a < b:
            out[r.state] = out.get(r.state, 0) + b - a
    return {s: n / (hi - lo) for s, n in out.items()}


def test_allocation_two_tib_hundred_thousand_runs():
    runs = synthetic_runs()
    assert len(runs) > 99_000
    size, width = 2 * TiB, 2048
    ax = plot_allocation(runs, width=width)
    pic = ax.vdinspect_image
    img = pic.image
    assert img.shape == (48, width, 3) and len(ax.images) == 1
    assert len(ax.patches) == 0  # no rectangle per run
    col = lambda off: int(off * width // size)  # noqa: E731
    assert colours_in(img, col(128 * GiB)) == {C(STATE_COLORS["data"])}
    assert colours_in(img, col(384 * GiB)) == {C(STATE_COLORS["unallocated"])}
    assert colours_in(img, col(1800 * GiB)) == {C(STATE_COLORS["zero"])}
    # 64 KiB of damage in a 1 GiB column still shows (at least one pixel)
    around = colours_in(img, col(1536 * GiB))
    assert C(STATE_COLORS["damaged"]) in around and C(STATE_COLORS["zero"]) in around
    # mixed columns: pixel counts follow the byte shares of a brute-force count
    by_colour = {C(c): s for s, c in STATE_COLORS.items()}
    for c in (600, 701, 900, 1234, 1500):
        lo, hi = c * size // width, (c + 1) * size // width
        shares = brute_shares(runs, lo, hi)
        counts: dict[str, int] = {}
        for px in column(img, c):
            counts[by_colour[px]] = counts.get(by_colour[px], 0) + 1
        assert set(counts) == set(shares) and sum(counts.values()) == 48
        # every state present gets at least 1/8 of the column (6 px) to stay visible; the
        # pixels lent to small states come out of the others, the rest follows the shares
        lent = sum(max(0.0, 6 - share * 48) for share in shares.values())
        for s, share in shares.items():
            assert counts[s] >= 6
            assert abs(counts[s] - max(6, share * 48)) <= 1 + lent, (c, s, counts, shares)
    totals: dict[str, int] = {}
    for r in runs:
        totals[r.state] = totals.get(r.state, 0) + r.length
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    labels = [t for t in labels if not t.startswith("a part-height bar")]  # the note
    assert sorted(labels) == sorted(f"{s} ({human(n)})" for s, n in totals.items())
    # the same runs as an allocation() frame draw the same picture
    from vdinspect.frames import allocation_frame

    ax2 = plot_allocation(allocation_frame(runs), width=width)
    assert np.array_equal(ax2.vdinspect_image.image, img)


def test_stack_counts_keep_every_state_visible():
    from vdinspect.viz.allocation import stack_counts

    frac = np.array(
        [
            [0.96, 0.01, 0.01, 0.01, 0.01],
            [0.5, 0.5, 0, 0, 0],
            [0.3, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0.999, 0.001, 0, 0, 0],
        ]
    )
    got = stack_counts(frac, 48)
    assert got.tolist() == [
        [24, 6, 6, 6, 6],
        [24, 24, 0, 0, 0],
        [14, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [42, 6, 0, 0, 0],
    ]


def test_allocation_layer_colours_from_runs():
    runs = [
        Run(0, 4 * MiB, "data", layer=0),
        Run(4 * MiB, 4 * MiB, "backing", layer=1),
        Run(8 * MiB, 4 * MiB, "zero", layer=2),
        Run(12 * MiB, 4 * MiB, "unallocated"),
    ]
    pic = plot_allocation(runs, by="layer", width=16).vdinspect_image
    for k in range(3):
        assert colours_in(pic.image, 4 * k + 2) == {C(layer_color(k, 3))}
    assert colours_in(pic.image, 14) == {C(STATE_COLORS["unallocated"])}


@pytest.mark.skipif(not have("sfdisk"), reason="sfdisk missing")
def test_allocation_partition_overlay(tmp_path):
    img = tmp_path / "parts.raw"
    with open(img, "wb") as f:
        f.truncate(32 * MiB)
    subprocess.run(
        ["sfdisk", "-q", str(img)],
        input="label: gpt\n1MiB,8MiB\n,12MiB\n",
        text=True,
        check=True,
        capture_output=True,
    )
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(img)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    want = set()
    for p in table["partitions"]:
        want |= {p["start"] * 512, (p["start"] + p["size"]) * 512}
    with vdinspect.open(img) as disk:
        ax = plot_allocation(disk)
    xs = set()
    for coll in ax.collections:
        for seg in coll.get_segments():
            xs.add(int(round(seg[0][0])))
    assert xs == want
    assert {t.get_text() for t in ax.texts} == {"p1", "p2"}


def test_allocation_survives_unreadable_partitions(monkeypatch):
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:

        def broken():
            raise CorruptImage("bad table", path=disk.path, structure="GPT", offset=512)

        monkeypatch.setattr(disk, "partitions", broken)
        ax = plot_allocation(disk)
        assert len(ax.images) == 1 and not ax.collections


# --- layering ---------------------------------------------------------------------------------


def test_layers_band_per_layer_with_qemu_amounts():
    snaps = [
        s["name"]
        for s in json.loads((SAMPLE_IMAGES / "chain-top.qcow2.snapshots.json").read_text())
    ]
    top_map = qemu_map("chain-top.qcow2")
    n = 3
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        ax = plot_layers(disk, width=512)
    assert len(ax.images) == n + 1
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == n + 1
    for k, name in enumerate(CHAIN):
        own = qemu_map(name)  # the image alone: depth 0 = its own clusters
        holds = sum(e["length"] for e in own if e["depth"] == 0 and e["data"])
        supplies = sum(e["length"] for e in top_map if e["present"] and e["depth"] == n - 1 - k)
        assert name in labels[k]
        assert f"holds {human(holds)}, supplies {human(supplies)}" in labels[k]
        assert ax.vdinspect_layers[k]["holds"] == holds
        assert ax.vdinspect_layers[k]["supplies"] == supplies
    assert "snapshots: " + ", ".join(snaps) in labels[2]
    # the top band: every qemu entry coloured by the layer that answers it
    top = ax.images[-1].get_array()
    for e in top_map:
        want = layer_color(n - 1 - e["depth"], n) if e["present"] else STATE_COLORS["unallocated"]
        mid = (e["start"] + e["length"] // 2) * 512 // disk.size
        assert colours_in(np.asarray(top), mid) == {C(want)}
    # the base band: where the base holds data that a later layer hides, the lighter shade
    base = np.asarray(ax.images[0].get_array())
    base_own = [e for e in qemu_map("chain-base.qcow2") if e["depth"] == 0 and e["data"]]
    for e in base_own:
        mid = (e["start"] + e["length"] // 2) * 512 // disk.size
        answering = next(
            t
            for t in top_map
            if t["start"] <= e["start"] + e["length"] // 2 < t["start"] + t["length"]
        )
        dark = C(layer_color(0, n))
        assert (dark in colours_in(base, mid)) == (
            answering["depth"] == n - 1 and answering["present"]
        )


# --- host layout ----------------------------------------------------------------------------


def qcow2_fields(path) -> dict:
    """Header fields decoded with struct at the offsets of QEMU's qcow2 spec."""
    with open(path, "rb") as f:
        h = f.read(104)
    return dict(
        l1_table_offset=struct.unpack(">Q", h[40:48])[0],
        refcount_table_offset=struct.unpack(">Q", h[48:56])[0],
        header_length=struct.unpack(">I", h[100:104])[0],
    )


def contiguous(ranges: list[tuple[int, int]]) -> int:
    n, end = 0, None
    for a, b in sorted(ranges):
        if end is None or a != end:
            n += 1
        end = b
    return n


def test_host_layout_against_qemu_map_and_spec():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        ax = plot_host_layout(disk, width=1024)
        summary = ax.vdinspect_layout
        assert len(summary) == 3 and len(ax.images) == 3
        for k, name in enumerate(CHAIN):
            s = summary[k]
            path = SAMPLE_IMAGES / name
            assert os.path.basename(s["host_file"]) == name
            assert s["file_size"] == path.stat().st_size
            own = [
                (e["offset"], e["offset"] + e["length"])
                for e in qemu_map(name)
                if e["depth"] == 0 and e["data"]
            ]
            assert s["data_extents"] == contiguous(own)
            f = qcow2_fields(path)
            starts, lengths, codes = s["segments"]

            def kind_at(off, starts=starts, lengths=lengths, codes=codes):
                i = int(np.searchsorted(starts, off, side="right")) - 1
                assert starts[i] <= off < starts[i] + lengths[i]
                return KINDS[codes[i]]

            assert kind_at(0) == kind_at(f["header_length"] - 1) == "header"
            assert kind_at(f["l1_table_offset"]) == "table"
            assert kind_at(f["refcount_table_offset"]) == "table"
            for a, b in own:
                assert kind_at(a) == kind_at(b - 1) == "data"
            assert s["unused"] == s["file_size"] - sum(s[k] for k in KINDS[:-1])
            img = np.asarray(ax.images[k].get_array())
            for a, b in own:  # the data pixels of the band
                col = (a + b) // 2 * 1024 // s["file_size"]
                assert C(KIND_COLORS["data"]) in colours_in(img, col)
            assert str(s["data_extents"]) in ax.get_yticklabels()[k].get_text()
        ax1 = plot_host_layout(disk, layer=2)
        assert len(ax1.images) == 1
        assert [s["layer"] for s in ax1.vdinspect_layout] == [2]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert {"header", "table", "data", "unused"} <= set(legend)


def test_host_layout_external_data_file():
    with vdinspect.open(SAMPLE_IMAGES / "datafile2.qcow2") as disk:
        ax = plot_host_layout(disk)
    files = sorted(os.path.basename(s["host_file"]) for s in ax.vdinspect_layout)
    assert files == ["datafile2.data", "datafile2.qcow2"]
    data = next(s for s in ax.vdinspect_layout if s["host_file"].endswith(".data"))
    own = [
        (e["offset"], e["offset"] + e["length"]) for e in qemu_map("datafile2.qcow2") if e["data"]
    ]
    assert data["data"] == sum(b - a for a, b in own)


# --- partitions -----------------------------------------------------------------------------


@pytest.mark.skipif(not have("sfdisk", "mkfs.vfat"), reason="sfdisk/mkfs.vfat missing")
def test_partitions_bar_against_sfdisk_and_blkid(tmp_path):
    img = tmp_path / "mbr.raw"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    layout = "label: dos\n1MiB,16MiB,83\n,16MiB,c\n,,5\n,8MiB,83\n"
    subprocess.run(
        ["sfdisk", "-q", str(img)], input=layout, text=True, check=True, capture_output=True
    )
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(img)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    p2 = table["partitions"][1]
    subprocess.run(
        ["mkfs.vfat", "-n", "VIZTEST", f"--offset={p2['start']}", str(img), str(p2["size"] // 2)],
        check=True,
        capture_output=True,
    )
    with vdinspect.open(img) as disk:
        parts = disk.partitions()
        ax = plot_partitions(disk)
    assert len(ax.patches) == len(parts)
    rects = {(round(p.get_x()), round(p.get_width())) for p in ax.patches}
    for p in table["partitions"]:
        assert (p["start"] * 512, p["size"] * 512) in rects
    texts = " | ".join(t.get_text() for t in ax.texts)
    assert "VIZTEST" in texts and "1: " in texts and "5: " in texts and "free" in texts
    if have("blkid"):
        out = subprocess.run(
            ["blkid", "-p", "-O", str(p2["start"] * 512), "-o", "export", str(img)],
            capture_output=True,
            text=True,
        ).stdout
        fields = dict(line.split("=", 1) for line in out.split() if "=" in line)
        assert fields.get("LABEL") == "VIZTEST"
    # the extended container sits on its own tier above the partitions
    ext = [
        p
        for p in ax.patches
        if round(p.get_x()) == table["partitions"][2]["start"] * 512
        and round(p.get_width()) == table["partitions"][2]["size"] * 512
    ]
    assert len(ext) == 1 and ext[0].get_y() > 1


def test_partitions_whole_disk():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        ax = plot_partitions(disk)
    assert len(ax.patches) == 1
    assert ax.patches[0].get_width() == 4 * MiB
    assert "no partition table" in ax.get_title(loc="left")


# --- treemap --------------------------------------------------------------------------------


def test_squarify_paper_example():
    # Bruls, Huizing & van Wijk (2000), figure 4: areas 6,6,4,3,2,2,1 in a 6 x 4 box
    got = squarify([6, 6, 4, 3, 2, 2, 1], 0, 0, 6, 4)
    want = [
        (0, 0, 3, 2),
        (0, 2, 3, 2),
        (3, 0, 12 / 7, 7 / 3),
        (3 + 12 / 7, 0, 9 / 7, 7 / 3),
        (3, 7 / 3, 1.2, 5 / 3),
        (4.2, 7 / 3, 1.2, 5 / 3),
        (5.4, 7 / 3, 0.6, 5 / 3),
    ]
    assert np.allclose(got, want)
    with pytest.raises(InvalidArgument):
        squarify([3, 0], 0, 0, 1, 1)


def fake_filesystem(tree: dict):
    """A tiny in-memory FileSystem: {name: size or {subtree}}."""
    from vdinspect.filesystems.base import DIR, FILE, Entry, FileSystem
    from vdinspect.io import MemorySource

    class MemFS(FileSystem):
        fstype = "memfs"

        def root(self):
            return Entry("", DIR, key=tree, inode=1)

        def list_dir(self, entry):
            out = []
            for i, (name, v) in enumerate(entry.key.items()):
                if isinstance(v, dict):
                    out.append(Entry(name, DIR, key=v, inode=id(v)))
                else:
                    out.append(Entry(name, FILE, size=v, key=v, inode=1000 + i))
            return out

        def content(self, entry):
            return MemorySource(bytes(entry.size))

    return MemFS(MemorySource(b"", name="memfs"), name="memfs")


def test_treemap_areas_follow_sizes():
    tree = {
        "a": {"x.bin": 600_000, "y.bin": 200_000, "deep": {"z": {"w.bin": 100_000}}},
        "b.bin": 150_000,
        "c": {f"f{i}": 100 for i in range(40)},
        "empty": {},
    }
    fs = fake_filesystem(tree)
    ax = fs.plot_sizes("/", depth=2)
    info = ax.vdinspect_treemap
    W, H = info["area"]
    top = {n.path: r for n, level, r in info["boxes"] if level == 0}
    total = 900_000 + 150_000 + 4_000
    assert set(top) == {"/a", "/b.bin", "/c"}
    for path, size in {"/a": 900_000, "/b.bin": 150_000, "/c": 4_000}.items():
        x, y, w, h = top[path]
        assert w * h == pytest.approx(W * H * size / total, rel=1e-9)
    inner = {n.path: (n, r) for n, level, r in info["boxes"] if level == 1}
    assert {"/a/x.bin", "/a/y.bin", "/a/deep"} <= set(inner)
    area = {p: r[2] * r[3] for p, (_n, r) in inner.items()}
    assert area["/a/x.bin"] / area["/a/y.bin"] == pytest.approx(3)
    assert area["/a/x.bin"] / area["/a/deep"] == pytest.approx(6)
    assert inner["/a/deep"][0].size == 100_000  # deeper files count toward depth 2
    # 40 files of 100 B: the 24 largest (ties by name) stay, the other 16 become "other"
    c = next(n for n in info["root"].children if n.path == "/c")
    kids = c.children
    assert len(kids) == 25 and kids[-1].kind == "other" and kids[-1].count == 16
    assert sum(k.size for k in kids) == 4_000
    for _n, _level, (x, y, w, h) in info["boxes"]:  # everything inside the picture
        assert -1e-9 <= x and x + w <= W + 1e-9 and -1e-9 <= y and y + h <= H + 1e-9
    ax2 = plot_sizes(fs.files(), "/a", depth=1)
    names = {n.name for n, _l, _r in ax2.vdinspect_treemap["boxes"]}
    assert names == {"x.bin", "y.bin", "deep"}


@pytest.mark.skipif(not have("mkfs.vfat", "mcopy"), reason="dosfstools/mtools missing")
def test_treemap_on_fat_matches_host_sizes(tmp_path):
    from vdinspect.errors import UnsupportedFeature
    from vdinspect.filesystems import open_filesystem
    from vdinspect.io import FileSource

    src = tmp_path / "src"
    sizes = {"big/a.bin": 300_000, "docs/b.txt": 120_000, "docs/sub/c.txt": 5_000, "top.txt": 700}
    rng = np.random.default_rng(3)
    for rel, n in sizes.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.bytes(n))
    img = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-C", str(img), "4096"], check=True, capture_output=True)
    subprocess.run(
        ["mcopy", "-s", "-i", str(img)] + [str(p) for p in sorted(src.iterdir())] + ["::/"],
        check=True,
        capture_output=True,
    )
    try:
        fs = open_filesystem(FileSource(img))
    except UnsupportedFeature:
        pytest.skip("no FAT driver yet")
    ax = fs.plot_sizes()
    root = ax.vdinspect_treemap["root"]
    host = {}
    for dirpath, _dirs, files in os.walk(src):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            top = rel.split(os.sep)[0]
            host[top] = host.get(top, 0) + os.path.getsize(os.path.join(dirpath, f))
    assert {c.name.lower(): c.size for c in root.children} == host
    fs.source.close()


def test_given_axes_are_used_and_returned():
    fig, axs = plt.subplots(4)
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        before = plt.get_fignums()
        assert disk.plot_allocation(axs[0]) is axs[0]
        assert disk.plot_layers(axs[1]) is axs[1]
        assert disk.plot_host_layout(axs[2]) is axs[2]
        assert disk.plot_partitions(axs[3]) is axs[3]
        assert plt.get_fignums() == before  # no new figure when an Axes is given


def test_missing_matplotlib_is_not_needed_for_the_numbers():
    from vdinspect.viz.allocation import allocation_image, run_arrays

    runs = [Run(0, 3 * MiB, "data"), Run(3 * MiB, 1 * MiB, "unallocated")]
    pic = allocation_image(run_arrays(runs), width=4)
    assert [int(t) for t in pic.totals[:1]] == [3 * MiB]
    assert colours_in(pic.image, 3) == {C(STATE_COLORS["unallocated"])}


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img missing")
def test_host_layout_other_formats(tmp_path):
    from tests.qemu_tools import create, qemu_io

    for fmt in ("vpc", "vdi", "vhdx", "parallels"):
        p = create(tmp_path / f"t.{fmt}", "16M", fmt)
        qemu_io(p, "write -P 0x11 1M 1M", fmt=fmt)
        with vdinspect.open(p) as disk:
            ax = plot_host_layout(disk)
            s = ax.vdinspect_layout[0]
            assert s["file_size"] == p.stat().st_size
            assert s["header"] > 0 and s["data"] >= 1 * MiB and s["data_extents"] >= 1
        plt.close("all")


def test_plot_displays_once_in_a_notebook():
    """A cell ending in a plot call shows the picture once, without '<Axes: ...>' text."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "%matplotlib inline\nimport vdinspect\n"
        f"disk = vdinspect.open({str(SAMPLE_IMAGES / 'chain-top.qcow2')!r})",
        "disk.plot_allocation()",
        "disk.plot_layers();",
        "ax = disk.plot_allocation()\nprint(type(ax).__name__)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(SAMPLE_IMAGES.parent), os.environ.get("PYTHONPATH")) if p))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    outs = [c.outputs for c in nb.cells]

    def pngs(out):
        return [o for o in out if "image/png" in o.get("data", {})]

    # the value's repr is the picture, and the inline backend does not draw it again
    assert len(outs[1]) == 1 and len(pngs(outs[1])) == 1, outs[1]
    # ';' (no value shown): the backend draws it, once
    assert len(pngs(outs[2])) == 1 and len(outs[2]) == 1, outs[2]
    # the value is still a plain matplotlib Axes
    assert any("Axes" in o.get("text", "") for o in outs[3]) and len(pngs(outs[3])) == 1


def test_partition_labels_do_not_overlap_or_leave_the_plot():
    with vdinspect.open(SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2") as disk:
        ax = disk.plot_partitions()
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts if t.get_text()]
    assert len(boxes) == 5  # three partitions inside, two 1 MiB gaps above
    for i, a in enumerate(boxes):
        assert ax.bbox.x0 - 1 <= a.x0 and a.x1 <= ax.bbox.x1 + 1, a  # nothing cut off
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_treemap_of_a_flat_folder_says_something():
    """20,000 small files in one folder: boxes by extension (or size band), not one 'other'."""
    import pandas as pd

    from vdinspect.viz.treemap import size_tree

    rows = [
        dict(path=f"/big/f{i:05d}.{('txt', 'log')[i % 2]}", kind="file", size=100 + i % 900,
             deleted=False)
        for i in range(20_000)
    ]
    tree = size_tree(pd.DataFrame(rows), "/")
    big = tree.children[0]
    names = sorted(c.name for c in big.children)
    assert names == ["*.log: 10000 files", "*.txt: 10000 files"], names
    same = pd.DataFrame([dict(r, path=r["path"][:-4] + ".txt") for r in rows])
    bands = size_tree(same, "/big").children
    assert len(bands) >= 2 and sum(c.count for c in bands) == 20_000
    assert all("files" in c.name and "–" in c.name for c in bands), [c.name for c in bands]
