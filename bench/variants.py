"""One scenario against several Script Labs servers that differ by their settings, interleaved.

    .venv/bin/python bench/variants.py --scenarios first --catalogue 1m --rounds 4 \
        p2:WORKERS=2,DB_POOL_MAX=2 p5:WORKERS=2,DB_POOL_MAX=5

Each variant is `NAME:KEY=VALUE,...`: environment settings of its `scriptlabs serve` (WORKERS
is its number of workers, default 1). All of them run at once over bench/run's database (its
data folder, catalogues and demo users); each round measures every variant and scenario in
turn, the order of the variants reversed every other round, with a short warm-up before each
measured run. Per run: req/s, p50/p90/p99/max latency (wrk) and the API's CPU per request.
The question it answers is "what does this setting change, on the same machine at the same
time", which bench/run (default settings only) does not ask.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from catalogues import CATALOGUES, load_catalogues
from harness import Server, wrk
from meter import tree_cpu
from run import body_of, database, sign_in

SCENARIOS = ("first", "filtered", "deep", "lab")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    if not name or not all("=" in item for item in settings.split(",") if item):
        raise SystemExit(f"a variant is NAME:KEY=VALUE,...: {text!r}")
    return name, dict(item.split("=", 1) for item in settings.split(",") if item)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("variants", nargs="+", help="NAME:KEY=VALUE,... (see above)")
    parser.add_argument("--scenarios", default="first", help=f"from: {', '.join(SCENARIOS)}")
    parser.add_argument("--catalogue", default="1m", choices=sorted(CATALOGUES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/scriptlabs-bench"))
    args = parser.parse_args(argv)
    scenarios = args.scenarios.split(",")
    if not set(scenarios) <= set(SCENARIOS):
        raise SystemExit(f"scenarios are from: {', '.join(SCENARIOS)}")
    variants = [parse_variant(v) for v in args.variants]

    with database(args.data_dir) as cluster:
        env = {
            **os.environ,
            "SCRIPTLABS_DATA_DIR": str(args.data_dir),
            "DATABASE_URL": cluster.dsn(),
            "DATABASE_ADMIN_URL": cluster.admin_dsn(),
        }
        for key in ("DB_POOL_MAX", "DB_POOL_MIN", "WORKERS"):
            env.pop(key, None)  # only what a variant says
        (catalogue,) = load_catalogues([args.catalogue], env, cluster.admin_dsn())
        servers: dict[str, Server] = {}
        try:
            for name, settings in variants:
                workers = int(settings.pop("WORKERS", "1"))
                servers[name] = Server(
                    f"variant {name}", {**env, **settings}, args.data_dir, workers=workers
                )
            for server in servers.values():
                server.wait_ready(timeout=180)
            sign_in(next(iter(servers.values())), [catalogue])
            for round_no in range(args.rounds):
                order = list(servers.items())
                if round_no % 2:
                    order.reverse()
                for name, server in order:
                    for scenario in scenarios:
                        body = body_of(scenario, catalogue)

                        def load(
                            seconds: float, url: str = server.url, body: dict[str, Any] = body
                        ) -> dict[str, Any]:
                            return wrk(
                                url,
                                body,
                                catalogue.token,
                                connections=args.connections,
                                threads=2,
                                duration=seconds,
                                timeout="10s",
                                check=False,
                            )

                        load(args.warmup)
                        before = tree_cpu(server.pid)
                        got = load(args.duration)
                        cpu = (tree_cpu(server.pid) - before) / max(got["requests"], 1) * 1e6
                        rate = got["requests"] / got["duration_us"] * 1e6
                        print(
                            f"round {round_no + 1} {scenario:8} {name:10} {rate:6,.0f} req/s"
                            f"  p50 {got['p50_us'] / 1000:5.1f}  p90 {got['p90_us'] / 1000:5.1f}"
                            f"  p99 {got['p99_us'] / 1000:6.1f}  max {got['max_us'] / 1000:6.1f} ms"
                            f"  API {cpu:4.0f} us/req",
                            flush=True,
                        )
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
