"""Progress reporting for long jobs (exports, extraction): a callable or a tqdm bar."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None] | bool | None


def reporter(progress: Progress, total: int) -> Callable[[int, int], None] | None:
    """``progress`` as a ``report(done, total)`` callable: True means a tqdm bar if available."""
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024)
    state = {"done": 0}

    def report(done: int, total: int) -> None:
        bar.update(done - state["done"])
        state["done"] = done
        if done >= total:
            bar.close()

    return report
