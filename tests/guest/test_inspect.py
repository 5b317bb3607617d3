"""What machine it was (issue 22): inspect(), packages() and users() on guests built by
the tests, each value compared with what an independent tool reads from the same source:
``dpkg-query --admindir`` for dpkg's status, ``rpm --dbpath`` for an rpm SQLite database
(a real one from ../shared/samples), util-linux ``last -f`` for wtmp, ``hivexget`` for the
Windows registry (a real Windows 10 SYSTEM hive from ../shared/samples, placed into an
NTFS volume by mkntfs + wimapply; a SOFTWARE hive written with ``hivexsh -w``).
"""

from __future__ import annotations

import datetime as dt
import lzma
import re
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

import vdinspect
from tests import tools
from tests.conftest import SHARED_SAMPLES

MIB = 1 << 20
EXT_UUID = "0b5e6c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
T_BOOT, T_LOGIN, T_DOWN = 1_700_000_000, 1_700_000_600, 1_700_003_600

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("sfdisk", "mke2fs", "mkfs.vfat", "qemu-img")),
    reason="needs sfdisk, e2fsprogs, dosfstools and qemu-img")


def utmp(ut_type: int, user: str, line: str, host: str, sec: int) -> bytes:
    """One glibc ``struct utmp`` record (x86_64 layout, 384 bytes), from utmp(5)."""
    return (struct.pack("<hxxi", ut_type, 1234) + line.encode().ljust(32, b"\0")
            + b"ts/0" + user.encode().ljust(32, b"\0") + host.encode().ljust(256, b"\0")
            + struct.pack("<hhiii", 0, 0, 0, sec, 0) + bytes(16) + bytes(20))


def linux_tree(root: Path) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')
    (etc / "hostname").write_text("web01.example.org\n")
    (etc / "timezone").write_text("Europe/Berlin\n")
    (etc / "fstab").write_text(f"# static\nUUID={EXT_UUID} / ext4 defaults 0 1\n"
                               "LABEL=BOOT /boot/efi vfat umask=0077 0 1\n"
                               "tmpfs /tmp tmpfs defaults 0 0\n")
    (etc / "network").mkdir()
    (etc / "network/interfaces").write_text("auto lo\niface lo inet loopback\n\n"
                                             "auto ens3\niface ens3 inet static\n"
                                             "    address 10.0.0.7/24\n    gateway 10.0.0.1\n"
                                             "iface ens4 inet dhcp\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "alice:x:1000:1000:Alice A,,,:/home/alice:/bin/bash\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    dpkg = root / "var/lib/dpkg"
    dpkg.mkdir(parents=True)
    host = Path("/var/lib/dpkg/status").read_text(errors="replace").split("\n\n")
    (dpkg / "status").write_text("\n\n".join(host[:60]) + "\n")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-13-amd64").write_bytes(b"kernel")
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy("/usr/bin/ls", root / "usr/bin/ls")
    log = root / "var/log"
    log.mkdir(parents=True)
    (log / "wtmp").write_bytes(utmp(2, "reboot", "~", "6.1.0-13-amd64", T_BOOT)
                               + utmp(7, "alice", "pts/0", "10.0.0.5", T_LOGIN)
                               + utmp(1, "shutdown", "~~", "6.1.0-13-amd64", T_DOWN))


@pytest.fixture(params=["ext4", "xfs"])
def linux_disk(request, tmp_path) -> Path:
    """GPT: an 8 MiB FAT (label BOOT) and the root filesystem made from the guest tree by
    mke2fs -d (ext4) or mkfs.xfs -p (XFS, RHEL's default)."""
    root = tmp_path / "root"
    linux_tree(root)
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MIB)
    tools.run("sfdisk", "-q", raw, input="label: gpt\nstart=2048, size=16384\nsize=81920\n")
    fat, ext = tmp_path / "fat.img", tmp_path / "ext.img"
    with open(fat, "wb") as f:
        f.truncate(8 * MIB)
    tools.run("mkfs.vfat", "-n", "BOOT", fat)
    if request.param == "xfs":
        if not shutil.which("mkfs.xfs"):
            pytest.skip("needs xfsprogs")
        from tests.filesystems.test_xfs import mkxfs, protofile

        mkxfs(ext, protofile(root, tmp_path / "proto"), ["-m", f"uuid={EXT_UUID}"],
              size=40 * MIB)
    else:
        with open(ext, "wb") as f:
            f.truncate(40 * MIB)
        tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-U", EXT_UUID, "-L", "root", "-d",
                  root, ext)
    tools.run("dd", f"if={fat}", f"of={raw}", "bs=512", "seek=2048", "conv=notrunc,sparse")
    tools.run("dd", f"if={ext}", f"of={raw}", "bs=512", "seek=18432", "conv=notrunc,sparse")
    out = tmp_path / "linux.qcow2"
    tools.run("qemu-img", "convert", "-O", "qcow2", raw, out)
    return out


def last_times(wtmp: Path) -> dict:
    """What util-linux ``last`` reads from a wtmp file: boot, login and shutdown times."""
    out = tools.run("last", "-x", "--time-format", "iso", "-f", wtmp)
    times = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s.*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:?\d\d)", line)
        if m:
            times.setdefault(m.group(1), dt.datetime.fromisoformat(m.group(2)))
    return times


def test_linux_guest(linux_disk, tmp_path):
    with vdinspect.open(linux_disk) as d:
        inv = d.inspect()
        rows = d.inspect_rows()
        pkgs = d.packages()
        users = d.users()
    assert len(rows) == 1
    r = rows[0]
    assert r["root"] == "2" and r["family"] == "linux" and r["distribution"] == "debian"
    assert r["product"] == "Debian GNU/Linux 12 (bookworm)" and r["version"] == "12"
    assert (r["hostname"], r["domain"], r["timezone"]) == ("web01", "example.org",
                                                          "Europe/Berlin")
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    assert r["arch"] == machine
    assert r["kernels"] == "6.1.0-13-amd64"
    assert r["interfaces"] == "ens3 10.0.0.7/24; ens4 dhcp"
    assert r["mounts"] == "/ -> 2; /boot/efi -> 1"
    when = last_times(tmp_path / "root/var/log/wtmp")
    assert r["last_boot"] == when["reboot"] == dt.datetime.fromtimestamp(T_BOOT, dt.UTC)
    assert r["last_shutdown"] == when["shutdown"]
    assert "/etc/os-release" in r["evidence"] and "/etc/hostname" in r["evidence"]
    assert str(inv["last_boot"].dtype) == "datetime64[us, UTC]"
    # packages: what dpkg-query reads from the same status file
    q = tools.run("dpkg-query", f"--admindir={tmp_path / 'root/var/lib/dpkg'}", "-W", "-f",
                  "${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\t"
                  "${Installed-Size}\n")
    want = {(p, v, a, int(s) * 1024 if s else None)
            for st, p, v, a, s in (line.split("\t") for line in q.splitlines())
            if st == "installed"}
    got = {(n, v, a, None if pd_isna(s) else int(s))
           for n, v, a, s in zip(pkgs["name"], pkgs["version"], pkgs["arch"], pkgs["size"])}
    assert got == want and len(want) > 10
    assert set(pkgs["manager"]) == {"dpkg"} and set(pkgs["root"]) == {"2"}
    u = users.set_index("name")
    assert list(users["name"]) == ["root", "alice", "nobody"]
    assert u.loc["alice", "home"] == "/home/alice" and u.loc["alice", "uid"] == 1000
    assert u.loc["alice", "last_login"] == when["alice"]
    assert pd_isna(u.loc["nobody", "last_login"])


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def test_cli_inspect(linux_disk, capsys):
    from vdinspect.cli import main

    assert main(["inspect", str(linux_disk)]) == 0
    text = capsys.readouterr().out
    assert "Debian GNU/Linux 12 (bookworm)" in text and "web01" in text
    assert main(["inspect", "--json", "--users", str(linux_disk)]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["root", "alice", "nobody"]


RPMDB = SHARED_SAMPLES / "knqyf263-go-rpmdb/pkg/testdata/cbl-mariner-2.0/rpmdb.sqlite.xz"


@pytest.mark.skipif(not RPMDB.exists() or not shutil.which("rpm"),
                    reason="needs ../shared/samples and rpm")
def test_rpm_sqlite_database(tmp_path):
    root = tmp_path / "root"
    db = root / "usr/lib/sysimage/rpm"
    db.mkdir(parents=True)
    (db / "rpmdb.sqlite").write_bytes(lzma.decompress(RPMDB.read_bytes()))
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('NAME="Common Base Linux Mariner"\nVERSION_ID="2.0"\n'
                                         'ID=mariner\n')
    img = tmp_path / "rpm.img"
    with open(img, "wb") as f:
        f.truncate(24 * MIB)
    tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-d", root, img)
    q = tools.run("rpm", "--dbpath", db, "-qa", "--qf",
                  "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SIZE}\t%{INSTALLTIME}\n")
    want = set()
    for line in q.splitlines():
        n, v, a, s, t = line.split("\t")
        want.add((n, v, a, int(s), int(t)))
    with vdinspect.open(img) as d:
        assert d.inspect_rows()[0]["distribution"] == "mariner"
        pkgs = d.packages()
    got = {(n, v, a, int(s), int(t.timestamp())) for n, v, a, s, t in
           zip(pkgs["name"], pkgs["version"], pkgs["arch"], pkgs["size"], pkgs["installed"])}
    assert got == want and len(got) == 129  # the MANIFEST's count


SYSTEM = SHARED_SAMPLES / "mkorman90-regipy/regipy_tests/data/SYSTEM_WIN_10_1709.xz"
NTUSER = SHARED_SAMPLES / "mkorman90-regipy/regipy_tests/data/NTUSER-WSL.DAT.xz"


def hivexget(hive: Path, key: str, name: str) -> str:
    return tools.run("hivexget", hive, key, name).strip()


def software_hive(path: Path, base: bytes) -> None:
    """A SOFTWARE hive written by hivex (``hivexsh -w``) on a copy of a real hive."""
    path.write_bytes(base)
    script = "\n".join([
        "add Microsoft", "cd Microsoft", "add Windows NT", "cd Windows NT",
        "add CurrentVersion", "cd CurrentVersion",
        "setval 5", "ProductName", "string:Windows 10 Pro", "EditionID",
        "string:Professional", "DisplayVersion", "string:22H2", "CurrentBuild",
        "string:19045", "InstallDate", "dword:0x5f5e1000",
        "add ProfileList", "cd ProfileList", "add S-1-5-21-1-2-3-1001",
        "cd S-1-5-21-1-2-3-1001", "setval 1", "ProfileImagePath",
        "string:C:\\Users\\alice",
        "cd \\Microsoft", "add Windows", "cd Windows", "add CurrentVersion",
        "cd CurrentVersion", "add Uninstall", "cd Uninstall", "add 7-Zip", "cd 7-Zip",
        "setval 4", "DisplayName", "string:7-Zip 23.01 (x64)", "DisplayVersion",
        "string:23.01", "Publisher", "string:Igor Pavlov", "EstimatedSize", "dword:0x00000640",
        "commit", ""])
    tools.run("hivexsh", "-w", path, input=script)


def windows_volume(tmp_path, *, gpt_letter: tuple[str, str] | None = None) -> tuple[Path,
                                                                                  Path]:
    """(an NTFS volume holding Windows/System32/config, its SYSTEM hive) made by mkntfs and
    wimapply; ``gpt_letter`` (letter, partition GUID) adds a MountedDevices value for a GPT
    partition, written with hivexsh."""
    tree = tmp_path / "win"
    config = tree / "Windows/System32/config"
    config.mkdir(parents=True)
    system = config / "SYSTEM"
    system.write_bytes(lzma.decompress(SYSTEM.read_bytes()))
    if gpt_letter:
        letter, guid = gpt_letter
        data = b"DMIO:ID:" + uuid.UUID(guid).bytes_le
        tools.run("hivexsh", "-w", system, input=(
            "cd \\MountedDevices\nsetval 1\n\\DosDevices\\" + letter + ":\n"
            "hex:3:" + ",".join(f"{b:02x}" for b in data) + "\ncommit\n"))
    software_hive(config / "SOFTWARE", lzma.decompress(NTUSER.read_bytes()))
    wim = tmp_path / "w.wim"
    tools.run("wimcapture", tree, wim, "--compress=none")
    ntfs = tmp_path / "ntfs.img"
    with open(ntfs, "wb") as f:
        f.truncate(64 * MIB)
    tools.run("mkntfs", "-F", "-Q", "-q", ntfs)
    tools.run("wimapply", wim, "1", ntfs)
    return ntfs, system


NEEDS_WINDOWS = pytest.mark.skipif(
    not SYSTEM.exists() or not all(shutil.which(t) for t in (
        "mkntfs", "wimcapture", "wimapply", "hivexget", "hivexsh")),
    reason="needs ../shared/samples, ntfs-3g, wimtools and hivex")


@NEEDS_WINDOWS
def test_windows_drive_letter_of_a_gpt_partition(tmp_path):
    guid = "6e1f5a3c-8d2b-4c7e-9f10-2a3b4c5d6e7f"
    ntfs, system = windows_volume(tmp_path, gpt_letter=("E", guid))
    raw = tmp_path / "gpt.raw"
    with open(raw, "wb") as f:
        f.truncate(80 * MIB)
    table = (f"label: gpt\nstart=2048, size={64 * MIB // 512}, "
             f"type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid={guid}\n")
    tools.run("sfdisk", "-q", raw, input=table)
    tools.run("dd", f"if={ntfs}", f"of={raw}", "bs=1M", "seek=1", "conv=notrunc,sparse")
    # what hivex reads back: the DMIO:ID: prefix and the GUID in its on-disk byte order
    got = tools.run("hivexget", system, "\\MountedDevices", "\\DosDevices\\E:", binary=True)
    assert got[:8] == b"DMIO:ID:" and str(uuid.UUID(bytes_le=got[8:24])) == guid
    with vdinspect.open(raw) as d:
        assert d.inspect_rows()[0]["mounts"] == "E: -> 1"


@NEEDS_WINDOWS
def test_windows_guest(tmp_path):
    ntfs, system = windows_volume(tmp_path)
    # the disk the hive's MountedDevices names: MBR signature 0xdf4546ae, C: at 0x1f500000
    raw = tmp_path / "disk.raw"
    start = 0x1F500000 // 512
    with open(raw, "wb") as f:
        f.truncate(0x1F500000 + 65 * MIB)
    tools.run("sfdisk", "-q", raw, input=f"label: dos\nlabel-id: 0xdf4546ae\n"
                                          f"start={start}, size={64 * MIB // 512}, type=7\n")
    tools.run("dd", f"if={ntfs}", f"of={raw}", "bs=1M", f"seek={0x1F500000 // MIB}",
              "conv=notrunc,sparse")
    with vdinspect.open(raw) as d:
        rows = d.inspect_rows()
        users = d.users()
        pkgs = d.packages()
    assert len(rows) == 1
    r = rows[0]
    assert r["family"] == "windows" and r["root"] == "1"
    assert r["hostname"] == hivexget(system, "\\ControlSet001\\Control\\ComputerName\\"
                                     "ComputerName", "ComputerName") == "DESKTOP-2KGM189"
    assert r["timezone"] == hivexget(system, "\\ControlSet001\\Control\\TimeZoneInformation",
                                     "TimeZoneKeyName")
    ft = int.from_bytes(tools.run("hivexget", system, "\\ControlSet001\\Control\\Windows",
                                  "ShutdownTime", binary=True)[:8], "little")
    want = dt.datetime(1601, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ft // 10)
    assert r["last_shutdown"] == want
    assert r["arch"] == "x86_64"  # PROCESSOR_ARCHITECTURE AMD64
    assert r["product"] == "Windows 10 Pro" and r["edition"] == "Professional"
    assert r["build"] == "19045" and r["version"] == "22H2"
    assert r["install_date"] == dt.datetime.fromtimestamp(0x5F5E1000, dt.UTC)
    assert r["mounts"] == "C: -> 1"
    # the one interface with an address: what hivexget reads under Tcpip\Interfaces
    key = "\\ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\" \
          "{5f3f359e-9d52-4566-9bec-37efdfb25abe}"
    addr = hivexget(system, key, "DhcpIPAddress")
    assert r["interfaces"] == f"{{5f3f359e-9d52-4566-9bec-37efdfb25abe}} {addr} (dhcp)"
    u = users.set_index("sid")
    assert u.loc["S-1-5-21-1-2-3-1001", "home"] == "C:\\Users\\alice"
    assert u.loc["S-1-5-21-1-2-3-1001", "name"] == "alice"
    p = pkgs.set_index("name").loc["7-Zip 23.01 (x64)"]
    assert (p["version"], p["vendor"], p["size"]) == ("23.01", "Igor Pavlov", 0x640 * 1024)


def test_no_operating_system(tmp_path):
    img = tmp_path / "data.img"
    with open(img, "wb") as f:
        f.truncate(8 * MIB)
    tools.run("mkfs.vfat", img)
    with vdinspect.open(img) as d:
        assert d.inspect_rows() == [] and len(d.packages()) == 0


def test_inventory_names_the_os(linux_disk):
    row = vdinspect.inventory([linux_disk]).iloc[0]
    assert row["os"] == "Debian GNU/Linux 12 (bookworm)" and row["hostnames"] == "web01"


def test_apk_and_pacman_databases(tmp_path):
    """Alpine's ``installed`` and pacman's ``desc`` files written from their documented
    formats (no apk or pacman here to write them), read back as written."""
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_text(
        "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383304\nI:622592\nT:the musl c library\n"
        "m:Timo Teräs <timo.teras@iki.fi>\nt:1696873735\n\n"
        "P:busybox\nV:1.36.1-r5\nA:x86_64\nI:966656\n\n")
    (root / "etc").mkdir()
    (root / "etc/alpine-release").write_text("3.18.4\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/ash\n")
    desc = root / "var/lib/pacman/local/zlib-1:1.3-2"
    desc.mkdir(parents=True)
    (desc / "desc").write_text("%NAME%\nzlib\n\n%VERSION%\n1:1.3-2\n\n%ARCH%\nx86_64\n\n"
                               "%INSTALLDATE%\n1700000000\n\n%SIZE%\n365214\n\n"
                               "%PACKAGER%\nEvangelos Foutras\n")
    img = tmp_path / "a.img"
    with open(img, "wb") as f:
        f.truncate(8 * MIB)
    tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-d", root, img)
    with vdinspect.open(img) as d:
        os_row = d.inspect_rows()[0]
        pkgs = d.packages()
    assert (os_row["distribution"], os_row["version"]) == ("alpine", "3.18.4")
    got = {(m, n, v, a, None if pd_isna(s) else int(s))
           for m, n, v, a, s in zip(pkgs["manager"], pkgs["name"], pkgs["version"],
                                    pkgs["arch"], pkgs["size"])}
    assert got == {("apk", "musl", "1.2.4-r2", "x86_64", 622592),
                   ("apk", "busybox", "1.36.1-r5", "x86_64", 966656),
                   ("pacman", "zlib", "1:1.3-2", "x86_64", 365214)}
    z = pkgs.set_index("name").loc["zlib"]
    assert z["installed"] == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
