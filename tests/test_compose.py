"""The compose files, read as Compose reads them (no Docker engine runs in the tests): the
optional services are there, behind their profiles, and PgBouncer's file puts it in the API's
path with what transaction pooling requires, while LISTEN still goes to PostgreSQL itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_the_optional_services_stand_behind_their_profiles() -> None:
    services = _load("docker-compose.yml")["services"]
    assert {"db", "migrate", "api", "replica", "pgbouncer"} <= set(services)
    assert "profiles" not in services["db"] and "profiles" not in services["api"]
    assert services["replica"]["profiles"] == ["replica"]
    assert services["pgbouncer"]["profiles"] == ["pgbouncer"]
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"


def test_the_api_talks_to_postgresql_unless_pgbouncer_is_put_in_its_path() -> None:
    api = _load("docker-compose.yml")["services"]["api"]["environment"]
    assert "@db:5432/" in api["DATABASE_URL"]
    assert "@db:5432/" in api["DATABASE_LISTEN_URL"]
    bounced = _load("docker-compose.pgbouncer.yml")["services"]["api"]
    assert "@pgbouncer:5432/" in bounced["environment"]["DATABASE_URL"]
    assert bounced["environment"]["DB_STATEMENT_CACHE_SIZE"] == "0"
    assert "DATABASE_LISTEN_URL" not in bounced["environment"]  # LISTEN stays direct
    assert bounced["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
