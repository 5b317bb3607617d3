"""What the commands say when a filesystem read was not whole: the errors a listing met
(its exit status) and a check that reads every folder first."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..filesystems.base import FileSystem

#: problems a listing names on standard error before it says how many more there are
SHOWN_PROBLEMS = 20


def listing_status(fs: FileSystem, seen: int) -> int:
    """Exit status of a listing: 1, with the errors on standard error, when the walk met
    errors (a folder that could not be read, a loop...) after the first ``seen`` findings;
    those rows say so in their ``note`` too, but a listing that is not whole must not
    exit 0."""
    errors = [r for r in fs.findings[seen:] if r.get("severity") == "error"]
    for r in errors[:SHOWN_PROBLEMS]:
        print(f"vdinspect: error: {r.get('structure')}: {r.get('message')}", file=sys.stderr)
    if len(errors) > SHOWN_PROBLEMS:
        print(f"vdinspect: {len(errors) - SHOWN_PROBLEMS} more errors: `vdinspect check "
              "--part ...` lists them all", file=sys.stderr)
    return 1 if errors else 0


def walked_check_rows(fs: FileSystem) -> list[dict]:
    """A filesystem's check rows after one walk of its whole tree (as fsck reads every
    folder): a folder that cannot be read is found only by reading it."""
    from ..filesystems.walk import paused_gc

    with paused_gc():
        for _ in fs.iter_entries("/", recursive=True, deleted=False):
            pass
    return fs.check_rows()
