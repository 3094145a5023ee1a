"""Migrations of several databases of one server at once: roles belong to the server, so two
databases' migrations may change the same role together; the one that loses retries."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import asyncpg

from scriptlabs.db.migrate import list_migrations, migrate
from tests.conftest import Database, dsn_for


async def test_a_role_changed_from_another_database_meanwhile_does_not_fail_a_migration(
    database: Database,
) -> None:
    name = f"scriptlabs_migrate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database.admin_dsn)
    await admin.execute(f'create database "{name}"')
    target = dsn_for(database.admin_dsn, name)
    # the same password again (trust authentication, as in the embedded test server, ignores it)
    password = urlsplit(database.dsn).password or "unused-under-trust"
    other = await asyncpg.connect(database.admin_dsn)  # stands for another database's migration
    try:
        changing = other.transaction()
        await changing.start()
        await other.execute("alter role authenticator connection limit -1")
        migrating = asyncio.create_task(migrate(target, authenticator_password=password))
        waiting = 0
        for _ in range(400):  # until the migration waits for the role's row
            waiting = await admin.fetchval(
                "select count(*) from pg_catalog.pg_stat_activity"
                " where datname = $1 and wait_event_type = 'Lock'",
                name,
            )
            if waiting or migrating.done():
                break
            await asyncio.sleep(0.025)
        assert waiting == 1
        await changing.commit()  # the waiting update now finds the row changed under it
        done = await asyncio.wait_for(migrating, 60)
        assert done == [m.version for m in list_migrations()]
        assert await migrate(target) == []
    finally:
        await other.close()
        await admin.close()
