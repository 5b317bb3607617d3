"""What the tests share to run the independent tools: one ``run()``, blkid's tags, and
sparse copies/writes of images (the test run's temporary folder stays small)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import BinaryIO

#: the unit ``write_sparse`` leaves as a hole when all zero (a page, a common fs block)
HOLE = 4096


def run(*cmd, input: str | bytes | None = None, check: bool = True, binary: bool = False,
        errors: str = "surrogateescape", cwd: str | Path | None = None,
        env: dict | None = None, timeout: float | None = None) -> str | bytes:
    """Run a tool and return its standard output (text, or bytes with ``binary``); a
    non-zero exit raises RuntimeError with its standard error unless ``check=False``.
    Names that are not UTF-8 come back as surrogate escapes, as vdinspect gives them."""
    if isinstance(input, str):
        input = input.encode("utf-8", "surrogateescape")
    r = subprocess.run([str(c) for c in cmd], capture_output=True, input=input, cwd=cwd,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): "
                           f"{r.stderr.decode('utf-8', 'replace')}")
    return r.stdout if binary else r.stdout.decode("utf-8", errors)


#: one line of The Sleuth Kit's ``fls``: name type / metadata type, ``* `` when deleted, the
#: metadata address (an inode, or NTFS's record-type-id), ``(realloc)`` when TSK says the
#: name's inode was reused, a tab, the name (the path with ``-p``)
FLS_LINE = re.compile(r"^(?P<dtype>\S)/(?P<mtype>\S) (?P<deleted>\* )?(?P<addr>\S+?)"
                      r"(?P<realloc>\(realloc\))?:\t(?P<path>.*)$")


def fls_lines(text: str, *, strict: bool = False) -> list[dict]:
    """The rows of ``fls`` output: dtype, mtype, deleted, addr (text: "12", "64-128-2"),
    inode (the address's first number), realloc, path. A line that is not an fls row is
    skipped, or with ``strict`` fails the test."""
    rows = []
    for line in text.splitlines():
        m = FLS_LINE.match(line)
        if m is None:
            assert not strict, f"not an fls line: {line!r}"
            continue
        addr = m["addr"]
        rows.append(dict(dtype=m["dtype"], mtype=m["mtype"], deleted=bool(m["deleted"]),
                         addr=addr, inode=int(addr.split("-")[0]) if addr[0].isdigit() else None,
                         realloc=bool(m["realloc"]), path=m["path"]))
    return rows


def sparse_copy(src: str | Path, dst: str | Path) -> Path:
    """A copy of image ``src`` at ``dst`` whose zero blocks stay holes (``cp
    --sparse=always``): a mostly empty 256 MiB volume copied a few times per case would
    otherwise fill gigabytes of the test run's temporary folder."""
    run("cp", "--sparse=always", src, dst)
    return Path(dst)


def write_sparse(path: str | Path, data: bytes | bytearray | memoryview | BinaryIO) -> Path:
    """Write ``data`` (bytes, or a readable file such as ``lzma.open(...)``) to ``path``
    leaving each all-zero 4 KiB block a hole: ``path.write_bytes(bytes(img))`` of a damaged
    copy of a mostly empty 128 MiB volume would otherwise allocate all of it on disk."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        chunks = (view[i:i + HOLE] for i in range(0, len(view), HOLE))
    else:
        chunks = iter(lambda: data.read(HOLE), b"")
    zero = bytes(HOLE)
    pos = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            if chunk != zero[:len(chunk)]:
                f.seek(pos)
                f.write(chunk)
            pos += len(chunk)
        f.truncate(pos)
    return Path(path)


def dig_holes(*paths: str | Path) -> None:
    """Turn the all-zero blocks of files a tool or an archive wrote in full back into holes
    (``fallocate --dig-holes``, util-linux); left as they are where it cannot."""
    for p in paths:
        run("fallocate", "--dig-holes", p, check=False)


def blkid_tags(path: str | Path, offset: int = 0, size: int | None = None) -> dict:
    """``blkid -p -o export`` of ``path`` (from ``offset``, ``size`` bytes) as a dict of its
    tags (TYPE, LABEL, UUID, VERSION...), the shell escapes of the export format undone
    (``btrfs\\ label`` is ``btrfs label``); empty when blkid recognises nothing."""
    args = ["blkid", "-p", "-o", "export", "-O", str(offset)]
    if size is not None:
        args += ["-S", str(size)]
    out = run(*args, path, check=False)
    tags = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in tags}
