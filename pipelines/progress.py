"""Progress lines and step timings of the pipelines (``[dataset] step: rows, seconds``)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any


class StepTimer:
    """Times named steps, records them and prints ``[tag] step: rows, seconds``."""

    def __init__(self, tag: str, enabled: bool = True) -> None:
        self.tag = tag
        self.enabled = enabled
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {}
        start = time.perf_counter()
        yield info
        seconds = time.perf_counter() - start
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        if self.enabled:
            rows = f"{info['rows']:,} rows, " if "rows" in info else ""
            print(f"[{self.tag}] {name}: {rows}{seconds:.1f}s", file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if self.enabled:
            print(f"[{self.tag}] {message}", file=sys.stderr, flush=True)
