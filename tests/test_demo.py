"""`scriptlabs demo-data`: users and labs that a person can sign in to, deterministic."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from scriptlabs.cli import main
from scriptlabs.labs.demo import generate_labs
from tests.conftest import Api, Database


def test_the_same_user_number_gives_the_same_labs() -> None:
    anchor = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    user = uuid.UUID(int=42)
    first = list(generate_labs(7, user, 50, anchor=anchor))
    assert first == list(generate_labs(7, user, 50, anchor=anchor))
    assert first != list(generate_labs(8, user, 50, anchor=anchor))
    assert len({lab[1] for lab in first}) == 50  # ids


async def test_demo_data_adds_numbered_users_with_their_share_of_labs(
    database: Database,
    admin: asyncpg.Connection,
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database.dsn)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_dsn)
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("ARGON2_TIME_COST", "1")
    assert await _run(["demo-data", "--labs", "5", "--users", "2"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(labs) for _, _, labs in lines] == [3, 2]
    numbers = [int(email.split("@")[0].split("-")[1]) for email, _, _ in lines]
    assert numbers[1] == numbers[0] + 1
    for email, user_id, labs in lines:
        count = await admin.fetchval(
            "select count(*) from public.labs where user_id = $1", uuid.UUID(user_id)
        )
        assert count == int(labs)
    # the users can sign in with the default password and see their labs
    email, _, labs = lines[0]
    data = await api.ok(
        'mutation($e: String!) { signIn(email: $e, password: "demo-password") { accessToken } }',
        {"e": email},
    )
    listed = await api.ok("{ labs { totalCount } }", token=data["signIn"]["accessToken"])
    assert listed["labs"]["totalCount"] == int(labs)
    # numbering goes on from the highest demo user
    assert await _run(["demo-data", "--labs", "1"]) == 0
    (next_line,) = capsys.readouterr().out.splitlines()
    assert next_line.startswith(f"demo-{numbers[1] + 1}@scriptlabs.test\t")


async def _run(argv: list[str]) -> int:
    import asyncio

    # the command runs its own event loop
    return await asyncio.to_thread(main, argv)
