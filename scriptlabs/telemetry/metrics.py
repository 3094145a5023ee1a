"""The process's metrics: what is counted where the API works, for GET /metrics (ops/scrape.py).

Instruments are module-level, as a process has one of each; anyone may import this module
(it imports nothing of the project). With several workers, `scriptlabs serve` sets
PROMETHEUS_MULTIPROC_DIR before they start: prometheus-client then keeps every value in a
file of that folder, and a scrape adds up the files of all workers, so the figures are the
same whatever worker answers. The pool's gauges are `livesum`: a worker's share leaves the
sum when it stops (`forget_dead_workers`).

Labels are bounded whatever clients send (an abuse case): the operation name comes from the
client, so only names that look like GraphQL names are kept, at most `max_operations` of them
per process; any other is counted as `other`, an operation without a name as `anonymous`.
The outcome is `ok` or the first error's contract code.
"""

from __future__ import annotations

import glob
import os
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# decided once, at import, as prometheus-client itself decides where values live
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))

# a fast API: most answers take a few milliseconds; STATEMENT_TIMEOUT_MS is 5 s by default
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ANONYMOUS = "anonymous"
OTHER = "other"
UNKNOWN = "unknown"  # the request was refused before an operation was read
OK = "ok"
RESERVED = frozenset({ANONYMOUS, OTHER, UNKNOWN})
# the contract's codes (CONTRACT.md section 4, Errors): anything else is `other`
CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "QUERY_TOO_COMPLEX",
        "TIMEOUT",
        "INTERNAL_SERVER_ERROR",
        "PERSISTED_QUERY_NOT_FOUND",
    }
)
SQLSTATE_CLASS = re.compile(r"[0-9A-Z]{2}")

# the instruments of a single process; with several, MultiProcessCollector reads the files
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "scriptlabs_graphql_requests",
    "GraphQL requests answered, by operation name, outcome (ok or the first error's code) "
    "and HTTP status class.",
    ["operation", "outcome", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "scriptlabs_graphql_request_duration_seconds",
    "Time from a GraphQL request's arrival to its answer's last byte, by operation and outcome.",
    ["operation", "outcome"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
DB_ERRORS = Counter(
    "scriptlabs_db_errors",
    "Database errors met, by SQLSTATE class (23 integrity, 57 cancelled, ...), `unavailable` "
    "(the database did not answer) or `pool_busy` (no connection within the wait).",
    ["kind"],
    registry=REGISTRY,
)
MAIL = Counter(
    "scriptlabs_mail_deliveries",
    "Mail delivery attempts by the background sender: sent, failed (retried later or given up).",
    ["result"],
    registry=REGISTRY,
)
POOL_IN_USE = Gauge(
    "scriptlabs_db_pool_connections_in_use",
    "Pooled database connections held by an operation, the mail sender or a scrape.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "scriptlabs_db_pool_waiting",
    "Callers waiting for their turn at the pool.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_OPEN = Gauge(
    "scriptlabs_db_pool_connections_open",
    "Database connections the pools have open.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "scriptlabs_db_pool_connections_max",
    "The most connections the pools may open (per worker: DB_POOL_MAX, and one per export and "
    "import it may run at once).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

WEBSOCKETS = Gauge(
    "scriptlabs_websockets_open",
    "GraphQL WebSocket connections open (graphql-transport-ws).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "scriptlabs_subscriptions_active",
    "labEvents subscriptions running on the open sockets.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
EVENTS = Counter(
    "scriptlabs_lab_events_delivered",
    "labEvents `next` messages sent to subscribers.",
    registry=REGISTRY,
)
WEBSOCKET_CLOSES = Counter(
    "scriptlabs_websocket_closes",
    "WebSocket connections the server closed, by close code: 1013 a subscriber too slow for "
    "its events or events interrupted, 4403 a token expired or session ended, 44xx the "
    "client broke the protocol, 1001 shut-down, 1011 an internal error.",
    ["code"],
    registry=REGISTRY,
)
# the codes the server closes with (http/websocket.py); anything else counts as `other`
CLOSE_CODES = frozenset({1001, 1011, 1013, 4400, 4401, 4403, 4406, 4408, 4409, 4429})

for _result in ("sent", "failed"):  # the series exist before the first delivery
    MAIL.labels(_result)


class Recorder:
    """Counts GraphQL requests with bounded labels; `enabled` False makes it free."""

    def __init__(self, *, enabled: bool = True, max_operations: int = 100) -> None:
        self.enabled = enabled
        self.max_operations = max_operations
        self._names: set[str] = set()
        # (operation, outcome, status) → the labelled children: labels() costs a lock and a
        # tuple each time; the keys are bounded as the labels are
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def operation(self, name: str | None) -> str:
        """The label of a client's operation name."""
        if name is None:
            return ANONYMOUS
        if name in self._names or name in RESERVED:
            return name
        if len(self._names) >= self.max_operations or not NAME.fullmatch(name):
            return OTHER
        self._names.add(name)
        return name

    def observe(self, operation: str, outcome: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        key = (operation, outcome, _status_class(status))
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(*key), LATENCY.labels(operation, outcome))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def outcome_of(body: bytes | memoryview) -> str:
    """`ok`, or the code of the answer's first error (errors come first in our bodies)."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    if not body.startswith(b'{"errors":'):
        return OK
    start = body.find(b'"code":"')
    if start < 0:
        return OTHER
    start += 8
    end = body.find(b'"', start, start + 40)
    code = body[start:end].decode("ascii", "replace") if end > 0 else ""
    return code if code in CODES else OTHER


def count_db_error(sqlstate: str | None) -> None:
    """A database error, by its SQLSTATE class."""
    kind = (sqlstate or "")[:2]
    DB_ERRORS.labels(kind if SQLSTATE_CLASS.fullmatch(kind) else OTHER).inc()


def count_db_unavailable(kind: str = "unavailable") -> None:
    DB_ERRORS.labels(kind).inc()


def count_mail(result: str) -> None:
    MAIL.labels(result).inc()


def count_websocket_close(code: int) -> None:
    """A WebSocket the server closed, by its close code (bounded)."""
    WEBSOCKET_CLOSES.labels(str(code) if code in CLOSE_CODES else OTHER).inc()


def set_pool(in_use: int, waiting: int, open_: int, maximum: int) -> None:
    POOL_IN_USE.set(in_use)
    POOL_WAITING.set(waiting)
    POOL_OPEN.set(open_)
    POOL_MAX.set(maximum)


def forget_dead_workers(path: str | None = None) -> None:
    """Drop the live gauges of workers that are gone (uvicorn restarts a worker that died)."""
    folder = path or os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    for file in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        pid = file.rsplit("_", 1)[-1].removesuffix(".db")
        if pid.isdigit() and not _alive(int(pid)):
            _multiprocess.mark_process_dead(int(pid), folder)  # type: ignore[no-untyped-call]


def leave() -> None:
    """This worker stops: its live gauges leave the sums."""
    folder = os.environ.get(MULTIPROC_ENV)
    if MULTIPROCESS and folder:
        _multiprocess.mark_process_dead(os.getpid(), folder)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
