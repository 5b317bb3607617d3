"""The arguments every Disk method reads alike: a partition key, the deprecated spellings,
and the DataFrame builders loaded on first use."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument

if TYPE_CHECKING:
    from types import ModuleType


def volume_key(key: Any) -> Any:
    """A partition key as ``find_volume`` takes it: any integer type (a NumPy integer from
    ``partitions()``, anything with ``__index__``) becomes an ``int``; strings and other
    values pass unchanged (booleans too: ``find_volume`` refuses them)."""
    if key is None or isinstance(key, str | bool):
        return key
    import numpy as np

    if isinstance(key, np.bool_):
        return key
    try:
        return operator.index(key)
    except TypeError:
        return key


def frames() -> ModuleType:
    """The DataFrame builders, imported on first use so that opening stays fast."""
    from .. import frames

    return frames


def part_argument(part: int | str | None, key: int | str | None) -> int | str | None:
    """``part``, or the deprecated ``key=`` spelling of it (with a DeprecationWarning)."""
    if key is not None:
        import warnings

        warnings.warn("volume(key=...) is now volume(part=...)", DeprecationWarning,
                      stacklevel=3)
        if part is None:
            return key
    if part is None:
        raise InvalidArgument("say which volume: volume(part) with a partition index or 'vg/lv'")
    return part
