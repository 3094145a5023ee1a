"""labEvents over graphql-transport-ws, against a real uvicorn on a free port (in this process,
or two `scriptlabs serve` processes on one database), with the `websockets` client.

A subscription is active once the server has answered a `ping` sent after its `subscribe`
(the socket's messages are handled in order): the tests use that as their barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from graphql import get_introspection_query
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scriptlabs.app import create_app
from scriptlabs.auth.tokens import mint_access_token
from scriptlabs.config import Settings, SettingsError
from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate
from scriptlabs.realtime.listener import LISTENER_NAME, QUEUE_SIZE, LabEventNote, Subscriber
from tests.conftest import JWT_SECRET, Api, Database, User, code, free_port, in_process_server
from tests.test_metrics import samples, value

LAB_EVENTS = "subscription { labEvents { type id lab { id title rating } } }"
CREATE = "mutation($i: CreateLabInput!) { createLab(input: $i) { id } }"
UPDATE = "mutation($id: UUID!, $i: UpdateLabInput!) { updateLab(id: $id, input: $i) { id } }"
DELETE = "mutation($id: UUID!) { deleteLab(id: $id) }"
IMPORT = "mutation($l: [CreateLabInput!]!) { importLabs(labs: $l) { ids } }"


@dataclass
class Server:
    app: Starlette
    http: str
    ws: str


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Server]:
    """The app under a real uvicorn on a free port, in this event loop."""
    app = create_app(settings)
    async with in_process_server(app) as port:
        yield Server(app, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql")


@pytest.fixture(scope="module")
def ws_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        ws_session_check_seconds=0.3,
        ws_init_timeout_seconds=1.0,
        ws_max_subscriptions_per_socket=3,
    )


@pytest.fixture(scope="module")
async def server(ws_settings: Settings) -> AsyncIterator[Server]:
    async with running(ws_settings) as s:
        yield s


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.http) as client:
        yield Api(client)


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def barrier(ws: ClientConnection) -> None:
    """Wait until the server has handled every message sent so far."""
    await ws.send(orjson.dumps({"type": "ping"}).decode())
    while (await receive(ws))["type"] != "pong":
        pass


@contextlib.asynccontextmanager
async def socket(url: str, token: str | None) -> AsyncIterator[ClientConnection]:
    """A socket past connection_ack."""
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        assert await receive(ws) == {"type": "connection_ack"}
        yield ws


async def subscribe(ws: ClientConnection, sub_id: str = "1", query: str = LAB_EVENTS) -> None:
    message = {"id": sub_id, "type": "subscribe", "payload": {"query": query}}
    await ws.send(orjson.dumps(message).decode())
    await barrier(ws)


async def event(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The next `next` message's labEvents."""
    message = await receive(ws, within)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    value: dict[str, Any] = message["payload"]["data"]["labEvents"]
    return value


async def closed_with(ws: ClientConnection, within: float = 5.0) -> int | None:
    """The close code the server sent, once it has closed (messages before it are skipped)."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("not closed")  # pragma: no cover


async def create(api: Api, user: User, title: str, rating: int | None = None) -> str:
    data = await api.ok(
        CREATE, {"i": {"title": title, "author": "A. Author", "rating": rating}}, token=user.token
    )
    lab_id: str = data["createLab"]["id"]
    return lab_id


# -- events


async def test_own_creates_updates_and_deletes_arrive_in_order(http: Api, server: Server) -> None:
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws)
        lab_id = await create(http, user, "Dune", 4)
        assert await event(ws) == {
            "type": "CREATED",
            "id": lab_id,
            "lab": {"id": lab_id, "title": "Dune", "rating": 4},
        }
        await http.ok(UPDATE, {"id": lab_id, "i": {"rating": 5}}, token=user.token)
        assert await event(ws) == {
            "type": "UPDATED",
            "id": lab_id,
            "lab": {"id": lab_id, "title": "Dune", "rating": 5},
        }
        await http.ok(DELETE, {"id": lab_id}, token=user.token)
        assert await event(ws) == {"type": "DELETED", "id": lab_id, "lab": None}


ALL_FIELDS = (
    "id title author category publicationYear isbn rating readingStatus notes coverUrl"
    " createdAt updatedAt"
)


async def test_an_events_lab_is_answered_as_the_lab_query_answers_it(
    http: Api, server: Server
) -> None:
    user = await http.sign_up()
    full = {
        "title": "Full",
        "author": "Every Field",
        "category": "Tests",
        "publicationYear": 1999,
        "isbn": "978-0-306-40615-7",
        "rating": 3,
        "readingStatus": "READING",
        "notes": "n\u00f6tes",
        "coverUrl": "https://example.com/c.png",
    }
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, query=f"subscription {{ labEvents {{ lab {{ {ALL_FIELDS} }} }} }}")
        lab_id = (await http.ok(CREATE, {"i": full}, token=user.token))["createLab"]["id"]
        got = await event(ws)
        read = await http.ok(
            f"query($id: UUID!) {{ lab(id: $id) {{ {ALL_FIELDS} }} }}",
            {"id": lab_id},
            token=user.token,
        )
        assert got["lab"] == read["lab"]
        assert got["lab"]["isbn"] == "9780306406157"


async def test_an_import_of_n_labs_is_n_created_events(http: Api, server: Server) -> None:
    user = await http.sign_up()
    labs = [{"title": f"Imported {k}", "author": "B"} for k in range(5)]
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, query="subscription { labEvents { type id } }")
        data = await http.ok(IMPORT, {"l": labs}, token=user.token)
        ids = data["importLabs"]["ids"]
        got = [await event(ws) for _ in ids]
        assert sorted(e["id"] for e in got) == sorted(ids)
        assert {e["type"] for e in got} == {"CREATED"}
        await barrier(ws)  # and nothing more


async def test_an_import_of_the_most_labs_at_once_reaches_a_subscriber_whole(
    http: Api, server: Server
) -> None:
    user = await http.sign_up()
    labs = [{"title": f"Bulk {k}", "author": "C"} for k in range(1000)]  # IMPORT_MAX
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, query="subscription { labEvents { id } }")
        data = await http.ok(IMPORT, {"l": labs}, token=user.token)
        got = {(await event(ws))["id"] for _ in range(1000)}
        assert got == set(data["importLabs"]["ids"])
        await barrier(ws)  # still open


async def test_another_users_events_never_arrive(http: Api, server: Server) -> None:
    watcher, other = await http.sign_up(), await http.sign_up()
    async with socket(server.ws, watcher.token) as ws, socket(server.ws, other.token) as theirs_ws:
        await subscribe(ws)
        await subscribe(theirs_ws)  # both watched on this worker
        theirs = await create(http, other, "Not yours")
        await http.ok(UPDATE, {"id": theirs, "i": {"rating": 1}}, token=other.token)
        await http.ok(DELETE, {"id": theirs}, token=other.token)
        assert [(await event(theirs_ws))["type"] for _ in range(3)] == [
            "CREATED",
            "UPDATED",
            "DELETED",
        ]
        mine = await create(http, watcher, "Mine")
        assert (await event(ws))["id"] == mine  # the first event is the watcher's own


async def test_a_rolled_back_change_sends_no_event(
    http: Api, server: Server, admin: asyncpg.Connection
) -> None:
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws)
        # an import with a bad row: all or nothing, so its good rows are rolled back
        bad = [{"title": "Good", "author": "A"}, {"title": "Bad", "author": "A", "rating": 9}]
        assert code(await http.gql(IMPORT, {"l": bad}, token=user.token)) == "BAD_USER_INPUT"
        # and a transaction that inserts, then rolls back
        tx = admin.transaction()
        await tx.start()
        await admin.execute(
            "insert into public.labs (user_id, title, author) values ($1, 'Rolled back', 'A')",
            uuid.UUID(user.id),
        )
        await tx.rollback()
        kept = await create(http, user, "Kept")
        assert (await event(ws))["id"] == kept


async def test_a_subscription_without_lab_reads_nothing_and_one_with_fragments_works(
    http: Api, server: Server
) -> None:
    user = await http.sign_up()
    query = (
        "subscription S { labEvents { ...E } } fragment E on LabEvent { __typename type"
        " lab { ... on Lab { title } } }"
    )
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, query=query)
        await create(http, user, "Fragmented")
        assert await event(ws) == {
            "__typename": "LabEvent",
            "type": "CREATED",
            "lab": {"title": "Fragmented"},
        }


# -- authentication and the token's lifetime


async def test_a_bad_token_closes_the_socket_with_4403(server: Server) -> None:
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        payload = {"Authorization": "Bearer not-a-token"}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        assert await closed_with(ws) == 4403


async def test_metrics_count_sockets_subscriptions_events_and_closes(
    http: Api, server: Server
) -> None:
    async def figure(name: str, **labels: str) -> float:
        response = await http.client.get("/metrics")
        assert response.status_code == 200
        return value(samples(response.text), name, **labels) or 0.0

    async def until(expected: float, name: str, **labels: str) -> None:
        found = await figure(name, **labels)
        deadline = time.monotonic() + 5
        while found != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            found = await figure(name, **labels)
        assert found == expected, (name, labels)

    sockets = await figure("scriptlabs_websockets_open")
    subscriptions = await figure("scriptlabs_subscriptions_active")
    events = await figure("scriptlabs_lab_events_delivered_total")
    refused = await figure("scriptlabs_websocket_closes_total", code="4403")
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        await until(sockets + 1, "scriptlabs_websockets_open")
        await until(subscriptions + 2, "scriptlabs_subscriptions_active")
        await create(http, user, "Counted")
        await event(ws)
        await event(ws)
        await until(events + 2, "scriptlabs_lab_events_delivered_total")
        await ws.send(orjson.dumps({"id": "a", "type": "complete"}).decode())
        await barrier(ws)
        await until(subscriptions + 1, "scriptlabs_subscriptions_active")
    await until(subscriptions, "scriptlabs_subscriptions_active")
    await until(sockets, "scriptlabs_websockets_open")
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        payload = {"Authorization": "Bearer not-a-token"}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        assert await closed_with(ws) == 4403
    await until(refused + 1, "scriptlabs_websocket_closes_total", code="4403")


async def test_without_a_token_subscribing_fails_with_unauthenticated(server: Server) -> None:
    async with socket(server.ws, None) as ws:
        message = {"id": "a", "type": "subscribe", "payload": {"query": LAB_EVENTS}}
        await ws.send(orjson.dumps(message).decode())
        answer = await receive(ws)
        assert answer["type"] == "error" and answer["id"] == "a", answer
        assert [e["extensions"]["code"] for e in answer["payload"]] == ["UNAUTHENTICATED"]


async def test_signing_out_ends_the_subscription(http: Api, server: Server) -> None:
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws)
        assert (await http.ok("mutation { signOut }", token=user.token))["signOut"] is True
        assert await closed_with(ws) == 4403


async def test_the_subscription_ends_when_its_token_expires(http: Api, server: Server) -> None:
    user = await http.sign_up()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    short, exp = mint_access_token(
        JWT_SECRET,
        user_id=uuid.UUID(user.id),
        email=user.email,
        session_id=uuid.UUID(claims["session_id"]),
        issuer=claims["iss"],
        expires_in=2,
    )
    async with socket(server.ws, short) as ws:
        await subscribe(ws)
        lab_id = await create(http, user, "Before expiry")
        assert (await event(ws))["id"] == lab_id
        assert await closed_with(ws, within=10) == 4403
        assert time.time() >= exp - 0.5  # not before it expired


async def test_a_token_of_an_ended_session_is_refused_at_init(http: Api, server: Server) -> None:
    user = await http.sign_up()
    await http.ok("mutation { signOut }", token=user.token)
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        payload = {"Authorization": f"Bearer {user.token}"}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        assert await closed_with(ws) == 4403


# -- the protocol, and hostile clients


async def send_raw(ws: ClientConnection, message: Any) -> None:
    await ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())


@pytest.mark.parametrize(
    ("messages", "close_code"),
    [
        ([{"type": "subscribe", "id": "1", "payload": {"query": LAB_EVENTS}}], 4401),
        (["not json"], 4400),
        ([[1, 2]], 4400),
        ([{"type": "connection_init"}, {"type": "connection_init"}], 4429),
        ([{"type": "connection_init"}, {"type": "teleport"}], 4400),
        ([{"type": "connection_init"}, {"type": "subscribe", "id": "1"}], 4400),
        ([{"type": "connection_init", "payload": {"x": "y" * (1024 * 1024)}}], 4400),
    ],
)
async def test_protocol_faults_close_the_socket(
    server: Server, messages: list[Any], close_code: int
) -> None:
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        for message in messages:
            await send_raw(ws, message)
        assert await closed_with(ws) == close_code


async def test_no_connection_init_closes_with_4408(server: Server) -> None:
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        assert await closed_with(ws, within=5) == 4408


async def test_a_subscription_id_in_use_closes_with_4409(http: Api, server: Server) -> None:
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws, "same")
        await send_raw(ws, {"id": "same", "type": "subscribe", "payload": {"query": LAB_EVENTS}})
        assert await closed_with(ws) == 4409


async def test_queries_and_oversized_documents_are_refused_over_the_socket(
    http: Api, server: Server
) -> None:
    user = await http.sign_up()
    huge = "subscription { labEvents { " + "type " * 20_000 + "} }"
    async with socket(server.ws, user.token) as ws:
        for sub_id, query, expected in [
            ("q", "{ me { id } }", "BAD_USER_INPUT"),
            ("h", huge, "QUERY_TOO_COMPLEX"),
            ("v", "subscription { labEvents { nope } }", None),
        ]:
            await send_raw(ws, {"id": sub_id, "type": "subscribe", "payload": {"query": query}})
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["id"] == sub_id, answer
            if expected:
                assert answer["payload"][0]["extensions"]["code"] == expected, answer
        # the socket still works
        await subscribe(ws)
        lab_id = await create(http, user, "Still here")
        assert (await event(ws))["id"] == lab_id


async def test_a_flood_of_subscribes_is_capped_and_others_are_still_served(
    http: Api, server: Server
) -> None:
    user, bystander = await http.sign_up(), await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        for k in range(300):
            await send_raw(
                ws, {"id": f"s{k}", "type": "subscribe", "payload": {"query": LAB_EVENTS}}
            )
        refused = 0
        await send_raw(ws, {"type": "ping"})
        while (message := await receive(ws))["type"] != "pong":
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == "FORBIDDEN"
            refused += 1
        assert refused == 300 - 3  # WS_MAX_SUBSCRIPTIONS_PER_SOCKET
        # meanwhile, and after, another client is answered
        assert (await http.ok("{ me { id } }", token=bystander.token))["me"]["id"] == bystander.id
        # a completed subscription frees its place
        await send_raw(ws, {"id": "s0", "type": "complete"})
        await subscribe(ws, "again")
        lab_id = await create(http, user, "Three of them")
        got = {(await receive(ws))["id"] for _ in range(3)}
        assert got == {"s1", "s2", "again"}, lab_id


def test_the_session_check_interval_keeps_within_the_contracts_30_seconds() -> None:
    env = {"DATABASE_URL": "postgresql://x/y", "JWT_SECRET": JWT_SECRET}
    assert Settings.from_env(env).ws_session_check_seconds == 15
    assert (
        Settings.from_env({**env, "WS_SESSION_CHECK_SECONDS": "20"}).ws_session_check_seconds == 20
    )
    with pytest.raises(SettingsError, match="WS_SESSION_CHECK_SECONDS"):
        Settings.from_env({**env, "WS_SESSION_CHECK_SECONDS": "21"})


def test_a_subscriber_that_does_not_keep_up_is_dropped_not_grown() -> None:
    overflowed: list[bool] = []
    sub = Subscriber(uuid.uuid4(), lambda: overflowed.append(True))
    note = LabEventNote("CREATED", sub.user_id, uuid.uuid4())
    for _ in range(QUEUE_SIZE * 3):
        sub.offer(note)
    assert sub.queue.qsize() == QUEUE_SIZE
    assert overflowed == [True]  # told once


async def test_the_standard_introspection_query_shows_the_subscription_type(http: Api) -> None:
    data = await http.ok(get_introspection_query(descriptions=True))
    schema = data["__schema"]
    assert schema["subscriptionType"]["name"] == "Subscription"
    types = {t["name"]: t for t in schema["types"]}
    fields = types["Subscription"]["fields"]
    assert [(f["name"], f["type"]["kind"], f["type"]["ofType"]["name"]) for f in fields] == [
        ("labEvents", "NON_NULL", "LabEvent")
    ]
    assert [v["name"] for v in types["LabEventType"]["enumValues"]] == [
        "CREATED",
        "UPDATED",
        "DELETED",
    ]


async def test_many_sockets_at_once_all_get_the_event_and_others_are_served(
    http: Api, server: Server
) -> None:
    user, bystander = await http.sign_up(), await http.sign_up()
    count = 60
    async with contextlib.AsyncExitStack() as stack:

        async def one() -> ClientConnection:
            ws = await stack.enter_async_context(socket(server.ws, user.token))
            await subscribe(ws)
            return ws

        sockets, me = await asyncio.gather(
            asyncio.gather(*(one() for _ in range(count))),
            http.ok("{ me { id } }", token=bystander.token),
        )
        assert me["me"]["id"] == bystander.id
        lab_id = await create(http, user, "For all of them")
        got = await asyncio.gather(*(event(ws) for ws in sockets))
        assert {e["id"] for e in got} == {lab_id} and len(got) == count


async def test_graphiql_sends_subscriptions_over_the_websocket(http: Api) -> None:
    page = await http.client.get("/graphql", headers={"accept": "text/html"})
    assert "subscriptionUrl: socket.href" in page.text
    assert "subscription LabEvents" in page.text
    # the bundled GraphiQL carries the graphql-ws client (graphql-transport-ws) it then uses,
    # with the Headers tab as the connection_init payload
    script = await http.client.get("/graphiql/graphiql.min.js")
    assert script.status_code == 200
    assert "graphql-transport-ws" in script.text


async def test_subscriptions_per_user_are_capped_across_sockets(
    ws_settings: Settings, api: Api
) -> None:
    user = await api.sign_up()
    capped = replace(ws_settings, ws_max_subscriptions_per_user=4)
    async with running(capped) as s, socket(s.ws, user.token) as a, socket(s.ws, user.token) as b:
        for k in range(3):
            await subscribe(a, f"a{k}")
        await subscribe(b, "b0")
        await send_raw(b, {"id": "b1", "type": "subscribe", "payload": {"query": LAB_EVENTS}})
        refused = await receive(b)
        assert (refused["id"], refused["type"]) == ("b1", "error")
        assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"


# -- the database going away, shut-down


async def test_a_lost_listener_closes_subscriptions_and_listens_again(
    http: Api, server: Server, admin: asyncpg.Connection
) -> None:
    # events committed while the listener is away are never delivered: a subscription must
    # not go on as if none were missed, so its socket closes and the client subscribes again
    user = await http.sign_up()
    listener = server.app.state.listener
    before = listener.reconnects
    async with socket(server.ws, user.token) as idle, socket(server.ws, user.token) as ws:
        await subscribe(ws)
        killed = await admin.fetchval(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = $1",
            LISTENER_NAME,
        )
        assert killed >= 1
        assert await closed_with(ws) == 1013
        await barrier(idle)  # a socket without subscriptions stays
        deadline = time.monotonic() + 15
        while listener.reconnects == before or not listener.listening:
            assert time.monotonic() < deadline, "the listener did not come back"
            await asyncio.sleep(0.05)
    async with socket(server.ws, user.token) as again:
        await subscribe(again)
        lab_id = await create(http, user, "After the outage")
        assert (await event(again))["id"] == lab_id


async def test_a_database_restart_closes_subscriptions_and_they_work_again(
    ws_settings: Settings, tmp_path: Path
) -> None:
    cluster = EmbeddedPostgres(tmp_path / "pg", fast=True)
    await asyncio.to_thread(cluster.__enter__)
    try:
        await migrate(cluster.admin_dsn())
        own = replace(
            ws_settings, database_url=cluster.dsn(), database_admin_url=cluster.admin_dsn()
        )
        async with running(own) as s, httpx.AsyncClient(base_url=s.http) as c:
            api = Api(c)
            user = await api.sign_up()
            async with socket(s.ws, user.token) as ws:
                await subscribe(ws)
                await asyncio.to_thread(cluster.stop)
                assert await closed_with(ws) == 1013  # closed cleanly, not left hanging
            await asyncio.to_thread(cluster.start)
            # requests are refused until the server sees the database again (no restart of
            # its own); then a new socket subscribes (waiting, if need be, for the listener to
            # be back) and gets the next event
            deadline = time.monotonic() + 20
            while True:
                response = await api.post(
                    CREATE, {"i": {"title": "Back", "author": "A"}}, token=user.token
                )
                if response.status_code == 200 and "errors" not in response.json():
                    break
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, response.text
                await asyncio.sleep(0.1)
            async with socket(s.ws, user.token) as ws:
                await subscribe(ws)
                result = await api.ok(
                    CREATE, {"i": {"title": "Again", "author": "A"}}, token=user.token
                )
                assert (await event(ws))["id"] == result["createLab"]["id"]
    finally:
        await asyncio.to_thread(cluster.__exit__, None, None, None)


async def test_the_apps_own_shutdown_closes_its_sockets_with_1001(
    http: Api, server: Server
) -> None:
    # what the lifespan's exit does for sockets the server has not closed itself
    user = await http.sign_up()
    async with socket(server.ws, user.token) as ws:
        await subscribe(ws)
        sockets = server.app.state.sockets
        assert len(sockets.sockets) >= 1
        await sockets.close_all()
        assert await closed_with(ws) == 1001


async def test_shutting_down_closes_every_subscription_socket(
    ws_settings: Settings, api: Api
) -> None:
    user = await api.sign_up()
    async with contextlib.AsyncExitStack() as stack:
        async with running(ws_settings) as s:
            ws = await stack.enter_async_context(socket(s.ws, user.token))
            await subscribe(ws)
        # the server has stopped: the socket got its close frame before the process went on
        assert await closed_with(ws) in (1001, 1012)


# -- two processes on one database


_LOGS: dict[int, Any] = {}  # a served process's log file, by pid


def _log_of(proc: subprocess.Popen[bytes]) -> str:
    log = _LOGS[proc.pid]
    log.seek(0)
    text: str = log.read().decode(errors="replace")
    return text[-4000:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)
    _LOGS.pop(proc.pid).close()


def _serve(settings: Settings, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "JWT_SECRET": settings.jwt_secret or "",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8192",
        "ARGON2_PARALLELISM": "1",
        "RATE_LIMIT_SIGNUP_IP": "0",
        "RATE_LIMIT_SIGNIN_IP": "0",
        "RATE_LIMIT_SIGNIN_EMAIL": "0",
        "DB_POOL_MAX": "3",
        "DB_POOL_MIN": "1",
        "PYTHONPATH": os.getcwd(),
    }
    # a file, not a pipe: uvicorn logs every WebSocket, and a full pipe would stop it
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stop)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    _LOGS[proc.pid] = log
    return proc


@pytest.fixture(scope="module")
def two_servers(settings: Settings, database: Database) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    procs = [_serve(settings, port) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, _log_of(proc)
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).is_success:
                        break
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for proc in procs:
            _stop(proc)


async def test_events_reach_subscribers_of_either_process_from_either_process(
    two_servers: list[str],
) -> None:
    first, second = two_servers
    async with (
        httpx.AsyncClient(base_url=f"http://{first}") as c1,
        httpx.AsyncClient(base_url=f"http://{second}") as c2,
    ):
        api1, api2 = Api(c1), Api(c2)
        user, other = await api1.sign_up(), await api2.sign_up()
        async with (
            socket(f"ws://{first}/graphql", user.token) as ws1,
            socket(f"ws://{second}/graphql", user.token) as ws2,
            socket(f"ws://{second}/graphql", other.token) as ws_other,
        ):
            for ws in (ws1, ws2, ws_other):
                await subscribe(ws)
            made_on_first = await create(api1, user, "Made on the first")
            made_on_second = await create(api2, user, "Made on the second")
            for ws in (ws1, ws2):
                # (how fast: bench/events.py; a test asserts no timing)
                got = [await event(ws), await event(ws)]
                assert [e["id"] for e in got] == [made_on_first, made_on_second]
                assert got[0]["lab"]["title"] == "Made on the first"
            theirs = await create(api1, other, "The other's")
            assert (await event(ws_other))["id"] == theirs  # never the first user's


async def test_serve_with_two_workers_listens_in_each_and_delivers(
    settings: Settings, admin: asyncpg.Connection
) -> None:
    count = "select count(*) from pg_stat_activity where application_name = $1"
    before = await admin.fetchval(count, LISTENER_NAME)
    port = free_port()
    proc = _serve(settings, port, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while await admin.fetchval(count, LISTENER_NAME) < before + 2:  # one per worker
            assert proc.poll() is None, _log_of(proc)
            assert time.monotonic() < deadline, "the workers did not start listening"
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            # a worker listens to PostgreSQL (its start-up) before it binds the port
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await c.get("/health/ready")).is_success:
                        break
                assert proc.poll() is None, _log_of(proc)
                assert time.monotonic() < deadline, "the workers did not take connections"
                await asyncio.sleep(0.1)
            api = Api(c)
            user = await api.sign_up()
            async with contextlib.AsyncExitStack() as stack:
                sockets = [
                    await stack.enter_async_context(
                        socket(f"ws://127.0.0.1:{port}/graphql", user.token)
                    )
                    for _ in range(6)
                ]
                for ws in sockets:
                    await subscribe(ws)
                lab_id = await create(api, user, "Whichever worker")
                for ws in sockets:  # wherever each socket landed
                    assert (await event(ws))["id"] == lab_id
    finally:
        _stop(proc)
