"""The Script Labs load benchmark: one command sets up, runs wrk per scenario, prints a table.

It starts the embedded PostgreSQL of its own data folder (default /tmp/scriptlabs-bench) and
applies the migrations, loads the demo catalogues that are missing (`scriptlabs demo-data`: one
user with 1,000 labs, one with 1,000,000), starts `scriptlabs serve` on free ports (one API with
the default settings, and one with GRAPHQL_PLANNER=off for the plain-path reference), signs in,
reads from the database what the scenarios need (a lab id, the cursor of the row 100,000 deep),
checks every request once, then runs wrk (bench/graphql.lua) for each scenario: a warm-up, then
the measured run. Everything it started is stopped on exit. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    POSTGRAPHILE_PACKAGE,
    ROOT,
    BenchError,
    Server,
    post,
    raise_open_files,
    start_postgraphile,
    wrk,
)
from meter import children_cpu, cluster_cpu, machine_cpu, other_cpu, process_cpu
from report import Result, report, table

from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate

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
POSTGRAPHILE_PAGE = (
    f"{{ allLabs(first: 20, orderBy: [CREATED_AT_DESC, ID_DESC]) {{ nodes {{ {LAB_FIELDS} }} }} }}"
)
SIGN_IN = (
    "mutation SignIn($email: String!, $password: String!) "
    "{ signIn(email: $email, password: $password) { accessToken } }"
)

SCENARIOS: dict[str, str] = {
    "first": "labs first page, 20 nodes x 5 fields (planned path)",
    "first-plain": "the same first page with GRAPHQL_PLANNER=off (Strawberry path)",
    "postgraphile": "the same first page from PostGraphile v4 (allLabs), the reference",
    "filtered": "readingStatus READ and rating >= 4, orderBy TITLE, first 20",
    "deep": "first 20 after the cursor of row 100,000 (1k catalogue: row 980)",
    "lab": "lab(id), 5 fields",
    "create": "createLab mutation (labs deleted again after the run)",
    "c1000": "labs first page with 1,000 concurrent clients",
}
DEFAULT_SCENARIOS = [s for s in SCENARIOS if s != "postgraphile"]  # --postgraphile adds it
SERVER_OF = {"first-plain": "plain", "postgraphile": "postgraphile"}  # the others: "planned"

# -- scenarios -----------------------------------------------------------------------------------


def body_of(scenario: str, catalogue: Catalogue) -> dict[str, Any]:
    if scenario in ("first", "first-plain", "c1000"):
        return {"query": FIRST_PAGE}
    if scenario == "postgraphile":
        return {"query": POSTGRAPHILE_PAGE}
    if scenario == "filtered":
        return {"query": FILTERED_PAGE}
    if scenario == "deep":
        return {"query": DEEP_PAGE, "variables": {"after": catalogue.deep_cursor}}
    if scenario == "lab":
        return {"query": ONE_LAB, "variables": {"id": catalogue.lab_id}}
    if scenario == "create":
        return {"query": CREATE_LAB, "variables": {"input": CREATE_INPUT}}
    raise BenchError(f"unknown scenario {scenario}")


def check_once(url: str, scenario: str, catalogue: Catalogue) -> str:
    """Send the scenario's request once; a one-line description of a good answer, or raise."""
    status, answer = post(url, body_of(scenario, catalogue), catalogue.token)
    if status != 200 or "errors" in answer:
        raise BenchError(f"{scenario} on {catalogue.name}: HTTP {status} {answer}")
    data = answer["data"]
    if "labs" in data or "allLabs" in data:
        nodes = (data.get("labs") or data["allLabs"])["nodes"]
        if len(nodes) != 20:
            raise BenchError(f"{scenario} on {catalogue.name}: {len(nodes)} nodes, not 20")
        return f"20 nodes, first {nodes[0]['createdAt']} {nodes[0]['title'][:30]!r}"
    lab = data.get("lab") or data.get("createLab")
    if not lab:
        raise BenchError(f"{scenario} on {catalogue.name}: no lab in {answer}")
    return f"lab {lab['id']} {lab['title'][:30]!r}"


@dataclass
class Plan:
    tables: list[Path]
    scenarios: list[str]
    catalogues: list[str]
    rounds: int
    duration: float
    warmup: float
    connections: int
    threads: int
    c1000_connections: int
    c1000_catalogue: str
    timeout: str
    check_all: bool
    profile: float
    data_dir: Path
    out: Path


def run_one(
    plan: Plan,
    scenario: str,
    catalogue: Catalogue,
    servers: dict[str, Server],
    round_no: int,
    admin_dsn: str,
    pgdata: Path,
) -> Result:
    server = servers[SERVER_OF.get(scenario, "planned")]
    clients = plan.c1000_connections if scenario == "c1000" else plan.connections
    check = plan.check_all or scenario in ("c1000", "create")
    body = body_of(scenario, catalogue)
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
        )

    for attempt in (1, 2):  # once more if something else stopped the server meanwhile
        server.ensure_running()
        try:
            if plan.warmup > 0:
                load(plan.warmup)
            busy_s, total_s = machine_cpu()
            before = (
                process_cpu({server.pid}),
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
    after = (process_cpu({server.pid}), cluster_cpu(pgdata), children_cpu(), *machine_cpu())
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
        round=round_no,
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
    )


def profile_first_page(plan: Plan, catalogue: Catalogue, server: Server) -> None:
    """py-spy over the planned API while wrk runs the first page (needs py-spy in the venv)."""
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(py_spy).exists():
        print("==> --profile: py-spy is not installed (pip install py-spy); skipped")
        return
    stem = plan.out.with_suffix("")
    body = body_of("first", catalogue)
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
        target = Path(f"{stem}-profile-{catalogue.name}.txt")
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
            ],
            check=False,
            capture_output=True,
        )
        print(f"==> profile of the first page on {catalogue.name}: {target}")
        subprocess.run([sys.executable, str(BENCH_DIR / "profile.py"), str(target)], check=False)
    finally:
        load.wait()


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--catalogues", default="1k,1m", help="1k, 1m or both (default)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all scenarios")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up per run")
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
        help="also profile the API (py-spy) under the first-page load",
    )
    parser.add_argument(
        "--postgraphile",
        action="store_true",
        help=f"add the postgraphile scenario (npm install {POSTGRAPHILE_PACKAGE} on first use)",
    )
    parser.add_argument("--quick", action="store_true", help="1k catalogue, 3 s runs, 1 round")
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
    if args.postgraphile and "postgraphile" not in scenarios:
        at = scenarios.index("first") + 1 if "first" in scenarios else 0
        scenarios.insert(at, "postgraphile")
    catalogues = [c for c in args.catalogues.split(",") if c]
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    for c in catalogues:
        if c not in CATALOGUES:
            parser.error(f"unknown catalogue {c!r}")
    if args.quick:
        catalogues = ["1k"] if args.catalogues == "1k,1m" else catalogues
        args.c1000_catalogue = catalogues[0]
        args.rounds, args.duration, args.warmup = 1, 3, 1
    if "c1000" in scenarios and args.c1000_catalogue not in catalogues:
        catalogues.append(args.c1000_catalogue)
    return Plan(
        tables=args.table or [],
        scenarios=scenarios,
        catalogues=catalogues,
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
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
        results += [Result(**{k: v for k, v in r.items() if k in known}) for r in saved["results"]]
    order = {name: i for i, name in enumerate(SCENARIOS)}
    results.sort(key=lambda r: (r.scenario == "c1000", r.catalogue, order[r.scenario], r.round))
    print(table(results))


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
    servers: dict[str, Server] = {}
    results: list[Result] = []
    with database(folder) as cluster:
        admin_dsn = cluster.admin_dsn()
        env = {
            **os.environ,
            "SCRIPTLABS_DATA_DIR": str(folder),
            "DATABASE_URL": cluster.dsn(),
            "DATABASE_ADMIN_URL": admin_dsn,
        }
        for key in ("GRAPHQL_PLANNER", "DB_POOL_MAX", "DB_POOL_MIN", "JWT_SECRET"):
            env.pop(key, None)  # default settings, whatever the caller's shell holds
        try:
            catalogues = load_catalogues(plan.catalogues, env, admin_dsn)
            servers["planned"] = Server("planned", env, folder)
            if "first-plain" in plan.scenarios:
                servers["plain"] = Server("plain", {**env, "GRAPHQL_PLANNER": "off"}, folder)
            if "postgraphile" in plan.scenarios:
                servers["postgraphile"] = start_postgraphile(env, folder)
            for server in servers.values():
                server.wait_ready()
                print(f"==> {server.name} API: {server.url} (pid {server.pid})")
            by_name = {c.name: c for c in catalogues}
            for round_no in range(1, plan.rounds + 1):
                for catalogue in catalogues:  # a fresh token every round: they last an hour
                    status, answer = post(
                        servers["planned"].url,
                        {
                            "query": SIGN_IN,
                            "variables": {"email": catalogue.email, "password": PASSWORD},
                        },
                    )
                    if status != 200 or "errors" in answer:
                        raise BenchError(f"signIn {catalogue.email}: HTTP {status} {answer}")
                    catalogue.token = answer["data"]["signIn"]["accessToken"]
                if round_no == 1:
                    for catalogue in catalogues:
                        for scenario in plan.scenarios:
                            if scenario == "c1000" and catalogue.name != plan.c1000_catalogue:
                                continue
                            server = servers[SERVER_OF.get(scenario, "planned")]
                            seen = check_once(server.url, scenario, catalogue)
                            print(f"    checked {scenario} on {catalogue.name}: {seen}")
                        asyncio.run(delete_bench_labs(admin_dsn, [catalogue.user_id]))
                    if plan.profile > 0:
                        for catalogue in catalogues:
                            profile_first_page(plan, catalogue, servers["planned"])
                print(f"==> round {round_no} of {plan.rounds}")
                for catalogue in catalogues:
                    for scenario in plan.scenarios:
                        if scenario == "c1000":
                            continue
                        result = run_one(
                            plan, scenario, catalogue, servers, round_no, admin_dsn, cluster.pgdata
                        )
                        results.append(result)
                        report(result)
                if "c1000" in plan.scenarios:
                    catalogue = by_name[plan.c1000_catalogue]
                    result = run_one(
                        plan, "c1000", catalogue, servers, round_no, admin_dsn, cluster.pgdata
                    )
                    results.append(result)
                    report(result)
        finally:
            for server in servers.values():
                server.stop()
    print()
    print(
        f"medians of {plan.rounds} round(s); {plan.duration:g} s runs after {plan.warmup:g} s "
        f"warm-up; wrk -t{plan.threads}; errors s/n/g = socket errors (connect, read, write, "
        "timeout) / non-2xx (4xx/5xx when not checked) / 2xx bodies with GraphQL errors ('-': not "
        "checked), summed over the rounds"
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
