"""The schema can be distributed by user (docs/scale-out.md): checked on the migrated catalog.

Citus shards a table by one column and requires that column in every primary key and unique
constraint, and in every foreign key between two distributed tables. Our distribution column
is user_id, so every key of a per-user table leads with it (leading, not only containing: under
RLS every lookup starts with the caller's id, so the same btree serves the lookup).

The exceptions are listed by name with the reason, so a new table or key has to be decided on,
never slips through:
- scriptlabs_private.mail_outbox: a queue drained across all users by the background sender,
  keyed by an identity; user_id is nullable (mail about no account). It stays an ordinary table
  on the coordinator; nothing per request reads it by user but the one-mail-a-minute check.
Tables without a user_id column are not per-user: they must be in NOT_PER_USER (they stay on
the coordinator, or are reference tables) and public must hold none of them."""

from __future__ import annotations

import asyncpg

SCHEMAS = ("public", "scriptlabs_private")

# (schema.table) -> why its keys need not lead with user_id
KEY_EXCEPTIONS = {
    "scriptlabs_private.mail_outbox": "a cross-user queue on the coordinator (docs/scale-out.md)",
}

# tables of SCHEMAS without a user_id column, all private and all left on the coordinator
NOT_PER_USER = {
    "scriptlabs_private.auth_attempts": "rate-limit counters keyed by hashed email or address",
    "scriptlabs_private.persisted_queries": "the registered documents, the same for everyone",
    "scriptlabs_private.search_usage": "search counts per day, of nobody in particular",
}

TABLES = """
select c.oid, n.nspname || '.' || c.relname as name,
       (select a.attnum from pg_attribute a
        where a.attrelid = c.oid and a.attname = 'user_id' and not a.attisdropped) as user_col
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any($1::text[]) and c.relkind in ('r', 'p')
order by 2
"""

# every unique index: those of primary keys and unique constraints, and bare unique indexes
UNIQUE_KEYS = """
select i.indexrelid::regclass::text as name, i.indkey::int2[] as columns,
       i.indexprs is not null as has_expressions
from pg_index i
where i.indrelid = $1 and (i.indisunique or i.indisprimary)
order by 1
"""

FOREIGN_KEYS = """
select con.conname, con.conrelid, con.conkey, con.confrelid, con.confkey,
       cn.nspname || '.' || cc.relname as target
from pg_constraint con
join pg_class cc on cc.oid = con.confrelid
join pg_namespace cn on cn.oid = cc.relnamespace
where con.contype = 'f' and con.conrelid = $1
order by 1
"""


async def per_user_tables(admin: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await admin.fetch(TABLES, list(SCHEMAS))
    return {r["name"]: r for r in rows if r["user_col"] is not None}


async def test_every_table_is_per_user_or_a_listed_exception(admin: asyncpg.Connection) -> None:
    rows = await admin.fetch(TABLES, list(SCHEMAS))
    without = {r["name"] for r in rows if r["user_col"] is None}
    assert without == set(NOT_PER_USER)
    assert not [name for name in without if name.startswith("public.")]
    per_user = {r["name"] for r in rows if r["user_col"] is not None}
    # the tables the issue names, and the others the schema has grown since
    assert {
        "public.labs",
        "public.user_sessions",
        "public.password_reset_tokens",
        "public.refresh_tokens",
        "public.lab_totals",
        "public.lab_author_counts",
        "public.lab_category_counts",
        "public.lab_words",
    } <= per_user
    assert set(KEY_EXCEPTIONS) <= per_user


async def test_every_unique_key_of_a_per_user_table_leads_with_user_id(
    admin: asyncpg.Connection,
) -> None:
    tables = await per_user_tables(admin)
    wrong: list[str] = []
    checked = 0
    for name, table in tables.items():
        keys = await admin.fetch(UNIQUE_KEYS, table["oid"])
        if name in KEY_EXCEPTIONS:
            # the exception is real: its primary key does not lead with user_id
            assert any(k["columns"][0] != table["user_col"] for k in keys), name
            continue
        assert keys, f"{name} has no primary key"
        for key in keys:
            checked += 1
            if key["columns"][0] != table["user_col"]:
                wrong.append(f"{name}: {key['name']} {key['columns']}")
    assert wrong == []
    assert checked >= 8


async def test_every_primary_key_of_a_per_user_table_is_a_constraint(
    admin: asyncpg.Connection,
) -> None:
    """Citus distributes a table only with a real primary key (or none): not a bare index."""
    tables = await per_user_tables(admin)
    for name, table in tables.items():
        primary = await admin.fetchval(
            "select count(*) from pg_constraint where conrelid = $1 and contype = 'p'",
            table["oid"],
        )
        assert primary == 1, name


async def test_foreign_keys_between_per_user_tables_join_on_user_id(
    admin: asyncpg.Connection,
) -> None:
    """Co-location: a key from one distributed table to another must carry user_id to the
    target's user_id; keys to auth.users (a reference table) name the owner itself."""
    tables = await per_user_tables(admin)
    by_oid = {t["oid"]: t for t in tables.values()}
    seen = 0
    for name, table in tables.items():
        for fk in await admin.fetch(FOREIGN_KEYS, table["oid"]):
            seen += 1
            if fk["target"] == "auth.users":
                assert list(fk["conkey"]) == [table["user_col"]], (name, fk["conname"])
                continue
            target = by_oid.get(fk["confrelid"])
            assert target is not None, f"{name}.{fk['conname']} points outside the per-user tables"
            pairs = list(zip(fk["conkey"], fk["confkey"], strict=True))
            assert (table["user_col"], target["user_col"]) in pairs, (name, fk["conname"])
    assert seen >= 8
