"""Rich progress bars for long loops, silent when output is not a terminal and asked to be."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def make_progress(*, console: Console | None = None, disable: bool = False) -> Progress:
    """A `Progress` with the columns every level uses (description, bar, n/m, times)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
        disable=disable,
    )


def track(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    disable: bool = False,
) -> Iterator[T]:
    """Iterate over `items` with a progress bar on stderr.

    Args:
        items: What to iterate over.
        description: Label shown before the bar.
        total: Length, when `items` has no ``len``.
        disable: Turn the bar off (tests, batch logs).
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(disable=disable) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
