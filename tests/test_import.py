"""`scriptlabs import` and POST /import/labs.csv: the export's CSV or a Goodreads export into
the caller's own labs, all or nothing unless bad rows are to be skipped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scriptlabs.config import Settings, SettingsError
from scriptlabs.labs.csv_records import QUOTED_EMPTY, CsvError, CsvRecords
from scriptlabs.labs.export import CSV_HEADER
from tests.conftest import Api, Database, User, run_cli
from tests.test_export import TRICKY, auth, create_labs, parse_csv, real_server

ROOT = Path(__file__).resolve().parent.parent
GOODREADS = Path(__file__).resolve().parent / "goodreads_library_export.csv"
FIELDS = CSV_HEADER.split(",")
ORDER = "orderBy: [{field: CREATED_AT, direction: ASC}]"
LABS = f"{{ labs(first: 100, {ORDER}) {{ nodes {{ {' '.join(FIELDS)} }} }} }}"


def run_import(
    database: Database, *args: str, stderr: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    return run_cli(database, "import", *args, stderr=stderr)


async def labs_of(api: Api, user: User) -> list[dict[str, Any]]:
    data = await api.ok(LABS, token=user.token)
    nodes: list[dict[str, Any]] = data["labs"]["nodes"]
    return nodes


async def post_csv(
    api: Api, user: User | None, body: bytes | str, query: str = ""
) -> httpx.Response:
    headers = {"content-type": "text/csv"} | (auth(user) if user else {})
    content = body.encode() if isinstance(body, str) else body
    return await api.client.post(f"/import/labs.csv{query}", content=content, headers=headers)


BAD = (
    "title,author,rating,isbn,publicationYear\r\n"
    "Good one,Someone,5,,\r\n"
    'Bad rating,"Multi\nline author",7,,\r\n'
    "Bad isbn,Someone,,12345,1999\r\n"
    "Good two,Someone,,,\r\n"
    ",Someone,abc,,year\r\n"
)
BAD_ERRORS = [
    {"line": 3, "field": "rating", "message": "rating must be between 1 and 5"},
    {"line": 5, "field": "isbn", "message": "isbn is not a valid ISBN-10 or ISBN-13"},
    {"line": 7, "field": "rating", "message": "rating must be a whole number"},
    {"line": 7, "field": "publicationYear", "message": "publicationYear must be a whole number"},
    {"line": 7, "field": "title", "message": "title must not be blank"},
]


# -- settings


def test_import_settings_default_to_a_share_of_the_pool() -> None:
    settings = Settings.from_env({"DB_POOL_MAX": "12"})
    assert (settings.import_max_bytes, settings.import_timeout_s) == (50 * 1024 * 1024, 300)
    assert (settings.imports_at_once, settings.import_max_per_user) == (3, 1)
    settings = Settings.from_env({"IMPORT_MAX_CONCURRENT": "5", "IMPORT_MAX_BYTES": "1000"})
    assert (settings.imports_at_once, settings.import_max_bytes) == (5, 1000)
    with pytest.raises(SettingsError, match="IMPORT_TIMEOUT_S"):
        Settings.from_env({"IMPORT_TIMEOUT_S": "0"})


# -- reading CSV in pieces


def test_records_keep_their_physical_line_numbers_whatever_the_pieces() -> None:
    text = 'h1,h2\r\n\r\na,"b\nc"\r\n"x ""y""",5" floppy\nlast,row'
    for size in (1, 2, 3, 7, len(text)):
        records = CsvRecords()
        got = []
        for i in range(0, len(text), size):
            got += records.feed(text[i : i + size])
        got += records.close()
        assert [(r.line, r.fields) for r in got] == [
            (1, ["h1", "h2"]),
            (3, ["a", "b\nc"]),
            (5, ['x "y"', '5" floppy']),
            (6, ["last", "row"]),
        ], size


def test_an_unterminated_quote_is_an_error_at_its_line_not_a_memory_hog() -> None:
    records = CsvRecords(max_record_chars=1000)
    records.feed('h\r\nok\r\n"open\r\n')
    with pytest.raises(CsvError) as caught:
        for _ in range(100):
            records.feed("more text\r\n" * 10)
    assert caught.value.line == 3
    records = CsvRecords()
    records.feed('h\r\n"open\r\n')
    with pytest.raises(CsvError, match="line 2"):
        records.close()


def test_a_quoted_empty_field_is_told_from_an_empty_one() -> None:
    records = CsvRecords()
    got = records.feed('a,b,c,d\r\n"",,"x ""q"", y",""\r\n') + records.close()
    fields = got[1].fields
    assert fields == ["", "", 'x "q", y', ""]
    assert [f is QUOTED_EMPTY for f in fields] == [True, False, False, True]


def test_a_malformed_record_is_reported_and_the_next_one_read() -> None:
    records = CsvRecords()
    got = records.feed('h,i\r\n"ab"cd,x\r\nq,r\r\n') + records.close()
    assert [(r.line, r.fields is None) for r in got] == [(1, False), (2, True), (3, False)]


# -- the command


async def test_an_export_imports_into_another_user_as_the_same_labs(
    api: Api, database: Database, tmp_path: Path
) -> None:
    source = await api.sign_up()
    await create_labs(api, source, TRICKY)
    exported = (await api.client.get("/export/labs.csv", headers=auth(source))).content
    path = tmp_path / "labs.csv"
    path.write_bytes(exported)
    target = await api.sign_up()
    done = await asyncio.to_thread(run_import, database, "--user", target.email, str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"imported 4 labs\n"
    assert b"read" not in done.stderr  # no progress without a terminal
    before, after = await labs_of(api, source), await labs_of(api, target)

    def same(lab: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in lab.items() if k != "id"}  # new ids, all else the same

    assert [lab["notes"] for lab in after] == [lab["notes"] for lab in before]
    assert "" in [lab["notes"] for lab in after] and None in [lab["notes"] for lab in after]
    assert [same(lab) for lab in after] == [same(lab) for lab in before]
    assert {lab["id"] for lab in after}.isdisjoint({lab["id"] for lab in before})
    # and the target's export is the source's, ids apart
    again = (await api.client.get("/export/labs.csv", headers=auth(target))).content
    assert [row[1:] for row in parse_csv(again)] == [row[1:] for row in parse_csv(exported)]
    assert again.count(b'""') == exported.count(b'""')


async def test_a_goodreads_export_imports_with_the_right_fields(
    api: Api, database: Database
) -> None:
    user = await api.sign_up()
    done = await asyncio.to_thread(run_import, database, "--user", user.email, str(GOODREADS))
    assert done.returncode == 0, done.stderr
    labs = await labs_of(api, user)
    got = [
        {k: lab[k] for k in ("title", "author", "isbn", "rating", "readingStatus")}
        | {"year": lab["publicationYear"], "notes": lab["notes"], "at": lab["createdAt"][:10]}
        for lab in labs
    ]
    assert got == [
        {
            "title": "Dune (Dune #1)",
            "author": "Frank Herbert",
            "isbn": "9780441172719",  # ISBN13 preferred
            "rating": 5,
            "readingStatus": "READ",
            "year": 1990,
            "notes": 'Spice must flow.<br/><br/>Re-read the "Appendix" next time, '
            "it explains a lot.",
            "at": "2019-05-21",
        },
        {
            "title": "Hyperion (Hyperion Cantos #1)",
            "author": "Dan Simmons",
            "isbn": "9780553283686",
            "rating": None,  # 0: unrated
            "readingStatus": "TO_READ",  # a custom shelf
            "year": 1990,
            "notes": None,
            "at": "2022-08-14",
        },
        {
            "title": "The Left Hand of Darkness",
            "author": "Ursula K. Le Guin",
            "isbn": "9780441478125",
            "rating": 4,
            "readingStatus": "TO_READ",
            "year": 2000,
            "notes": None,
            "at": "2023-11-30",
        },
        {
            "title": "Frankenstein: The 1818 Text",
            "author": "Mary Wollstonecraft Shelley",
            "isbn": None,  # =""
            "rating": None,
            "readingStatus": "READING",
            "year": 1818,  # Original Publication Year when Year Published is empty
            "notes": None,
            "at": "2024-01-03",
        },
    ]


async def test_a_bad_row_imports_nothing_and_every_bad_row_is_named(
    api: Api, database: Database, tmp_path: Path
) -> None:
    user = await api.sign_up()
    path = tmp_path / "bad.csv"
    path.write_text(BAD, encoding="utf-8", newline="")
    done = await asyncio.to_thread(run_import, database, "--user", user.email, str(path))
    assert done.returncode == 1
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert lines[:5] == [
        f"{path}: line {e['line']}, {e['field']}: {e['message']}" for e in BAD_ERRORS
    ]
    assert "imported nothing: 3 bad rows of 5" in lines[5]
    assert await labs_of(api, user) == []
    skipped = await asyncio.to_thread(
        run_import, database, "--user", user.email, str(path), "--skip-bad"
    )
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout == b"imported 2 labs, skipped 3 bad rows\n"
    assert [lab["title"] for lab in await labs_of(api, user)] == ["Good one", "Good two"]


async def test_the_command_names_an_unknown_user_and_a_missing_file(
    database: Database, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(
        run_import, database, "--user", "nobody@example.com", str(GOODREADS)
    )
    assert done.returncode == 2
    assert b"nobody@example.com" in done.stderr
    done = await asyncio.to_thread(
        run_import, database, "--user", "nobody@example.com", str(tmp_path / "none.csv")
    )
    assert done.returncode == 2
    assert b"cannot read" in done.stderr


async def test_the_command_shows_progress_on_a_terminal_and_only_there(
    api: Api, database: Database
) -> None:
    import pty

    user = await api.sign_up()
    leader, follower = pty.openpty()
    try:
        done = await asyncio.to_thread(
            run_import, database, "--user", user.email, str(GOODREADS), stderr=follower
        )
        os.close(follower)
        follower = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's writer has gone
            while chunk := os.read(leader, 4096):
                shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0
    assert done.stdout == b"imported 4 labs\n"
    assert b"read 4 rows" in shown and b"rows/s" in shown


# -- over HTTP


async def test_http_import_answers_the_report_and_keeps_to_the_callers_labs(api: Api) -> None:
    user, other = await api.sign_up(), await api.sign_up()
    await create_labs(api, other, [{"title": "Not mine", "author": "Other"}])
    response = await post_csv(api, user, GOODREADS.read_bytes())
    assert response.status_code == 200, response.text
    assert response.json() == {"inserted": 4, "errors": [], "errorCount": 0, "rows": 4}
    assert len(await labs_of(api, user)) == 4
    assert [lab["title"] for lab in await labs_of(api, other)] == ["Not mine"]


async def test_http_import_with_a_bad_row_is_400_and_imports_nothing(api: Api) -> None:
    user = await api.sign_up()
    response = await post_csv(api, user, BAD)
    assert response.status_code == 400
    assert response.json() == {"inserted": 0, "errors": BAD_ERRORS, "errorCount": 5, "rows": 5}
    assert await labs_of(api, user) == []
    response = await post_csv(api, user, BAD, "?skipBad=true")
    assert response.status_code == 200
    assert response.json()["inserted"] == 2
    assert [lab["title"] for lab in await labs_of(api, user)] == ["Good one", "Good two"]


async def test_a_byte_order_mark_and_lf_line_breaks_are_fine(api: Api) -> None:
    user = await api.sign_up()
    body = "\ufefftitle,author,readingStatus,createdAt\n  Spaced  ,Me,reading,2020-01-02T03:04:05\n"
    response = await post_csv(api, user, body.encode("utf-8"))
    assert response.status_code == 200, response.text
    [lab] = await labs_of(api, user)
    assert (lab["title"], lab["readingStatus"]) == ("Spaced", "READING")
    assert lab["createdAt"] == "2020-01-02T03:04:05.000000+00:00"  # no offset: UTC


async def test_http_import_without_a_valid_token_is_401(api: Api) -> None:
    assert (await post_csv(api, None, BAD)).status_code == 401
    response = await api.client.post(
        "/import/labs.csv", content=b"title,author\r\n", headers={"authorization": "Bearer x.y.z"}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("body", "line", "field", "says"),
    [
        (b"title,author\r\nA,B\r\n\xff\xfe,B\r\n", 3, None, "not UTF-8"),
        (b'title,author\r\nA,"B\r\nnever closed', 2, None, "not closed"),
        (b'title,author\r\n"A"x,B\r\nC,D\r\n', 2, None, "not valid CSV"),
        (b"title,author,title\r\n", 1, None, "twice"),
        (b"name,writer\r\nA,B\r\n", 1, "title", "no 'title' column"),
        (b"", 1, None, "empty"),
        (b"title,author\r\nA,B,C\r\n", 2, None, "3 fields"),
    ],
)
async def test_malformed_csv_is_a_clear_400(
    api: Api, body: bytes, line: int, field: str | None, says: str
) -> None:
    user = await api.sign_up()
    response = await post_csv(api, user, body, "?skipBad=true" if b"never" in body else "")
    assert response.status_code == 400, response.text
    first = response.json()["errors"][0]
    assert (first["line"], first["field"]) == (line, field), first
    assert says in first["message"]
    assert await labs_of(api, user) == []


async def test_a_body_over_the_limit_is_413_and_imports_nothing(
    settings: Any, database: Database
) -> None:
    from dataclasses import replace

    from tests.conftest import serve

    async with serve(replace(settings, import_max_bytes=1000)) as client:
        small = Api(client)
        user = await small.sign_up()
        body = "title,author\r\n" + "A title,An author\r\n" * 200

        async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
            for i in range(0, len(body), 500):
                yield body[i : i + 500].encode()

        response = await client.post("/import/labs.csv", content=chunks(), headers=auth(user))
        assert response.status_code == 413
        response = await post_csv(small, user, body)
        assert response.status_code == 413
        assert await labs_of(small, user) == []


# -- a real server: a slow upload, many at once, a big file in flat memory


async def test_a_slow_upload_is_cut_off_and_others_are_served(api: Api, database: Database) -> None:
    with real_server(database, IMPORT_TIMEOUT_S="1", IMPORT_MAX_CONCURRENT="2") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            users = [await api.sign_up() for _ in range(3)]

            async def slow() -> Any:
                yield b"title,author\r\n"
                for _ in range(50):
                    await asyncio.sleep(0.1)
                    yield b"A,B\r\n"

            slow_ones = [
                asyncio.ensure_future(
                    http.post("/import/labs.csv", content=slow(), headers=auth(u))
                )
                for u in users[:2]
            ]
            await asyncio.sleep(0.3)
            # one import per user at a time
            again = await http.post(
                "/import/labs.csv", content=b"title,author\r\nA,B\r\n", headers=auth(users[0])
            )
            assert again.status_code == 429 and "retry-after" in again.headers
            # both slots taken: a third import waits for none and is told to come back
            busy = await http.post(
                "/import/labs.csv", content=b"title,author\r\nA,B\r\n", headers=auth(users[2])
            )
            assert busy.status_code == 503 and "retry-after" in busy.headers
            # and the API answers everyone else meanwhile
            assert (await http.post("/graphql", json={"query": "{ me { id } }"})).status_code == 200
            answers = await asyncio.gather(*slow_ones)
            assert [a.status_code for a in answers] == [408, 408]
            assert answers[0].json()["errors"][0]["extensions"]["code"] == "TIMEOUT"
            ok = await http.post(
                "/import/labs.csv", content=b"title,author\r\nA,B\r\n", headers=auth(users[2])
            )
            assert ok.status_code == 200, ok.text
    for u in users[:2]:
        assert await labs_of(api, u) == []


BIG_ROWS = 40_000


async def test_a_large_import_streams_in_flat_memory(
    api: Api, database: Database, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await api.sign_up()
    line = "§ {},§,,1999,,3,READ,{},https://covers.example.com/{}\r\n"
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(
            "title,author,category,publicationYear,isbn,rating,readingStatus,notes,coverUrl\r\n"
        )
        for i in range(BIG_ROWS):
            out.write(line.format(i, "§" * 200, "c" * 300))
    size = path.stat().st_size
    assert size > 20_000_000
    with real_server(database) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            warm = await http.post(
                "/import/labs.csv", content=b"title,author\r\nA,B\r\n", headers=auth(user)
            )
            assert warm.status_code == 200
            baseline = server.rss_kib()
            peak = baseline
            stop = asyncio.Event()

            async def watch() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, server.rss_kib())
                    await asyncio.sleep(0.05)

            watcher = asyncio.ensure_future(watch())

            async def chunks() -> Any:
                with path.open("rb") as f:
                    while chunk := f.read(64 * 1024):
                        yield chunk

            started = time.monotonic()
            try:
                response = await http.post("/import/labs.csv", content=chunks(), headers=auth(user))
                took = time.monotonic() - started
            finally:
                stop.set()
                await watcher
    assert response.status_code == 200, response.text[:500]
    assert response.json()["inserted"] == BIG_ROWS
    count = await admin.fetchval("select count(*) from public.labs where user_id = $1", user.id)
    assert count == BIG_ROWS + 1
    print(f"{BIG_ROWS / took:,.0f} rows/s, RSS {baseline / 1024:.1f} MB, peak {peak / 1024:.1f}")
    # holding the file would take its size (over 20 MB) and its rows several times that
    assert (peak - baseline) / 1024 < 15, "the server grew with the file"
