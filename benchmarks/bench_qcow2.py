#!/usr/bin/env python3
"""vdinspect's QCOW2 reader against qemu-img, side by side, in one run on one machine.

    python benchmarks/bench_qcow2.py [--workdir DIR] [--quick] [--profile] [--json FILE]
                                     [--outdir DIR] [--no-compressed]

What it measures (see benchmarks/README.md and docs/benchmarks.md):

1. builds test images with qemu-img / qemu-io (cached in the work dir between runs):
   a 2 GiB QCOW2 (64 KiB clusters) with 1 GiB of 64 KiB clusters in two host layouts
   ("in-order": ``qemu-img convert`` from a sparse raw file; "scattered": qemu-io writes
   in shuffled order, so guest-adjacent clusters sit far apart in the host file), both
   holding the same guest bytes; a zlib-compressed variant (512 MiB, 256 MiB allocated);
   a 1 TiB image with 16k extents spread over it; a 3-deep backing chain;
2. ``vdinspect convert`` (CLI) and ``Disk.to_raw`` (API) against
   ``qemu-img convert -O raw``: one warm-up, then best of 3; outputs compared with cmp;
3. ``Disk.allocation()`` against ``qemu-img map --output=json``;
4. the same on the 1 TiB / 16k-extent image (target: allocation() < 0.5 s);
5. random 4 KiB ``Disk.read`` calls: reads/s and MiB/s (no qemu figure: qemu-io's
   per-command overhead makes a per-read comparison meaningless);
6. ``vdinspect.open`` + ``close`` on every kind of image (target < 50 ms).

Each figure is taken as wall-clock time and as CPU time (user + system of this process and
of the child it waited for); on a busy machine the CPU times are the steadier comparison.
The images sit in the page cache (every measurement is warmed once first) and convert
writes to a tmpfs when there is room (``--outdir`` to choose), so these are the tools'
CPU-and-syscall costs, not disk speed. Generated images go to the work dir (default
``benchmarks/work/``, ignored by git).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
CLUSTER = 64 * KiB
NCHUNKS = 64  # distinct 64 KiB data chunks the guest clusters are filled from
GENERATOR_VERSION = 1  # bump to rebuild cached images after changing a builder

# --- targets --------------------------------------------------------------------------
CONVERT_RATIO_TARGET = 2.0  # ours / qemu-img
ALLOCATION_TARGET_S = 0.5  # Disk.allocation() of the 1 TiB / 16k-extent image
OPEN_TARGET_S = 0.050  # vdinspect.open + close
IMPORT_TARGET_S = 0.3  # `import vdinspect` (docs/design.md)


@dataclass(frozen=True)
class Sizes:
    label: str
    virtual: int  # the main image
    allocated: int
    comp_virtual: int  # the compressed image
    comp_allocated: int
    big_virtual: int  # the huge sparse image
    big_extents: int
    chain_virtual: int
    chain_writes: int  # clusters written into each chain layer
    reads: int  # random 4 KiB reads
    open_reps: int
    reps: int = 3  # best of


FULL = Sizes(
    "full",
    virtual=2 * GiB,
    allocated=1 * GiB,
    comp_virtual=512 * MiB,
    comp_allocated=256 * MiB,
    big_virtual=1 * TiB,
    big_extents=16384,
    chain_virtual=1 * GiB,
    chain_writes=256,
    reads=20000,
    open_reps=20,
)
QUICK = Sizes(
    "quick",
    virtual=128 * MiB,
    allocated=64 * MiB,
    comp_virtual=32 * MiB,
    comp_allocated=16 * MiB,
    big_virtual=1 * TiB,
    big_extents=1024,
    chain_virtual=64 * MiB,
    chain_writes=32,
    reads=2000,
    open_reps=10,
    reps=2,
)


# --- small helpers ----------------------------------------------------------------------
def log(msg: str) -> None:
    print(f".. {msg}", file=sys.stderr, flush=True)


def run(cmd: list, *, stdin=None, stdout=subprocess.DEVNULL, timeout: float | None = None):
    """Run a command; raise with its stderr if it fails."""
    r = subprocess.run(
        [str(c) for c in cmd],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {err}")
    return r


def unlink(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


class Clock:
    """Wall time and CPU time (user + system, this process and waited-for children).

    CPU time is what the work costs; on a busy machine it moves much less than wall time.
    """

    def __enter__(self) -> Clock:
        self._c = _cpu()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = _cpu() - self._c


def _cpu() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


Timing = tuple[float, float]  # (wall, cpu) seconds


def best_of(fns: dict[str, Callable[[], Clock | None]], reps: int, warmup: int = 1):
    """Best wall and best CPU time of each function over ``reps`` calls, after ``warmup``.

    The functions take turns (a, b, c, a, b, c, ...) so that a burst of load from other
    processes on the machine hits all of them alike. A function may return its own
    :class:`Clock` (to leave setup out); otherwise the whole call is timed.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best: dict[str, Timing] = {}
    for _ in range(reps):
        for name, fn in fns.items():
            with Clock() as c:
                inner = fn()
            if inner is not None:
                c = inner
            w, u = best.get(name, (c.wall, c.cpu))
            best[name] = (min(w, c.wall), min(u, c.cpu))
    return best


def vdinspect_cli() -> list[str]:
    """The ``vdinspect`` entry point installed beside this Python (not a pyenv shim, whose
    bash start-up would be timed too), else ``python -m vdinspect``."""
    exe = Path(sysconfig.get_path("scripts")) / "vdinspect"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vdinspect"]


def qemu_map(img: Path) -> list[dict]:
    r = run(["qemu-img", "map", "--output=json", img], stdout=subprocess.PIPE)
    return json.loads(r.stdout)


def same_bytes(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def disk_usage(p: Path) -> int:
    return os.stat(p).st_blocks * 512


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_s(t: float | None) -> str:
    if t is None:
        return "-"
    if t < 1:
        return f"{t * 1000:.1f} ms"
    return f"{t:.2f} s"


# --- image generation (cached) -----------------------------------------------------------
def chunk(i: int) -> bytes:
    """Incompressible 64 KiB chunk number ``i`` (deterministic)."""
    return random.Random(1000 + i).randbytes(CLUSTER)


_SIXTEEN = bytes(65 + (b % 16) for b in range(256))


def compressible_chunk(i: int) -> bytes:
    """64 KiB of random letters from a 16-letter alphabet: zlib gets it to about 60%."""
    return random.Random(5000 + i).randbytes(CLUSTER).translate(_SIXTEEN)


def pick_clusters(virtual: int, allocated: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(virtual // CLUSTER), allocated // CLUSTER))


def write_sparse_raw(path: Path, size: int, pieces) -> None:
    """A sparse raw file of ``size`` bytes with ``(offset, bytes)`` pieces written in."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for off, data in pieces:
            os.pwrite(fd, data, off)
    finally:
        os.close(fd)


class ImageCache:
    """Builds an image once and reuses it while its parameters stay the same."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def get(self, name: str, params: dict, build: Callable[[Path], dict]) -> tuple[Path, dict]:
        path = self.workdir / name
        manifest = self.workdir / (name + ".json")
        want = dict(params, generator=GENERATOR_VERSION)
        if path.exists() and manifest.exists():
            info = json.loads(manifest.read_text())
            if info.get("params") == want:
                info["cached"] = True
                return path, info
        unlink(path, manifest)
        log(f"building {name} ...")
        t0 = time.perf_counter()
        extra = build(path) or {}
        info = dict(params=want, build_seconds=round(time.perf_counter() - t0, 2), **extra)
        info["file_size"] = os.path.getsize(path)
        info["disk_usage"] = disk_usage(path)
        manifest.write_text(json.dumps(info, indent=1))
        log(f"built {name} in {info['build_seconds']} s")
        info["cached"] = False
        return path, info


def check_image(img: Path, expect_present: int | None = None) -> None:
    """qemu-img check must be clean, and qemu-img map must see the expected bytes."""
    run(["qemu-img", "check", "-q", img])
    if expect_present is not None:
        present = sum(e["length"] for e in qemu_map(img) if e.get("present"))
        if present != expect_present:
            raise RuntimeError(f"{img}: qemu-img map sees {present} bytes, not {expect_present}")


def build_inorder(path: Path, sz: Sizes) -> dict:
    """Sparse raw written by Python, then ``qemu-img convert``: host clusters in guest order."""
    clusters = pick_clusters(sz.virtual, sz.allocated, seed=1)
    raw = path.with_name(path.name + ".src.raw")
    tmp = path.with_name(path.name + ".tmp")
    try:
        order = list(clusters)
        random.Random(2).shuffle(order)  # written in shuffled order; the layout is convert's
        write_sparse_raw(raw, sz.virtual, ((c * CLUSTER, chunk(c % NCHUNKS)) for c in order))
        run(
            [
                "qemu-img",
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                f"cluster_size={CLUSTER}",
                raw,
                tmp,
            ]
        )
        check_image(tmp, sz.allocated)
        os.replace(tmp, path)
    finally:
        unlink(raw, tmp)
    return dict(layout="in-order (qemu-img convert from sparse raw)", clusters=len(clusters))


def build_scattered(path: Path, sz: Sizes, workdir: Path) -> dict:
    """The same guest bytes written by qemu-io in shuffled order: a scattered host layout."""
    clusters = pick_clusters(sz.virtual, sz.allocated, seed=1)
    chunks = workdir / "chunks"
    chunks.mkdir(exist_ok=True)
    for i in range(NCHUNKS):
        p = chunks / f"c{i:02d}.bin"
        data = chunk(i)
        if not p.exists() or p.read_bytes() != data:
            p.write_bytes(data)
    order = list(clusters)
    random.Random(3).shuffle(order)
    cmds = path.with_name(path.name + ".qemu-io.txt")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(cmds, "w") as f:
            for c in order:
                f.write(f"write -q -s {chunks / f'c{c % NCHUNKS:02d}.bin'} {c * CLUSTER} 64k\n")
        run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                f"cluster_size={CLUSTER}",
                tmp,
                sz.virtual,
            ]
        )
        t0 = time.perf_counter()
        # one qemu-io process reading all the commands from stdin (same as many -c options)
        with open(cmds) as f:
            run(["qemu-io", "-f", "qcow2", tmp], stdin=f, timeout=1800)
        qemu_io_s = time.perf_counter() - t0
        check_image(tmp, sz.allocated)
        os.replace(tmp, path)
    finally:
        unlink(cmds, tmp)
    return dict(
        layout="scattered (qemu-io writes in shuffled order)",
        clusters=len(clusters),
        qemu_io_seconds=round(qemu_io_s, 1),
    )


def build_compressed(path: Path, sz: Sizes) -> dict:
    """``qemu-img convert -c`` (zlib) of compressible data."""
    clusters = pick_clusters(sz.comp_virtual, sz.comp_allocated, seed=4)
    raw = path.with_name(path.name + ".src.raw")
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_sparse_raw(
            raw,
            sz.comp_virtual,
            ((c * CLUSTER, compressible_chunk(c % NCHUNKS)) for c in clusters),
        )
        run(
            [
                "qemu-img",
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                f"cluster_size={CLUSTER},compression_type=zlib",
                raw,
                tmp,
            ]
        )
        check_image(tmp, sz.comp_allocated)
        os.replace(tmp, path)
    finally:
        unlink(raw, tmp)
    return dict(layout="compressed (qemu-img convert -c, zlib)", clusters=len(clusters))


def build_big(path: Path, sz: Sizes) -> dict:
    """A huge sparse image: extents of 1-4 clusters, one in each equal slice of the disk.

    Each cluster holds 4 KiB of data then zeros; after ``qemu-img convert`` the zero tails
    are left out of the host file (``cp --sparse=always``: qemu allocated them with
    fallocate), so the image stays small on disk.
    """
    rng = random.Random(6)
    n = sz.big_extents
    span = sz.big_virtual // n
    pieces = []
    extents = []
    for i in range(n):
        k = rng.randint(1, 4)
        off = i * span + rng.randrange((span - 4 * CLUSTER) // CLUSTER) * CLUSTER
        extents.append((off, k))
        for j in range(k):
            pieces.append((off + j * CLUSTER, rng.randbytes(4096)))
    raw = path.with_name(path.name + ".src.raw")
    tmp = path.with_name(path.name + ".tmp")
    sparse = path.with_name(path.name + ".sparse")
    try:
        write_sparse_raw(raw, sz.big_virtual, pieces)
        run(
            [
                "qemu-img",
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                f"cluster_size={CLUSTER}",
                raw,
                tmp,
            ]
        )
        unlink(raw)
        run(["cp", "--sparse=always", tmp, sparse])
        unlink(tmp)
        check_image(sparse)
        os.replace(sparse, path)
    finally:
        unlink(raw, tmp, sparse)
    return dict(
        layout="1 TiB sparse, extents spread evenly",
        extents=n,
        clusters=sum(k for _, k in extents),
    )


def build_chain(path: Path, sz: Sizes) -> dict:
    """base <- mid <- top (``path`` is the top); each layer gets its own qemu-io writes."""
    names = [path.with_name(path.name.replace("top", t)) for t in ("base", "mid", "top")]
    unlink(*names)
    rng = random.Random(7)
    nclusters = sz.chain_virtual // CLUSTER
    for k, p in enumerate(names):
        if k == 0:
            run(["qemu-img", "create", "-q", "-f", "qcow2", p, sz.chain_virtual])
        else:
            run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    names[k - 1].name,
                    "-F",
                    "qcow2",
                    p,
                ]
            )
        cmds = "".join(
            f"write -q -P {k + 1:#x} {c * CLUSTER} 64k\n"
            for c in rng.sample(range(nclusters), sz.chain_writes)
        )
        with _text_stdin(cmds) as f:
            run(["qemu-io", "-f", "qcow2", p], stdin=f)
    check_image(path)
    return dict(layout="3-deep backing chain", layers=[n.name for n in names])


def _text_stdin(text: str):
    """A file object holding ``text``, to feed qemu-io its commands on stdin."""
    f = tempfile.TemporaryFile()
    f.write(text.encode())
    f.seek(0)
    return f


# --- the measurements -----------------------------------------------------------------------
@dataclass
class Row:
    section: str
    what: str
    image: str
    ours: str  # the figure as shown (a time, or a rate)
    ours_s: float | None = None  # wall seconds
    ours_cpu: float | None = None  # CPU seconds
    qemu_s: float | None = None
    qemu_cpu: float | None = None
    target: str = "-"
    met: bool | None = None  # judged on wall time
    met_cpu: bool | None = None  # the same target judged on CPU time

    @property
    def ratio(self) -> float | None:
        return self.ours_s / self.qemu_s if self.ours_s and self.qemu_s else None

    @property
    def cpu_ratio(self) -> float | None:
        return self.ours_cpu / self.qemu_cpu if self.ours_cpu and self.qemu_cpu else None


class Bench:
    def __init__(self, args, sz: Sizes) -> None:
        self.args = args
        self.sz = sz
        self.workdir = Path(args.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache = ImageCache(self.workdir)
        self.rows: list[Row] = []
        self.images: dict[str, tuple[Path, dict]] = {}
        self.notes: list[str] = []
        self.cli = vdinspect_cli()
        self.outdir = pick_outdir(args.outdir, 3 * sz.virtual)

    def add(self, **kw) -> Row:
        row = Row(**kw)
        self.rows.append(row)
        return row

    def add_timed(
        self, section, what, image, ours: Timing, qemu: Timing | None = None, **kw
    ) -> Row:
        return self.add(
            section=section,
            what=what,
            image=image,
            ours=fmt_s(ours[0]),
            ours_s=ours[0],
            ours_cpu=ours[1],
            qemu_s=qemu[0] if qemu else None,
            qemu_cpu=qemu[1] if qemu else None,
            **kw,
        )

    # 1 -------------------------------------------------------------------------------------
    def build_images(self) -> None:
        sz = self.sz
        tag = sz.label
        gib = f"{sz.virtual // MiB}m"
        self.images["in-order"] = self.cache.get(
            f"qcow2-{gib}-inorder-{tag}.qcow2",
            dict(virtual=sz.virtual, allocated=sz.allocated, kind="inorder"),
            lambda p: build_inorder(p, sz),
        )
        self.images["scattered"] = self.cache.get(
            f"qcow2-{gib}-scattered-{tag}.qcow2",
            dict(virtual=sz.virtual, allocated=sz.allocated, kind="scattered"),
            lambda p: build_scattered(p, sz, self.workdir),
        )
        if not self.args.no_compressed:
            self.images["compressed"] = self.cache.get(
                f"qcow2-{sz.comp_virtual // MiB}m-zlib-{tag}.qcow2",
                dict(virtual=sz.comp_virtual, allocated=sz.comp_allocated, kind="zlib"),
                lambda p: build_compressed(p, sz),
            )
        self.images["1 TiB sparse"] = self.cache.get(
            f"qcow2-1t-{sz.big_extents}ext-{tag}.qcow2",
            dict(virtual=sz.big_virtual, extents=sz.big_extents, kind="big", v=2),
            lambda p: build_big(p, sz),
        )
        top = f"chain-top-{tag}.qcow2"
        chain_files = [self.workdir / top.replace("top", t) for t in ("base", "mid")]
        if not all(p.exists() for p in chain_files):
            unlink(self.workdir / top)
        self.images["3-deep chain"] = self.cache.get(
            top,
            dict(virtual=sz.chain_virtual, writes=sz.chain_writes, kind="chain"),
            lambda p: build_chain(p, sz),
        )
        print("\n## Images\n")
        print("| name | file | virtual | file size | on disk | layout | build |")
        print("|---|---|---|---|---|---|---|")
        import vdinspect

        for key, (p, info) in self.images.items():
            with vdinspect.open(p) as d:
                virtual = d.size
            build = f"{info['build_seconds']} s"
            if info.get("cached"):
                build = f"cached (built in {build})"
            if "qemu_io_seconds" in info:
                build += f" (qemu-io {info['qemu_io_seconds']} s)"
            print(
                f"| {key} | {p.name} | {human(virtual)} | {human(info['file_size'])} "
                f"| {human(info['disk_usage'])} | {info.get('layout', '')} | {build} |"
            )
        print(flush=True)

    # 2 -------------------------------------------------------------------------------------
    def bench_convert(self, key: str) -> None:
        import vdinspect

        img, _ = self.images[key]
        reps = self.sz.reps
        w = self.outdir
        out_q, out_c, out_a = w / "out-qemu.raw", w / "out-cli.raw", w / "out-api.raw"
        log(f"convert: {key}")

        # the output is deleted before the clock starts: freeing a 1 GiB file is not convert
        def qemu() -> Clock:
            unlink(out_q)
            with Clock() as c:
                run(["qemu-img", "convert", "-O", "raw", img, out_q])
            return c

        def cli() -> Clock:
            unlink(out_c)
            with Clock() as c:
                run(self.cli + ["convert", img, out_c])
            return c

        def api() -> Clock:
            unlink(out_a)
            with Clock() as c:
                with vdinspect.open(img) as d:
                    d.to_raw(out_a)
            return c

        try:
            t = best_of(dict(qemu=qemu, cli=cli, api=api), reps)
            tq, tc, ta = t["qemu"], t["cli"], t["api"]
            same_c = same_bytes(out_c, out_q)
            same_a = same_bytes(out_a, out_q)
        finally:
            unlink(out_q, out_c, out_a)
        for what, t, same in (
            ("convert -> raw (CLI)", tc, same_c),
            ("Disk.to_raw (API)", ta, same_a),
        ):
            row = self.add_timed(
                "2 convert",
                what + ("" if same else " [OUTPUT DIFFERS]"),
                key,
                t,
                tq,
                target=f"<= {CONVERT_RATIO_TARGET:g}x",
            )
            row.met = row.ratio <= CONVERT_RATIO_TARGET and same
            row.met_cpu = row.cpu_ratio <= CONVERT_RATIO_TARGET and same
        self.notes.append(
            f"convert {key}: output identical to qemu-img's (cmp): CLI {'yes' if same_c else 'NO'}"
            f", API {'yes' if same_a else 'NO'}"
        )

    # 3 / 4 ---------------------------------------------------------------------------------
    def bench_allocation(self, key: str, *, target: float | None = None) -> None:
        import vdinspect

        img, _ = self.images[key]
        # cheap in a full run: a few more turns against the machine's noise
        reps = self.sz.reps if self.sz.label == "quick" else max(self.sz.reps, 5)
        log(f"allocation: {key}")
        nruns = {}

        def api() -> Clock:
            with vdinspect.open(img) as d:
                with Clock() as c:
                    df = d.allocation()
            nruns["n"] = len(df)
            nruns["data"] = int(df.loc[df.state == "data", "length"].sum())
            return c

        def api_open() -> None:
            with vdinspect.open(img) as d:
                d.allocation()

        def cli() -> None:
            run(self.cli + ["map", "--json", img])

        def qemu() -> None:
            run(["qemu-img", "map", "--output=json", img])

        t = best_of(dict(qemu=qemu, api=api, api_open=api_open, cli=cli), reps)
        tq, ta, tao, tc = t["qemu"], t["api"], t["api_open"], t["cli"]
        entries = qemu_map(img)
        qpresent = sum(e["length"] for e in entries if e.get("present"))
        agree = qpresent == nruns["data"]
        label = f"{key} ({nruns['n']} runs; qemu {len(entries)} entries)"
        tgt = f"< {target:g} s" if target is not None else "-"
        met = (ta[0] < target) if target is not None else None
        met_cpu = (ta[1] < target) if target is not None else None
        sec = "4 allocation, 1 TiB" if target is not None else "3 allocation"
        self.add_timed(
            sec,
            "Disk.allocation() (open excluded)",
            label,
            ta,
            tq,
            target=tgt,
            met=met,
            met_cpu=met_cpu,
        )
        self.add_timed(sec, "open + allocation() + close", key, tao, tq)
        self.add_timed(sec, "`vdinspect map --json` (a process)", key, tc, tq)
        self.notes.append(
            f"allocation {key}: data bytes {nruns['data']} (ours) vs present bytes {qpresent} "
            f"(qemu-img map): {'agree' if agree else 'DIFFER'}"
        )

    # 5 -------------------------------------------------------------------------------------
    def bench_reads(self, key: str) -> None:
        import vdinspect

        img, _ = self.images[key]
        n = self.sz.reads
        log(f"random reads: {key}")
        with vdinspect.open(img) as d:
            rng = random.Random(42)
            offsets = [rng.randrange(d.size // 4096) * 4096 for _ in range(n)]
            for off in offsets[: min(1000, n)]:  # warm-up
                d.read(off, 4096)
            best = None
            for _ in range(self.sz.reps):
                with Clock() as c:
                    for off in offsets:
                        d.read(off, 4096)
                best = c if best is None or c.wall < best.wall else best
            sample = offsets[:2000]
            hits = sum(1 for off in sample if d.runs(off, 4096)[0].state == "data") / len(sample)
        rate = n / best.wall
        self.add(
            section="5 random reads",
            what=f"{n} random 4 KiB Disk.read ({hits:.0%} land in data), best of {self.sz.reps}",
            image=key,
            ours=f"{rate:,.0f} reads/s = {rate * 4096 / MiB:.1f} MiB/s",
            ours_s=best.wall,
            ours_cpu=best.cpu,
        )

    # 6 -------------------------------------------------------------------------------------
    def bench_open(self) -> None:
        import vdinspect

        targets = [(k, p) for k, (p, _) in self.images.items()]
        samples = ROOT / "sample_images"
        exts = {".qcow2", ".qcow", ".img", ".raw", ".vmdk", ".vhd", ".vhdx", ".vdi", ".hdd", ".hds"}
        if samples.is_dir():
            for p in sorted(samples.iterdir()):
                if p.is_file() and p.suffix.lower() in exts:
                    targets.append((f"sample_images/{p.name}", p))
        if not any(k.startswith("sample_images/") for k, _ in targets):
            self.notes.append("open: sample_images/ holds no images yet; none timed")
        for key, p in targets:
            log(f"open: {key}")

            def once(p: Path = p) -> float:
                t0 = time.perf_counter()
                d = vdinspect.open(p)
                d.close()
                return time.perf_counter() - t0

            try:
                once()
                ts = [once() for _ in range(self.sz.open_reps)]
            except Exception as e:  # noqa: BLE001 - a failure is reported, not fatal
                self.notes.append(f"open {key}: FAILED: {type(e).__name__}: {e}")
                continue
            med = statistics.median(ts)
            self.add(
                section="6 open",
                what=f"open + close (median of {len(ts)}; best {fmt_s(min(ts))})",
                image=key,
                ours=fmt_s(med),
                target=f"< {OPEN_TARGET_S * 1000:g} ms",
                met=med < OPEN_TARGET_S,
                ours_s=med,
            )

    def bench_import(self) -> None:
        """``import vdinspect`` and the first open in a fresh interpreter (cold start)."""
        img, _ = self.images["in-order"]
        code = (
            "import time;t=time.perf_counter();import vdinspect;t1=time.perf_counter();"
            f"vdinspect.open({str(img)!r}).close();t2=time.perf_counter();print(t1-t,t2-t1)"
        )
        imp, first = [], []
        for _ in range(5):
            r = run([sys.executable, "-c", code], stdout=subprocess.PIPE)
            a, b = map(float, r.stdout.split())
            imp.append(a)
            first.append(b)
        med = statistics.median(imp)
        self.add(
            section="6 open",
            what="`import vdinspect` in a fresh process (median of 5)",
            image="-",
            ours=fmt_s(med),
            target=f"< {IMPORT_TARGET_S:g} s",
            met=med < IMPORT_TARGET_S,
            ours_s=med,
        )
        med = statistics.median(first)
        self.add(
            section="6 open",
            what="first open + close in that fresh process (pays for the imports open needs)",
            image="in-order",
            ours=fmt_s(med),
            ours_s=med,
        )

    # profiling -------------------------------------------------------------------------------
    def profile(self) -> None:
        import vdinspect

        print("\n## Profiles (cProfile, top functions by own time)\n")
        big, _ = self.images["1 TiB sparse"]
        main, _ = self.images["in-order"]
        scat, _ = self.images["scattered"]
        out = self.outdir / "out-profile.raw"

        def alloc():
            with vdinspect.open(big) as d:
                d.allocation()

        def to_raw():
            with vdinspect.open(scat) as d:
                d.to_raw(out)

        def reads():
            with vdinspect.open(main) as d:
                rng = random.Random(42)
                for _ in range(5000):
                    d.read(rng.randrange(d.size // 4096) * 4096, 4096)

        def opens():
            for _ in range(20):
                vdinspect.open(big).close()

        jobs = [
            ("Disk.allocation() on the 1 TiB image", alloc),
            ("Disk.to_raw on the scattered image", to_raw),
            ("5000 random 4 KiB reads (in-order image)", reads),
            ("20 x open + close of the 1 TiB image", opens),
        ]
        if "compressed" in self.images:
            comp, _ = self.images["compressed"]

            def to_raw_comp():
                with vdinspect.open(comp) as d:
                    d.to_raw(out)

            jobs.insert(2, ("Disk.to_raw on the compressed image", to_raw_comp))
        try:
            for title, fn in jobs:
                unlink(out)
                fn()  # warm
                unlink(out)
                prof = cProfile.Profile()
                t0 = time.perf_counter()
                prof.enable()
                fn()
                prof.disable()
                wall = time.perf_counter() - t0
                st = pstats.Stats(prof)
                total = st.total_tt
                print(f"### {title}: {fmt_s(wall)} wall under the profiler\n")
                print("| own % | own s | cum s | calls | function |")
                print("|---:|---:|---:|---:|---|")
                items = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)
                for (file, line, func), (_cc, nc, tt, ct, _callers) in items[:10]:
                    where = f"{Path(file).name}:{line}" if line else file
                    print(f"| {tt / total:.0%} | {tt:.3f} | {ct:.3f} | {nc} | `{func}` ({where}) |")
                print(flush=True)
        finally:
            unlink(out)

    # report ---------------------------------------------------------------------------------
    def report(self) -> None:
        print("\n## Results\n")
        print(
            "Times are best-of wall clock; CPU is user + system time (ours: this process or "
            "the vdinspect process; qemu: the qemu-img process, all its threads). Targets are "
            "judged on wall time (met) and, for a busy machine, on CPU time too (CPU met).\n"
        )
        load1 = os.getloadavg()[0]
        ncpu = os.cpu_count() or 1
        if load1 > 0.75 * ncpu:
            print(
                f"**Warning**: load average {load1:.1f} on {ncpu} CPUs: other processes were "
                "competing for the CPUs, so wall times are inflated and noisy; compare the "
                "CPU columns.\n"
            )
        print(
            "| # | measurement | image | vdinspect | qemu-img | ours/qemu | CPU: vdinspect "
            "| CPU: qemu-img | CPU ours/qemu | target | met | CPU met |"
        )
        print("|---|---|---|---|---|---:|---|---|---:|---|---|---|")

        def x(v):
            return f"{v:.2f}x" if v is not None else "-"

        def yn(v):
            return "-" if v is None else ("yes" if v else "**no**")

        for r in self.rows:
            print(
                f"| {r.section} | {r.what} | {r.image} | {r.ours} | {fmt_s(r.qemu_s)} "
                f"| {x(r.ratio)} | {fmt_s(r.ours_cpu)} | {fmt_s(r.qemu_cpu)} "
                f"| {x(r.cpu_ratio)} | {r.target} | {yn(r.met)} | {yn(r.met_cpu)} |"
            )
        print("\nNotes:")
        for n in self.notes:
            print(f"- {n}")
        judged = [r for r in self.rows if r.met is not None]
        cpu = [r for r in judged if r.met_cpu is not None]
        print(
            f"\nTargets met on wall time: {sum(r.met for r in judged)} of {len(judged)}; "
            f"of the {len(cpu)} also judged on CPU time, {sum(r.met_cpu for r in cpu)} met",
            flush=True,
        )


def pick_outdir(choice: str | None, need: int) -> Path:
    """Where convert writes its outputs: a RAM-backed tmpfs when there is room for them.

    On tmpfs the figures are the tools' own costs; on a disk they also include how fast the
    kernel can write ``need`` bytes back, which is the disk's speed, not the tool's.
    """
    if choice:
        p = Path(choice).resolve()
        p.mkdir(parents=True, exist_ok=True)
        return p
    shm = Path("/dev/shm")
    if shm.is_dir():
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > need + 512 * MiB:
            p = shm / f"vdinspect-bench-{os.getpid()}"
            p.mkdir(exist_ok=True)
            return p
    return Path(tempfile.mkdtemp(prefix="vdinspect-bench-"))


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    qv = run(["qemu-img", "--version"], stdout=subprocess.PIPE).stdout.decode().splitlines()[0]
    import numpy
    import pandas

    import vdinspect

    pkg = Path(vdinspect.__file__).resolve().parent
    rev = "not in this repository's work tree"
    if pkg.parent == ROOT:
        try:
            rev = subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        except OSError:
            rev = "?"
    return dict(
        nproc=os.cpu_count(),
        cpu=cpu,
        mem=human(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
        python=platform.python_version(),
        qemu_img=qv,
        numpy=numpy.__version__,
        pandas=pandas.__version__,
        vdinspect=f"{vdinspect.__version__} from {pkg} (git: {rev})",
        platform=platform.platform(),
        load_average=" ".join(f"{x:.2f}" for x in os.getloadavg()),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--workdir",
        default=str(HERE / "work"),
        help="where generated images are kept (default benchmarks/work/)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a smoke test that finishes in under a minute",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also print cProfile hot spots of the main operations",
    )
    ap.add_argument("--no-compressed", action="store_true", help="skip the zlib image")
    ap.add_argument(
        "--outdir",
        help="where convert writes its raw outputs (default: a folder in /dev/shm if it has "
        "room, else a temporary folder); pick a folder on disk to include disk write speed",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    for tool in ("qemu-img", "qemu-io", "cmp"):
        if not shutil.which(tool):
            print(f"bench_qcow2: {tool} not found on PATH", file=sys.stderr)
            return 2
    sz = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    m = machine()
    print(f"# vdinspect QCOW2 benchmark ({sz.label})\n")
    for k, v in m.items():
        print(f"- {k}: {v}")
    print(f"- command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    b = Bench(args, sz)
    try:
        fs = subprocess.run(
            ["df", "--output=fstype", str(b.outdir)], capture_output=True, text=True
        ).stdout.split()[-1:]
        print(f"- convert outputs: {b.outdir} ({fs[0] if fs else '?'})")
        b.build_images()
        for key in ("in-order", "scattered", "compressed"):
            if key in b.images:
                b.bench_convert(key)
        for key in ("in-order", "scattered", "compressed"):
            if key in b.images:
                b.bench_allocation(key)
        b.bench_allocation("1 TiB sparse", target=ALLOCATION_TARGET_S)
        for key in ("in-order", "scattered"):
            b.bench_reads(key)
        b.bench_open()
        b.bench_import()
        b.report()
        if args.profile:
            b.profile()
    finally:
        if not args.outdir:
            shutil.rmtree(b.outdir, ignore_errors=True)
    took = time.perf_counter() - t_start
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n(total run time {took:.0f} s; load average at the end {load})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(
                    machine=m,
                    sizes=sz.__dict__,
                    rows=[dict(r.__dict__, ratio=r.ratio, cpu_ratio=r.cpu_ratio) for r in b.rows],
                    notes=b.notes,
                    images={k: dict(path=str(p), **i) for k, (p, i) in b.images.items()},
                    seconds=took,
                ),
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
