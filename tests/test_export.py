"""GET /export/labs.csv and /export/labs.json, and `scriptlabs export`: the caller's own labs,
streamed, as the GraphQL answer gives them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from scriptlabs.labs.columns import LAB_FIELDS
from scriptlabs.labs.export import CSV_HEADER
from tests.conftest import JWT_SECRET, Api, Database, User, run_cli, serve_process

ROOT = Path(__file__).resolve().parent.parent
FIELDS = CSV_HEADER.split(",")
ALL_FIELDS = " ".join(FIELDS)

CREATE = f"mutation($i: CreateLabInput!) {{ createLab(input: $i) {{ {ALL_FIELDS} }} }}"

# values that test the format: quotes, commas, line breaks, unicode, formula-like text, nulls
TRICKY: list[dict[str, Any]] = [
    {
        "title": 'He said "hi", then left',
        "author": "Zoë Ünïcødé 漢字 🚀",
        "category": "Poetry, Modern",
        "publicationYear": 1999,
        "isbn": "978-0-441-17271-9",
        "rating": 5,
        "readingStatus": "READ",
        "notes": 'line one\nline two\r\nline "three", end',
        "coverUrl": 'https://example.com/a,b?c="d"',
    },
    {"title": '=HYPERLINK("http://x")', "author": "-Minus", "notes": "@at +plus"},
    {"title": "Plain", "author": "Author", "notes": "", "readingStatus": "READING"},
    {"title": "  spaced  ", "author": "tab\tinside", "category": "   "},
]


def export_url(fmt: str) -> str:
    return f"/export/labs.{fmt}"


def auth(user: User) -> dict[str, str]:
    return {"authorization": f"Bearer {user.token}"}


async def create_labs(api: Api, user: User, labs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    made = []
    for lab in labs:
        data = await api.ok(CREATE, {"i": lab}, token=user.token)
        made.append(data["createLab"])
    return made


def csv_value(value: Any) -> str:
    return "" if value is None else str(value)


def csv_line(values: list[str]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out).writerow(values)
    return out.getvalue()


def parse_csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


# -- settings


def test_export_settings_default_to_a_share_of_the_pool() -> None:
    from scriptlabs.config import Settings, SettingsError, cores

    default = Settings.from_env({})
    assert (default.export_timeout_s, default.export_max_per_user) == (300, 1)
    assert default.db_pool_max == min(10, 3 * cores())  # three per core, at most 10
    assert default.exports_at_once == max(1, default.db_pool_max // 4)
    assert Settings.from_env({"DB_POOL_MAX": "10"}).exports_at_once == 2  # a quarter
    assert Settings.from_env({"DB_POOL_MAX": "2"}).exports_at_once == 1
    # connections: the requests' turns, one per export and import at once, one for checks
    assert Settings.from_env({"DB_POOL_MAX": "2"}).db_connections_max == 5
    assert Settings.from_env({"DB_POOL_MAX": "10"}).db_connections_max == 15
    chosen = Settings.from_env(
        {"EXPORT_TIMEOUT_S": "60", "EXPORT_MAX_CONCURRENT": "3", "EXPORT_MAX_PER_USER": "2"}
    )
    assert (chosen.export_timeout_s, chosen.exports_at_once, chosen.export_max_per_user) == (
        60,
        3,
        2,
    )
    with pytest.raises(SettingsError, match="EXPORT_TIMEOUT_S"):
        Settings.from_env({"EXPORT_TIMEOUT_S": "0"})


# -- the format


def test_the_header_names_the_lab_fields_in_the_table_order() -> None:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    assert [camel(f.attribute) for f in LAB_FIELDS] == FIELDS


async def test_csv_and_json_hold_what_graphql_answers(api: Api) -> None:
    user = await api.sign_up()
    made = await create_labs(api, user, TRICKY)

    response = await api.client.get(export_url("csv"), headers=auth(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="labs.csv"'
    rows = parse_csv(response.content)
    assert rows[0] == FIELDS
    assert rows[1:] == [[csv_value(lab[f]) for f in FIELDS] for lab in made]  # oldest first
    # RFC 4180 as the csv module writes it, except that an empty string is quoted ('""')
    expected = csv_line(FIELDS) + "".join(
        csv_line([csv_value(lab[f]) for f in FIELDS]) for lab in made
    )
    plain = made[2]
    assert plain["notes"] == ""
    expected = expected.replace(
        f"READING,,,{plain['createdAt']}", f'READING,"",,{plain["createdAt"]}'
    )
    assert response.text == expected

    response = await api.client.get(export_url("json"), headers=auth(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.content) == made


async def test_times_are_written_as_the_datetime_scalar_writes_them(
    api: Api, admin: asyncpg.Connection
) -> None:
    user = await api.sign_up()
    [lab] = await create_labs(api, user, [{"title": "Timed", "author": "A"}])
    # whole seconds and a microsecond: trailing zeros are kept, as GraphQL keeps them
    async with admin.transaction():
        # past the trigger that sets updated_at to now()
        await admin.execute("set local session_replication_role = replica")
        await admin.execute(
            "update public.labs set created_at = '2001-02-03 04:05:06+00',"
            " updated_at = '2001-02-03 04:05:06.000001+00' where id = $1",
            lab["id"],
        )
    data = await api.ok(f'{{ lab(id: "{lab["id"]}") {{ createdAt updatedAt }} }}', token=user.token)
    assert data["lab"] == {
        "createdAt": "2001-02-03T04:05:06.000000+00:00",
        "updatedAt": "2001-02-03T04:05:06.000001+00:00",
    }
    rows = parse_csv((await api.client.get(export_url("csv"), headers=auth(user))).content)
    assert rows[1][-2:] == [data["lab"]["createdAt"], data["lab"]["updatedAt"]]
    [item] = (await api.client.get(export_url("json"), headers=auth(user))).json()
    assert (item["createdAt"], item["updatedAt"]) == (
        data["lab"]["createdAt"],
        data["lab"]["updatedAt"],
    )


async def test_an_empty_catalogue_is_the_header_alone_or_an_empty_array(api: Api) -> None:
    user = await api.sign_up()
    csv_response = await api.client.get(export_url("csv"), headers=auth(user))
    assert (csv_response.status_code, csv_response.content) == (200, CSV_HEADER.encode() + b"\r\n")
    json_response = await api.client.get(export_url("json"), headers=auth(user))
    assert (json_response.status_code, json_response.json()) == (200, [])


async def test_an_export_holds_only_the_callers_labs(api: Api) -> None:
    mine, theirs = await api.sign_up(), await api.sign_up()
    await create_labs(api, mine, [{"title": "Mine", "author": "Me"}])
    await create_labs(api, theirs, [{"title": "Theirs", "author": "Them"}] * 3)
    rows = parse_csv((await api.client.get(export_url("csv"), headers=auth(mine))).content)
    assert [row[1] for row in rows[1:]] == ["Mine"]
    items = (await api.client.get(export_url("json"), headers=auth(theirs))).json()
    assert [item["title"] for item in items] == ["Theirs"] * 3


async def test_head_sends_the_headers_alone_and_other_methods_are_405(api: Api) -> None:
    user = await api.sign_up()
    await create_labs(api, user, TRICKY[:1])
    head = await api.client.head(export_url("json"), headers=auth(user))
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == "application/json"
    post = await api.client.post(export_url("csv"), headers=auth(user), content=b"x" * 10_000)
    assert post.status_code == 405
    assert post.headers["allow"] == "GET"
    assert post.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# -- who may export


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_without_a_token_an_export_is_401(api: Api, fmt: str) -> None:
    response = await api.client.get(export_url(fmt))
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-token",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
    ],
)
async def test_a_bad_token_is_401_with_the_contracts_body(api: Api, header: str) -> None:
    response = await api.client.get(export_url("csv"), headers={"authorization": header})
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"errors"}
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


async def test_an_expired_token_is_401(api: Api) -> None:
    import jwt

    user = await api.sign_up()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 10
    expired = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    response = await api.client.get(
        export_url("json"), headers={"authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_token_of_a_revoked_session_is_401(api: Api) -> None:
    user = await api.sign_up()
    await api.ok("mutation { signOut }", token=user.token)
    response = await api.client.get(export_url("csv"), headers=auth(user))
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_service_role_key_cannot_export_everyones_labs(api: Api) -> None:
    import jwt

    key = jwt.encode(
        {"role": "service_role", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256"
    )
    response = await api.client.get(export_url("csv"), headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# -- the command


def run_export(
    database: Database, *args: str, stderr: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    return run_cli(database, "export", *args, stderr=stderr, timeout=60)


async def test_the_command_writes_what_the_endpoint_sends(api: Api, database: Database) -> None:
    user = await api.sign_up()
    await create_labs(api, user, TRICKY)
    other = await api.sign_up()
    await create_labs(api, other, [{"title": "Not mine", "author": "Other"}])
    for fmt in ("csv", "json"):
        body = (await api.client.get(export_url(fmt), headers=auth(user))).content
        done = await asyncio.to_thread(
            run_export, database, "--user", user.email.upper(), "--format", fmt
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == body
        assert b"exported" not in done.stderr  # no progress unless stderr is a terminal


async def test_the_command_names_an_unknown_user_and_exits_2(database: Database) -> None:
    done = await asyncio.to_thread(
        run_export, database, "--user", "nobody@example.com", "--format", "json"
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"nobody@example.com" in done.stderr


async def test_the_command_shows_progress_on_a_terminal_and_only_there(
    api: Api, database: Database
) -> None:
    import pty

    user = await api.sign_up()
    await create_labs(api, user, TRICKY[:2])
    body = (await api.client.get(export_url("csv"), headers=auth(user))).content
    leader, follower = pty.openpty()
    try:
        done = await asyncio.to_thread(
            run_export, database, "--user", user.email, "--format", "csv", stderr=follower
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
    assert done.stdout == body
    assert b"exported 2 of 2 labs (100%)" in shown


# -- a real server: memory, a client that goes away, limits, a slow reader

BIG = 100_000
COVER = "https://covers.example.com/" + "c" * 500  # fat rows: TOAST keeps them small on disk


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextlib.contextmanager
def real_server(database: Database, **env: str) -> Iterator[Server]:
    """`scriptlabs serve` (uvicorn, uvloop, httptools) in a process of its own."""
    with serve_process(database, **env) as served:
        yield Server(served.url, served.pid)


async def add_fat_labs(admin: asyncpg.Connection, user: User, count: int) -> None:
    # a title and author without words: the search index has nothing to add, so 100,000 rows
    # go in twice as fast
    await admin.execute(
        "insert into public.labs (user_id, title, author, cover_url, created_at)"
        " select $1::uuid, '§', '§', $2, now() - make_interval(secs => $3 - g)"
        " from generate_series(1, $3) g",
        user.id,
        COVER,
        count,
    )


@pytest.fixture(scope="module")
async def big(client: httpx.AsyncClient, admin: asyncpg.Connection) -> User:
    """A user with 100,000 fat labs (about 60 MB of CSV)."""
    user = await Api(client).sign_up()
    await add_fat_labs(admin, user, BIG)
    await admin.execute("analyze public.labs")
    return user


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[Server]:
    with real_server(
        database, EXPORT_MAX_CONCURRENT="2", EXPORT_MAX_PER_USER="2", DB_POOL_MAX="10"
    ) as s:
        yield s


async def test_an_export_of_100000_labs_streams_in_flat_memory(
    server: Server, big: User, api: Api
) -> None:
    small = await api.sign_up()
    await create_labs(api, small, TRICKY)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # warm up: everything an export loads is loaded
        for fmt in ("csv", "json"):
            assert (await http.get(export_url(fmt), headers=auth(small))).status_code == 200
        baseline = peak = server.rss_kib()
        size = lines = 0
        warm = None  # the RSS once a tenth has gone: the batch, buffers and arenas all in use
        async with http.stream("GET", export_url("csv"), headers=auth(big)) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                size += len(chunk)
                lines += chunk.count(b"\n")  # no line breaks inside these labs' fields
                rss = server.rss_kib()
                peak = max(peak, rss)
                if warm is None and lines > BIG // 10:
                    warm = rss
    assert lines == BIG + 1
    assert size > 60_000_000
    assert warm is not None
    print(f"RSS before {baseline / 1024:.1f} MB, at 10% {warm / 1024:.1f}, peak {peak / 1024:.1f}")
    # buffering the export would take its size at least (60 MB); a cursor takes a batch, and
    # after the first tenth the memory stays where it is
    assert (peak - baseline) / 1024 < 25, "the server grew while exporting"
    assert (peak - warm) / 1024 < 8, "the server kept growing while exporting"


EXPORTING = """
select count(*) from pg_stat_activity
where backend_type = 'client backend' and pid <> pg_backend_pid() and state <> 'idle'
  and query like '%labs_export%'
"""


async def wait_for_exports(admin: asyncpg.Connection, count: int, within: float = 5) -> None:
    """Poll until `count` backends are in an export's transaction."""
    deadline = time.monotonic() + within
    while (now := await admin.fetchval(EXPORTING)) != count:
        assert time.monotonic() < deadline, f"{now} exports in the database, not {count}"
        await asyncio.sleep(0.02)


def fake_token(**claims: Any) -> str:
    """A valid access token of a user with no session and no labs."""
    import jwt

    body = {
        "sub": str(uuid.uuid4()),
        "role": "authenticated",
        "aud": "authenticated",
        "exp": int(time.time()) + 300,
        **claims,
    }
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


async def test_a_client_that_goes_away_gives_the_connection_back_at_once(
    server: Server, big: User, admin: asyncpg.Connection
) -> None:
    await wait_for_exports(admin, 0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream("GET", export_url("json"), headers=auth(big)) as response:
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                break
            await wait_for_exports(admin, 1)  # the export waits for the client to read on
        # the stream closed unread: the client has gone
        await wait_for_exports(admin, 0, within=2)
        again = await http.get(export_url("csv"), headers={**auth(big), "range": "bytes=0-9"})
        assert again.status_code == 200


async def test_exports_take_a_share_of_the_pool_and_others_are_still_served(
    server: Server, big: User, api: Api, admin: asyncpg.Connection
) -> None:
    reader = await api.sign_up()
    await create_labs(api, reader, [{"title": "Still here", "author": "A"}])
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=30))
        # two exports of one user's big catalogue, read no further than their first chunk
        for _ in range(2):
            held = await stack.enter_async_context(
                http.stream("GET", export_url("csv"), headers=auth(big))
            )
            assert held.status_code == 200
            reading = held.aiter_raw()  # kept: a reader dropped closes its response
            stack.push_async_callback(reading.aclose)
            await anext(reading)
        await wait_for_exports(admin, 2)

        # a third of the same user: 429; anyone else's: 503, all with Retry-After
        third = await http.get(export_url("csv"), headers=auth(big))
        assert third.status_code == 429
        assert third.headers["retry-after"] == "5"
        assert third.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

        tokens = [fake_token() for _ in range(200)]
        answers = await asyncio.gather(
            *(
                http.get(export_url("json"), headers={"authorization": f"Bearer {t}"})
                for t in tokens
            )
        )
        assert {a.status_code for a in answers} == {503}
        assert all(a.headers["retry-after"] == "5" for a in answers)

        # the rest of the pool still serves everyone else
        data = await http.post(
            "/graphql",
            json={"query": "{ labs(first: 5) { nodes { title } } }"},
            headers=auth(reader),
        )
        assert data.status_code == 200
        assert data.json() == {"data": {"labs": {"nodes": [{"title": "Still here"}]}}}
        assert (await http.get("/health/ready")).status_code == 200
        await wait_for_exports(admin, 2)
    await wait_for_exports(admin, 0, within=2)

    # the slots are free again: a crowd of small exports all run, a share at a time
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.get(export_url("csv"), headers={"authorization": f"Bearer {fake_token()}"})
                for _ in range(100)
            )
        )
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}
    assert 200 in statuses
    assert all(a.content == CSV_HEADER.encode() + b"\r\n" for a in answers if a.status_code == 200)


async def test_exports_hold_connections_of_their_own_never_the_requests_turns(
    database: Database, big: User, api: Api, admin: asyncpg.Connection
) -> None:
    """One request turn per worker: while an export holds its connection, reads still get
    that turn at once (exports and imports have connections of their own on top)."""
    reader = await api.sign_up()
    await create_labs(api, reader, [{"title": "Still here", "author": "A"}])
    with real_server(database, DB_POOL_MAX="1", DB_POOL_MIN="1", DB_POOL_WAIT_SECONDS="2") as s:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=s.url, timeout=30))
            held = await stack.enter_async_context(
                http.stream("GET", export_url("csv"), headers=auth(big))
            )
            assert held.status_code == 200
            reading = held.aiter_raw()
            stack.push_async_callback(reading.aclose)
            await anext(reading)
            await wait_for_exports(admin, 1)
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/graphql",
                        json={"query": "{ labs(first: 5) { nodes { title } } }"},
                        headers=auth(reader),
                    )
                    for _ in range(20)
                )
            )
            assert [a.status_code for a in answers] == [200] * 20
            assert all(
                a.json() == {"data": {"labs": {"nodes": [{"title": "Still here"}]}}}
                for a in answers
            )
            assert time.monotonic() - started < 2  # none waited out DB_POOL_WAIT_SECONDS
            await wait_for_exports(admin, 1)  # and the export is still open


async def test_a_slow_reader_is_cut_off_at_the_export_deadline(
    database: Database, big: User, admin: asyncpg.Connection
) -> None:
    with real_server(database, EXPORT_TIMEOUT_S="2") as slow:
        async with httpx.AsyncClient(base_url=slow.url, timeout=30) as http:
            async with http.stream("GET", export_url("csv"), headers=auth(big)) as response:
                assert response.status_code == 200
                reading = response.aiter_raw()
                size = len(await anext(reading))
                await wait_for_exports(admin, 1)
                # the client stops reading; the deadline ends the export and frees its connection
                await wait_for_exports(admin, 0, within=5)
                with pytest.raises(httpx.RemoteProtocolError):  # the transfer ends unfinished
                    async for chunk in reading:
                        size += len(chunk)
            assert size < 60_000_000
            again = await http.get(
                export_url("json"), headers={"authorization": f"Bearer {fake_token()}"}
            )
            assert (again.status_code, again.json()) == (200, [])
