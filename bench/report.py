"""The results of runs: one line per run while the bench goes, a table of medians at the end."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """One measured wrk run of one scenario on one catalogue, against one system (Script Labs
    or a peer: v5, v4) at one number of worker processes."""

    scenario: str
    catalogue: str
    clients: int
    round: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    socket_errors: int
    non2xx: int
    gql_errors: int
    checked: bool
    other_cpu: float  # % of the machine busy with other work just before the run
    api_us: float = 0.0  # CPU time per request: the API (its process tree: every worker)
    pg_us: float = 0.0  # PostgreSQL (postmaster and its children)
    wrk_us: float = 0.0  # wrk
    others_pct: float = 0.0  # % of the machine used by anything else during the run
    first_error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    system: str = "scriptlabs"  # or a peer: "v5", "v4"
    workers: int = 1

    @property
    def errors(self) -> str:
        gql = str(self.gql_errors) if self.checked else "-"
        return f"{self.socket_errors}/{self.non2xx}/{gql}"


def row(cells: list[str], widths: list[int]) -> str:
    return (
        "| "
        + " | ".join(
            c.rjust(w) if i > 0 else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        + " |"
    )


HEADER = [
    "scenario",
    "catalogue",
    "workers",
    "system",
    "clients",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors s/n/g",
    "CPU us/req API/PG/wrk",
    "API+PG",
    "runs (req/s)",
]
PEERS = ("v5", "v4")  # a ratio column for each peer in the results, Script Labs ÷ peer


def errors_of(runs: list[Result]) -> str:
    """Socket errors / non-2xx / GraphQL errors, summed over the runs ('-': not counted)."""
    checked = all(r.checked for r in runs)
    socket_errors = sum(r.socket_errors for r in runs)
    non2xx = sum(r.non2xx for r in runs)
    gql = str(sum(r.gql_errors for r in runs)) if checked else "-"
    return f"{socket_errors}/{non2xx}/{gql}"


def cpu_of(runs: list[Result]) -> tuple[str, str]:
    """Median CPU time per request of the API, PostgreSQL and wrk, and of the API and
    PostgreSQL together ('-': not measured)."""
    if not any(r.api_us for r in runs):
        return "-", "-"
    each = "/".join(
        f"{statistics.median(getattr(r, k) for r in runs):.0f}"
        for k in ("api_us", "pg_us", "wrk_us")
    )
    return each, f"{statistics.median(r.api_us + r.pg_us for r in runs):.0f}"


def table(results: list[Result]) -> str:
    """One row per scenario, catalogue, workers, system and clients: medians over the rounds.
    Script Labs rows get Script Labs req/s ÷ the peer's, for each peer measured beside them
    (same scenario, catalogue, workers and clients)."""
    groups: dict[tuple[str, str, int, str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.catalogue, r.workers, r.system, r.clients), []).append(r)
    medians = {key: statistics.median(r.rps for r in runs) for key, runs in groups.items()}
    peers = [p for p in PEERS if any(key[3] == p for key in groups)]
    header = HEADER[:6] + [f"SL/{p}" for p in peers] + HEADER[6:]
    lines = []
    for key, runs in groups.items():
        scenario, catalogue, workers, system, clients = key
        rps = [r.rps for r in runs]
        ratios = []
        for peer in peers:
            theirs = medians.get((scenario, catalogue, workers, peer, clients))
            mine = system == "scriptlabs" and theirs is not None and theirs > 0
            ratios.append(f"{medians[key] / theirs:.2f}" if mine and theirs else "")
        lines.append(
            [
                scenario,
                catalogue,
                str(workers),
                system,
                str(clients),
                f"{medians[key]:,.0f}",
                *ratios,
                f"{statistics.median(r.p50_ms for r in runs):.1f}",
                f"{statistics.median(r.p99_ms for r in runs):.1f}",
                errors_of(runs),
                *cpu_of(runs),
                " ".join(f"{x:,.0f}" for x in rps),
            ]
        )
    widths = [max(len(c[i]) for c in [header, *lines]) for i in range(len(header))]
    out = [row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [row(cells, widths) for cells in lines]
    return "\n".join(out)


def socket_detail(result: Result) -> str:
    if not result.socket_errors:
        return ""
    kinds = ("connect", "read", "write", "timeout")
    return " (" + ", ".join(f"{k} {result.raw[k]}" for k in kinds if result.raw[k]) + ")"


def report(result: Result) -> None:
    print(
        f"    {result.scenario:12} {result.catalogue:3} w{result.workers} {result.system:10} "
        f"c{result.clients:<5} "
        f"{result.rps:8,.0f} req/s  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:7.1f} ms  "
        f"errors {result.errors}{socket_detail(result)}  CPU/req: API {result.api_us:.0f} "
        f"PG {result.pg_us:.0f} wrk {result.wrk_us:.0f} us  (other load {result.other_cpu:.0f} % "
        f"before, {result.others_pct:.0f} % during)"
        + (f"  first error: {result.first_error}" if result.first_error else ""),
        flush=True,
    )
