"""The package's own integrity rows for ``check()``: manifest digests against the files,
and the certificate's presence (its signature is not verified)."""

from __future__ import annotations

from ...findings import CappedRows


def package_rows(img) -> list[dict]:
    """Rows (severity, structure, host_offset, message) for the manifest and certificate
    of the OVF package ``img`` (an :class:`~.image.OvfImage`); reads every listed file."""
    rows = CappedRows()
    if img.manifest_name is None:
        rows.add("info", "manifest", None,
                 "the package has no manifest (.mf): its files' digests are not checked")
        return rows.finish()
    entries, bad = img.manifest()
    for line in bad:
        rows.add("warning", "manifest", None, f"line is not a digest: {line!r}")
    ok = 0
    for name, (algo, want) in entries.items():
        got = img.digest(name, algo)
        if got is None:
            rows.add("error", "manifest", None,
                     f"{name}: listed in the manifest but not in the package")
        elif got != want:
            rows.add("error", "manifest", None, f"{name}: {algo} is {got}, the manifest says "
                     f"{want}: the file was changed or damaged")
        else:
            ok += 1
    for f in img.envelope.files.values():
        if f.chunk_size is None and f.href not in entries:
            rows.add("warning", "manifest", None, f"{f.href}: not listed in the manifest")
    rows.add("info", "manifest", None, f"{ok} of {len(entries)} manifest digests match",
             topic="summary")
    if img.cert_name is not None:
        rows.add("info", "certificate", None, f"{img.cert_name} is present; its signature is "
                 "not verified (vdinspect does not check signatures)", topic="summary")
    return rows.finish()
