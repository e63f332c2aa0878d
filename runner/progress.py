"""A progress bar with ETA on stderr.

On a terminal it redraws one line (at most ~5 times a second); otherwise
(a log file, CI) it prints a plain line every 10 % so logs stay short.
Work is counted in units (inferences); :meth:`Progress.expect` tells it how
many units the command in flight will complete and how long it should take,
so a long silent window still moves the bar.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True, width: int = 28):
        self.label = label
        self.total = max(1, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.done = 0
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self._inflight = 0
        self._inflight_t0 = 0.0
        self._inflight_s = 0.0
        self._drawn = False

    def expect(self, units: int, seconds: float) -> None:
        """The next command completes ``units`` in about ``seconds``."""
        self._inflight = units
        self._inflight_t0 = time.monotonic()
        self._inflight_s = max(0.0, seconds)

    def advance(self, units: int = 1) -> None:
        self.done = min(self.total, self.done + units)
        self._inflight = 0
        self.draw()

    def _estimate(self) -> float:
        est = float(self.done)
        if self._inflight and self._inflight_s > 0:
            frac = min(0.99, (time.monotonic() - self._inflight_t0) / self._inflight_s)
            est += frac * self._inflight
        return min(est, float(self.total))

    def line(self) -> str:
        est = self._estimate()
        elapsed = time.monotonic() - self.t0
        frac = est / self.total
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        eta = "--:--" if est <= 0 else _hms(elapsed * (self.total - est) / est)
        return f"{self.label} [{bar}] {self.done}/{self.total} {100 * frac:5.1f}% {_hms(elapsed)} ETA {eta}"

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if not force and now - self._last_draw < 0.2 and self.done < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
            self._drawn = True
        else:
            decile = int(10 * self.done / self.total)
            if decile != self._last_decile or force:
                self._last_decile = decile
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def clear(self) -> None:
        """Erase the bar (before other output on the terminal)."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def finish(self) -> None:
        if self.enabled:
            if self.tty or self._last_decile != 10 or self.done < self.total:
                self.draw(force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
