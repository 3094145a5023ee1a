"""`scriptlabs db health` and `scriptlabs db maintain`: the design document's health queries
and maintenance, as the database owner.

Health: the database's size; per table of the API (schemas public, auth, scriptlabs_private)
its size with indexes, live and dead rows and the dead share; the index and table cache hit
ratios, client connections of max_connections and the API statements' mean time (the same
figures as GET /metrics: scriptlabs_private.api_figures()); connections by state; the slowest
statements by mean time from pg_stat_statements (empty where it is not loaded).

Maintain: what the design document schedules and the database does not do by itself on
every platform: ANALYZE of the API's tables, and the clean-up of expired tokens, old mail and
sessions (public.cleanup_expired_tokens()). Vacuum is autovacuum's (see db/018_usage.sql for
the settings of public.labs).
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

SCHEMAS = ["public", "auth", "scriptlabs_private"]
SLOWEST = 10
STATEMENT_CHARS = 200

DATABASE = """
select pg_catalog.current_database() as name,
       pg_catalog.pg_database_size(pg_catalog.current_database()) as size_bytes
"""

TABLES = """
select t.schemaname || '.' || t.relname as name,
       pg_catalog.pg_total_relation_size(t.relid) as total_bytes,
       pg_catalog.pg_relation_size(t.relid) as table_bytes,
       pg_catalog.pg_indexes_size(t.relid) as index_bytes,
       t.n_live_tup as live_rows,
       t.n_dead_tup as dead_rows,
       t.n_dead_tup::float8 / greatest(t.n_live_tup + t.n_dead_tup, 1) as dead_share,
       greatest(t.last_vacuum, t.last_autovacuum) as last_vacuum,
       greatest(t.last_analyze, t.last_autoanalyze) as last_analyze
from pg_catalog.pg_stat_user_tables t
where t.schemaname = any($1::text[])
order by pg_catalog.pg_total_relation_size(t.relid) desc, 1
"""

FIGURES = """
select index_hit_ratio, table_hit_ratio, connections_used, connections_max, statements_mean_ms
from scriptlabs_private.api_figures()
"""

CONNECTIONS = """
select count(*) filter (where a.state = 'active') as active,
       count(*) filter (where a.state = 'idle') as idle,
       count(*) filter (where a.state like 'idle in transaction%') as idle_in_transaction
from pg_catalog.pg_stat_activity a
where a.backend_type = 'client backend'
"""

STATEMENTS_SCHEMA = """
select e.extnamespace::regnamespace::text
from pg_catalog.pg_extension e where e.extname = 'pg_stat_statements'
"""

# {schema}: the extension's, quoted; this database's statements only
SLOWEST_STATEMENTS = """
select r.rolname as role, s.calls, s.mean_exec_time as mean_ms, s.total_exec_time as total_ms,
       s.rows, left(regexp_replace(s.query, '\\s+', ' ', 'g'), $2) as query
from {schema}.pg_stat_statements s
left join pg_catalog.pg_roles r on r.oid = s.userid
where s.dbid = (select oid from pg_catalog.pg_database where datname = current_database())
order by s.mean_exec_time desc
limit $1
"""


async def health(conn: asyncpg.Connection, slowest: int = SLOWEST) -> dict[str, Any]:
    """The health figures, as plain values (the JSON of `--json`)."""
    database = await _one(conn, DATABASE)
    tables = [
        {
            **dict(r),
            "last_vacuum": _iso(r["last_vacuum"]),
            "last_analyze": _iso(r["last_analyze"]),
        }
        for r in await conn.fetch(TABLES, SCHEMAS)
    ]
    figures = await _one(conn, FIGURES)
    states = await _one(conn, CONNECTIONS)
    used, maximum = figures["connections_used"], figures["connections_max"]
    return {
        "database": database,
        "tables": tables,
        "cache": {
            "index_hit_ratio": figures["index_hit_ratio"],
            "table_hit_ratio": figures["table_hit_ratio"],
        },
        "connections": {
            "used": used,
            "max": maximum,
            "share": used / maximum if maximum else None,
            **states,
        },
        "statements": await _slowest(conn, slowest),
        "statements_mean_ms": figures["statements_mean_ms"],
    }


async def _one(conn: asyncpg.Connection, query: str) -> dict[str, Any]:
    row = await conn.fetchrow(query)
    assert row is not None  # aggregates and functions: always one row
    return dict(row)


async def _slowest(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]] | None:
    """The slowest statements by mean time; None without pg_stat_statements."""
    schema = await conn.fetchval(STATEMENTS_SCHEMA)
    if schema is None:
        return None
    try:
        async with conn.transaction():  # a failure here leaves the connection usable
            rows = await conn.fetch(
                SLOWEST_STATEMENTS.format(schema=schema), limit, STATEMENT_CHARS
            )
    except asyncpg.PostgresError:  # created but not loaded (shared_preload_libraries)
        return None
    return [dict(r) for r in rows]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def table(figures: dict[str, Any]) -> str:
    """The figures for a terminal."""
    from scriptlabs.ops.report import render

    db = figures["database"]
    cache = figures["cache"]
    conns = figures["connections"]
    out = [
        f"database {db['name']}: {_size(db['size_bytes'])}",
        f"cache hit ratio: indexes {_ratio(cache['index_hit_ratio'])}, "
        f"tables {_ratio(cache['table_hit_ratio'])}",
        f"connections: {conns['used']} of {conns['max']} ({_ratio(conns['share'])}); "
        f"active {conns['active']}, idle {conns['idle']}, "
        f"idle in transaction {conns['idle_in_transaction']}",
        "",
    ]
    lines = [("table", "size", "indexes", "live rows", "dead rows", "dead", "last vacuum")]
    for t in figures["tables"]:
        lines.append(
            (
                t["name"],
                _size(t["total_bytes"]),
                _size(t["index_bytes"]),
                str(t["live_rows"]),
                str(t["dead_rows"]),
                _ratio(t["dead_share"]),
                (t["last_vacuum"] or "never")[:19],
            )
        )
    out.append(render(lines))
    out.append("")
    statements = figures["statements"]
    if statements is None:
        out.append("slowest statements: pg_stat_statements is not available")
    else:
        mean = figures["statements_mean_ms"]
        api_mean = "-" if mean is None else f"{mean:.2f} ms"
        out.append(f"slowest statements (mean time; the API's mean: {api_mean}):")
        rows = [("mean ms", "calls", "total ms", "role", "statement")]
        for s in statements:
            rows.append(
                (
                    f"{s['mean_ms']:.2f}",
                    str(s["calls"]),
                    f"{s['total_ms']:.0f}",
                    s["role"] or "-",
                    s["query"][:100],
                )
            )
        out.append(render(rows, left=(3, 4)))
    return "\n".join(out)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


async def maintain(conn: asyncpg.Connection) -> list[str]:
    """ANALYZE of the API's tables, then the token clean-up; a line per thing done."""
    from scriptlabs.auth.reset import cleanup_expired_tokens

    lines = []
    tables = await conn.fetch(
        "select schemaname, relname from pg_catalog.pg_stat_user_tables "
        "where schemaname = any($1::text[]) order by 1, 2",
        SCHEMAS,
    )
    for t in tables:
        name = f"{_ident(t['schemaname'])}.{_ident(t['relname'])}"
        started = time.perf_counter()
        await conn.execute(f"analyze {name}")
        took = time.perf_counter() - started
        lines.append(f"analyzed {t['schemaname']}.{t['relname']} ({took * 1000:.0f} ms)")
    deleted = await cleanup_expired_tokens(conn)
    lines.append(f"deleted {deleted} rows (expired or used reset tokens, old mail and sessions)")
    return lines


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
