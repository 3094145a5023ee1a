"""GET /metrics, the request id and the JSON access log (CONTRACT.md section 1, HTTP)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from scriptlabs.config import Settings
from scriptlabs.ops import scrape as exposition
from scriptlabs.telemetry.logs import (
    REQUEST_ID,
    JsonFormatter,
    JsonLines,
    RequestIdFilter,
    TextFormatter,
)
from scriptlabs.telemetry.metrics import Recorder, forget_dead_workers
from tests.conftest import Api, Database, SmtpSink, create_database, free_port, serve
from tests.test_password_reset import NEW_PASSWORD, REQUEST, RESET, SIGN_IN, STATUS, token_in

PROBE = "query MetricsProbe { me { id } labs(first: 1) { totalCount } }"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) → value."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def names(found: Samples) -> set[str]:
    return {name for name, _ in found}


def operations(found: Samples) -> set[str]:
    return {
        dict(labels)["operation"]
        for name, labels in found
        if name == "scriptlabs_graphql_requests_total"
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def requests_of(found: Samples, operation: str, outcome: str, status: str = "2xx") -> float:
    counted = value(
        found,
        "scriptlabs_graphql_requests_total",
        operation=operation,
        outcome=outcome,
        status=status,
    )
    return counted or 0.0


async def test_metrics_show_requests_latency_pool_and_the_database_figures(
    client: httpx.AsyncClient, api: Api, admin: asyncpg.Connection
) -> None:
    user = await api.sign_up()
    before = await scrape(client)
    for _ in range(3):
        await api.ok(
            "query MetricsProbe { me { id } labs(first: 1) { totalCount } }", token=user.token
        )
    after = await scrape(client)

    assert requests_of(after, "MetricsProbe", "ok") - requests_of(before, "MetricsProbe", "ok") == 3
    count = value(
        after,
        "scriptlabs_graphql_request_duration_seconds_count",
        operation="MetricsProbe",
        outcome="ok",
    )
    assert count is not None and count >= 3
    slowest = value(
        after,
        "scriptlabs_graphql_request_duration_seconds_bucket",
        operation="MetricsProbe",
        outcome="ok",
        le="10.0",
    )
    assert slowest == count  # every request within the last bucket
    for gauge in (
        "scriptlabs_db_pool_connections_in_use",
        "scriptlabs_db_pool_waiting",
        "scriptlabs_db_pool_connections_open",
        "scriptlabs_db_pool_connections_max",
    ):
        assert value(after, gauge) is not None, gauge
    assert value(after, "scriptlabs_db_pool_connections_max") == 15  # 10, exports 2, imports 2, 1
    in_use = value(after, "scriptlabs_db_pool_connections_in_use")
    assert in_use is not None and 0 <= in_use <= 10
    assert value(after, "scriptlabs_database_up") == 1
    for ratio in (
        "scriptlabs_db_index_cache_hit_ratio",
        "scriptlabs_db_table_cache_hit_ratio",
        "scriptlabs_db_connections_used_ratio",
        "scriptlabs_labs_dead_tuple_ratio",
    ):
        figure = value(after, ratio)
        assert figure is not None and 0 <= figure <= 1, (ratio, figure)
    used = value(after, "scriptlabs_db_connections_in_use")
    assert used is not None and used >= 1
    assert value(after, "scriptlabs_db_connections_max") == await admin.fetchval(
        "select current_setting('max_connections')::int"
    )
    mean = value(after, "scriptlabs_db_statement_mean_seconds")
    loaded = await admin.fetchval(
        "select current_setting('shared_preload_libraries') like '%pg_stat_statements%'"
    )
    if loaded:  # as in the embedded cluster: db/017_stats.sql created the extension
        assert mean is not None and 0 < mean < 5
    else:
        assert mean is None
    assert value(after, "scriptlabs_mail_queued") is not None
    assert value(after, "scriptlabs_mail_failed") is not None
    assert value(after, "scriptlabs_mail_deliveries_total", result="sent") is not None


async def test_the_outcome_is_the_first_errors_code(client: httpx.AsyncClient, api: Api) -> None:
    before = await scrape(client)
    result = await api.gql("query OutcomeProbe { labs { totalCount } }")  # no token
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    bad_json = await client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    unnamed = await client.post("/graphql", json={"query": "{ me { id } }"})
    assert unnamed.status_code == 200
    after = await scrape(client)

    def moved(operation: str, outcome: str, status: str = "2xx") -> float:
        return requests_of(after, operation, outcome, status) - requests_of(
            before, operation, outcome, status
        )

    assert moved("OutcomeProbe", "UNAUTHENTICATED") == 1
    assert moved("unknown", "BAD_USER_INPUT", "4xx") >= 1
    assert moved("anonymous", "ok") >= 1


async def test_database_errors_are_counted_by_sqlstate_class(
    client: httpx.AsyncClient, api: Api
) -> None:
    user = await api.sign_up()
    before = await scrape(client)
    # a rating the check constraint refuses: SQLSTATE 23514, class 23
    again = await api.gql(
        "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { accessToken } }",
        {"e": user.email, "p": "another passphrase"},
    )
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    after = await scrape(client)
    counted = (value(after, "scriptlabs_db_errors_total", kind="23") or 0) - (
        value(before, "scriptlabs_db_errors_total", kind="23") or 0
    )
    assert counted >= 1


async def test_a_flood_of_operation_names_keeps_the_labels_bounded(
    settings: Settings,
) -> None:
    # a hostile client names every request differently, some names huge or not names at all
    async with serve(replace(settings, metrics_max_operations=5)) as client:
        sent = [f"Flood{uuid.uuid4().hex}" for _ in range(40)]
        junk = ["x" * 10_000, "not a name", "1abc", "é"]

        async def ask(name: str) -> int:
            response = await client.post(
                "/graphql", json={"query": "{ me { id } }", "operationName": name}
            )
            return response.status_code

        before = await scrape(client)
        statuses = await asyncio.gather(*(ask(n) for n in sent + junk))
        assert set(statuses) == {200}
        found = await scrape(client)
        labels = operations(found)
        assert len(labels & set(sent)) <= 5
        assert not labels & set(junk)
        other = sum(
            v - (before.get(k) or 0)
            for k, v in found.items()
            if k[0] == "scriptlabs_graphql_requests_total" and ("operation", "other") in k[1]
        )
        assert other >= 40 + 4 - 5


def test_a_million_names_grow_one_recorder_no_further_than_its_limit() -> None:
    recorder = Recorder(max_operations=100)
    labels = {recorder.operation(f"op{i}") for i in range(1_000_000)}
    assert len(labels) == 101  # the first 100, then `other`
    assert recorder.operation(None) == "anonymous"
    assert recorder.operation("op5") == "op5"
    assert recorder.operation("op100") == "other"
    assert recorder.operation("a" * 65) == "other"


async def test_a_storm_of_scrapes_costs_the_database_one_query(
    settings: Settings, admin: asyncpg.Connection
) -> None:
    calls = (
        "select coalesce(sum(calls), 0) from pg_stat_statements"
        " where query like '%scriptlabs_private.api_figures()%'"
        " and query not like '%pg_stat_statements%'"
    )
    loaded = await admin.fetchval(
        "select current_setting('shared_preload_libraries') like '%pg_stat_statements%'"
    )
    async with serve(settings) as client:
        before = await admin.fetchval(calls) if loaded else 0
        responses = await asyncio.gather(*(client.get("/metrics") for _ in range(50)))
        assert {r.status_code for r in responses} == {200}
        assert all("scriptlabs_database_up 1.0" in r.text for r in responses)
        if loaded:
            assert await admin.fetchval(calls) - before == 1


async def test_metrics_reveal_no_email_id_or_token(client: httpx.AsyncClient, api: Api) -> None:
    user = await api.sign_up()
    await api.ok("query LeakProbe { me { id email } }", token=user.token)
    text = (await client.get("/metrics")).text
    for secret in (user.email, user.id, user.token, user.refresh_token, user.password):
        assert secret not in text


async def test_metrics_token_is_asked_when_set(settings: Settings) -> None:
    token = "scrape-" + uuid.uuid4().hex
    async with serve(replace(settings, metrics_token=token)) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        odd = await client.get("/metrics", headers={"authorization": "Bearer é".encode("latin-1")})
        assert odd.status_code == 401
        right = await client.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "scriptlabs_graphql_requests" in right.text


async def test_metrics_off_means_no_route_and_no_counting(settings: Settings) -> None:
    async with serve(replace(settings, metrics=False)) as client:
        assert (await client.get("/metrics")).status_code == 404
        response = await client.post("/graphql", json={"query": "query OffProbe { me { id } }"})
        assert response.status_code == 200
    async with serve(settings) as client:
        assert "OffProbe" not in operations(await scrape(client))


async def test_metrics_answer_while_the_database_is_gone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposition, "FIGURES_TTL", 0.5)  # the figures are kept for a while
    async with serve(settings) as client:
        assert value(await scrape(client), "scriptlabs_database_up") == 1
        assert (await client.post("/graphql", json={"query": "{ me { id } }"})).status_code == 200
        app = client._transport.app  # type: ignore[attr-defined]
        app.state.services.pool.pool.terminate()  # as if the database went away
        started = time.monotonic()
        while True:
            found = await scrape(client)
            if value(found, "scriptlabs_database_up") == 0:
                break
            assert time.monotonic() - started < 15, "database_up stayed 1"
            await asyncio.sleep(0.2)
        assert value(found, "scriptlabs_db_table_cache_hit_ratio") is None
        assert "scriptlabs_graphql_requests_total" in names(found)
        assert "scriptlabs_db_pool_connections_in_use" in names(found)


# -- the request id and the access line


async def test_each_answer_has_a_request_id_and_one_access_line(
    client: httpx.AsyncClient, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    user = await api.sign_up()
    with caplog.at_level(logging.INFO, logger="scriptlabs.access"):
        response = await api.post("query AccessProbe { me { id } }", token=user.token)
    assert response.status_code == 200
    rid = response.headers["x-request-id"]
    assert len(rid) == 32 and int(rid, 16) >= 0
    lines = [r for r in caplog.records if r.name == "scriptlabs.access"]
    assert len(lines) == 1
    line = json.loads(JsonFormatter().format(lines[0]))
    assert line["level"] == "info"
    assert line["method"] == "POST"
    assert line["path"] == "/graphql"
    assert line["operationName"] == "AccessProbe"
    assert line["outcome"] == "ok"
    assert line["status"] == 200
    assert line["client"] == "127.0.0.1"
    assert isinstance(line["durationMs"], float) and line["durationMs"] >= 0
    assert line["ts"].endswith("Z")
    other = await client.get("/health/live")
    assert other.headers["x-request-id"] != rid


async def test_the_request_id_of_a_fault_is_the_response_header(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    own = await create_database(database, f"scriptlabs_fault_{uuid.uuid4().hex[:8]}")
    faulty = replace(settings, database_url=own.dsn, database_admin_url=own.admin_dsn)
    async with serve(faulty) as client:
        api = Api(client)
        user = await api.sign_up()
        admin = await asyncpg.connect(own.admin_dsn)
        try:  # a schema the API does not expect: its statements fail, a fault of ours
            await admin.execute("alter table public.labs rename to labs_elsewhere")
        finally:
            await admin.close()
        caplog.handler.addFilter(RequestIdFilter())  # as serve's log configuration has it
        with caplog.at_level(logging.ERROR):
            response = await api.post(
                'mutation { createLab(input: {title: "T", author: "A"}) { id } }',
                token=user.token,
            )
    rid = response.headers["x-request-id"]
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR", response.text
    assert error["extensions"].get("requestId") == rid, response.text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged and all(r.request_id == rid for r in logged)  # type: ignore[attr-defined]


async def test_logs_hold_no_password_token_address_or_mail_body(
    mail_api: Api, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await mail_api.sign_up()
    signed_in = await mail_api.ok(SIGN_IN, {"e": user.email, "p": user.password})
    await mail_api.ok(REQUEST, {"e": user.email})
    (message,) = await smtp_sink.wait_for(user.email)
    token = token_in(message)
    await mail_api.ok(STATUS, {"t": token})
    reset = await mail_api.ok(RESET, {"t": token, "p": NEW_PASSWORD})
    wrong = await mail_api.gql(SIGN_IN, {"e": user.email, "p": "not the password"})
    assert wrong["errors"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    secrets = [
        user.email,
        user.email.split("@")[0],
        user.password,
        NEW_PASSWORD,
        "not the password",
        user.token,
        user.refresh_token,
        signed_in["signIn"]["accessToken"],
        reset["resetPassword"]["accessToken"],
        reset["resetPassword"]["refreshToken"],
        token,
        body.get_content().strip().splitlines()[0],
    ]
    formatter = JsonFormatter()
    # everything logged in this process but the test's SMTP server's own lines (`mail.log`)
    written = "\n".join(formatter.format(r) for r in caplog.records if r.name != "mail.log")
    assert "scriptlabs.access" in written  # the access lines were captured
    for secret in secrets:
        assert secret not in written, secret


# -- several workers


@pytest.fixture
async def two_workers(database: Database) -> AsyncIterator[tuple[str, list[str]]]:
    """`scriptlabs serve --workers 2` on a free port, and its standard error's lines."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": "w" * 40,
        "LOG_FORMAT": "json",
        "DB_POOL_MAX": "4",
        "DB_POOL_MIN": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scriptlabs",
        "serve",
        "--workers",
        "2",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.create_task(read())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base) as probe:
            while True:
                assert process.returncode is None, "\n".join(lines)
                try:
                    if (await probe.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "\n".join(lines)
                await asyncio.sleep(0.2)
        yield base, lines
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
        await reader


async def test_two_workers_report_the_same_sums_whatever_worker_answers(
    two_workers: tuple[str, list[str]],
) -> None:
    base, lines = two_workers
    name = f"Workers{uuid.uuid4().hex[:8]}"
    document: dict[str, Any] = {"query": f"query {name} {{ me {{ id }} }}"}

    async def one() -> None:
        # a connection of its own each time, so that both workers get some
        async with httpx.AsyncClient(base_url=base) as fresh:
            response = await fresh.post("/graphql", json=document)
            assert response.status_code == 200

    await asyncio.gather(*(one() for _ in range(20)))
    answers = set()
    for _ in range(6):
        async with httpx.AsyncClient(base_url=base) as fresh:
            response = await fresh.get("/metrics")
        assert response.status_code == 200
        found = samples(response.text)
        answers.add(requests_of(found, name, "ok"))
        assert value(found, "scriptlabs_db_pool_connections_max") == 14  # 4 + 1 + 1 + 1 a worker
        assert value(found, "scriptlabs_database_up") == 1
    assert answers == {20.0}
    access = [json.loads(line) for line in lines if '"logger":"scriptlabs.access"' in line]
    mine = [a for a in access if a.get("operationName") == name]
    assert len(mine) == 20
    assert all(a["status"] == 200 and len(a["requestId"]) == 32 for a in mine)


async def test_with_json_logs_and_no_smtp_a_reset_link_is_not_logged(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    own = await create_database(database, f"scriptlabs_nosmtp_{uuid.uuid4().hex[:8]}")
    server = replace(
        settings,
        database_url=own.dsn,
        database_admin_url=own.admin_dsn,
        smtp_host=None,
        log_format="json",
        mail_poll_seconds=0.2,
    )
    caplog.set_level(logging.INFO)
    async with serve(server) as client:
        api = Api(client)
        user = await api.sign_up()
        await api.ok(REQUEST, {"e": user.email})
        started = time.monotonic()
        while not any("dropped unsent" in r.getMessage() for r in caplog.records):
            assert time.monotonic() - started < 10, "the mail was not handled"
            await asyncio.sleep(0.05)
    written = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "reset-password" not in written
    assert user.email not in written


def test_a_dead_workers_pool_gauges_leave_the_sums(tmp_path: Path) -> None:
    # a worker that set its share of the gauges, then died without saying so
    script = (
        "from scriptlabs.telemetry import metrics\n"
        "assert metrics.MULTIPROCESS\n"
        "metrics.set_pool(3, 1, 4, 4)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    def in_use() -> float | None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        return registry.get_sample_value("scriptlabs_db_pool_connections_in_use")

    assert in_use() == 3
    forget_dead_workers(str(tmp_path))
    assert in_use() in (None, 0)
    assert not list(tmp_path.glob("gauge_live*"))


def test_log_lines_as_json_and_as_text() -> None:
    rid = "ab" * 16
    record = logging.LogRecord(
        "scriptlabs.access", logging.INFO, __file__, 1, "GET /x 200", None, None
    )
    record.__dict__.update(status=200, durationMs=1.5, request_id=rid)
    line = json.loads(JsonFormatter().format(record))
    assert line["requestId"] == rid
    assert (line["status"], line["durationMs"], line["message"]) == (200, 1.5, "GET /x 200")
    text = TextFormatter().format(record)
    assert (
        text
        == f"INFO scriptlabs.access: GET /x 200 status=200 durationMs=1.5 requestId={'ab' * 16}"
    )
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord(
            "scriptlabs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    formatted = json.loads(JsonFormatter().format(failed))
    assert formatted["level"] == "error"
    assert "ValueError: boom" in formatted["exc"]


async def test_json_access_lines_are_logging_s_own_lines_written_once_a_loop_turn() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.Logger("scriptlabs.access", logging.INFO)  # a tree of its own
    logger.addHandler(handler)
    lines = JsonLines()
    rid = "cd" * 16
    fields = {"method": "POST", "path": "/graphql", "operationName": None, "status": 200}
    token = REQUEST_ID.set(rid)
    try:
        assert lines.write(logger, "POST /graphql 200", fields)
        assert lines.write(logger, "POST /graphql 200", {**fields, "status": 400})
        assert stream.getvalue() == ""  # at the end of the loop's turn, both at once
        await asyncio.sleep(0)
        written = [json.loads(line) for line in stream.getvalue().splitlines()]
        record = logging.LogRecord(
            logger.name, logging.INFO, __file__, 1, "POST /graphql 200", None, None
        )
        record.__dict__.update(fields)
        assert handler.filter(record)
        expected = json.loads(handler.format(record))
        assert [list(w) for w in written] == [list(expected)] * 2  # same keys, same order
        assert {**written[0], "ts": None} == {**expected, "ts": None}
        assert written[1]["status"] == 400 and written[1]["requestId"] == rid
    finally:
        REQUEST_ID.reset(token)

    # any other configuration goes through logging: the caller logs the record itself
    logger.addHandler(logging.StreamHandler(io.StringIO()))
    assert not lines.write(logger, "x", {})
    logger.handlers = [handler]
    handler.setFormatter(TextFormatter())
    assert not lines.write(logger, "x", {})
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING)
    assert not lines.write(logger, "x", {})
    handler.setLevel(logging.NOTSET)
    assert lines.write(logger, "x", {})  # outside a turn of the loop: written at once
    lines.flush()
    assert stream.getvalue().count("\n") == 3
