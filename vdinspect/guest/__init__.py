"""What machine a disk was: the operating systems on it, read from their own files.

For every filesystem a driver reads, a Unix root (os-release, passwd) or a Windows root
(``Windows/System32/config/SYSTEM``) gives one ``inspect()`` row, with the file or
registry key each value came from in ``evidence``; ``packages()`` and ``users()`` list
what those roots record. Nothing from the guest is run, and the image is only read.

The Disk is duck-typed (``filesystem_volumes``, ``filesystem``, ``volumes``), so this
package sits below ``disk``.
"""

from __future__ import annotations

import uuid as uuidlib

from ..errors import VDInspectError
from ..schemas import INSPECT_COLUMNS, PACKAGE_COLUMNS, USER_COLUMNS
from . import linux, windows


def roots(disk) -> list[tuple[str, str, object]]:
    """(volume key, family, the open FileSystem) of every OS root on the disk."""
    out = []
    for v in disk.filesystem_volumes(readable=True):
        try:
            fs = disk.filesystem(v.key)
        except VDInspectError:
            continue
        if windows.is_root(fs):
            out.append((v.key, "windows", fs))
            continue
        family = linux.is_root(fs)
        if family:
            out.append((v.key, family, fs))
    return out


def _fstab_mounts(disk, body: str) -> str | None:
    """``mount point -> volume key`` for the fstab lines that name a volume of this disk."""
    by: dict[str, str] = {}
    for v in disk.volumes():
        if v.key is None:
            continue
        if v.uuid:
            by[f"UUID={v.uuid}".lower()] = v.key
        if v.label:
            by[f"LABEL={v.label}".lower()] = v.key
        if "/" in v.key:  # an LVM volume vg/lv: /dev/vg/lv and /dev/mapper/vg-lv
            vg, lv = v.key.split("/", 1)
            by[f"/dev/{vg}/{lv}".lower()] = v.key
            by[f"/dev/mapper/{vg.replace('-', '--')}-{lv.replace('-', '--')}".lower()] = v.key
    found = [f"{mnt} -> {by[dev.lower()]}" for dev, mnt in linux.fstab_entries(body)
             if dev.lower() in by]
    return "; ".join(found) or None


def _drive_mounts(disk, fs) -> str | None:
    """``C: -> volume key`` from the SYSTEM hive's MountedDevices."""
    vols = disk.volumes()
    disk_id = str(vols.disk_id or "").lower()
    found = []
    for letter, ref in sorted(windows.drive_letters(fs).items()):
        for v in vols:
            if v.key is None:
                continue
            if ref[0] == "mbr" and f"{ref[1]:08x}" == disk_id and v.start == ref[2]:
                found.append(f"{letter}: -> {v.key}")
            elif ref[0] == "gpt" and _gpt_guid(v) == ref[1]:
                found.append(f"{letter}: -> {v.key}")
    return "; ".join(found) or None


def _gpt_guid(v) -> str | None:
    raw = getattr(v, "raw", None)
    g = getattr(raw, "unique_partition_guid", None) if raw is not None else None
    return str(uuidlib.UUID(bytes_le=bytes(g))) if isinstance(g, bytes) and len(g) == 16 \
        else None


def inspect_rows(disk) -> list[dict]:
    """One row per operating system found (``INSPECT_COLUMNS``)."""
    rows = []
    for key, family, fs in roots(disk):
        if family == "windows":
            facts, ev = windows.os_facts(fs)
            facts["mounts"] = _drive_mounts(disk, fs)
            if facts["mounts"]:
                ev["mounts"] = "SYSTEM\\MountedDevices"
        else:
            facts, ev = linux.os_facts(fs, family)
            body = linux.text(fs, "/etc/fstab")
            facts["mounts"] = _fstab_mounts(disk, body) if body else None
            facts.pop("fstab", None)
            ev.pop("fstab", None)
        row = {c: facts.get(c) for c in INSPECT_COLUMNS}
        row["root"] = key
        row["evidence"] = "; ".join(f"{k}: {w}" for k, w in ev.items())
        rows.append(row)
    return rows


def _per_root(disk, linux_rows, windows_rows, columns: list[str]) -> list[dict]:
    """Rows a reader gives for each OS root, with the root's volume key first."""
    rows = []
    for key, family, fs in roots(disk):
        got = windows_rows(fs) if family == "windows" else linux_rows(fs)
        rows += [dict({c: r.get(c) for c in columns}, root=key) for r in got]
    return rows


def package_rows(disk) -> list[dict]:
    """Installed packages of every OS root (``PACKAGE_COLUMNS``)."""
    return _per_root(disk, linux.package_rows, windows.package_rows, PACKAGE_COLUMNS)


def user_rows(disk) -> list[dict]:
    """Users of every OS root (``USER_COLUMNS``)."""
    return _per_root(disk, linux.user_rows, windows.user_rows, USER_COLUMNS)
