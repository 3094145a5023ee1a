"""One progress line for long commands (export, demo-data, backup, restore).

`exported 120,000 of 1,000,000 labs (12%), 45,210/s, 19 s left` rewritten in place on
standard error, at most ten times a second, and only when standard error is a terminal:
otherwise the command prints nothing extra (its output may be a log or a pipe).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.1
CLEAR_TO_END = "\x1b[K"


def terminal() -> TextIO | None:
    """Standard error when it is a terminal, else None (no progress)."""
    return sys.stderr if sys.stderr.isatty() else None


def human_bytes(n: float) -> str:
    """`512 B`, `12.3 MB`, `1.4 GB` (powers of 1,000, as `df -H`)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    whole = int(s + 0.5)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole // 60 % 60:02d} min"


class Progress:
    """`<verb> <done> of <total> <unit> (<share>), <rate>/s, <time> left[, <step>]`.

    With no total (0), the share and the time left are left out. `in_bytes` writes amounts
    as `12.3 MB`; `estimated` says the total is an estimate (`of about 1,000,000`). Without
    a stream every call does nothing, so callers need no test of their own.
    """

    def __init__(
        self,
        stream: TextIO | None,
        verb: str,
        unit: str,
        total: int = 0,
        *,
        in_bytes: bool = False,
        estimated: bool = False,
    ) -> None:
        self.stream = stream
        self.verb = verb
        self.unit = unit
        self.total = total
        self.in_bytes = in_bytes
        self.estimated = estimated
        self.started = time.monotonic()
        self.shown = 0.0

    def _amount(self, n: int) -> str:
        return human_bytes(n) if self.in_bytes else f"{n:,}"

    def line(self, done: int, now: float, step: str = "") -> str:
        """The text of the line for `done` at `now` (time.monotonic())."""
        text = f"{self.verb} {self._amount(done)}"
        if self.total:
            text += f" of {'about ' if self.estimated else ''}{self._amount(self.total)}"
            text += f" {self.unit}" if self.unit else ""
            text += f" ({min(done, self.total) * 100 // self.total}%)"
        elif self.unit:
            text += f" {self.unit}"
        elapsed = now - self.started
        if elapsed >= 0.5 and done > 0:
            rate = done / elapsed
            text += f", {self._amount(int(rate))}/s"
            if self.total and done < self.total:
                text += f", {human_seconds((self.total - done) / rate)} left"
        if step:
            text += f", {step}"
        return text

    def show(self, done: int, step: str = "", *, force: bool = False) -> None:
        """Redraw the line (skipped when the last redraw was under 0.1 s ago)."""
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self.shown < REDRAW_S:
            return
        self.shown = now
        self.stream.write("\r" + self.line(done, now, step) + CLEAR_TO_END)
        self.stream.flush()

    def done(self, done: int, step: str = "") -> None:
        """The last line, kept on the terminal."""
        if self.stream is None:
            return
        self.show(done, step, force=True)
        self.stream.write("\n")
        self.stream.flush()

    def close_with(self, text: str) -> None:
        """A closing line of the caller's own in place of the progress line."""
        if self.stream is None:
            return
        self.stream.write("\r" + text + CLEAR_TO_END + "\n")
        self.stream.flush()
