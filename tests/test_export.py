"""GET /export/labs.csv and /export/labs.json, and `scriptlabs export`: the caller's own labs,
streamed, as the GraphQL answer gives them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from scriptlabs.labs.columns import LAB_FIELDS
from scriptlabs.labs.export import CSV_HEADER
from tests.conftest import JWT_SECRET, Api, Database, User

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
    env = {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": JWT_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "scriptlabs", "export", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=60,
        check=False,
    )


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
