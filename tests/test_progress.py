"""The progress line of long commands (scriptlabs.ops.progress), and demo-data's on a terminal."""

from __future__ import annotations

import asyncio
import io

from scriptlabs.ops.progress import Progress, human_bytes, human_seconds
from tests.conftest import Database
from tests.test_backup import on_terminal


def at(bar: Progress, started: float) -> Progress:
    bar.started = started
    return bar


def test_the_line_says_done_total_share_rate_and_time_left() -> None:
    bar = at(Progress(None, "loaded", "labs", 1_000_000), 100.0)
    assert bar.line(250_000, 110.0) == "loaded 250,000 of 1,000,000 labs (25%), 25,000/s, 30 s left"
    assert bar.line(250_000, 110.0, "building indexes") == (
        "loaded 250,000 of 1,000,000 labs (25%), 25,000/s, 30 s left, building indexes"
    )
    assert bar.line(1_000_000, 140.0) == "loaded 1,000,000 of 1,000,000 labs (100%), 25,000/s"


def test_the_line_leaves_out_what_it_cannot_know() -> None:
    bar = at(Progress(None, "backed up", "rows"), 100.0)
    assert bar.line(0, 100.1) == "backed up 0 rows"  # no total, no rate yet
    assert bar.line(5_000, 110.0) == "backed up 5,000 rows, 500/s"
    over = at(Progress(None, "backed up", "rows", 100, estimated=True), 100.0)  # exceeded
    assert over.line(150, 101.0) == "backed up 150 of about 100 rows (100%), 150/s"


def test_amounts_in_bytes_and_times_read_as_a_person_would() -> None:
    bar = at(Progress(None, "restored", "", 500_000_000, in_bytes=True), 100.0)
    assert bar.line(125_000_000, 110.0) == (
        "restored 125.0 MB of 500.0 MB (25%), 12.5 MB/s, 30 s left"
    )
    assert [human_bytes(n) for n in (999, 1000, 1_234_567, 9_876_543_210)] == [
        "999 B",
        "1.0 kB",
        "1.2 MB",
        "9.9 GB",
    ]
    assert [human_seconds(s) for s in (0.4, 59.4, 61, 3599, 3725)] == [
        "0 s",
        "59 s",
        "1 min 01 s",
        "59 min 59 s",
        "1 h 02 min",
    ]


def test_without_a_terminal_nothing_is_written_and_on_one_the_line_is_redrawn() -> None:
    Progress(None, "x", "rows", 10).show(5)  # no stream: nothing happens
    out = io.StringIO()
    bar = at(Progress(out, "loaded", "labs", 10), float("inf"))  # no rate: under 0.5 s
    bar.show(5, force=True)
    bar.shown = float("inf")
    bar.show(6)  # under 0.1 s after the last: skipped
    bar.done(10)
    assert out.getvalue() == (
        "\rloaded 5 of 10 labs (50%)\x1b[K\rloaded 10 of 10 labs (100%)\x1b[K\n"
    )


async def test_demo_data_shows_progress_on_a_terminal_and_only_there(database: Database) -> None:
    from tests.test_backup import run_cli

    done, shown = await asyncio.to_thread(on_terminal, database, "demo-data", "--labs", "2500")
    assert done.returncode == 0, shown
    assert b"\rloaded 1,000 of 2,500 labs (40%)" in shown
    assert b"\rloaded 2,500 labs for 1 user\x1b[K\r\n" in shown
    assert done.stdout.count(b"\t2500\n") == 1

    quiet = await asyncio.to_thread(run_cli, database, "demo-data", "--labs", "3")
    assert quiet.returncode == 0
    assert quiet.stderr == b""
