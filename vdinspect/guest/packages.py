"""Installed packages from a Linux guest's package databases: dpkg's ``status``, rpm's
SQLite database (the Berkeley DB and ndb forms are named, not read), apk's ``installed``
and pacman's ``local`` folder. Every reader takes the database's bytes (or the filesystem
for pacman) and returns plain rows; nothing is run from the guest.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct

from .structs import (
    RPM_I18NSTRING,
    RPM_INT32,
    RPM_STRING,
    RPM_STRING_ARRAY,
    RPMTAG,
    RpmHeaderIntro,
    RpmIndexEntry,
)

#: where each manager keeps its database (the first found wins)
DPKG_STATUS = "/var/lib/dpkg/status"
RPM_SQLITE = ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite")
RPM_OTHER = {"/var/lib/rpm/Packages": "Berkeley DB", "/usr/lib/sysimage/rpm/Packages.db": "ndb",
             "/var/lib/rpm/Packages.db": "ndb"}
APK_INSTALLED = "/lib/apk/db/installed"
PACMAN_LOCAL = "/var/lib/pacman/local"
MAX_DB = 512 << 20  # bytes: a package database larger than this is not read
MAX_RPM_HEADER = 64 << 20  # bytes: the most an rpm header blob may claim


def _utc(ts: int | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromtimestamp(int(ts), dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _row(manager: str, name: str, version: str | None, arch: str | None = None, *,
         size: int | None = None, installed: dt.datetime | None = None,
         vendor: str | None = None, source: str = "") -> dict:
    return {"manager": manager, "name": name, "version": version, "arch": arch,
            "size": size, "installed": installed, "vendor": vendor, "evidence": source}


# --- dpkg ------------------------------------------------------------------------------
def dpkg_rows(data: bytes, source: str = DPKG_STATUS) -> list[dict]:
    """Packages whose ``Status`` says installed, from a dpkg ``status`` file (RFC 822-like
    paragraphs; ``Installed-Size`` is in KiB)."""
    rows = []
    for para in data.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                continue  # a continuation line (Description, Conffiles)
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        status = fields.get("status", "").split()
        if "package" not in fields or status[-1:] != ["installed"]:
            continue
        size = fields.get("installed-size", "")
        rows.append(_row("dpkg", fields["package"], fields.get("version"),
                         fields.get("architecture"),
                         size=int(size) * 1024 if size.isdigit() else None,
                         vendor=fields.get("maintainer"), source=source))
    return rows


# --- rpm -------------------------------------------------------------------------------
def rpm_header(blob: bytes) -> dict:
    """The tags of one rpm header blob (``il``, ``dl``, the index, the data) that
    :data:`RPMTAG` names; an entry pointing outside the blob is skipped."""
    intro = RpmHeaderIntro.parse(blob)
    il, dl = intro.il, intro.dl
    base = RpmHeaderIntro.sizeof() + il * RpmIndexEntry.sizeof()
    if il > 100_000 or base + dl > len(blob):
        raise ValueError(f"rpm header claims {il} tags and {dl} data bytes, blob has "
                         f"{len(blob)}")
    want = {v: k for k, v in RPMTAG.items()}
    out: dict = {}
    for i in range(il):
        e = RpmIndexEntry.parse(blob[RpmHeaderIntro.sizeof() + i * 16:][:16])
        name = want.get(e.tag)
        if name is None or not 0 <= e.offset < dl:
            continue
        at = base + e.offset
        if e.type == RPM_INT32 and at + 4 <= base + dl:
            out[name] = struct.unpack_from(">i", blob, at)[0]
        elif e.type in (RPM_STRING, RPM_STRING_ARRAY, RPM_I18NSTRING):
            end = blob.find(b"\0", at, base + dl)
            out[name] = blob[at:end if end >= 0 else base + dl].decode("utf-8", "replace")
    return out


def rpm_sqlite_rows(data: bytes, source: str) -> list[dict]:
    """Packages of an rpm SQLite database (table ``Packages``: ``hnum``, ``blob``), read
    from memory (the guest's file is never opened by SQLite)."""
    if data[18:20] == b"\x02\x02":  # WAL mode: an in-memory copy reads as a rollback one
        data = data[:18] + b"\x01\x01" + data[20:]
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(data)
        blobs = con.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
    finally:
        con.close()
    rows = []
    for (blob,) in blobs:
        try:
            h = rpm_header(bytes(blob))
        except (ValueError, struct.error, Exception) as e:  # a damaged blob: one row says so
            rows.append(_row("rpm", f"(unreadable header: {e})", None, source=source))
            continue
        if "name" not in h:
            continue
        ver = h.get("version")
        if ver is not None and h.get("release"):
            ver = f"{ver}-{h['release']}"
        if ver is not None and h.get("epoch"):
            ver = f"{h['epoch']}:{ver}"
        rows.append(_row("rpm", h["name"], ver, h.get("arch"), size=h.get("size"),
                         installed=_utc(h.get("installtime")), vendor=h.get("vendor"),
                         source=source))
    return rows


# --- apk -------------------------------------------------------------------------------
def apk_rows(data: bytes, source: str = APK_INSTALLED) -> list[dict]:
    """Packages of Alpine's ``installed`` database (blank-line separated ``X:value`` lines:
    P name, V version, A arch, I installed size, t build time, m maintainer)."""
    rows = []
    for block in data.decode("utf-8", "replace").split("\n\n"):
        f = {}
        for line in block.splitlines():
            if len(line) > 1 and line[1] == ":" and line[0] not in f:
                f[line[0]] = line[2:]
        if "P" in f:
            size = f.get("I", "")
            rows.append(_row("apk", f["P"], f.get("V"), f.get("A"),
                             size=int(size) if size.isdigit() else None,
                             vendor=f.get("m"), source=source))
    return rows


# --- pacman ----------------------------------------------------------------------------
def pacman_desc(data: bytes) -> dict[str, str]:
    """A pacman ``desc`` file: ``%NAME%`` headers, each followed by its value lines."""
    out: dict[str, str] = {}
    key = None
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("%") and line.endswith("%"):
            key = line.strip("%")
        elif key and line and key not in out:
            out[key] = line
    return out


def pacman_row(desc: dict[str, str], source: str) -> dict | None:
    if "NAME" not in desc:
        return None
    size = desc.get("SIZE", "")
    date = desc.get("INSTALLDATE", "")
    return _row("pacman", desc["NAME"], desc.get("VERSION"), desc.get("ARCH"),
                size=int(size) if size.isdigit() else None,
                installed=_utc(int(date)) if date.isdigit() else None,
                vendor=desc.get("PACKAGER"), source=source)
