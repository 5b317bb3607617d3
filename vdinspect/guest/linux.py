"""A Linux (or BSD) guest's facts from its files: os-release and the older release files,
hostname, time zone, fstab, kernels in /boot, the architecture of its programs, users from
passwd with their last logins (wtmp, lastlog), boots and shutdowns (wtmp).

Every fact comes with the file it was read from (the ``evidence``); nothing is executed.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from ..errors import VDInspectError
from ..layout import numpy_dtype
from .packages import (
    APK_INSTALLED,
    DPKG_STATUS,
    MAX_DB,
    PACMAN_LOCAL,
    RPM_OTHER,
    RPM_SQLITE,
    apk_rows,
    dpkg_rows,
    pacman_desc,
    pacman_row,
    rpm_sqlite_rows,
)
from .structs import BOOT_TIME, RUN_LVL, USER_PROCESS, LastLog, Utmp

MAX_TEXT = 1 << 20  # bytes: a configuration file larger than this is not read
MAX_LOG = 64 << 20  # bytes: the tail of wtmp read at most
ELF_MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm",
                62: "x86_64", 183: "aarch64", 243: "riscv64", 258: "loongarch64"}
RELEASE_FILES = ("/etc/redhat-release", "/etc/centos-release", "/etc/SuSE-release",
                 "/etc/alpine-release", "/etc/debian_version", "/etc/arch-release",
                 "/etc/gentoo-release")


def read_file(fs, path: str, limit: int = MAX_TEXT) -> bytes | None:
    """A file's bytes (at most ``limit``), or None when it is absent or unreadable."""
    try:
        e = fs.lookup(path)
        if e.kind != "file":
            return None
        with fs.open(e) as f:
            return f.read(limit)
    except (VDInspectError, OSError):
        return None


def text(fs, path: str) -> str | None:
    data = read_file(fs, path)
    return None if data is None else data.decode("utf-8", "replace")


def is_root(fs) -> str | None:
    """``linux`` or ``bsd`` when the filesystem is a Unix root (its /etc holds passwd or an
    os-release), else None."""
    for p in ("/bin/freebsd-version", "/etc/freebsd-update.conf"):
        if read_file(fs, p, 1) is not None:
            return "bsd"
    for p in ("/etc/os-release", "/usr/lib/os-release", "/etc/passwd"):
        if read_file(fs, p, 1) is not None:
            return "linux"
    return None


def shell_vars(body: str) -> dict[str, str]:
    """``KEY=value`` lines (os-release, lsb-release), quotes removed."""
    out = {}
    for line in body.splitlines():
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            v = m.group(2).strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[m.group(1)] = v
    return out


def os_facts(fs, family: str) -> tuple[dict, dict]:
    """(facts, evidence): the inspect() values of a Unix root and the file each came from."""
    facts: dict = {"family": family}
    ev: dict = {}

    def put(key, value, where):
        if value not in (None, "") and facts.get(key) in (None, ""):
            facts[key] = value
            ev[key] = where

    for p in ("/etc/os-release", "/usr/lib/os-release"):
        body = text(fs, p)
        if body:
            v = shell_vars(body)
            put("distribution", v.get("ID"), p + " ID")
            put("product", v.get("PRETTY_NAME") or v.get("NAME"), p + " PRETTY_NAME")
            put("version", v.get("VERSION_ID"), p + " VERSION_ID")
            put("build", v.get("BUILD_ID") or v.get("VERSION_CODENAME"), p + " BUILD_ID")
            put("edition", v.get("VARIANT"), p + " VARIANT")
            break
    if facts.get("product") is None:
        lsb = text(fs, "/etc/lsb-release")
        if lsb:
            v = shell_vars(lsb)
            put("distribution", (v.get("DISTRIB_ID") or "").lower() or None,
                "/etc/lsb-release DISTRIB_ID")
            put("product", v.get("DISTRIB_DESCRIPTION"), "/etc/lsb-release")
            put("version", v.get("DISTRIB_RELEASE"), "/etc/lsb-release DISTRIB_RELEASE")
        for p in RELEASE_FILES:
            body = text(fs, p)
            if body and body.strip():
                line = body.strip().splitlines()[0]
                name = p.rsplit("/", 1)[1].split("-")[0].split("_")[0].lower()
                put("distribution", name, p)
                put("product", line if not re.fullmatch(r"[\d.]+", line) else None, p)
                m = re.search(r"\d+(\.\d+)*", line)
                put("version", m.group(0) if m else None, p)
                break
    for p in ("/etc/hostname", "/etc/HOSTNAME"):
        body = text(fs, p)
        if body and body.strip():
            name = body.strip().splitlines()[0].strip()
            put("hostname", name.split(".")[0], p)
            if "." in name:
                put("domain", name.split(".", 1)[1], p)
            break
    net = text(fs, "/etc/sysconfig/network")
    if net:
        put("hostname", shell_vars(net).get("HOSTNAME"), "/etc/sysconfig/network HOSTNAME")
    tz = text(fs, "/etc/timezone")
    if tz and tz.strip():
        put("timezone", tz.strip().splitlines()[0], "/etc/timezone")
    else:
        try:
            target = fs.readlink("/etc/localtime")
            m = re.search(r"zoneinfo/(.+)$", target or "")
            put("timezone", m.group(1) if m else None, "/etc/localtime -> " + str(target))
        except (VDInspectError, OSError):
            pass
    for p in ("/usr/bin/ls", "/bin/ls", "/usr/bin/bash", "/bin/sh", "/sbin/init"):
        head = read_file(fs, p, 20)
        if head and head[:4] == b"\x7fELF" and len(head) >= 20:
            little = head[5] == 1
            machine = int.from_bytes(head[18:20], "little" if little else "big")
            put("arch", ELF_MACHINES.get(machine, f"elf machine {machine}"),
                p + " ELF e_machine")
            break
    try:
        root = fs.lookup("/")
        created = root.created or root.changed
        put("install_date", created, "/ (creation time of the root folder)")
    except VDInspectError:
        pass
    boots, shutdowns = boot_times(fs)
    put("last_boot", max(boots) if boots else None, "/var/log/wtmp boot records")
    put("last_shutdown", max(shutdowns) if shutdowns else None,
        "/var/log/wtmp shutdown records")
    kernels = sorted(e.name[len("vmlinuz-"):] for e in _list(fs, "/boot")
                     if e.name.startswith("vmlinuz-"))
    put("kernels", ", ".join(kernels) if kernels else None, "/boot/vmlinuz-*")
    put("interfaces", _interfaces(fs), "/etc/network/interfaces, /etc/netplan/*.yaml")
    fstab = text(fs, "/etc/fstab")
    if fstab:
        put("fstab", "; ".join(f"{mnt} {dev}" for dev, mnt in fstab_entries(fstab)),
            "/etc/fstab")
    return facts, ev


def _interfaces(fs) -> str | None:
    """``name address`` (or ``name dhcp``) of the interfaces Debian's ifupdown or netplan
    configure."""
    out = []
    body = text(fs, "/etc/network/interfaces") or ""
    cur = None
    for line in body.splitlines():
        f = line.split("#", 1)[0].split()
        if len(f) >= 4 and f[0] == "iface" and f[1] != "lo":
            cur = f[1]
            if f[3] in ("dhcp", "auto"):
                out.append(f"{cur} dhcp")
        elif len(f) >= 2 and f[0] == "address" and cur:
            out.append(f"{cur} {f[1]}")
    for e in _list(fs, "/etc/netplan"):
        body = text(fs, f"/etc/netplan/{e.name}") or ""
        name = None
        for line in body.splitlines():
            m = re.match(r"^\s{4,6}([A-Za-z0-9_.-]+):\s*$", line)
            if m and m.group(1) not in ("addresses", "nameservers", "routes"):
                name = m.group(1)
            m = re.match(r"^\s+dhcp4:\s*(true|yes)", line)
            if m and name:
                out.append(f"{name} dhcp")
            m = re.match(r"^\s+-\s*([0-9a-fA-F.:]+/\d+)", line)
            if m and name:
                out.append(f"{name} {m.group(1)}")
    return "; ".join(out) or None


def _list(fs, path: str) -> list:
    try:
        return fs.list_dir(fs.lookup(path))
    except VDInspectError:
        return []


def fstab_entries(body: str) -> list[tuple[str, str]]:
    """(device, mount point) of each fstab line (``UUID=...``, ``LABEL=...``, a path)."""
    out = []
    for line in body.splitlines():
        f = line.split("#", 1)[0].split()
        if len(f) >= 2 and f[1] != "none":
            out.append((f[0], f[1]))
    return out


def _records(fs, path: str, st) -> np.ndarray:
    """The fixed-size records of a login file, decoded together (a numpy dtype derived
    from the declaration): a 64 MiB wtmp is 170,000 records."""
    data = read_file(fs, path, MAX_LOG) or b""
    dtype = numpy_dtype(st)
    return np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _when(sec: int) -> dt.datetime | None:
    if sec <= 0:
        return None
    return dt.datetime.fromtimestamp(sec, dt.UTC)


def boot_times(fs) -> tuple[list, list]:
    """Boot and shutdown times recorded in wtmp."""
    r = _records(fs, "/var/log/wtmp", Utmp)
    sec, kind = r["tv_sec"], r["ut_type"]
    boots = sec[(kind == BOOT_TIME) & (sec > 0)].tolist()
    runlevel = r[(kind == RUN_LVL) & (sec > 0)]  # few: one per boot and shutdown
    downs = [t for u, t in zip(runlevel["ut_user"].tolist(), runlevel["tv_sec"].tolist())
             if _cstr(u) == "shutdown"]
    return [_when(s) for s in boots], [_when(s) for s in downs]


def user_rows(fs) -> list[dict]:
    """Users of /etc/passwd with their home, shell and last login (wtmp, else lastlog)."""
    body = text(fs, "/etc/passwd")
    if not body:
        return []
    last: dict[str, dt.datetime] = {}
    r = _records(fs, "/var/log/wtmp", Utmp)
    logins = r[(r["ut_type"] == USER_PROCESS) & (r["tv_sec"] > 0)]
    for user, sec in zip(logins["ut_user"].tolist(), logins["tv_sec"].tolist()):
        t, who = _when(sec), _cstr(user)
        if who not in last or t > last[who]:
            last[who] = t
    lastlog = _records(fs, "/var/log/lastlog", LastLog)["ll_time"]
    rows = []
    for line in body.splitlines():
        f = line.split(":")
        if len(f) < 7 or not f[2].lstrip("-").isdigit():
            continue
        uid = int(f[2])
        when, where = last.get(f[0]), "/var/log/wtmp"
        if when is None and 0 <= uid < len(lastlog):
            when, where = _when(int(lastlog[uid])), "/var/log/lastlog"
        rows.append({"name": f[0], "uid": uid, "gid": int(f[3]) if f[3].isdigit() else None,
                     "full_name": f[4].split(",")[0] or None, "home": f[5], "shell": f[6],
                     "sid": None, "last_login": when,
                     "evidence": "/etc/passwd" + (f"; {where}" if when else "")})
    return rows


def package_rows(fs) -> list[dict]:
    """Packages of every database found (dpkg, rpm, apk, pacman); an rpm database in a
    form not read (Berkeley DB, ndb) gives one row naming it."""
    rows: list[dict] = []
    data = read_file(fs, DPKG_STATUS, MAX_DB)
    if data:
        rows += dpkg_rows(data)
    for p in RPM_SQLITE:
        data = read_file(fs, p, MAX_DB)
        if data:
            try:
                rows += rpm_sqlite_rows(data, p)
            except Exception as e:  # sqlite3 raises its own errors on a damaged file
                rows.append({"manager": "rpm", "name": f"(unreadable database: {e})",
                             "evidence": p})
            break
    else:
        for p, form in RPM_OTHER.items():
            if read_file(fs, p, 16):
                rows.append({"manager": "rpm", "name": f"({form} database not read)",
                             "evidence": p})
                break
    data = read_file(fs, APK_INSTALLED, MAX_DB)
    if data:
        rows += apk_rows(data)
    for e in _list(fs, PACMAN_LOCAL):
        if e.kind == "dir":
            p = f"{PACMAN_LOCAL}/{e.name}/desc"
            desc = read_file(fs, p)
            if desc:
                r = pacman_row(pacman_desc(desc), p)
                if r:
                    rows.append(r)
    return rows
