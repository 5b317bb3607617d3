"""What the issue 23 benchmarks share: timing a child process or a call (wall, CPU, peak
RSS), the interleaved best-of-N, the table rows (``ROWS``, :func:`add`), and the listing
rows with the ext4, FAT32 and NTFS images they build. ``bench_summary.py`` prints the
table; ``bench_scale.py`` adds the scale rows to it."""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import vdinspect  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30
ENV = dict(os.environ, PYTHONPATH=str(ROOT))  # children measure this tree, not an install
OURS = [sys.executable, "-m", "vdinspect"]
ROWS: list[dict] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


TIME = shutil.which("time") or "/usr/bin/time"


def child(cmd: list, stdout=subprocess.DEVNULL, stdin=None) -> tuple[float, float, int]:
    """Run ``cmd``: (wall s, CPU s, peak RSS bytes) of that one process. The CPU and RSS
    come from GNU time (a small process between us and the command: a child forked from
    this large one would count our RSS as its peak, which exec keeps); wall is ours."""
    with tempfile.NamedTemporaryFile("r") as rep:
        t0 = time.perf_counter()
        p = subprocess.run([TIME, "-q", "-o", rep.name, "-f", "%U %S %M"] +
                           [str(c) for c in cmd], stdout=stdout, stdin=stdin,
                           stderr=subprocess.PIPE, env=ENV)
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"{cmd[:3]}... exit {p.returncode}: {p.stderr[-400:]!r}")
        user, sys_, rss = rep.read().split()[-3:]
    return wall, float(user) + float(sys_), int(rss) * 1024


def inproc(fn) -> tuple[float, float, int]:
    c0, t0 = cpu_self(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_self() - c0, 0


def best_interleaved(fns: dict, reps: int) -> dict:
    """Each callable (returning (wall, cpu, rss)) once as a warm-up, then ``reps`` rounds
    in turns (the order alternating); per name the best wall, best CPU, largest RSS."""
    for fn in fns.values():
        fn()
    got: dict = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            got[k].append(fns[k]())
    return {k: (min(w for w, _c, _m in v), min(c for _w, c, _m in v), max(m for _w, _c, m in v))
            for k, v in got.items()}


def secs(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def add(measure: str, ours: tuple, peer_name: str | None, peer: tuple | None, goal: str,
        limit: float | None = None, absolute: float | None = None, rate: int | None = None,
        note: str = "") -> None:
    """One table row; ``limit`` is the goal as a time ratio, ``absolute`` in seconds;
    ``rate`` (operations per timing) shows rates beside the times."""
    def cell(t: tuple) -> str:
        s = f"{secs(t[0])} ({secs(t[1])} CPU)"
        if rate:
            s = f"{rate / t[0]:,.0f}/s, " + s
        if t[2]:
            s += f", {t[2] / MiB:.0f} MiB RSS"
        return s

    ratio = ours[0] / peer[0] if peer else None
    cpu_ratio = ours[1] / peer[1] if peer and peer[1] > 0 else None
    if absolute is not None:
        met = ours[0] <= absolute
    elif limit is not None and ratio is not None:
        met = ratio <= limit
    else:
        met = None
    ROWS.append(dict(measure=measure, ours=cell(ours), peer=f"{peer_name} {cell(peer)}"
                     if peer else "-", ratio=f"{ratio:.2f}x" if ratio else "-",
                     cpu=f"{cpu_ratio:.2f}x" if cpu_ratio else "-", goal=goal,
                     met="-" if met is None else "yes" if met else "**no**", note=note))
    log(f"  {measure}: {ROWS[-1]['ours']} | {ROWS[-1]['peer']} | {ROWS[-1]['ratio']}")


# --- images -----------------------------------------------------------------------------------


def sparse_source(path: Path, size: int, seed: int = 7) -> None:
    """Half of the 1 MiB pieces hold random data, scattered; holes between."""
    if path.exists() and path.stat().st_size == size:
        return
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in sorted(rnd.sample(range(size // MiB), size // MiB // 2)):
            f.seek(i * MiB)
            f.write(rnd.randbytes(MiB))


def converted(src: Path, out: Path, fmt: str, *opts: str) -> Path:
    if not out.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, *opts, str(src),
                        str(out)], check=True, capture_output=True)
    return out


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)



# --- listing rows and their images ------------------------------------------------------


def row_listing(label: str, img: Path, reps: int, files_goal: float = 1.5) -> None:
    """``ls -r --json`` (a process) and ``files()`` (in this process) against fls -r -p."""
    fls = lambda: child(["fls", "-r", "-p", img])  # noqa: E731
    r = best_interleaved({"ours": lambda: child(OURS + ["ls", "-r", "--json", img]),
                          "peer": fls}, reps)
    add(f"`ls -r --json`, {label}", r["ours"], "fls -r -p", r["peer"], "<= 2x", limit=2.0)

    def files():
        with vdinspect.open(str(img)) as disk:
            vol = disk.filesystem_volumes(readable=True)[0]
            disk.filesystem(vol.key).files()

    r = best_interleaved({"ours": lambda: inproc(files), "peer": fls}, reps)
    add(f"`files()` warm (open included), {label}", r["ours"], "fls -r -p", r["peer"],
        f"<= {files_goal}x", limit=files_goal)


def ext_image(work: Path, nfiles: int, folders: int = 200, trees: Path | None = None) -> Path:
    """An ext4 of ``nfiles`` files (mke2fs -d of a tree built under ``trees``, default
    ``work``: the scale rows pass a tmpfs, 15x faster than a disk for a million files)."""
    img = work / f"ext4-{nfiles}.img"
    if img.exists():
        return img
    tree = (trees or work) / f"ext-tree-{nfiles}"
    shutil.rmtree(tree, ignore_errors=True)
    per = -(-nfiles // folders)
    for d in range(folders):
        dd = tree / f"d{d:04d}"
        dd.mkdir(parents=True)
        for i in range(min(per, nfiles - d * per)):
            (dd / f"file {i:05d}.txt").write_bytes(b"x" * ((d * per + i) * 7919 % 3000))
    t = time.perf_counter()
    mib = max(256, nfiles // 1000 * 8)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-N", str(nfiles + 1000), "-d",
                    str(tree), str(img), f"{mib}M"], check=True, capture_output=True)
    log(f"  mke2fs -d of {nfiles} files: {time.perf_counter() - t:.1f} s")
    shutil.rmtree(tree)
    return img


def fat_image(work: Path, nfiles: int) -> Path:
    img = work / f"fat32-{nfiles}.img"
    if img.exists():
        return img
    tree = work / "fat-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for d in range(200):
        dd = tree / f"d{d:03d}"
        dd.mkdir(parents=True)
        for i in range(nfiles // 200):
            (dd / f"f{i:05d}.txt").write_bytes(b"y" * (i * 37 % 3000))
    subprocess.run(["mkfs.fat", "-F", "32", "-C", str(img), str(512 * 1024)], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", str(img)] + [str(p) for p in tree.iterdir()] +
                   ["::/"], check=True, capture_output=True)
    shutil.rmtree(tree)
    return img


def ntfs_image(work: Path, nfiles: int) -> Path | None:
    try:
        import bench_ntfs

        from tests import ntfs_builder as nb
    except ImportError:
        return None
    if not (have("mkntfs", "ntfs-3g") and nb.fuse_works(work)):
        return None
    return bench_ntfs.build(work, nfiles)
