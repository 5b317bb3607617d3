"""What the tests share to run the independent tools: one ``run()``, blkid's tags, and a
sparse copy of an image."""

from __future__ import annotations

import re
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


def sparse_copy(src: str | Path, dst: str | Path) -> Path:
    """A copy of image ``src`` at ``dst`` whose zero blocks stay holes (``cp
    --sparse=always``): a mostly empty 256 MiB volume copied a few times per case would
    otherwise fill gigabytes of the test run's temporary folder."""
    run("cp", "--sparse=always", src, dst)
    return Path(dst)


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
