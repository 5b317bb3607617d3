"""The OVF manifest (``.mf``) and certificate (``.cert``), DSP0243 section 5.1: one line per
file, ``SHA256(name)= hex`` (OpenSSL's digest output; SHA1 and SHA512 too). The
certificate signs the manifest; its signature is reported as present, not verified."""

from __future__ import annotations

import hashlib
import re

MAX_MANIFEST = 4 << 20
_LINE = re.compile(r"^\s*(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$")
ALGORITHMS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def parse_manifest(data: bytes) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """{file name: (algorithm, lower-case hex digest)} and the lines that are neither a
    digest nor blank (reported, not fatal)."""
    out: dict[str, tuple[str, str]] = {}
    bad: list[str] = []
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            bad.append(line[:200])
            continue
        algo, name, digest = m.groups()
        out[name.strip()] = (algo, digest.lower())
    return out, bad


def digest_of(source, algo: str, chunk: int = 1 << 20) -> str:
    """The hex digest (algorithm as the manifest names it) of every byte of ``source``."""
    h = hashlib.new(ALGORITHMS[algo])
    pos = 0
    while pos < source.size:
        n = min(chunk, source.size - pos)
        h.update(source.read(pos, n))
        pos += n
    return h.hexdigest()
