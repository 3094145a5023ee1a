"""labEvents latency: 1,000 WebSocket subscribers on one worker while writes go on.

    .venv/bin/python bench/events.py [--subscribers 1000] [--users 50] [--rate 20] [--duration 30]

Starts an embedded PostgreSQL of its own (`--data-dir`, default /tmp/scriptlabs-bench-events,
made and migrated on first use), `scriptlabs serve --workers 1` on a free port against it, signs
up `--users` users and opens `--subscribers` sockets spread evenly over them, each subscribed
to `labEvents { type id lab { id title rating updatedAt } }` (so every CREATED and UPDATED event
is read again under the subscriber's role). A writer then changes labs of random users, as
the database owner on a connection of its own, `--rate` transactions a second for
`--duration` seconds: 60 % create, 30 % update, 10 % delete, one lab each.

Latency of one delivery = the time the subscriber's `next` message is received minus the time
just before the writer sent COMMIT (so it includes the commit itself: an upper bound). Each
event reaches the subscribers of its user (subscribers/users of them). Prints p50, p90, p99 and
max over every delivery, and the deliveries missing (any is a failure). The subscribers, the
writer and the server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scriptlabs.db.embedded import EmbeddedPostgres  # noqa: E402
from scriptlabs.db.migrate import migrate  # noqa: E402

SECRET = "bench-events-secret-long-enough-for-hs256-000000"
QUERY = "subscription { labEvents { type id lab { id title rating updatedAt } } }"
SUBSCRIBE = {"query": QUERY}
SIGN_UP = (
    "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) "
    "{ accessToken user { id } } }"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Deliveries:
    def __init__(self) -> None:
        self.committed: dict[tuple[str, str], float] = {}
        self.latencies: list[float] = []
        self.unknown = 0
        self.errors = 0


async def subscriber(
    url: str, token: str, ready: asyncio.Event, out: Deliveries, stop: asyncio.Event
) -> int:
    received = 0
    async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(orjson.dumps(init).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": SUBSCRIBE}).decode())
        await ws.send('{"type":"ping"}')
        while orjson.loads(await ws.recv())["type"] != "pong":
            pass
        ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.perf_counter()
            message = orjson.loads(raw)
            if message.get("type") != "next" or message["payload"].get("errors"):
                out.errors += 1
                continue
            event = message["payload"]["data"]["labEvents"]
            sent = out.committed.get((event["type"], event["id"]))
            if sent is None:
                out.unknown += 1
                continue
            out.latencies.append(now - sent)
            received += 1
    return received


async def writer(
    admin_dsn: str, users: list[uuid.UUID], rate: float, duration: float, out: Deliveries
) -> int:
    conn = await asyncpg.connect(admin_dsn)
    labs: dict[uuid.UUID, list[uuid.UUID]] = {u: [] for u in users}
    events = 0
    rng = random.Random(7)
    start = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - start) < duration:
            target = start + events / rate
            if target > time.perf_counter():
                await asyncio.sleep(target - time.perf_counter())
            user = rng.choice(users)
            roll = rng.random()
            tx = conn.transaction()
            await tx.start()
            if roll < 0.6 or not labs[user]:
                lab = await conn.fetchval(
                    "insert into public.labs (user_id, title, author, rating)"
                    " values ($1, $2, 'Bench Author', 3) returning id",
                    user,
                    f"bench lab {events}",
                )
                kind = "CREATED"
                labs[user].append(lab)
            elif roll < 0.9:
                lab = rng.choice(labs[user])
                await conn.execute(
                    "update public.labs set rating = $3 where user_id = $1 and id = $2",
                    user,
                    lab,
                    rng.randint(1, 5),
                )
                kind = "UPDATED"
            else:
                lab = labs[user].pop(rng.randrange(len(labs[user])))
                await conn.execute(
                    "delete from public.labs where user_id = $1 and id = $2", user, lab
                )
                kind = "DELETED"
            out.committed[(kind, str(lab))] = time.perf_counter()
            await tx.commit()
            events += 1
        del elapsed
    finally:
        await conn.close()
    return events


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=ROOT,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="write transactions a second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--data-dir", default="/tmp/scriptlabs-bench-events")
    args = parser.parse_args()

    cluster = EmbeddedPostgres(Path(args.data_dir))
    with cluster:
        await migrate(cluster.admin_dsn())
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": cluster.dsn(),
            "JWT_SECRET": SECRET,
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "8192",
            "ARGON2_PARALLELISM": "1",
            "RATE_LIMIT_SIGNUP_IP": "0",
            "PYTHONPATH": str(ROOT),
        }
        server = start_server(port, env)
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(600):
                    try:
                        if (await http.get("/health/live")).is_success:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                tokens: list[tuple[uuid.UUID, str]] = []
                for _ in range(args.users):
                    email = f"events-{uuid.uuid4().hex[:12]}@bench.example"
                    body = {"query": SIGN_UP, "variables": {"e": email, "p": "bench password"}}
                    data = (await http.post("/graphql", json=body)).json()["data"]["signUp"]
                    tokens.append((uuid.UUID(data["user"]["id"]), data["accessToken"]))
            out = Deliveries()
            stop = asyncio.Event()
            readies = [asyncio.Event() for _ in range(args.subscribers)]
            url = f"ws://127.0.0.1:{port}/graphql"
            tasks = []
            opened = time.perf_counter()
            for k in range(args.subscribers):
                _, token = tokens[k % len(tokens)]
                tasks.append(asyncio.create_task(subscriber(url, token, readies[k], out, stop)))
                if k % 50 == 49:
                    await asyncio.sleep(0.05)  # not every handshake at once
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
            print(
                f"{args.subscribers} subscribers over {args.users} users ready in "
                f"{time.perf_counter() - opened:.1f} s",
                flush=True,
            )
            events = await writer(
                cluster.admin_dsn(), [u for u, _ in tokens], args.rate, args.duration, out
            )
            await asyncio.sleep(3)  # the last deliveries
            stop.set()
            received = sum(await asyncio.gather(*tasks))
        finally:
            server.terminate()
            server.wait(30)
    per_event = args.subscribers / args.users
    expected = round(events * per_event)
    ms = [x * 1000 for x in out.latencies]
    result: dict[str, Any] = {
        "events": events,
        "deliveries": received,
        "expected": expected,
        "missing": expected - received,
        "errors": out.errors,
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 0.90), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
