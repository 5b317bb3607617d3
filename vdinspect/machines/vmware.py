"""VMware machine files: the ``.vmx`` configuration and the ``.vmsd`` snapshot list.

Both are ``key = "value"`` lines (``#`` starts a comment; keys are case-insensitive; in a
value ``|XX`` is the byte with hex code XX). A disk is a device entry
``<bus><N>:<M>.fileName`` (bus scsi, sata, ide or nvme) with ``<bus><N>:<M>.present =
"TRUE"``, and not a CD-ROM ``deviceType``; its file is the VMDK of the current state (the
newest delta) and relative names are relative to the .vmx folder.

The ``.vmsd`` beside the .vmx (same stem) lists ``snapshotK.*`` entries: ``uid``,
``displayName``, ``description``, ``parent`` (the parent's uid), ``createTimeHigh`` and
``createTimeLow`` (microseconds since 1970 as two 32-bit halves, the low one written signed),
``diskJ.fileName`` and ``diskJ.node`` (the disk file that snapshot froze, and its device,
e.g. ``scsi0:0``); ``snapshot.current`` is the uid the current state descends from.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from ..errors import CorruptImage
from ..io import paths
from . import MAX_SNAPSHOTS, Attachment, Machine, MachineSnapshot, read_text_file, resolve

_LINE = re.compile(r"^\s*([^=#\s][^=]*?)\s*=\s*(.*?)\s*$")
_DISK = re.compile(r"^((?:scsi|sata|ide|nvme)\d+:\d+)\.filename$")
_SNAP_UID = re.compile(r"^snapshot(\d+)\.uid$")
_CDROM = ("cdrom", "atapi")


def _unescape(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
    return re.sub(r"\|([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), v)


def parse_dictionary(path: str, what: str, referrer: str | None = None) -> dict[str, str]:
    """The keys (lower case) and values of a VMware ``key = "value"`` file (``referrer``:
    the file it was found beside; the path policy then applies)."""
    data = read_text_file(path, what, referrer)
    text = data.decode("utf-8", errors="replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            out[m.group(1).lower()] = _unescape(m.group(2))
    return out


def _int(v: str | None) -> int | None:
    try:
        return int(v, 0) if v is not None else None
    except ValueError:
        return None


def create_time(high: str | None, low: str | None) -> datetime | None:
    """``createTimeHigh``/``Low``: microseconds since 1970 split in two 32-bit halves."""
    h, lo = _int(high), _int(low)
    if h is None or lo is None:
        return None
    us = ((h & 0xFFFFFFFF) << 32) | (lo & 0xFFFFFFFF)
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    except OverflowError:
        return None


class VmxMachine(Machine):
    """A VMware ``.vmx`` file (and its ``.vmsd`` snapshot list, if any)."""

    kind = "vmware"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.config = parse_dictionary(path, "VMware configuration")
        self.name = self.config.get("displayname")
        if "encryption.keysafe" in self.config or "encryption.data" in self.config:
            # an encrypted VM keeps its whole configuration (disks too) in encryption.data
            self.encryption = ("VMware VM encryption",
                               "the key from the key provider (KMS or native key provider) "
                               "that encryption.keySafe names",
                               "encryption.keySafe")
        self.disks = self._disks()
        self.vmsd_path = os.path.splitext(path)[0] + ".vmsd"
        self.vmsd: dict[str, str] = {}
        # found by name beside the .vmx: opened only where the path policy allows
        if paths.current().refusal(self.vmsd_path, path) is None:
            self.vmsd = parse_dictionary(self.vmsd_path, "VMware snapshot list", path)
            self._read_snapshots()

    def _disks(self) -> list[Attachment]:
        out = []
        for key, value in self.config.items():  # file order (dicts keep insertion order)
            m = _DISK.match(key)
            if not m or not value:
                continue
            node = m.group(1)
            if self.config.get(f"{node}.present", "false").lower() != "true":
                continue
            dtype = self.config.get(f"{node}.devicetype", "").lower()
            if any(c in dtype for c in _CDROM):
                continue
            out.append(Attachment(node, resolve(self.path, value), extra=dict(devicetype=dtype),
                                  name=value))
        return out

    def _read_snapshots(self) -> None:
        v = self.vmsd
        where = self.vmsd_path
        idx = sorted(int(m.group(1)) for k in v if (m := _SNAP_UID.match(k)))
        if len(idx) > MAX_SNAPSHOTS:
            raise CorruptImage("too many snapshots", path=where, structure="snapshot")
        for k in idx:
            p = f"snapshot{k}."
            disks = []
            n = _int(v.get(p + "numdisks"))
            j_keys = sorted(
                {
                    int(m.group(1))
                    for key in v
                    if (m := re.match(re.escape(p) + r"disk(\d+)\.filename$", key))
                }
            )
            if n is not None and n < len(j_keys):
                j_keys = j_keys[:n]
            for j in j_keys:
                fname = v.get(f"{p}disk{j}.filename")
                node = v.get(f"{p}disk{j}.node", f"disk{j}").lower()
                disks.append(Attachment(node, resolve(where, fname) if fname else None,
                                        name=fname))
            self.snapshots.append(
                MachineSnapshot(
                    v[p + "uid"],
                    v.get(p + "displayname"),
                    v.get(p + "parent") or None,
                    create_time(v.get(p + "createtimehigh"), v.get(p + "createtimelow")),
                    v.get(p + "description") or None,
                    disks,
                    raw={key: val for key, val in v.items() if key.startswith(p)},
                )
            )
        self.current = v.get("snapshot.current") or None
        self.check_tree()
