"""A progress bar with ETA on stderr, drawn by ``rich.progress``.

On a terminal it redraws one line (at most twice a second); otherwise
(a log file, CI) it prints a plain line every 10 % so logs stay short.
Work is counted in units (inferences); :meth:`Progress.expect` tells it how
many units the command in flight will complete and how long it should take,
so a long silent window still moves the bar.

rich renders the line (task, bar, percentage, elapsed time, columns fitted to
the terminal's width); the line is written here with a carriage return rather
than by rich's ``Live`` display, because the runner's verbose echo and its
warnings write to the same stream between redraws (:meth:`Progress.clear`
first), and a run stopped by Ctrl-C must not leave the terminal's cursor
hidden (``Live`` hides it until it is stopped).
"""
from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichProgress
from rich.table import Column
from rich.text import Text

#: seconds between two redraws on a terminal: rich takes 0.5-1.5 ms to lay out
#: the line (the hand-formatted one took ~10 us), so a 1000-input accuracy run
#: redraws twice a second rather than at every input
REDRAW_S = 0.5
#: width of the rendered line in a log file (nothing to fit there)
LOG_WIDTH = 200


class _EtaColumn(ProgressColumn):
    """Time left at the average rate of the whole run so far (the estimate
    includes the command in flight); ``-:--:--`` before any progress."""

    def render(self, task: Task) -> Text:
        done, elapsed = task.completed, task.elapsed or 0.0
        if done <= 0 or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        left = elapsed * (task.total - done) / done
        return Text(f"ETA {_dt.timedelta(seconds=max(0, round(left)))}", style="progress.remaining")


def _columns(bar_width: int) -> list[ProgressColumn]:
    """label, bar, done/total, percentage, elapsed, ETA. On too narrow a
    terminal the bar gives way first; no cell ever wraps to a second line."""

    def one_line() -> Column:
        return Column(no_wrap=True, overflow="ellipsis")

    return [
        TextColumn("{task.description}", markup=False, table_column=one_line()),
        BarColumn(bar_width=bar_width, table_column=Column(no_wrap=False)),
        TextColumn("{task.fields[done]}/{task.total:.0f}", markup=False, table_column=one_line()),
        TaskProgressColumn(text_format="{task.percentage:5.1f}%", markup=False, table_column=one_line()),
        TimeElapsedColumn(table_column=one_line()),
        _EtaColumn(table_column=one_line()),
    ]


class Progress:
    """One task's bar: ``advance`` as units complete, ``clear`` before other
    output on the stream, ``finish`` at the end."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True, width: int = 28):
        self.total = max(1, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self._last_draw = 0.0
        self._last_decile = -1
        self._inflight = 0
        self._inflight_t0 = 0.0
        self._inflight_s = 0.0
        self._drawn = False
        console = Console(file=self.stream, force_terminal=self.tty, color_system="auto" if self.tty else None,
                          width=None if self.tty else LOG_WIDTH, highlight=False)
        self._rich = _RichProgress(*_columns(width), console=console, auto_refresh=False)
        self._task = self._rich.add_task(label, total=self.total, done=0)

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

    def _render(self) -> str:
        """The line as rich draws it now (styled on a terminal)."""
        self._rich.update(self._task, completed=self._estimate(), done=self.done)
        console = self._rich.console
        with console.capture() as cap:
            console.print(self._rich.get_renderable(), end="")
        return cap.get().rstrip("\n")

    def line(self) -> str:
        """The line as plain text."""
        return Text.from_ansi(self._render()).plain.rstrip()

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last_draw < REDRAW_S and self.done < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self._render() + "\x1b[K")
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
