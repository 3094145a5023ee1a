"""`scriptlabs import --user EMAIL FILE.csv [--skip-bad]`: a catalogue into a user's labs.

The user is found by email as the owner (as `scriptlabs export` does), then the import runs as
the API's login role switched to `authenticated` with claims naming that user, in one
transaction, so RLS and the rules apply as they do to the user's own requests
(scriptlabs.labs.imports reads and checks the rows). The file is read in pieces of
`CHUNK_BYTES`: memory stays the same whatever its size.

Bad rows go to standard error, one a line (`line 7, rating: rating must be between 1 and
5`); a summary goes to standard output. Exit status 0 when the rows went in (with
`--skip-bad`, the good ones), 1 when nothing was imported because a row was bad or the file
could not be read. On a terminal, standard error shows progress (rows, rate, time left).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import BinaryIO, TextIO

from scriptlabs.config import Settings
from scriptlabs.labs.imports import LabImport, Report
from scriptlabs.ops.export import as_user

CHUNK_BYTES = 256 * 1024


async def import_user_labs(
    settings: Settings,
    email: str,
    source: BinaryIO,
    *,
    skip_bad: bool,
    progress: TextIO | None,
) -> tuple[Report, bool]:
    """Import `source` into the labs of the user with `email`: the report, and whether the
    import was committed."""
    pool, op = await as_user(settings, email, readonly=False)
    commit = False
    job = LabImport(op, skip_bad=skip_bad)
    try:
        bar = Progress(progress, _size(source))
        await feed_bytes(job, iter(lambda: source.read(CHUNK_BYTES), b""), bar)
        report = await job.close()
        commit = job.imported
        bar.done(report)
        await op.end(commit=commit)
    finally:
        if not op.ended:
            await job.cancel()
            await op.end(commit=False)
        await pool.close()
    return report, commit


async def feed_bytes(job: LabImport, chunks: Iterable[bytes], bar: Progress | None = None) -> None:
    """Feed the import a file's pieces, showing progress."""
    done = 0
    for chunk in chunks:
        done += len(chunk)
        if not await job.feed_bytes(chunk):
            return
        if bar is not None:
            bar.show(job.report.rows, done)
    await job.feed_bytes(b"", final=True)


def _size(source: BinaryIO) -> int:
    try:
        return os.fstat(source.fileno()).st_size
    except (OSError, ValueError):
        return 0


class Progress:
    """`imported 120,000 rows, 45,210 rows/s, 0:00:19 left` on one line, ten times a second
    at most; nothing at all without a terminal."""

    def __init__(self, stream: TextIO | None, total_bytes: int) -> None:
        self.stream = stream
        self.total = total_bytes
        self.started = time.monotonic()
        self.shown = 0.0

    def show(self, rows: int, done_bytes: int, *, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self.shown < 0.1:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-6)
        line = f"\rread {rows:,} rows, {rows / elapsed:,.0f} rows/s"
        if self.total and done_bytes and not force:
            left = elapsed * (self.total - done_bytes) / done_bytes
            line += f", {_clock(left)} left"
        self.stream.write(line + "   ")
        self.stream.flush()

    def done(self, report: Report) -> None:
        if self.stream is not None:
            self.show(report.rows, self.total, force=True)
            self.stream.write(f"in {_clock(time.monotonic() - self.started)}\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
