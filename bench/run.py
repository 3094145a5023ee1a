"""The Script Labs load benchmark: one command sets up, runs wrk per scenario, prints a table.

It starts the embedded PostgreSQL of its own data folder (default /tmp/scriptlabs-bench) and
applies the migrations, loads the demo catalogues that are missing (`scriptlabs demo-data`: one
user with 1,000,000 labs among a thousand with 200, interleaved, and on request one with 1,000),
starts `scriptlabs serve` on free ports for each number of workers (the default settings, and
GRAPHQL_PLANNER=off for the plain-path reference) and the peers asked for (PostGraphile v5, v4)
over the same database, signs in, reads what the scenarios need (a lab id, the cursor of the row
100,000 deep: from the database for Script Labs, from each peer itself for the peer), checks every
request once and that every system returns the same ids, then runs wrk (bench/graphql.lua) for each
scenario, system after system: a warm-up, then the measured run. Everything it started is stopped
on exit.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from catalogues import (
    BENCH_TITLE,
    CATALOGUES,
    PASSWORD,
    Catalogue,
    delete_bench_labs,
    load_catalogues,
)
from harness import (
    BENCH_DIR,
    LUA,
    PEERS_DIR,
    POSTGRAPHILE_PACKAGE,
    ROOT,
    V5_DIR,
    BenchError,
    Server,
    get,
    post,
    raise_open_files,
    start_postgraphile,
    start_postgraphile5,
    wrk,
)
from meter import children_cpu, cluster_cpu, machine_cpu, other_cpu, tree_cpu
from report import Result, report, table

from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate
from scriptlabs.labs.demo import term_for_share

LAB_FIELDS = "id title author rating createdAt"
FIRST_PAGE = f"{{ labs(first: 20) {{ nodes {{ {LAB_FIELDS} }} }} }}"
FILTERED_PAGE = (
    "{ labs(first: 20, filter: {readingStatus: {eq: READ}, rating: {gte: 4}}, "
    f"orderBy: [{{field: TITLE, direction: ASC}}]) {{ nodes {{ {LAB_FIELDS} }} }} }}"
)
DEEP_PAGE = (
    "query Deep($after: String!) "
    f"{{ labs(first: 20, after: $after) {{ nodes {{ {LAB_FIELDS} }} }} }}"
)
ONE_LAB = f"query One($id: UUID!) {{ lab(id: $id) {{ {LAB_FIELDS} }} }}"
CREATE_LAB = (
    f"mutation Create($input: CreateLabInput!) {{ createLab(input: $input) {{ {LAB_FIELDS} }} }}"
)
CREATE_INPUT = {
    "title": BENCH_TITLE,
    "author": "Ada Bench",
    "category": "Benchmarks",
    "publicationYear": 2024,
    "isbn": "9780306406157",
    "rating": 4,
    "readingStatus": "READING",
    "notes": "Added by the load benchmark; deleted again when the run ends.",
}
# The same four reads from PostGraphile (v5 with the V4 preset and the connection filter, or
# v4 and its filter plugin): the names of its own schema, checked by introspection at set-up.
# Orders end in ID like Script Labs' (which always ends in id), so both break ties alike.
PEER_ORDER = "orderBy: [CREATED_AT_DESC, ID_DESC]"
PEER_FIRST = f"{{ allLabs(first: 20, {PEER_ORDER}) {{ nodes {{ {LAB_FIELDS} }} }} }}"
PEER_FILTERED = (
    '{ allLabs(first: 20, filter: {readingStatus: {equalTo: "read"}, '
    "rating: {greaterThanOrEqualTo: 4}}, orderBy: [TITLE_ASC, ID_ASC]) "
    f"{{ nodes {{ {LAB_FIELDS} }} }} }}"
)
PEER_DEEP = (
    "query Deep($after: Cursor!) "
    f"{{ allLabs(first: 20, after: $after, {PEER_ORDER}) {{ nodes {{ {LAB_FIELDS} }} }} }}"
)
PEER_LAB_FIELD = "labByUserIdAndId"  # labs' primary key is (user_id, id)
PEER_ONE = (
    "query One($userId: UUID!, $id: UUID!) "
    f"{{ {PEER_LAB_FIELD}(userId: $userId, id: $id) {{ {LAB_FIELDS} }} }}"
)
PEER_CURSOR = (
    "query Cursor($offset: Int!) "
    f"{{ allLabs(first: 1, offset: $offset, {PEER_ORDER}) {{ edges {{ cursor node {{ id }} }} }} }}"
)
PEER_SCHEMA = """{
  query: __type(name: "Query") { fields { name args { name } } }
  order: __type(name: "LabsOrderBy") { enumValues { name } }
  filter: __type(name: "LabFilter") { inputFields { name } }
}"""
PEER_NAMES = {
    "query fields": {"allLabs", PEER_LAB_FIELD},
    "LabsOrderBy values": {"CREATED_AT_DESC", "ID_DESC", "TITLE_ASC", "ID_ASC"},
    "LabFilter fields": {"readingStatus", "rating"},
}
SIGN_IN = (
    "mutation SignIn($email: String!, $password: String!) "
    "{ signIn(email: $email, password: $password) { accessToken } }"
)

SEARCH_FIELDS = "edges { rank snippet node { id title } }"
SEARCH = f"query Search($q: String!) {{ searchLabs(query: $q, first: 10) {{ {SEARCH_FIELDS} }} }}"
PREFIX_SEARCH = (
    "query Prefix($q: String!) "
    f"{{ searchLabs(query: $q, first: 10, prefix: true) {{ {SEARCH_FIELDS} }} }}"
)
FACETED_SEARCH = (
    "query Faceted($q: String!) { searchLabs(query: $q, first: 10) { totalCount "
    f"{SEARCH_FIELDS} facets {{ byCategory {{ category count }} byStatus {{ status count }} "
    "byRating { rating count } } } }"
)
STATS_FIELDS = (
    "totalLabs labsRead labsReading labsToRead averageRating totalAuthors totalCategories "
    "byCategory { category count } ratingDistribution { rating count }"
)
STATS = f"{{ labStats {{ {STATS_FIELDS} }} }}"
FILTERED_STATS = f"{{ labStats(filter: {{readingStatus: {{eq: READ}}}}) {{ {STATS_FIELDS} }} }}"
# the terms searched, by the share of a demo catalogue's labs they match (scriptlabs.labs.demo):
# rare about five labs whatever the catalogue's size, medium 1 in 175, very common 1 in 10
RARE_MATCHES = 5
MEDIUM_SHARE = 1 / 175
COMMON_SHARE = 1 / 10
PREFIX_LENGTH = 4  # letters of the medium term typed for the type-ahead search

SCENARIOS: dict[str, str] = {
    "first": "labs first page, 20 nodes x 5 fields (planned path)",
    "first-plain": "the same first page with GRAPHQL_PLANNER=off (Strawberry path)",
    "postgraphile": "an old name: the first page with --peers v4",
    "filtered": "readingStatus READ and rating >= 4, orderBy TITLE, first 20",
    "deep": "first 20 after the cursor of row 100,000 (or the last page of a smaller catalogue)",
    "lab": "lab(id), 5 fields",
    "create": "createLab mutation (labs deleted again after the run)",
    "c1000": "labs first page with 1,000 concurrent clients",
    "search-rare": "searchLabs first 10 with rank and snippet, a term in about 5 labs",
    "search-medium": "searchLabs first 10 with rank and snippet, a term in 1 lab of 175",
    "search-common": "searchLabs first 10 with rank and snippet, a term in 1 lab of 10",
    "search-prefix": f"searchLabs prefix: true, the medium term's first {PREFIX_LENGTH} letters",
    "search-facets": "searchLabs of the medium term with totalCount and the three facets",
    "stats": "labStats, every field, unfiltered",
    "stats-filtered": "labStats, every field, filter readingStatus READ",
    "first-apq": "the first page by its persisted query hash alone, POST",
    "first-apq-get": "the first page by its persisted query hash alone, GET",
}
APQ_SCENARIOS = ("first-apq", "first-apq-get")
SEARCH_SCENARIOS = [s for s in SCENARIOS if s.startswith(("search-", "stats"))]
# `--scenarios search` runs these; the default, the list scenarios of the engine's runs
DEFAULT_SCENARIOS = [
    s
    for s in SCENARIOS
    if s != "postgraphile" and s not in SEARCH_SCENARIOS and s not in APQ_SCENARIOS
]
PEERS = {
    "v5": "PostGraphile v5 (postgraphile5.mjs of the peers folder, V4 preset, connection filter)",
    "v4": "PostGraphile v4 (bench/postgraphile.js, connection filter plugin)",
}
PEER_SCENARIOS = ("first", "filtered", "deep", "lab")  # what the peers run too


def systems_of(scenario: str, peers: list[str]) -> list[str]:
    return ["scriptlabs", *peers] if scenario in PEER_SCENARIOS else ["scriptlabs"]


def server_key(scenario: str, system: str, workers: int) -> tuple[str, int]:
    return ("plain" if scenario == "first-plain" else system, workers)


# -- scenarios -----------------------------------------------------------------------------------


def body_of(scenario: str, catalogue: Catalogue, system: str = "scriptlabs") -> dict[str, Any]:
    if system != "scriptlabs":
        return peer_body_of(scenario, catalogue, system)
    if scenario in ("first", "first-plain", "c1000"):
        return {"query": FIRST_PAGE}
    if scenario in APQ_SCENARIOS:
        return {"extensions": persisted_query(FIRST_PAGE)}
    if scenario == "filtered":
        return {"query": FILTERED_PAGE}
    if scenario == "deep":
        return {"query": DEEP_PAGE, "variables": {"after": catalogue.deep_cursor}}
    if scenario == "lab":
        return {"query": ONE_LAB, "variables": {"id": catalogue.lab_id}}
    if scenario == "create":
        return {"query": CREATE_LAB, "variables": {"input": CREATE_INPUT}}
    if scenario in ("search-rare", "search-medium", "search-common"):
        return {"query": SEARCH, "variables": {"q": search_term(scenario, catalogue)}}
    if scenario == "search-prefix":
        prefix = search_term("search-medium", catalogue)[:PREFIX_LENGTH]
        return {"query": PREFIX_SEARCH, "variables": {"q": prefix}}
    if scenario == "search-facets":
        return {
            "query": FACETED_SEARCH,
            "variables": {"q": search_term("search-medium", catalogue)},
        }
    if scenario == "stats":
        return {"query": STATS}
    if scenario == "stats-filtered":
        return {"query": FILTERED_STATS}
    raise BenchError(f"unknown scenario {scenario}")


def persisted_query(query: str) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def method_of(scenario: str) -> str:
    return "GET" if scenario.endswith("-get") else "POST"


def register_apq(url: str, scenario: str, token: str, workers: int) -> None:
    """Send the document with its hash until every worker keeps it (each worker has a store
    of its own, and new connections land on any worker): then hash-only requests succeed."""
    body = {"extensions": persisted_query(FIRST_PAGE)}
    full = {"query": FIRST_PAGE, **body}
    for _ in range(16 * workers):
        status, answer = post(url, full, token)
        if status != 200 or "errors" in answer:
            raise BenchError(f"registering {scenario}: HTTP {status} {answer}")
    for _ in range(16 * workers):
        status, answer = send(scenario, url, body, token)
        if status != 200 or "errors" in answer:
            raise BenchError(f"{scenario}: a worker did not keep the document: {answer}")


def send(scenario: str, url: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
    return get(url, body, token) if method_of(scenario) == "GET" else post(url, body, token)


def search_term(scenario: str, catalogue: Catalogue) -> str:
    share = {
        "search-rare": min(RARE_MATCHES / catalogue.size, 0.5),
        "search-medium": MEDIUM_SHARE,
        "search-common": COMMON_SHARE,
    }[scenario]
    return term_for_share(share)


def peer_body_of(scenario: str, catalogue: Catalogue, peer: str) -> dict[str, Any]:
    if scenario == "first":
        return {"query": PEER_FIRST}
    if scenario == "filtered":
        return {"query": PEER_FILTERED}
    if scenario == "deep":
        return {"query": PEER_DEEP, "variables": {"after": catalogue.peer_cursors[peer]}}
    if scenario == "lab":
        variables = {"userId": str(catalogue.user_id), "id": catalogue.lab_id}
        return {"query": PEER_ONE, "variables": variables}
    raise BenchError(f"scenario {scenario} has no {peer} request")


def check_once(
    url: str, scenario: str, catalogue: Catalogue, system: str = "scriptlabs", workers: int = 1
) -> tuple[str, list[str]]:
    """Send the scenario's request once: a one-line description of a good answer and the ids
    it holds, or raise."""
    if scenario in APQ_SCENARIOS:
        register_apq(url, scenario, catalogue.token, workers)
        status, answer = send(scenario, url, body_of(scenario, catalogue), catalogue.token)
    else:
        status, answer = post(url, body_of(scenario, catalogue, system), catalogue.token)
    what = f"{scenario} on {catalogue.name} ({system})"
    if status != 200 or "errors" in answer:
        raise BenchError(f"{what}: HTTP {status} {answer}")
    data = answer["data"]
    if "searchLabs" in data:
        edges = data["searchLabs"]["edges"]
        if not edges:
            raise BenchError(f"{what}: nothing found")
        seen = (
            f"{len(edges)} matches, best {edges[0]['rank']:.4f} {edges[0]['node']['title'][:30]!r}"
        )
        return seen, [e["node"]["id"] for e in edges]
    if "labStats" in data:
        stats = data["labStats"]
        if scenario == "stats" and stats["totalLabs"] != catalogue.size:
            raise BenchError(f"{what}: {stats['totalLabs']} labs, not {catalogue.size}")
        return f"{stats['totalLabs']} labs, {stats['totalAuthors']} authors", []
    if "labs" in data or "allLabs" in data:
        nodes = (data.get("labs") or data["allLabs"])["nodes"]
        if len(nodes) != 20:
            raise BenchError(f"{what}: {len(nodes)} nodes, not 20")
        seen = f"20 nodes, first {nodes[0]['createdAt']} {nodes[0]['title'][:30]!r}"
        return seen, [n["id"] for n in nodes]
    lab = data.get("lab") or data.get("createLab") or data.get(PEER_LAB_FIELD)
    if not lab:
        raise BenchError(f"{what}: no lab in {answer}")
    return f"lab {lab['id']} {lab['title'][:30]!r}", [lab["id"]]


def check_peer_schema(server: Server) -> None:
    """The names the peer requests use are in the peer's schema (one introspection query)."""
    status, answer = post(server.url, {"query": PEER_SCHEMA})
    if status != 200 or "errors" in answer:
        raise BenchError(f"introspection of {server.name}: HTTP {status} {answer}")
    data = answer["data"]
    found = {
        "query fields": {f["name"] for f in (data["query"] or {}).get("fields") or []},
        "LabsOrderBy values": {v["name"] for v in (data["order"] or {}).get("enumValues") or []},
        "LabFilter fields": {f["name"] for f in (data["filter"] or {}).get("inputFields") or []},
    }
    for what, names in PEER_NAMES.items():
        if names - found[what]:
            missing = ", ".join(sorted(names - found[what]))
            raise BenchError(f"{server.name}: no {missing} among its {what}")
    one = next(f for f in data["query"]["fields"] if f["name"] == PEER_LAB_FIELD)
    if {a["name"] for a in one["args"]} != {"userId", "id"}:
        raise BenchError(f"{server.name}: {PEER_LAB_FIELD} takes {one['args']}")


def peer_cursor(server: Server, catalogue: Catalogue, peer: str) -> None:
    """The peer's own cursor of the row before the deep page, asked once with `offset`."""
    body = {"query": PEER_CURSOR, "variables": {"offset": catalogue.deep_position - 1}}
    status, answer = post(server.url, body, catalogue.token)
    if status != 200 or "errors" in answer:
        raise BenchError(f"the deep cursor from {server.name}: HTTP {status} {answer}")
    edge = answer["data"]["allLabs"]["edges"][0]
    if edge["node"]["id"] != catalogue.deep_id:
        raise BenchError(
            f"{server.name}: row {catalogue.deep_position:,} of {catalogue.name} is "
            f"{edge['node']['id']}, not {catalogue.deep_id} as in the database"
        )
    catalogue.peer_cursors[peer] = edge["cursor"]


def same_ids(scenario: str, catalogue: Catalogue, ids: dict[str, list[str]]) -> str:
    """Every system returned the ids Script Labs did (the filtered page: the same set, whatever
    the order of ties); a one-line description, or raise."""
    mine = ids["scriptlabs"]
    notes = []
    for system, theirs in ids.items():
        if theirs == mine:
            continue
        if scenario == "filtered" and sorted(theirs) == sorted(mine):
            notes.append(f"{system}: ties in another order")
            continue
        raise BenchError(
            f"{scenario} on {catalogue.name}: {system} returns other ids than Script Labs:\n"
            f"  scriptlabs {mine}\n  {system} {theirs}"
        )
    systems = ", ".join(ids)
    return f"same {len(mine)} id(s) from {systems}" + (f" ({'; '.join(notes)})" if notes else "")


@dataclass
class Plan:
    tables: list[Path]
    scenarios: list[str]
    catalogues: list[str]
    workers: list[int]
    peers: list[str]
    peers_dir: Path
    v5_dir: Path
    rounds: int
    duration: float
    warmup: float
    first_warmup: float
    connections: int
    threads: int
    c1000_connections: int
    c1000_catalogue: str
    timeout: str
    check_all: bool
    profile: float
    data_dir: Path
    out: Path


@dataclass
class Run:
    """One measured run: what, on which catalogue, against which system at how many workers."""

    scenario: str
    catalogue: Catalogue
    system: str
    workers: int
    round_no: int


def run_one(
    plan: Plan,
    run: Run,
    servers: dict[tuple[str, int], Server],
    admin_dsn: str,
    pgdata: Path,
) -> Result:
    scenario, catalogue = run.scenario, run.catalogue
    server = servers[server_key(scenario, run.system, run.workers)]
    clients = plan.c1000_connections if scenario == "c1000" else plan.connections
    check = plan.check_all or scenario in ("c1000", "create")
    body = body_of(scenario, catalogue, run.system)
    busy = other_cpu()

    def load(seconds: float) -> dict[str, Any]:
        return wrk(
            server.url,
            body,
            catalogue.token,
            connections=clients,
            threads=plan.threads,
            duration=seconds,
            timeout=plan.timeout,
            check=check,
            method=method_of(scenario),
        )

    for attempt in (1, 2):  # once more if something else stopped the server meanwhile
        server.ensure_running()
        try:
            if plan.warmup > 0:
                load(plan.warmup)
            busy_s, total_s = machine_cpu()
            before = (
                tree_cpu(server.pid),
                cluster_cpu(pgdata),
                children_cpu(),
                busy_s,
                total_s,
            )
            raw = load(plan.duration)
            break
        except BenchError:
            if attempt == 2:
                raise
            try:  # a server being stopped may take a moment to exit
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise BenchError(f"wrk failed against the {server.name} API, which runs") from None
    after = (tree_cpu(server.pid), cluster_cpu(pgdata), children_cpu(), *machine_cpu())
    api_s, pg_s, wrk_s, busy_s, total_s = (a - b for a, b in zip(after, before, strict=True))
    per_request = 1e6 / max(raw["requests"], 1)
    if scenario == "create":
        time.sleep(1)  # wrk is gone, but the API may still commit the requests it had
        asyncio.run(delete_bench_labs(admin_dsn, [catalogue.user_id]))
    seconds = raw["duration_us"] / 1e6
    return Result(
        scenario=scenario,
        catalogue=catalogue.name,
        clients=clients,
        round=run.round_no,
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        non2xx=raw["non2xx"] if check else raw["status"],
        gql_errors=raw["gql_errors"],
        checked=check,
        other_cpu=busy,
        api_us=api_s * per_request,
        pg_us=pg_s * per_request,
        wrk_us=wrk_s * per_request,
        others_pct=max(0.0, 100 * (busy_s - api_s - pg_s - wrk_s) / total_s) if total_s else 0.0,
        first_error=raw.get("first_error"),
        raw=raw,
        system=run.system,
        workers=run.workers,
    )


def profile_scenario(plan: Plan, catalogue: Catalogue, server: Server) -> None:
    """py-spy over the API while wrk runs the first scenario asked for (py-spy in the venv)."""
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(py_spy).exists():
        print("==> --profile: py-spy is not installed (pip install py-spy); skipped")
        return
    stem = plan.out.with_suffix("")
    scenario = plan.scenarios[0]
    body = body_of(scenario, catalogue)
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(body),
        "BENCH_TOKEN": catalogue.token,
        "BENCH_CHECK": "0",
    }
    seconds = plan.profile
    load = subprocess.Popen(
        [
            "wrk",
            f"-t{plan.threads}",
            f"-c{plan.connections}",
            f"-d{seconds + 4:g}s",
            "-s",
            str(LUA),
            server.url,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        target = Path(f"{stem}-profile-{scenario}-{catalogue.name}.txt")
        subprocess.run(
            [
                py_spy,
                "record",
                "--format",
                "raw",
                "-o",
                str(target),
                "-d",
                f"{seconds:g}",
                "-p",
                str(server.pid),
                *(["--subprocesses"] if server.workers > 1 else []),
            ],
            check=False,
            capture_output=True,
        )
        print(f"==> profile of {scenario} on {catalogue.name}: {target}")
        subprocess.run([sys.executable, str(BENCH_DIR / "profile.py"), str(target)], check=False)
    finally:
        load.wait()


# -- main ----------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"not a list of numbers of 1 or more: {text!r}")
    return values


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all but postgraphile)",
    )
    parser.add_argument(
        "--catalogues",
        default="200,1m",
        help=f"comma-separated, from: {', '.join(CATALOGUES)} (default: 200,1m)",
    )
    parser.add_argument(
        "--workers",
        type=int_list,
        default=[1],
        help="worker processes of every API, comma-separated: 1,2 measures each system at one "
        "and at two (default: 1)",
    )
    parser.add_argument(
        "--peers",
        default="",
        help=f"systems measured beside Script Labs on {', '.join(PEER_SCENARIOS)}, "
        f"comma-separated, from: {', '.join(PEERS)} (default: none)",
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=PEERS_DIR,
        help=f"where postgraphile5.sh and postgraphile5.mjs are (default: {PEERS_DIR})",
    )
    parser.add_argument(
        "--v5-dir",
        type=Path,
        default=V5_DIR,
        help=f"PostGraphile v5's install folder (PG_GRAPHILE_DIR; default: {V5_DIR})",
    )
    parser.add_argument("--rounds", type=int, default=2, help="passes over all scenarios")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up per run")
    parser.add_argument(
        "--first-warmup",
        type=float,
        default=5,
        metavar="SECONDS",
        help="in round 1, before the runs at each number of workers: seconds of load per worker "
        "on every server for each of its scenarios (Node's JIT needs more than one run's "
        "warm-up; default: 5)",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--c1000", type=int, default=1000, help="clients of the c1000 run")
    parser.add_argument("--c1000-catalogue", default="1m")
    parser.add_argument("--timeout", default="10s", help="wrk's per-request timeout")
    parser.add_argument(
        "--check", action="store_true", help="count non-2xx and GraphQL errors in every run"
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="also profile the API (py-spy) under the load of the first scenario listed",
    )
    parser.add_argument(
        "--postgraphile",
        action="store_true",
        help=f"the same as --peers v4 (npm install {POSTGRAPHILE_PACKAGE} on first use)",
    )
    parser.add_argument("--quick", action="store_true", help="200 catalogue, 3 s runs, 1 round")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("/tmp/scriptlabs-bench"),
        help="the bench's own database and logs (default: /tmp/scriptlabs-bench)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results as JSON (default: <data dir>/results.json)"
    )
    parser.add_argument(
        "--table",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: print the table of medians over the runs saved in these files",
    )
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if "search" in scenarios:  # the search and statistics runs of issue 8
        at = scenarios.index("search")
        scenarios[at : at + 1] = SEARCH_SCENARIOS
    peers = [p for p in args.peers.split(",") if p]
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    for p in peers:
        if p not in PEERS:
            parser.error(f"unknown peer {p!r}")
    if "postgraphile" in scenarios:  # the old name of v4's first page
        at = scenarios.index("postgraphile")
        scenarios[at : at + 1] = [] if "first" in scenarios else ["first"]
        args.postgraphile = True
    if args.postgraphile and "v4" not in peers:
        peers.append("v4")
    if peers and not set(scenarios) & set(PEER_SCENARIOS):
        parser.error(f"the peers run only {', '.join(PEER_SCENARIOS)}: none is asked for")
    catalogues = [c for c in args.catalogues.split(",") if c]
    for c in catalogues:
        if c not in CATALOGUES:
            parser.error(f"unknown catalogue {c!r}")
    if args.quick:
        catalogues = ["200"] if args.catalogues == "200,1m" else catalogues
        args.c1000_catalogue = catalogues[0]
        args.rounds, args.duration, args.warmup, args.first_warmup = 1, 3, 1, 0
    if "c1000" in scenarios and args.c1000_catalogue not in catalogues:
        catalogues.append(args.c1000_catalogue)
    return Plan(
        tables=args.table or [],
        scenarios=scenarios,
        catalogues=catalogues,
        workers=list(dict.fromkeys(args.workers)),
        peers=peers,
        peers_dir=args.peers_dir.resolve(),
        v5_dir=args.v5_dir.resolve(),
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        first_warmup=args.first_warmup,
        connections=args.connections,
        threads=args.threads,
        c1000_connections=args.c1000,
        c1000_catalogue=args.c1000_catalogue,
        timeout=args.timeout,
        check_all=args.check,
        profile=args.profile,
        data_dir=args.data_dir.resolve(),
        out=args.out or args.data_dir.resolve() / "results.json",
    )


def machine() -> dict[str, str]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(  # the API measured is not quite that commit
        ["git", "status", "--porcelain", "--", "scriptlabs", "db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if commit and changed:
        commit += "+uncommitted"
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "commit": commit or "?",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load": load,
        "wrk": wrk_version(),
    }


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0]


@contextlib.contextmanager
def database(folder: Path) -> Iterator[EmbeddedPostgres]:
    cluster = EmbeddedPostgres(folder)
    with cluster:
        applied = asyncio.run(migrate(cluster.admin_dsn()))
        if applied:
            print(f"==> applied migrations: {', '.join(applied)}")
        yield cluster


def print_saved(paths: list[Path]) -> None:
    """The table of medians over every run saved in `paths` (results JSON of earlier runs)."""
    results: list[Result] = []
    for path in paths:
        saved = json.loads(path.read_text(encoding="utf-8"))
        info = saved["machine"]
        print(
            f"{path}: {info['date']}, commit {info['commit']}, bench/run {' '.join(saved['argv'])}"
        )
        known = Result.__dataclass_fields__
        for r in saved["results"]:
            if r["scenario"] == "postgraphile":  # saved before --peers: v4's first page
                r = {**r, "scenario": "first", "system": "v4"}
            results.append(Result(**{k: v for k, v in r.items() if k in known}))
    order = {name: i for i, name in enumerate(SCENARIOS)}
    systems = {name: i for i, name in enumerate(["scriptlabs", *PEERS])}
    results.sort(
        key=lambda r: (
            r.scenario == "c1000",
            r.workers,
            r.catalogue,
            order[r.scenario],
            systems.get(r.system, 9),
            r.round,
        )
    )
    print(table(results))


def start_servers(plan: Plan, env: dict[str, str], folder: Path) -> dict[tuple[str, int], Server]:
    """Script Labs (and its plain-path twin when first-plain runs) and every peer, at each
    number of workers, all on free ports at once: the rounds go from one to the other."""
    servers: dict[tuple[str, int], Server] = {}
    try:
        for workers in plan.workers:
            servers["scriptlabs", workers] = Server(
                f"scriptlabs w{workers}", env, folder, workers=workers
            )
            if "first-plain" in plan.scenarios:
                plain_env = {**env, "GRAPHQL_PLANNER": "off"}
                servers["plain", workers] = Server(
                    f"plain w{workers}", plain_env, folder, workers=workers
                )
            if "v5" in plan.peers:
                servers["v5", workers] = start_postgraphile5(
                    env, folder, workers, plan.peers_dir, plan.v5_dir
                )
            if "v4" in plan.peers:
                servers["v4", workers] = start_postgraphile(env, folder, workers)
        for server in servers.values():
            server.wait_ready(timeout=180)
            print(f"==> {server.name}: {server.url} (pid {server.pid})", flush=True)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def sign_in(server: Server, catalogues: list[Catalogue]) -> None:
    """A fresh access token for every catalogue's user (they last an hour)."""
    for catalogue in catalogues:
        variables = {"email": catalogue.email, "password": PASSWORD}
        status, answer = post(server.url, {"query": SIGN_IN, "variables": variables})
        if status != 200 or "errors" in answer:
            raise BenchError(f"signIn {catalogue.email}: HTTP {status} {answer}")
        catalogue.token = answer["data"]["signIn"]["accessToken"]


def check_everything(
    plan: Plan,
    catalogues: list[Catalogue],
    servers: dict[tuple[str, int], Server],
    admin_dsn: str,
) -> None:
    """Once, before the rounds: every peer's schema has the names its requests use, every
    peer's deep cursor, every request of every server answers well, and every system returns
    the same ids as Script Labs at the same number of workers."""
    for peer in plan.peers:
        check_peer_schema(servers[peer, plan.workers[0]])
        for catalogue in catalogues:
            peer_cursor(servers[peer, plan.workers[0]], catalogue, peer)
    for workers in plan.workers:
        for catalogue in catalogues:
            for scenario in plan.scenarios:
                if scenario == "c1000" and catalogue.name != plan.c1000_catalogue:
                    continue
                ids: dict[str, list[str]] = {}
                for system in systems_of(scenario, plan.peers):
                    server = servers[server_key(scenario, system, workers)]
                    seen, ids[system] = check_once(server.url, scenario, catalogue, system, workers)
                    print(f"    checked {scenario} on {catalogue.name}, {server.name}: {seen}")
                if len(ids) > 1:
                    print(
                        f"    {scenario} on {catalogue.name}, w{workers}: "
                        + same_ids(scenario, catalogue, ids)
                    )
            asyncio.run(delete_bench_labs(admin_dsn, [catalogue.user_id]))


def warm_up(
    plan: Plan, catalogue: Catalogue, servers: dict[tuple[str, int], Server], workers: int
) -> None:
    """Load every server of `workers` workers with each of its read scenarios, in round 1
    just before their runs: a fresh Node process answers at about half speed for its first
    several seconds of load per worker, which a run's own warm-up does not cover (measured:
    v5's first page at 900 req/s in the first run after a 2 s warm-up, 1,750 in the next
    round; at two workers, still 25 % more API CPU per request after 5 s of warm-up)."""
    seconds = plan.first_warmup * workers
    if seconds <= 0:
        return
    reads = [s for s in plan.scenarios if s not in ("create", "c1000")]
    print(
        f"==> warming the servers of {workers} worker(s) up: {seconds:g} s a scenario", flush=True
    )
    for scenario in reads:
        for system in systems_of(scenario, plan.peers):
            server = servers[server_key(scenario, system, workers)]
            wrk(
                server.url,
                body_of(scenario, catalogue, system),
                catalogue.token,
                connections=plan.connections,
                threads=plan.threads,
                duration=seconds,
                timeout=plan.timeout,
                check=False,
                method=method_of(scenario),
            )


def runs_of(plan: Plan, catalogues: list[Catalogue], round_no: int, workers: int) -> Iterator[Run]:
    """One round at `workers` workers: for each catalogue and scenario, every system back to
    back (in the opposite order every other round), then c1000."""
    by_name = {c.name: c for c in catalogues}
    for catalogue in catalogues:
        for scenario in plan.scenarios:
            if scenario == "c1000":
                continue
            systems = systems_of(scenario, plan.peers)
            for system in systems if round_no % 2 else reversed(systems):
                yield Run(scenario, catalogue, system, workers, round_no)
    if "c1000" in plan.scenarios:
        yield Run("c1000", by_name[plan.c1000_catalogue], "scriptlabs", workers, round_no)


def peer_versions(plan: Plan, folder: Path) -> dict[str, str]:
    places = {"v5": plan.v5_dir, "v4": folder / "postgraphile"}
    versions = {}
    for peer in plan.peers:
        package = places[peer] / "node_modules" / "postgraphile" / "package.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            versions[f"postgraphile {peer}"] = json.loads(package.read_text())["version"]
    return versions


def main(argv: list[str]) -> int:
    plan = parse_args(argv)
    if plan.tables:
        print_saved(plan.tables)
        return 0
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    files = raise_open_files()
    if files < plan.c1000_connections * 2 + 100 and "c1000" in plan.scenarios:
        raise BenchError(
            f"open files limit {files} is too low for {plan.c1000_connections} clients"
        )
    info = machine()
    print(
        f"==> {info['date']}, commit {info['commit']}, {info['cpus']} CPUs ({info['cpu']}), "
        f"{info['memory']}, load {info['load']}, open files {files}"
    )
    folder = plan.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    started = time.monotonic()
    with database(folder) as cluster:
        admin_dsn = cluster.admin_dsn()
        env = {
            **os.environ,
            "SCRIPTLABS_DATA_DIR": str(folder),
            "DATABASE_URL": cluster.dsn(),
            "DATABASE_ADMIN_URL": admin_dsn,
        }
        for key in ("GRAPHQL_PLANNER", "DB_POOL_MAX", "DB_POOL_MIN", "JWT_SECRET", "WORKERS"):
            env.pop(key, None)  # default settings, whatever the caller's shell holds
        catalogues = load_catalogues(plan.catalogues, env, admin_dsn)
        for catalogue in catalogues:
            print(f"==> catalogue {catalogue.name}: {catalogue.email} ({catalogue.size:,} labs)")
        servers = start_servers(plan, env, folder)
        info.update(peer_versions(plan, folder))
        first = servers["scriptlabs", plan.workers[0]]
        try:
            for round_no in range(1, plan.rounds + 1):
                sign_in(first, catalogues)
                if round_no == 1:
                    check_everything(plan, catalogues, servers, admin_dsn)
                    if plan.profile > 0:
                        for catalogue in catalogues:
                            profile_scenario(plan, catalogue, first)
                print(f"==> round {round_no} of {plan.rounds}", flush=True)
                for workers in plan.workers:
                    if round_no == 1:
                        warm_up(plan, catalogues[0], servers, workers)
                    for run in runs_of(plan, catalogues, round_no, workers):
                        result = run_one(plan, run, servers, admin_dsn, cluster.pgdata)
                        results.append(result)
                        report(result)
        finally:
            for server in servers.values():
                server.stop()
    print()
    print(
        f"medians of {plan.rounds} round(s) in {(time.monotonic() - started) / 60:.0f} min; "
        f"{plan.duration:g} s runs after {plan.warmup:g} s warm-up; wrk -t{plan.threads}; "
        "SL/v5: Script Labs req/s / the peer's, same scenario, catalogue, workers and clients; "
        "errors s/n/g = socket errors (connect, read, write, timeout) / non-2xx (4xx/5xx when "
        "not checked) / 2xx bodies with GraphQL errors ('-': not checked), summed over the "
        "rounds; CPU: the API's whole process tree, PostgreSQL, wrk"
    )
    print(table(results))
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(
        json.dumps(
            {"machine": info, "argv": argv, "results": [asdict(r) for r in results]}, indent=1
        ),
        encoding="utf-8",
    )
    print(f"==> results: {plan.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench/run: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
