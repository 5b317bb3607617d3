"""Thin wrappers over qemu-img / qemu-io, the independent oracle for the QEMU formats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.tools import run  # noqa: F401 (the one way the tests run a tool)


def qemu_img(*args: str, cwd=None) -> str:
    return run("qemu-img", *args, cwd=cwd)


def qemu_io(path, *commands: str, fmt: str = "qcow2") -> None:
    """Run qemu-io commands (e.g. "write -P 0x11 0 64k") on an image, in the given order."""
    args = ["qemu-io", "-f", fmt]
    for c in commands:
        args += ["-c", c]
    run(*args, str(path))


def create(path, size: str | int, fmt: str = "qcow2", *opts: str, backing=None,
           backing_fmt=None) -> Path:
    args = ["create", "-q", "-f", fmt]
    if backing is not None:
        args += ["-b", str(backing), "-F", backing_fmt or "qcow2"]
    for o in opts:
        args += ["-o", o]
    qemu_img(*args, str(path), str(size))
    return Path(path)


def to_raw_bytes(path, tmp_dir, *, snapshot: str | None = None, fmt: str | None = None) -> bytes:
    """The virtual disk as qemu-img convert -O raw sees it."""
    out = Path(tmp_dir) / (Path(path).name + (f"@{snapshot}" if snapshot else "") + ".oracle.raw")
    args = ["convert"]
    if fmt:
        args += ["-f", fmt]
    if snapshot:
        args += ["-l", f"snapshot.name={snapshot}"]
    qemu_img(*args, "-O", "raw", str(path), str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def qemu_map(path, fmt: str | None = None) -> list[dict]:
    args = ["map", "--output=json"] + (["-f", fmt] if fmt else [])
    return json.loads(qemu_img(*args, str(path)))


def qemu_check(path) -> dict:
    r = subprocess.run(["qemu-img", "check", "--output=json", str(path)], capture_output=True,
                       text=True)
    return json.loads(r.stdout) if r.stdout.strip() else {"returncode": r.returncode,
                                                          "stderr": r.stderr}


def qemu_intervals(entries: list[dict], nlayers: int) -> list[tuple[int, int, str, int | None]]:
    """qemu-img map rows as (start, end, kind, layer) with kind data/zero/unallocated.

    qemu's depth counts from the top (0 = the image itself); vdinspect's layer counts from
    the base. qemu also reports host-file holes in allocated clusters as zero, so a run
    that vdinspect calls data may be "zero" here: compare with :func:`compatible`.
    """
    out = []
    for e in entries:
        layer = nlayers - 1 - e["depth"] if e.get("present") else None
        if e.get("data"):
            kind = "data"
        elif e.get("present"):
            kind = "zero"
        else:
            kind = "unallocated"
        out.append((e["start"], e["start"] + e["length"], kind, layer))
    return out
