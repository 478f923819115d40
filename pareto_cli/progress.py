"""Progress bars for long work, shown only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextmanager
def upload_progress(path: Path, name: str) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n_bytes)`; draws a bar on stderr when it is a terminal."""
    progress = Progress(
        TextColumn("upload {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty(),
        transient=False,
    )
    with progress:
        size = None if Path(path).is_dir() else Path(path).stat().st_size  # a folder: packed first
        task = progress.add_task(name, total=size)
        yield lambda n: progress.advance(task, n)
