"""XVA exports built from the format's public description (xapi's stream_vdi: chunks
``Ref:NN/%08d`` of 1 MiB, all-zero chunks left out except the first and the last, each
followed by ``.checksum`` holding its SHA-1 hex; ``ova.xml`` first, an XML-RPC value), with
Python's tarfile — not with vdinspect's code."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile

CHUNK = 1 << 20


def _v(x) -> str:
    if isinstance(x, dict):
        members = "".join(f"<member><name>{k}</name>{_v(v)}</member>" for k, v in x.items())
        return f"<value><struct>{members}</struct></value>"
    if isinstance(x, list):
        return f"<value><array><data>{''.join(_v(v) for v in x)}</data></array></value>"
    return f"<value>{x}</value>"


def ova_xml(vm_name: str, disks: list[tuple[str, str, int]]) -> bytes:
    """``disks``: (ref, name, virtual size) in VBD userdevice order."""
    objects = [dict(**{"class": "VM", "id": "Ref:1",
                       "snapshot": dict(name_label=vm_name, uuid="0b7c-vm-uuid",
                                        VCPUs_max="2", memory_static_max=str(1 << 30),
                                        is_control_domain="<boolean>0</boolean>")})]
    for k, (ref, name, size) in enumerate(disks):
        objects.append({"class": "VBD", "id": f"Ref:{100 + k}",
                        "snapshot": dict(VM="Ref:1", VDI=ref, userdevice=str(k), type="Disk")})
        objects.append({"class": "VDI", "id": ref,
                        "snapshot": dict(name_label=name, uuid=f"uuid-{name}",
                                         virtual_size=str(size), type="user")})
    top = dict(version=dict(hostname="xenhost", date="2024-01-01", product_version="8.2.1",
                            export_vsn="2"), objects=objects)
    return ('<?xml version="1.0" ?>' + _v(top)).encode()


def _add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))


def xxh64_upper(data: bytes) -> str:
    """XXH64 (seed 0) as xapi writes it ("%016LX"), computed by the ``xxhsum`` tool; a
    placeholder when the tool is absent (the tests that verify it then skip)."""
    if shutil.which("xxhsum") is None:
        return "0" * 16
    out = subprocess.run(["xxhsum", "-H1"], input=data, capture_output=True, check=True)
    return out.stdout.split()[0].decode().upper()


def build_xva(path, vm_name: str, disks: list[tuple[str, str, bytes]], *,
              keepalive_after: int | None = None, sums: str = "checksum",
              corrupt_chunk: int | None = None) -> None:
    """An XVA of ``disks`` ((ref, name, raw bytes)) as xapi writes it. ``keepalive_after``
    puts an empty chunk after that chunk number (the exporter's idle keep-alive, which takes
    a number but no place); ``corrupt_chunk`` flips a byte of that chunk after its checksum
    is computed."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        _add(t, "ova.xml", ova_xml(vm_name, [(r, n, len(d)) for r, n, d in disks]))
        for ref, _name, data in disks:
            nchunks = (len(data) + CHUNK - 1) // CHUNK
            num = 0
            for k in range(nchunks):
                piece = data[k * CHUNK:(k + 1) * CHUNK]
                if piece.count(0) != len(piece) or k in (0, nchunks - 1):
                    digest = (hashlib.sha1(piece).hexdigest() if sums == "checksum"
                              else xxh64_upper(piece))
                    if corrupt_chunk == num:
                        piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
                    _add(t, f"{ref}/{num:08d}", piece)
                    _add(t, f"{ref}/{num:08d}.{sums}", digest.encode())
                num += 1
                if keepalive_after == k:
                    _add(t, f"{ref}/{num:08d}", b"")
                    _add(t, f"{ref}/{num:08d}.{sums}", hashlib.sha1(b"").hexdigest().encode())
                    num += 1
