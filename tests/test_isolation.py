"""One user never sees or changes another's data: through every GraphQL field, and in the
database itself under the request's role (RLS), as PostgREST would run a request."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.conftest import Api, Database, User, error_codes

LAB = "id title author category rating notes createdAt updatedAt"

CREATE = f"mutation($input: CreateLabInput!) {{ createLab(input: $input) {{ {LAB} }} }}"


@dataclass(frozen=True)
class Pair:
    """Two users, each with two labs; A's titles are unique to this test."""

    a: User
    b: User
    a_labs: list[dict[str, Any]]
    b_labs: list[dict[str, Any]]
    secret: str  # a word found only in A's titles


async def create_lab(api: Api, user: User, **values: Any) -> dict[str, Any]:
    data = await api.ok(CREATE, {"input": values}, token=user.token)
    lab: dict[str, Any] = data["createLab"]
    return lab


@pytest.fixture
async def pair(api: Api) -> Pair:
    a, b = await api.sign_up(), await api.sign_up()
    secret = f"secret{uuid.uuid4().hex[:10]}"
    a_labs = [
        await create_lab(
            api, a, title=f"{secret} one", author="Ann", category="Mine", rating=5, notes="a"
        ),
        await create_lab(api, a, title=f"{secret} two", author="Ann", isbn="0306406152"),
    ]
    b_labs = [
        await create_lab(api, b, title="Bee one", author="Bob", category="Mine", rating=5),
        await create_lab(api, b, title="Bee two", author="Bob"),
    ]
    return Pair(a, b, a_labs, b_labs, secret)


async def owner_rows(admin: asyncpg.Connection, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await admin.fetch(
        "select id, user_id, title, author, rating, category, updated_at"
        " from public.labs where id = any($1::uuid[])",
        ids,
    )
    return {str(r["id"]): r for r in rows}


# --- through GraphQL ---------------------------------------------------------------------


async def test_lab_of_another_user_is_null(api: Api, pair: Pair) -> None:
    for lab in pair.a_labs:
        result = await api.gql(
            "query($id: UUID!) { lab(id: $id) { id title } }", {"id": lab["id"]}, token=pair.b.token
        )
        assert result == {"data": {"lab": None}}
    own = await api.ok(
        "query($id: UUID!) { lab(id: $id) { id } }",
        {"id": pair.a_labs[0]["id"]},
        token=pair.a.token,
    )
    assert own["lab"] == {"id": pair.a_labs[0]["id"]}


@pytest.mark.parametrize(
    "filter_",
    [
        None,
        {},
        {"title": {"startsWith": "secret"}},
        {"title": {"ilike": "%"}},
        {"author": {"eq": "Ann"}},
        {"category": {"eq": "Mine"}},
        {"rating": {"gte": 1}},
        {"isbn": {"eq": "0-306-40615-2"}},
        {"isbn": {"isNull": False}},
        {"readingStatus": {"eq": "TO_READ"}},
        {"createdAt": {"gt": "2000-01-01T00:00:00+00:00"}},
        {"not": {"author": {"eq": "nobody"}}},
        {
            "or": [
                {"author": {"eq": "Ann"}},
                {"author": {"neq": "Ann"}},
                {"rating": {"isNull": True}},
            ]
        },
        {"and": [{"title": {"ilike": "%"}}, {"not": {"title": {"eq": ""}}}]},
    ],
)
async def test_labs_never_lists_another_users_labs(
    api: Api, pair: Pair, filter_: dict[str, Any] | None
) -> None:
    mine = {lab["id"] for lab in pair.b_labs}
    for args in ("first: 100", "last: 100", "orderBy: [{field: TITLE, direction: DESC}]"):
        data = await api.ok(
            f"query($f: LabFilter) {{ labs(filter: $f, {args}) {{ totalCount"
            " nodes { id title } edges { node { id } } } }",
            {"f": filter_},
            token=pair.b.token,
        )
        ids = {n["id"] for n in data["labs"]["nodes"]}
        assert ids <= mine, data
        assert {e["node"]["id"] for e in data["labs"]["edges"]} == ids
        assert data["labs"]["totalCount"] == len(ids)
        assert not any(pair.secret in n["title"] for n in data["labs"]["nodes"])


async def test_a_filter_naming_another_users_title_finds_nothing(api: Api, pair: Pair) -> None:
    data = await api.ok(
        "query($t: String!) { labs(filter: {title: {eq: $t}}) { totalCount nodes { id } } }",
        {"t": pair.a_labs[0]["title"]},
        token=pair.b.token,
    )
    assert data["labs"] == {"totalCount": 0, "nodes": []}


async def test_update_of_another_users_lab_is_not_found_and_changes_nothing(
    api: Api, admin: asyncpg.Connection, pair: Pair
) -> None:
    target = pair.a_labs[0]
    before = await owner_rows(admin, [target["id"]])
    for values in ({"title": "stolen"}, {"rating": None, "category": None}, {}):
        result = await api.gql(
            "mutation($id: UUID!, $input: UpdateLabInput!) {"
            " updateLab(id: $id, input: $input) { id title } }",
            {"id": target["id"], "input": values},
            token=pair.b.token,
        )
        assert error_codes(result) == ["NOT_FOUND"], result
        assert result["data"] is None
    after = await owner_rows(admin, [target["id"]])
    assert after == before
    assert after[target["id"]]["user_id"] == uuid.UUID(pair.a.id)
    seen = await api.ok(
        f"query($id: UUID!) {{ lab(id: $id) {{ {LAB} }} }}",
        {"id": target["id"]},
        token=pair.a.token,
    )
    assert seen["lab"] == target


async def test_delete_of_another_users_lab_is_not_found_and_deletes_nothing(
    api: Api, admin: asyncpg.Connection, pair: Pair
) -> None:
    target = pair.a_labs[1]
    result = await api.gql(
        "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": target["id"]}, token=pair.b.token
    )
    assert error_codes(result) == ["NOT_FOUND"], result
    assert result["data"] is None
    assert target["id"] in await owner_rows(admin, [target["id"]])
    seen = await api.ok(
        "query($id: UUID!) { lab(id: $id) { id } }", {"id": target["id"]}, token=pair.a.token
    )
    assert seen["lab"] == {"id": target["id"]}
    listed = await api.ok("{ labs { totalCount } }", token=pair.a.token)
    assert listed["labs"]["totalCount"] == 2


async def test_not_found_message_is_the_same_for_a_missing_lab_and_another_users(
    api: Api, pair: Pair
) -> None:
    operations = [
        "mutation($id: UUID!) { deleteLab(id: $id) }",
        'mutation($id: UUID!) { updateLab(id: $id, input: {title: "x"}) { id } }',
        "mutation($id: UUID!) { updateLab(id: $id, input: {}) { id } }",
    ]
    for operation in operations:
        theirs = await api.gql(operation, {"id": pair.a_labs[0]["id"]}, token=pair.b.token)
        missing = await api.gql(operation, {"id": str(uuid.uuid4())}, token=pair.b.token)
        assert theirs == missing, (theirs, missing)
        assert error_codes(theirs) == ["NOT_FOUND"]
        assert pair.a_labs[0]["id"] not in json.dumps(theirs)


async def test_create_and_import_cannot_choose_the_owner(
    api: Api, admin: asyncpg.Connection, pair: Pair
) -> None:
    for field in ("userId", "user_id", "id"):
        result = await api.gql(
            f'mutation {{ createLab(input: {{title: "t", author: "a", {field}: "{pair.a.id}"}})'
            " { id } }",
            token=pair.b.token,
        )
        assert error_codes(result) == ["BAD_USER_INPUT"], result
        result = await api.gql(
            "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }",
            {"labs": [{"title": "t", "author": "a", field: pair.a.id}]},
            token=pair.b.token,
        )
        assert error_codes(result) == ["BAD_USER_INPUT"], result

    created = await create_lab(api, pair.b, title="mine", author="me")
    imported = await api.ok(
        'mutation { importLabs(labs: [{title: "i1", author: "x"}, {title: "i2", author: "y"}])'
        " { ids } }",
        token=pair.b.token,
    )
    ids = [created["id"], *imported["importLabs"]["ids"]]
    rows = await owner_rows(admin, ids)
    assert set(rows) == set(ids)
    assert {r["user_id"] for r in rows.values()} == {uuid.UUID(pair.b.id)}
    a_count = await admin.fetchval(
        "select count(*) from public.labs where user_id = $1", uuid.UUID(pair.a.id)
    )
    assert a_count == 2


async def test_me_is_the_caller(api: Api, pair: Pair) -> None:
    for user in (pair.a, pair.b):
        data = await api.ok("{ me { id email } }", token=user.token)
        assert data["me"] == {"id": user.id, "email": user.email}


async def test_one_operation_with_two_users_ids_sees_only_the_callers(api: Api, pair: Pair) -> None:
    data = await api.ok(
        "query($a: UUID!, $b: UUID!) { mine: lab(id: $b) { id } theirs: lab(id: $a) { id }"
        " labs { totalCount } }",
        {"a": pair.a_labs[0]["id"], "b": pair.b_labs[0]["id"]},
        token=pair.b.token,
    )
    assert data == {"mine": {"id": pair.b_labs[0]["id"]}, "theirs": None, "labs": {"totalCount": 2}}


# --- in the database, under the request's role --------------------------------------------


@asynccontextmanager
async def request_role(
    database: Database, role: str, sub: str | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as the API opens one: logged in as authenticator, role and claims set."""
    conn = await asyncpg.connect(database.dsn)
    try:
        async with conn.transaction():
            claims: dict[str, Any] = {"role": role}
            if sub is not None:
                claims |= {"sub": sub, "aud": "authenticated"}
            await conn.execute(
                "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                role,
                json.dumps(claims),
            )
            yield conn
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()


class _Rollback(Exception):
    """Leave the request's transaction without committing."""


async def refused(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.PostgresError:
    """Run `sql` in a savepoint; it must fail with a privilege or RLS error."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        async with conn.transaction():
            await conn.fetch(sql, *args)
    assert caught.value.sqlstate == "42501", (sql, caught.value)
    return caught.value


async def test_select_star_from_labs_returns_only_the_callers_rows(
    database: Database, pair: Pair
) -> None:
    async with request_role(database, "authenticated", pair.b.id) as conn:
        assert await conn.fetchval("select auth.uid()") == uuid.UUID(pair.b.id)
        assert await conn.fetchval("select current_user") == "authenticated"
        rows = await conn.fetch("select * from public.labs")
        assert {r["user_id"] for r in rows} == {uuid.UUID(pair.b.id)}
        assert {str(r["id"]) for r in rows} == {lab["id"] for lab in pair.b_labs}
        a_ids = [uuid.UUID(lab["id"]) for lab in pair.a_labs]
        assert await conn.fetch("select id from public.labs where id = any($1)", a_ids) == []
        count = "select count(*) from public.labs where user_id = $1"
        assert await conn.fetchval(count, uuid.UUID(pair.a.id)) == 0


async def test_the_request_role_cannot_write_another_users_rows(
    database: Database, admin: asyncpg.Connection, pair: Pair
) -> None:
    a_id = uuid.UUID(pair.a.id)
    a_lab = uuid.UUID(pair.a_labs[0]["id"])
    before = await owner_rows(admin, [lab["id"] for lab in pair.a_labs])
    async with request_role(database, "authenticated", pair.b.id) as conn:
        await refused(
            conn, "insert into public.labs (user_id, title, author) values ($1, 't', 'a')", a_id
        )
        assert await conn.execute(
            "update public.labs set title = 'x' where user_id = $1", a_id
        ) == ("UPDATE 0")
        assert await conn.execute("update public.labs set title = 'x' where id = $1", a_lab) == (
            "UPDATE 0"
        )
        assert await conn.execute("update public.labs set rating = null") == "UPDATE 2"
        assert await conn.execute("delete from public.labs where user_id = $1", a_id) == "DELETE 0"
        assert await conn.execute("delete from public.labs where id = $1", a_lab) == "DELETE 0"
        # nor hand one of its own labs over to A
        own = uuid.UUID(pair.b_labs[0]["id"])
        await refused(conn, "update public.labs set user_id = $1 where id = $2", a_id, own)
    assert await owner_rows(admin, [lab["id"] for lab in pair.a_labs]) == before


SECRET_COLUMNS = """
select format('%I.%I', table_schema, table_name) as tbl, column_name
from information_schema.columns
where table_schema in ('public', 'auth')
  and column_name ~ '(hash|token|password|secret)'
order by 1, 2
"""

# tables no request role may read at all
SECRET_TABLES = ("public.password_reset_tokens", "public.refresh_tokens")


async def secret_columns(admin: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await admin.fetch(SECRET_COLUMNS)
    found = [(r["tbl"], r["column_name"]) for r in rows]
    assert ("auth.users", "encrypted_password") in found
    assert any(table == "public.password_reset_tokens" for table, _ in found)
    return found


async def existing(admin: asyncpg.Connection, tables: tuple[str, ...]) -> list[str]:
    return [t for t in tables if await admin.fetchval("select to_regclass($1)", t) is not None]


@pytest.mark.parametrize("role", ["authenticated", "anon"])
async def test_the_request_roles_cannot_read_password_and_token_hashes(
    database: Database, admin: asyncpg.Connection, pair: Pair, role: str
) -> None:
    columns = await secret_columns(admin)
    tables = await existing(admin, SECRET_TABLES)
    async with request_role(database, role, pair.b.id if role == "authenticated" else None) as conn:
        for table, column in columns:
            await refused(conn, f"select {column} from {table}")
        for table in tables:
            await refused(conn, f"select * from {table}")
            await refused(conn, f"select count(*) from {table}")
        await refused(conn, "select * from auth.users")
        await refused(
            conn,
            "update auth.users set encrypted_password = 'x' where id = $1",
            uuid.UUID(pair.a.id),
        )


async def test_the_caller_sees_only_its_own_user_and_sessions(
    database: Database, pair: Pair
) -> None:
    async with request_role(database, "authenticated", pair.b.id) as conn:
        users = await conn.fetch("select id, email from auth.users")
        assert [(str(r["id"]), r["email"]) for r in users] == [(pair.b.id, pair.b.email)]
        sessions = await conn.fetch("select user_id from public.user_sessions")
        assert sessions and {r["user_id"] for r in sessions} == {uuid.UUID(pair.b.id)}
        # ending someone else's session is not possible either
        result = await conn.execute(
            "update public.user_sessions set revoked_at = now() where user_id = $1",
            uuid.UUID(pair.a.id),
        )
        assert result == "UPDATE 0"


async def test_no_security_definer_function_is_open_to_request_roles_unpinned(
    admin: asyncpg.Connection,
) -> None:
    rows = await admin.fetch(
        """
        select p.oid::regprocedure::text as name,
               coalesce(array_to_string(p.proconfig, ','), '') as config,
               has_function_privilege('authenticated', p.oid, 'execute') as by_authenticated,
               has_function_privilege('anon', p.oid, 'execute') as by_anon
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where p.prosecdef
          and n.nspname not in ('pg_catalog', 'information_schema')
        """
    )
    for row in rows:
        assert "search_path=" in row["config"], row["name"]
        if row["name"].startswith("scriptlabs_private."):
            assert not row["by_authenticated"] and not row["by_anon"], row["name"]


async def test_private_functions_are_refused_to_request_roles(
    database: Database, admin: asyncpg.Connection, pair: Pair
) -> None:
    functions = await admin.fetch(
        "select p.oid::regprocedure::text as signature, p.proname, p.pronargs"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'scriptlabs_private'"
    )
    for role in ("authenticated", "anon", "service_role"):
        async with request_role(database, role, pair.b.id if role != "anon" else None) as conn:
            for function in functions:
                args = ", ".join("null" for _ in range(function["pronargs"]))
                await refused(conn, f"select scriptlabs_private.{function['proname']}({args})")


async def test_anon_sees_nothing(database: Database, pair: Pair) -> None:
    async with request_role(database, "anon") as conn:
        assert await conn.fetchval("select auth.uid()") is None
        for table in ("public.labs", "public.user_sessions", "public.password_reset_tokens"):
            await refused(conn, f"select count(*) from {table}")
        await refused(conn, "select encrypted_password from auth.users")
        assert await conn.fetch("select id, email from auth.users") == []
        await refused(conn, "insert into public.labs (title, author) values ('t', 'a')")


async def test_the_login_role_itself_holds_no_privilege(database: Database, pair: Pair) -> None:
    conn = await asyncpg.connect(database.dsn)
    try:
        assert await conn.fetchval("select current_user") == "authenticator"
        for table in ("public.labs", "public.user_sessions", "public.password_reset_tokens"):
            await refused(conn, f"select count(*) from {table}")
        await refused(conn, "select id from auth.users")
    finally:
        await conn.close()


async def test_claims_naming_another_role_do_not_change_the_database_role(
    database: Database, pair: Pair
) -> None:
    # the role comes from set_config('role'), never from the claims' text
    async with request_role(database, "authenticated", pair.b.id) as conn:
        await conn.execute(
            "select set_config('request.jwt.claims', $1, true)",
            json.dumps({"role": "service_role", "sub": pair.b.id}),
        )
        rows = await conn.fetch("select user_id from public.labs")
        assert {r["user_id"] for r in rows} == {uuid.UUID(pair.b.id)}
        await refused(conn, "select encrypted_password from auth.users")
