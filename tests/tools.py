"""What the tests share to run the independent tools: one ``run()``, one parser of
The Sleuth Kit's ``fls`` listings."""

from __future__ import annotations

import subprocess
from pathlib import Path


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


def parse_fls(text: str) -> list[tuple[str, str, str, bool]]:
    """The rows of ``fls -r -p`` output: (type letters such as "r/r", inode address as
    printed, path, deleted). Deleted entries carry ``*`` before the address."""
    rows = []
    for line in text.splitlines():
        if "\t" not in line:
            continue
        head, path = line.split("\t", 1)
        parts = head.split()
        if len(parts) < 2:
            continue
        deleted = "*" in parts[1:]
        addr = parts[-1].rstrip(":")
        rows.append((parts[0], addr, path, deleted))
    return rows
