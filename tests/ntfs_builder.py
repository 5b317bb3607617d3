"""Test helpers for NTFS: real volumes from mkntfs + ntfs-3g, oracles from The Sleuth Kit,
and spec-built patches for what no tool here writes (WOF, EFS flags, damage).

Real volumes: ``mkntfs -F -Q`` on a file, then the ntfs-3g FUSE driver (when it can mount:
root and /dev/fuse) or ``ntfscp`` to fill them. ntfs-3g writes LZNT1-compressed files in a
directory marked compressed, sparse files, named streams (user.* xattrs), reparse points
(``system.ntfs_reparse_data``), DOS names (``system.ntfs_dos_name``), hard links, and frees
records on unlink: all independent of vdinspect.

Spec-built pieces (Linux-NTFS documentation, [MS-XCA], [MS-FSCC]) write MFT records with
correct update sequences through :class:`Volume`, which edits an image file in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

STRIDE = 512


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def run(*cmd, check: bool = True, input: bytes | None = None) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({r.returncode}): "
            f"{r.stderr.decode(errors='replace')}"
        )
    return r.stdout.decode("utf-8", "surrogateescape")


def mkntfs(path: Path, size: int, *opts: str, label: str = "vdtest") -> Path:
    """A fresh NTFS volume in a file (``mkntfs -F -Q``)."""
    with open(path, "wb") as f:
        f.truncate(size)
    run("mkntfs", "-F", "-Q", "-q", "-L", label, *opts, path)
    return path


@contextlib.contextmanager
def mounted(image: Path, mnt: Path, *opts: str):
    """Mount an NTFS image with the ntfs-3g FUSE driver; unmount on exit."""
    mnt.mkdir(parents=True, exist_ok=True)
    args = ["ntfs-3g", str(image), str(mnt)]
    if opts:
        args += ["-o", ",".join(opts)]
    run(*args)
    try:
        yield mnt
    finally:
        for _ in range(20):
            r = subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True)
            if r.returncode == 0:
                break
            subprocess.run(["sync"])
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


_FUSE_OK: bool | None = None


def fuse_works(tmp: Path) -> bool:
    """Whether ntfs-3g can mount here (needs /dev/fuse and privileges)."""
    global _FUSE_OK
    if _FUSE_OK is None:
        _FUSE_OK = False
        if have("mkntfs", "ntfs-3g", "fusermount") and os.path.exists("/dev/fuse"):
            img = mkntfs(tmp / "probe.img", 8 << 20)
            try:
                with mounted(img, tmp / "probe.mnt") as m:
                    (m / "x").write_bytes(b"x")
                _FUSE_OK = True
            except RuntimeError:
                _FUSE_OK = False
            img.unlink()
    return _FUSE_OK


def symlink_reparse(
    target: str, print_name: str | None = None, relative: bool = True, junction: bool = False
) -> bytes:
    """A reparse buffer ([MS-FSCC] 2.1.2.4 symbolic link / 2.1.2.5 mount point)."""
    sub = target.encode("utf-16-le")
    prn = (print_name if print_name is not None else target).encode("utf-16-le")
    if junction:
        body = (
            struct.pack("<HHHH", 0, len(sub), len(sub) + 2, len(prn))
            + sub
            + b"\0\0"
            + prn
            + b"\0\0"
        )
        tag = 0xA0000003
    else:
        body = (
            struct.pack("<HHHHI", 0, len(sub), len(sub), len(prn), 1 if relative else 0) + sub + prn
        )
        tag = 0xA000000C
    return struct.pack("<IHH", tag, len(body), 0) + body


def data_for(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return rnd.randbytes(size)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- populating a volume through ntfs-3g -------------------------------------------------


def populate_rich(m: Path) -> dict:
    """Fill a mounted volume with the variety the tests compare; returns what was written."""
    expect: dict[str, bytes] = {}

    def put(rel: str, data: bytes) -> None:
        p = m / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expect[rel] = data

    for i, size in enumerate([0, 1, 100, 700, 1023, 4095, 4096, 4097, 65536, 300_001]):
        put(f"sizes/f{size}.bin", data_for(size, i))
    put("a/b/c/deep.txt", b"deep file\n")
    # POSIX-namespace names that differ only in case (ntfs-3g allows them)
    put("case/Readme.txt", b"mixed case\n")
    put("case/README.TXT", b"upper case\n")
    put("unicode/\u00e9t\u00e9 \u65e5\u672c.txt", b"unicode name")
    # a big directory: INDX allocation with several blocks (a two-level B+ tree)
    for i in range(300):
        put(f"big/entry_{i:04d}_with_a_longish_name.txt", f"{i}\n".encode())
    # hard link
    os.link(m / "sizes/f100.bin", m / "a/hardlink.bin")
    expect["a/hardlink.bin"] = expect["sizes/f100.bin"]
    # named streams (alternate data streams): small (resident) and big (non-resident)
    put("ads.txt", b"main stream\n")
    os.setxattr(m / "ads.txt", "user.small", b"small stream")
    os.setxattr(m / "ads.txt", "user.big", data_for(20000, 77))
    expect["ads.txt:small"] = b"small stream"
    expect["ads.txt:big"] = data_for(20000, 77)
    # sparse file: data, a hole of 1 MiB, data
    with open(m / "sparse.bin", "wb") as f:
        f.write(b"A" * 5000)
        f.seek((1 << 20) + 8192)
        f.write(b"Z" * 3000)
    expect["sparse.bin"] = b"A" * 5000 + bytes((1 << 20) + 8192 - 5000) + b"Z" * 3000
    # compressed directory: ntfs-3g compresses new files with LZNT1
    (m / "comp").mkdir()
    attrib = struct.unpack("<I", os.getxattr(m / "comp", "system.ntfs_attrib"))[0]
    os.setxattr(m / "comp", "system.ntfs_attrib", struct.pack("<I", attrib | 0x800))
    put(
        "comp/text.txt",
        b"".join(b"line %d of a compressible text file\n" % i for i in range(20000)),
    )
    put("comp/random.bin", data_for(70000, 5))
    put("comp/mixed.bin", b"\0" * 100000 + data_for(30000, 6) + b"abc" * 30000)
    # reparse points written by ntfs-3g from raw buffers
    put("target.txt", b"symlink target\n")
    (m / "rel_link").write_bytes(b"")
    os.setxattr(m / "rel_link", "system.ntfs_reparse_data", symlink_reparse("target.txt"))
    (m / "abs_link").write_bytes(b"")
    os.setxattr(
        m / "abs_link",
        "system.ntfs_reparse_data",
        symlink_reparse(
            "\\??\\C:\\Windows\\notepad.exe", "C:\\Windows\\notepad.exe", relative=False
        ),
    )
    (m / "junction").mkdir()
    os.setxattr(
        m / "junction",
        "system.ntfs_reparse_data",
        symlink_reparse("\\??\\C:\\Users", "C:\\Users", junction=True),
    )
    (m / "other_tag").write_bytes(b"")
    os.setxattr(
        m / "other_tag",
        "system.ntfs_reparse_data",
        struct.pack("<IHH", 0x8000001B, 8, 0) + b"appexec!",
    )
    # a long name with a DOS 8.3 name
    put("Long File Name.txt", b"long\n")
    os.setxattr(m / "Long File Name.txt", "system.ntfs_dos_name", b"LONGFI~1.TXT")
    # many named streams: the record overflows and gets an $ATTRIBUTE_LIST
    put("many_streams.txt", b"base\n")
    for i in range(60):
        val = data_for(200, 1000 + i)
        os.setxattr(m / "many_streams.txt", f"user.s{i:02d}", val)
        expect[f"many_streams.txt:s{i:02d}"] = val
    # fragmented files: write two files in alternating pieces
    with open(m / "frag1.bin", "wb") as f1, open(m / "frag2.bin", "wb") as f2:
        for i in range(12):
            f1.write(data_for(8192, 300 + i))
            f1.flush()
            os.fsync(f1.fileno())
            f2.write(data_for(8192, 400 + i))
            f2.flush()
            os.fsync(f2.fileno())
    expect["frag1.bin"] = b"".join(data_for(8192, 300 + i) for i in range(12))
    expect["frag2.bin"] = b"".join(data_for(8192, 400 + i) for i in range(12))
    # a fragmented file with runs going backwards (negative LCN deltas): fill a sparse file
    # from its end, writing a small file between the pieces
    frag = bytearray()
    (m / "between").mkdir()
    with open(m / "fragmented.bin", "wb") as f:
        f.truncate(200_000)
        for off in reversed(range(0, 200_000, 16384)):
            piece = data_for(min(16384, 200_000 - off), 600 + off)
            f.seek(off)
            f.write(piece)
            f.flush()
            os.fsync(f.fileno())
            (m / f"between/x{off}").write_bytes(b"y" * 5000)
    for off in range(0, 200_000, 16384):
        frag += data_for(min(16384, 200_000 - off), 600 + off)
    expect["fragmented.bin"] = bytes(frag)
    # deleted files: a file in a live directory, and a whole directory
    put("gone/keep.txt", b"kept\n")
    put("gone/deleted.bin", data_for(50000, 9))
    put("gone/small_deleted.txt", b"small and resident\n")
    put("trash/d1.txt", b"in a deleted dir\n")
    put("trash/sub/d2.bin", data_for(9000, 10))
    os.unlink(m / "gone/deleted.bin")
    os.unlink(m / "gone/small_deleted.txt")
    shutil.rmtree(m / "trash")
    deleted = {
        "gone/deleted.bin": expect.pop("gone/deleted.bin"),
        "gone/small_deleted.txt": expect.pop("gone/small_deleted.txt"),
        "trash/d1.txt": expect.pop("trash/d1.txt"),
        "trash/sub/d2.bin": expect.pop("trash/sub/d2.bin"),
    }
    return {"files": expect, "deleted": deleted}


# --- The Sleuth Kit oracles ----------------------------------------------------------------

FLS_LINE = re.compile(r"^(\S)/(\S) (\* )?(\S+?)(\(realloc\))?:\t(.*)$")


def fls(
    image: Path, offset_sectors: int | None = None, sector_size: int | None = None
) -> list[dict]:
    """``fls -r -p`` rows: type, deleted, addr (e.g. "64-128-2"), path."""
    args = ["fls", "-r", "-p"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    if sector_size:
        args += ["-b", str(sector_size)]
    out = run(*args, image, check=False)
    rows = []
    for line in out.splitlines():
        m = FLS_LINE.match(line)
        if not m:
            continue
        rows.append(
            dict(
                dtype=m.group(1),
                mtype=m.group(2),
                deleted=bool(m.group(3)),
                addr=m.group(4),
                realloc=bool(m.group(5)),
                path=m.group(6),
            )
        )
    return rows


def icat(image: Path, addr: str, offset_sectors: int | None = None) -> bytes:
    args = ["icat"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    r = subprocess.run([*args, str(image), addr], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace"))
    return r.stdout


def istat(image: Path, addr: str | int, offset_sectors: int | None = None) -> str:
    args = ["istat"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    return run(*args, image, addr, check=False)


# --- spec-built edits ----------------------------------------------------------------------


def fixup_encode(rec: bytearray, usn: int | None = None) -> bytearray:
    """Write the update sequence into a record/INDX block whose USA header is set."""
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    if usn is None:
        usn = (struct.unpack_from("<H", rec, usa_off)[0] + 1) & 0xFFFF or 1
    struct.pack_into("<H", rec, usa_off, usn)
    for i in range(1, usa_count):
        end = i * STRIDE
        rec[usa_off + 2 * i : usa_off + 2 * i + 2] = rec[end - 2 : end]
        struct.pack_into("<H", rec, end - 2, usn)
    return rec


def fixup_decode(rec: bytearray) -> bytearray:
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    for i in range(1, usa_count):
        end = i * STRIDE
        rec[end - 2 : end] = rec[usa_off + 2 * i : usa_off + 2 * i + 2]
    return rec


def encode_runlist(runs: list[tuple[int | None, int]]) -> bytes:
    """Mapping pairs for [(lcn or None, clusters)] (absolute LCNs; deltas computed here)."""
    out = bytearray()
    prev = 0
    for lcn, length in runs:
        lb = length.to_bytes((length.bit_length() + 8) // 8, "little")
        if lcn is None:
            out += bytes([len(lb)]) + lb
            continue
        delta = lcn - prev
        n = 1
        while not -(1 << (8 * n - 1)) <= delta < (1 << (8 * n - 1)):
            n += 1
        out += bytes([len(lb) | (n << 4)]) + lb + delta.to_bytes(n, "little", signed=True)
        prev = lcn
    return bytes(out) + b"\0"


class Volume:
    """Direct edits of an NTFS image file (records found through the boot sector)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.base = offset
        bs = self.read(0, 512)
        self.ssize = struct.unpack_from("<H", bs, 11)[0]
        spc = bs[13]
        self.cs = self.ssize * (spc if spc <= 0x80 else 1 << (256 - spc))
        cpr = struct.unpack_from("<b", bs, 0x40)[0]
        self.rs = cpr * self.cs if cpr > 0 else 1 << -cpr
        self.total = struct.unpack_from("<Q", bs, 0x28)[0]
        self.mft = struct.unpack_from("<Q", bs, 0x30)[0] * self.cs
        self.mirr = struct.unpack_from("<Q", bs, 0x38)[0] * self.cs
        self._map = None

    def read(self, off: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.base + off)
            return f.read(n)

    def write(self, off: int, data: bytes) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.base + off)
            f.write(data)

    def mft_map(self) -> list[tuple[int, int, int]]:
        """(first record, records, volume offset) pieces of $MFT from record 0's runlist."""
        if self._map is None:
            rec = fixup_decode(bytearray(self.read(self.mft, self.rs)))
            a = self.find_attr(rec, 0x80)
            mp = struct.unpack_from("<H", rec, a + 0x20)[0]
            length = struct.unpack_from("<I", rec, a + 4)[0]
            runs = decode_runs(bytes(rec[a + mp : a + length]))
            pieces = []
            vcn = 0
            for lcn, n in runs:
                pieces.append((vcn * self.cs // self.rs, n * self.cs // self.rs, lcn * self.cs))
                vcn += n
            self._map = pieces
        return self._map

    def record_offset(self, n: int) -> int:
        for first, count, off in self.mft_map():
            if first <= n < first + count:
                return off + (n - first) * self.rs
        raise KeyError(n)

    def get(self, n: int) -> bytearray:
        """Record ``n`` with its fixups undone (as it is in memory)."""
        return fixup_decode(bytearray(self.read(self.record_offset(n), self.rs)))

    def put(self, n: int, rec: bytearray, usn: int | None = None) -> None:
        """Write record ``n`` back with a fresh update sequence."""
        self.write(self.record_offset(n), bytes(fixup_encode(bytearray(rec), usn)))

    @staticmethod
    def find_attr(rec: bytearray, atype: int, nth: int = 0) -> int:
        off = struct.unpack_from("<H", rec, 0x14)[0]
        seen = 0
        while True:
            t, length = struct.unpack_from("<II", rec, off)
            if t == 0xFFFFFFFF:
                raise KeyError(atype)
            if t == atype:
                if seen == nth:
                    return off
                seen += 1
            off += length

    @staticmethod
    def attrs(rec: bytearray) -> list[tuple[int, int, int]]:
        """(type, offset, length) of each attribute record."""
        out = []
        off = struct.unpack_from("<H", rec, 0x14)[0]
        while True:
            t, length = struct.unpack_from("<II", rec, off)
            if t == 0xFFFFFFFF:
                return out
            out.append((t, off, length))
            off += length

    @staticmethod
    def insert_attr(rec: bytearray, attr: bytes) -> None:
        """Append an attribute record (before the end marker), keeping types in order."""
        used = struct.unpack_from("<I", rec, 0x18)[0]
        atype = struct.unpack_from("<I", attr, 0)[0]
        pos = struct.unpack_from("<H", rec, 0x14)[0]
        while True:
            t, length = struct.unpack_from("<II", rec, pos)
            if t == 0xFFFFFFFF or t > atype:
                break
            pos += length
        if used + len(attr) > len(rec):
            raise ValueError("record full")
        rec[pos + len(attr) : used + len(attr)] = rec[pos:used]
        rec[pos : pos + len(attr)] = attr
        struct.pack_into("<I", rec, 0x18, used + len(attr))

    @staticmethod
    def remove_attr(rec: bytearray, off: int) -> None:
        used = struct.unpack_from("<I", rec, 0x18)[0]
        length = struct.unpack_from("<I", rec, off + 4)[0]
        rec[off : used - length] = rec[off + length : used]
        rec[used - length : used] = bytes(length)
        struct.pack_into("<I", rec, 0x18, used - length)


def decode_runs(mp: bytes) -> list[tuple[int | None, int]]:
    out = []
    pos = 0
    lcn = 0
    while mp[pos]:
        h = mp[pos]
        ls, os_ = h & 15, h >> 4
        n = int.from_bytes(mp[pos + 1 : pos + 1 + ls], "little")
        if os_:
            lcn += int.from_bytes(mp[pos + 1 + ls : pos + 1 + ls + os_], "little", signed=True)
            out.append((lcn, n))
        else:
            out.append((None, n))
        pos += 1 + ls + os_
    return out


def resident_attr(
    atype: int, value: bytes, name: str = "", instance: int = 0, flags: int = 0
) -> bytes:
    """A resident attribute record (header 24 bytes, name, value, padded to 8)."""
    nm = name.encode("utf-16-le")
    name_off = 24
    value_off = (name_off + len(nm) + 7) & ~7
    length = (value_off + len(value) + 7) & ~7
    out = bytearray(length)
    struct.pack_into(
        "<IIBBHHHIHBB",
        out,
        0,
        atype,
        length,
        0,
        len(name),
        name_off,
        flags,
        instance,
        len(value),
        value_off,
        0,
        0,
    )
    out[name_off : name_off + len(nm)] = nm
    out[value_off : value_off + len(value)] = value
    return bytes(out)


def nonresident_attr(
    atype: int,
    runs: list[tuple[int | None, int]],
    size: int,
    cs: int,
    name: str = "",
    instance: int = 0,
    flags: int = 0,
    compression_unit: int = 0,
    lowest_vcn: int = 0,
    initialized: int | None = None,
) -> bytes:
    """A non-resident attribute record with its runlist."""
    nm = name.encode("utf-16-le")
    head = 72 if (compression_unit or flags & 0x8001) else 64
    name_off = head
    mp_off = (name_off + len(nm) + 7) & ~7
    mp = encode_runlist(runs)
    length = (mp_off + len(mp) + 7) & ~7
    clusters = sum(n for _l, n in runs)
    alloc = clusters * cs
    out = bytearray(length)
    struct.pack_into("<IIBBHHH", out, 0, atype, length, 1, len(name), name_off, flags, instance)
    struct.pack_into(
        "<QQHB5xQQQ",
        out,
        16,
        lowest_vcn,
        lowest_vcn + clusters - 1,
        mp_off,
        compression_unit,
        alloc,
        size,
        size if initialized is None else initialized,
    )
    if head == 72:
        struct.pack_into("<Q", out, 64, sum(n for lcn, n in runs if lcn is not None) * cs)
    out[name_off : name_off + len(nm)] = nm
    out[mp_off : mp_off + len(mp)] = mp
    return bytes(out)


# --- XPRESS Huffman encoder ([MS-XCA] 2.1), for WOF test files -------------------------------


def _huffman_lengths(freqs: list[int], limit: int = 15) -> list[int]:
    """Code lengths (<= limit) for symbol frequencies (package-merge free: heap + clamp)."""
    import heapq

    syms = [(f, i) for i, f in enumerate(freqs) if f]
    lengths = [0] * len(freqs)
    if len(syms) == 1:
        lengths[syms[0][1]] = 1
        return lengths
    heap = [(f, i, [i]) for f, i in syms]
    heapq.heapify(heap)
    counter = len(freqs)
    while len(heap) > 1:
        f1, _a, s1 = heapq.heappop(heap)
        f2, _b, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (f1 + f2, counter, s1 + s2))
        counter += 1
    # clamp to the limit, then repair the Kraft sum by lengthening the shortest codes
    for i, n in enumerate(lengths):
        if n > limit:
            lengths[i] = limit
    while sum(2.0**-n for n in lengths if n) > 1.0:
        i = max((i for i, n in enumerate(lengths) if 0 < n < limit), key=lambda i: lengths[i])
        lengths[i] += 1
    return lengths


def _canonical_codes(lengths: list[int]) -> list[int]:
    codes = [0] * len(lengths)
    code = 0
    for length in range(1, 16):
        for sym, n in enumerate(lengths):
            if n == length:
                codes[sym] = code
                code += 1
        code <<= 1
    return codes


def xpress_huffman_compress(data: bytes) -> bytes:
    """Compress ``data`` (at most 64 KiB) as one LZ77+Huffman block (greedy matching)."""
    assert len(data) <= 65536
    tokens = []  # (symbol, extra length bytes, distance bits count, distance low bits)
    pos = 0
    n = len(data)
    table: dict[bytes, list[int]] = {}
    while pos < n:
        best_len = best_dist = 0
        if pos + 3 <= n:
            key = data[pos : pos + 3]
            for cand in reversed(table.get(key, [])[-16:]):
                dist = pos - cand
                if dist > 65535:
                    continue
                length = 0
                while (
                    pos + length < n
                    and data[cand + length] == data[pos + length]
                    and length < 65538
                ):
                    length += 1
                if length > best_len:
                    best_len, best_dist = length, dist
            table.setdefault(key, []).append(pos)
        if best_len >= 3:
            dbits = best_dist.bit_length() - 1
            mlen = best_len - 3
            extra = b""
            if mlen >= 15:
                if mlen - 15 < 255:
                    extra = bytes([mlen - 15])
                else:
                    extra = b"\xff" + struct.pack("<H", best_len - 3)
                code = 15
            else:
                code = mlen
            tokens.append((256 + (dbits << 4) + code, extra, dbits, best_dist - (1 << dbits)))
            for p in range(pos + 1, min(pos + best_len, n - 2)):
                table.setdefault(data[p : p + 3], []).append(p)
            pos += best_len
        else:
            tokens.append((data[pos], b"", 0, 0))
            pos += 1
    tokens.append((256, b"", 0, 0))  # end of stream symbol
    freqs = [0] * 512
    for t in tokens:
        freqs[t[0]] += 1
    lengths = _huffman_lengths(freqs)
    codes = _canonical_codes(lengths)
    out = bytearray()
    for i in range(0, 512, 2):
        out.append(lengths[i] | (lengths[i + 1] << 4))
    # The decoder keeps 32 bits buffered: words 0 and 1 are read first, and word j (j >= 2)
    # right after the consumed bit count passes 16 * (j - 1). The extra length bytes of a
    # match are read from the input position after its symbol (and that refill), before
    # its distance bits. Emit words and bytes in exactly that order.
    bits: list[int] = []
    for sym, _extra, dbits, dlow in tokens:
        code, length = codes[sym], lengths[sym]
        bits.extend((code >> (length - 1 - k)) & 1 for k in range(length))
        if dbits:
            bits.extend((dlow >> (dbits - 1 - k)) & 1 for k in range(dbits))
    bits.extend([0] * (32 + (-len(bits)) % 16))
    nwords = len(bits) // 16
    word_vals = []
    for k in range(nwords):
        v = 0
        for b in bits[16 * k : 16 * k + 16]:
            v = (v << 1) | b
        word_vals.append(v)
    order: list[tuple[str, object]] = [("w", 0), ("w", 1)]
    next_word = 2
    pos_bits = 0
    for sym, extra, dbits, _d in tokens:
        pos_bits += lengths[sym]
        while next_word < nwords and pos_bits > 16 * (next_word - 1):
            order.append(("w", next_word))
            next_word += 1
        if extra:
            order.append(("b", extra))
        pos_bits += dbits
        while next_word < nwords and pos_bits > 16 * (next_word - 1):
            order.append(("w", next_word))
            next_word += 1
    while next_word < nwords:
        order.append(("w", next_word))
        next_word += 1
    for kind, v in order:
        if kind == "w":
            out += struct.pack("<H", word_vals[v])
        else:
            out += v
    return bytes(out)


def wof_stream(data: bytes, chunk: int = 4096) -> bytes:
    """The WofCompressedData stream for ``data`` (XPRESS, ``chunk``-byte chunks)."""
    chunks = []
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        comp = xpress_huffman_compress(piece)
        chunks.append(comp if len(comp) < len(piece) else piece)
    offs = []
    pos = 0
    for c in chunks[:-1]:
        pos += len(c)
        offs.append(pos)
    return b"".join(struct.pack("<I", o) for o in offs) + b"".join(chunks)


# --- WIM resources made by wimlib (wimcapture): the same chunk format as WOF ----------------


def wim_resource(path: Path, size: int) -> tuple[int, bytes]:
    """(compression flags, raw resource bytes) of the blob of ``size`` bytes in a WIM.

    WIM header: "MSWIM\\0\\0\\0", flags at 16, chunk size at 20, the blob table's resource
    header at 48 (7-byte stored size, flags byte, offset u64, original size u64); blob table
    entries are 50 bytes: that resource header, part number u16, reference count u32,
    SHA-1. A non-solid compressed resource is a chunk offset table then the chunks.
    """
    raw = Path(path).read_bytes()
    assert raw[:8] == b"MSWIM\0\0\0"
    flags, chunk = struct.unpack_from("<II", raw, 16)
    tsize = int.from_bytes(raw[48:55], "little")
    toff = struct.unpack_from("<Q", raw, 56)[0]
    for off in range(toff, toff + tsize - 49, 50):
        stored = int.from_bytes(raw[off : off + 7], "little")
        roff, orig = struct.unpack_from("<QQ", raw, off + 8)
        if orig == size:
            return flags, raw[roff : roff + stored]
    raise KeyError(size)
