"""A Windows guest's facts from its registry hives, read with regipy (a maintained hive
parser): SYSTEM (computer name, domain, time zone, last shutdown, architecture, network
interfaces, drive letters) and SOFTWARE (product, edition, build, install date, users'
profiles, installed programs in both registry views).

The hive's bytes are copied to a private temporary file for regipy (which opens a path);
the image is never written.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import uuid
from contextlib import contextmanager, suppress

from ..errors import MissingDependency
from .linux import read_file

CONFIG = "/Windows/System32/config"
MAX_HIVE = 1 << 30  # bytes: a hive larger than this is not read
UNINSTALL = ("Microsoft\\Windows\\CurrentVersion\\Uninstall",
             "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall")
FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)


def is_root(fs) -> bool:
    return read_file(fs, f"{CONFIG}/SYSTEM", 4) == b"regf"


@contextmanager
def open_hive(fs, name: str):
    """The hive ``CONFIG/name`` as a regipy RegistryHive, or None when absent/unreadable."""
    try:
        from regipy.registry import RegistryHive
    except ImportError as e:  # pragma: no cover - regipy is a dependency
        raise MissingDependency("Windows inspection needs regipy: pip install regipy") from e
    data = read_file(fs, f"{CONFIG}/{name}", MAX_HIVE)
    if not data or data[:4] != b"regf":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="vdinspect-hive-") as tmp:
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            hive = RegistryHive(path)
        except Exception:  # regipy's own errors on a damaged hive: the facts stay unknown
            hive = None
        yield hive


def value(hive, key: str, name: str):
    """A value of ``key`` (a path from the hive's root), or None."""
    if hive is None:
        return None
    try:
        v = hive.get_key("\\" + key.strip("\\")).get_value(name)
    except Exception:  # regipy raises RegistryKeyNotFoundException and friends
        return None
    return v


def subkeys(hive, key: str) -> list:
    if hive is None:
        return []
    try:
        return list(hive.get_key("\\" + key.strip("\\")).iter_subkeys())
    except Exception:
        return []


def filetime(v) -> dt.datetime | None:
    """A FILETIME (8 little-endian bytes or an int of 100 ns since 1601) as UTC."""
    if isinstance(v, bytes | bytearray) and len(v) == 8:
        v = int.from_bytes(v, "little")
    if not isinstance(v, int) or v <= 0:
        return None
    try:
        return FILETIME_EPOCH + dt.timedelta(microseconds=v // 10)
    except OverflowError:
        return None


def unix_time(v) -> dt.datetime | None:
    if not isinstance(v, int) or v <= 0:
        return None
    return dt.datetime.fromtimestamp(v, dt.UTC)


def control_set(system) -> str:
    cur = value(system, "Select", "Current")
    return f"ControlSet{cur if isinstance(cur, int) and 0 < cur < 1000 else 1:03d}"


def os_facts(fs) -> tuple[dict, dict]:
    """(facts, evidence) of a Windows root from its SYSTEM and SOFTWARE hives."""
    facts: dict = {"family": "windows", "distribution": "windows"}
    ev: dict = {}

    def put(key, v, where):
        if v not in (None, "") and facts.get(key) in (None, ""):
            facts[key] = v
            ev[key] = where

    with open_hive(fs, "SYSTEM") as system:
        cs = control_set(system)
        k = f"{cs}\\Control\\ComputerName\\ComputerName"
        put("hostname", value(system, k, "ComputerName"), f"SYSTEM\\{k} ComputerName")
        k = f"{cs}\\Services\\Tcpip\\Parameters"
        put("domain", value(system, k, "Domain") or value(system, k, "DhcpDomain"),
            f"SYSTEM\\{k} Domain")
        k = f"{cs}\\Control\\TimeZoneInformation"
        put("timezone", value(system, k, "TimeZoneKeyName")
            or value(system, k, "StandardName"), f"SYSTEM\\{k} TimeZoneKeyName")
        k = f"{cs}\\Control\\Windows"
        put("last_shutdown", filetime(value(system, k, "ShutdownTime")),
            f"SYSTEM\\{k} ShutdownTime")
        k = f"{cs}\\Control\\Session Manager\\Environment"
        arch = value(system, k, "PROCESSOR_ARCHITECTURE")
        put("arch", {"AMD64": "x86_64", "x86": "i386", "ARM64": "aarch64"}.get(arch, arch),
            f"SYSTEM\\{k} PROCESSOR_ARCHITECTURE")
        put("interfaces", _interfaces(system, cs),
            f"SYSTEM\\{cs}\\Services\\Tcpip\\Parameters\\Interfaces")
        previous = _source_os(system)
    with open_hive(fs, "SOFTWARE") as software:
        k = "Microsoft\\Windows NT\\CurrentVersion"
        put("product", value(software, k, "ProductName"), f"SOFTWARE\\{k} ProductName")
        put("edition", value(software, k, "EditionID"), f"SOFTWARE\\{k} EditionID")
        put("version", value(software, k, "DisplayVersion") or value(software, k, "ReleaseId"),
            f"SOFTWARE\\{k} DisplayVersion")
        build = value(software, k, "CurrentBuild") or value(software, k, "CurrentBuildNumber")
        ubr = value(software, k, "UBR")
        put("build", f"{build}.{ubr}" if build and isinstance(ubr, int) else build,
            f"SOFTWARE\\{k} CurrentBuild")
        put("install_date", unix_time(value(software, k, "InstallDate")),
            f"SOFTWARE\\{k} InstallDate")
        if software is None and previous:  # no SOFTWARE hive: what setup recorded before
            key, vals = previous
            where = (f"SYSTEM\\Setup\\{key} (the system before its last upgrade; "
                     "SOFTWARE hive not found)")
            put("product", vals.get("ProductName"), where)
            put("edition", vals.get("EditionID"), where)
            put("version", vals.get("ReleaseId"), where)
            put("build", vals.get("CurrentBuild"), where)
    return facts, ev


def _interfaces(system, cs: str) -> str | None:
    """``{guid} address (dhcp|static)`` of each TCP/IP interface that has an address."""
    base = f"{cs}\\Services\\Tcpip\\Parameters\\Interfaces"
    out = []
    for k in subkeys(system, base):
        vals = {}
        with suppress(Exception):
            vals = {v.name: v.value for v in k.iter_values()}
        dhcp = vals.get("EnableDHCP") == 1
        addr = vals.get("DhcpIPAddress") if dhcp else vals.get("IPAddress")
        if isinstance(addr, list):
            addr = ",".join(a for a in addr if a)
        if addr and addr != "0.0.0.0":
            out.append(f"{k.name} {addr} ({'dhcp' if dhcp else 'static'})")
    return "; ".join(out) or None


def _source_os(system) -> tuple[str, dict] | None:
    """The newest ``Setup\\Source OS (Updated on ...)`` key and its values."""
    best = None
    for k in subkeys(system, "Setup"):
        if not k.name.startswith("Source OS"):
            continue
        vals = {v.name: v.value for v in k.iter_values()}
        when = vals.get("InstallDate") if isinstance(vals.get("InstallDate"), int) else 0
        if best is None or when > best[0]:
            best = (when, k.name, vals)
    return (best[1], best[2]) if best else None


def user_rows(fs) -> list[dict]:
    """Accounts with a profile: SOFTWARE ProfileList (SID, profile folder)."""
    rows = []
    with open_hive(fs, "SOFTWARE") as software:
        base = "Microsoft\\Windows NT\\CurrentVersion\\ProfileList"
        for k in subkeys(software, base):
            path = value(software, f"{base}\\{k.name}", "ProfileImagePath")
            name = re.split(r"[\\/]", path)[-1] if isinstance(path, str) and path else None
            rid = k.name.rsplit("-", 1)[-1]
            rows.append({"name": name, "uid": int(rid) if rid.isdigit() else None,
                         "gid": None, "full_name": None, "home": path, "shell": None,
                         "sid": k.name, "last_login": None,
                         "evidence": f"SOFTWARE\\{base}\\{k.name}"})
    return rows


def package_rows(fs) -> list[dict]:
    """Installed programs: the Uninstall keys of both registry views (64- and 32-bit)."""
    rows = []
    with open_hive(fs, "SOFTWARE") as software:
        for base in UNINSTALL:
            for k in subkeys(software, base):
                vals = {}
                with suppress(Exception):
                    vals = {v.name: v.value for v in k.iter_values()}
                name = vals.get("DisplayName")
                if not isinstance(name, str) or not name:
                    continue
                size = vals.get("EstimatedSize")
                date = vals.get("InstallDate")
                when = None
                if isinstance(date, str) and re.fullmatch(r"\d{8}", date):
                    with suppress(ValueError):
                        when = dt.datetime.strptime(date, "%Y%m%d").replace(tzinfo=dt.UTC)
                rows.append({"manager": "windows", "name": name,
                             "version": vals.get("DisplayVersion"),
                             "arch": "x86" if base.startswith("WOW6432Node") else None,
                             "size": size * 1024 if isinstance(size, int) else None,
                             "installed": when, "vendor": vals.get("Publisher"),
                             "evidence": f"SOFTWARE\\{base}\\{k.name}"})
    return rows


def drive_letters(fs) -> dict[str, tuple]:
    """SYSTEM MountedDevices: letter -> ("mbr", disk signature, partition offset in bytes)
    or ("gpt", partition GUID)."""
    out: dict[str, tuple] = {}
    with open_hive(fs, "SYSTEM") as system:
        for name, data in _mounted(system):
            m = re.fullmatch(r"\\DosDevices\\([A-Z]):", name)
            if not m or not isinstance(data, bytes | bytearray):
                continue
            if len(data) == 12:
                out[m.group(1)] = ("mbr", int.from_bytes(data[:4], "little"),
                                   int.from_bytes(data[4:], "little"))
            elif len(data) == 24 and data[:8] == b"DMIO:ID:":
                out[m.group(1)] = ("gpt", str(uuid.UUID(bytes_le=bytes(data[8:]))))
    return out


def _mounted(system) -> list[tuple[str, bytes]]:
    if system is None:
        return []
    try:
        key = system.get_key("\\MountedDevices")
        names = [v.name for v in key.iter_values()]
        return [(n, key.get_value(n)) for n in names]
    except Exception:
        return []
