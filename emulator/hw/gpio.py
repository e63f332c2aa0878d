"""Simulated GPIO lines (e.g. the DUT's timestamp pin D7, read by the EMON and
the IO manager)."""
from __future__ import annotations

from typing import Callable

from ..sim import Twin


class Pin:
    """A digital line with listeners called on every edge, in simulated time."""

    def __init__(self, twin: Twin, name: str, level: int = 1):
        self.twin = twin
        self.name = name
        self.level = level
        self.listeners: list[Callable[[int, int], None]] = []  # (level, t_ns)
        self.edges: list[tuple[int, int]] = []  # (t_ns, new level), kept short
        self.max_edges = 10_000

    def set(self, level: int) -> None:
        level = 1 if level else 0
        if level == self.level:
            return
        self.level = level
        t = self.twin.now
        self.edges.append((t, level))
        if len(self.edges) > self.max_edges:
            del self.edges[: len(self.edges) - self.max_edges]
        for fn in list(self.listeners):
            fn(level, t)

    def falling_edges(self) -> list[int]:
        return [t for t, lv in self.edges if lv == 0]
