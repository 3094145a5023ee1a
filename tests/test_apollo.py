"""A real Apollo Client (4, with its persisted-queries link, hashes by GET) under Node against a
real server (`scriptlabs serve` in a subprocess): automatic persisted queries end to end, and
PERSISTED_QUERIES=only with a document registered by `scriptlabs persisted add`.

tests/apollo/ holds the client script and its locked dependencies; `./dev.sh test` installs
them (`npm ci`). Without node or the modules the tests fail in CI and are skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import JWT_SECRET, Database, free_port
from tests.test_pgbouncer import in_ci

APOLLO = Path(__file__).parent / "apollo"


def node() -> str:
    found = shutil.which("node")
    reason = None
    if found is None:
        reason = "node is not installed"
    elif not (APOLLO / "node_modules" / "@apollo" / "client").is_dir():
        reason = "tests/apollo has no node_modules: run `npm ci --prefix tests/apollo`"
    if reason is not None:
        if in_ci():  # dev.sh installs them: CI must not pass by skipping
            pytest.fail(f"{reason}; CI runs these tests")
        pytest.skip(reason)
    assert found is not None
    return found


def environment(database: Database, mode: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": JWT_SECRET,
        "PERSISTED_QUERIES": mode,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8192",
        "ARGON2_PARALLELISM": "1",
        "RATE_LIMIT_SIGNUP_IP": "0",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "4",
    }


def server(database: Database, mode: str, log: Path) -> Iterator[str]:
    """`scriptlabs serve` on a free port; yields its GraphQL URL once it is ready."""
    port = free_port()
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port)],
            env=environment(database, mode),
            stdout=err,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/graphql"
        finally:
            process.terminate()
            process.wait(timeout=15)


@pytest.fixture
def apq_server(database: Database, tmp_path: Path) -> Iterator[str]:
    node()
    yield from server(database, "apq", tmp_path / "server.log")


@pytest.fixture
def registered(database: Database) -> list[str]:
    """`scriptlabs persisted add tests/apollo/registered.graphql`: its output lines."""
    node()
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "scriptlabs",
            "persisted",
            "add",
            str(APOLLO / "registered.graphql"),
        ],
        env=environment(database, "only"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    return added.stdout.splitlines()


@pytest.fixture
def only_server(database: Database, registered: list[str], tmp_path: Path) -> Iterator[str]:
    yield from server(database, "only", tmp_path / "server.log")


def run_client(url: str, mode: str) -> dict[str, Any]:
    result = subprocess.run(
        [node(), str(APOLLO / "client.mjs"), url, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def test_apollo_client_with_automatic_persisted_queries(apq_server: str) -> None:
    out = run_client(apq_server, "apq")
    assert out["signUp"]["data"]["signUp"]["user"]["email"].startswith("apollo-")
    assert out["create"]["data"]["createLab"]["title"] == "Dune"
    # __typename in every selection but the root: Apollo Client's cache adds it to the document
    node = {"title": "Dune", "author": "Frank Herbert", "__typename": "Lab"}
    labs = {"labs": {"totalCount": 1, "nodes": [node], "__typename": "LabConnection"}}
    for answer in (out["first"], out["second"]):
        assert "error" not in answer, answer
        assert answer["data"] == labs

    wire = [(r["operationName"], r["method"], r["hasQuery"], r["code"]) for r in out["requests"]]
    assert wire == [
        # hash alone, not found: the link sends the document with its hash, by POST
        ("SignUp", "POST", False, "PERSISTED_QUERY_NOT_FOUND"),
        ("SignUp", "POST", True, None),
        ("Create", "POST", False, "PERSISTED_QUERY_NOT_FOUND"),
        ("Create", "POST", True, None),
        # a query: the hash by GET, then the document by POST
        ("Labs", "GET", False, "PERSISTED_QUERY_NOT_FOUND"),
        ("Labs", "POST", True, None),
        # the second time the hash alone by GET was enough
        ("Labs", "GET", False, None),
    ]
    assert all(r["status"] == 200 for r in out["requests"])
    assert all(r["sha256Hash"] for r in out["requests"])

    # on the server's side: it knows the hash now, and answers it by GET without a document
    digest = out["requests"][-1]["sha256Hash"]
    response = httpx.get(
        apq_server,
        params={
            "operationName": "Labs",
            "variables": json.dumps({"first": 5}),
            "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}}),
        },
        headers={"authorization": f"Bearer {out['token']}"},
    )
    assert response.json()["data"]["labs"]["totalCount"] == 1
    assert response.headers["cache-control"] == "private, no-store"


def test_apollo_client_with_only_registered_documents(
    only_server: str, registered: list[str]
) -> None:
    out = run_client(only_server, "only")
    assert out["registered"] == {"data": {"me": None}}
    assert out["unregistered"]["error"]["codes"] == ["FORBIDDEN"]
    wire = [(r["operationName"], r["method"], r["hasQuery"], r["code"]) for r in out["requests"]]
    assert wire == [
        ("Me", "GET", False, None),  # registered as Apollo Client sends it: the hash was enough
        ("NotRegistered", "GET", False, "FORBIDDEN"),  # refused at once, no retry
    ]
    # the hash the client computed is the one `persisted add` printed for its form
    text = (APOLLO / "registered.graphql").read_text()
    as_written, as_apollo = (line.split("\t") for line in registered)
    assert as_written[0] == hashlib.sha256(text.encode()).hexdigest()
    assert as_apollo[2] == "as Apollo Client sends it"
    assert out["requests"][0]["sha256Hash"] == as_apollo[0]
