"""Settings: read once from the environment (CONTRACT.md section 1)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting has a value the API cannot run with."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A sign-in limit: the number of the attempt refused, so 0 (off) or at least 2."""
    value = _int(env, name, default)
    if value == 1:
        raise SettingsError(
            f"{name} must be 0 (off) or at least 2: a first attempt is never refused"
        )
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


PERSISTED_QUERY_MODES = ("apq", "only")


def _persisted_queries(env: Mapping[str, str]) -> str:
    raw = env.get("PERSISTED_QUERIES", "").strip().lower() or "apq"
    if raw not in PERSISTED_QUERY_MODES:
        raise SettingsError(f"PERSISTED_QUERIES must be apq or only, not {raw!r}")
    return raw


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in raw.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise SettingsError(f"TRUSTED_PROXIES: {exc}") from None


DEFAULT_MAIL_FROM = "Script Labs <no-reply@scriptlabs.local>"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_pool_max() -> int:
    """DB_POOL_MAX unset, one worker: three turns per core, at most 10. The API shares the
    cores with PostgreSQL, and backends beyond that only queue for them: on two cores, 10
    turns gave the filtered page stalls of 250-700 ms that 6 did not, at the same throughput
    (bench/RESULTS.md). With several workers, `serve` shares two per core among them."""
    return min(10, 3 * cores())


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost; RFC 9106's second recommended option by default."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB
    parallelism: int = 4


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the API reads from its environment, validated once."""

    database_url: str | None = None
    database_admin_url: str | None = None
    jwt_secret: str | None = None
    jwt_expiry: int = 3600
    jwt_issuer: str = "scriptlabs"
    refresh_token_ttl: int = 30 * 24 * 3600
    refresh_reuse_interval: int = 10
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    mail_from: str = DEFAULT_MAIL_FROM
    public_url: str = DEFAULT_PUBLIC_URL
    # the mail sender (scriptlabs.auth.mailer): how often it looks at the outbox without a
    # NOTIFY, and the longest back-off between attempts (with the poll and a 10 s SMTP
    # timeout, attempts stay less than a minute apart during an outage)
    mail_poll_seconds: float = 2.0
    mail_retry_max_seconds: int = 45
    graphql_introspection: bool = True
    graphql_planner: bool = True
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_statement_cache_size: int = 100
    statement_timeout_ms: int = 5000
    data_dir: Path = Path(".scriptlabs")
    trusted_proxies: tuple[Network, ...] = ()
    max_depth: int = 10
    max_aliases: int = 100
    max_fields: int = 500
    max_body_bytes: int = 1024 * 1024
    max_tokens: int = 15_000  # lexical tokens of a document (contract, Errors)
    # how long a request waits for its turn at the pool before HTTP 503 (Retry-After)
    db_pool_wait_seconds: float = 10.0
    # outages (scriptlabs.db.outage): how long one connection attempt may take, and how long
    # `serve` waits for the database at start-up before giving up
    db_connect_timeout_s: float = 5.0
    db_startup_wait_s: int = 60
    # graceful shutdown: how long requests in flight may run on after SIGTERM
    shutdown_timeout_s: int = 30
    # Auth rate limits (scriptlabs.auth.ratelimit); 0 turns a limit off. They are off in
    # settings built in code (tests, whose requests all come from one address; tools), and on
    # in from_env(), which the API runs with: RATE_LIMIT_SIGNIN_EMAIL 10, RATE_LIMIT_SIGNIN_IP
    # 20, RATE_LIMIT_SIGNUP_IP 10, RATE_LIMIT_RESET_IP 5 unless set.
    # 0 turns a limit off
    rate_limit_signin_email: int = 10  # the attempt with this number in the window is refused
    rate_limit_signin_ip: int = 20  # likewise per client address (contract: 20 at the most)
    rate_limit_signin_window: int = 900  # s
    rate_limit_signup_ip: int = 10  # sign-ups per client address and hour
    rate_limit_reset_ip: int = 5  # password reset requests per client address and hour
    rate_limit_slow_after: int = 3  # sign-in attempts are slowed from this number on
    rate_limit_slow_base_ms: int = 250  # the first delay; it doubles with each attempt
    # GET /export/labs.csv|json and `scriptlabs export` (scriptlabs.http.export): the whole
    # export's bound (database time and a slow reader alike), and how many may run at once
    # per process (0: a quarter of DB_POOL_MAX, at least 1) and per user
    export_timeout_s: int = 300
    export_max_concurrent: int = 0
    export_max_per_user: int = 1
    # POST /import/labs.csv (scriptlabs.http.imports): the largest body, the whole import's
    # bound (a slow upload included), and how many may run at once per process (0: a quarter
    # of DB_POOL_MAX, at least 1) and per user
    import_max_bytes: int = 50 * 1024 * 1024
    import_timeout_s: int = 300
    import_max_concurrent: int = 0
    import_max_per_user: int = 1
    argon2: Argon2Params = field(default_factory=Argon2Params)
    # persisted queries (scriptlabs.http.persisted): `apq` learns documents from clients into
    # a per-worker store bounded by count and size; `only` runs registered documents alone,
    # re-reading them on a miss at most once per persisted_reload_seconds
    persisted_queries: str = "apq"
    apq_max_entries: int = 10_000
    apq_max_bytes: int = 16 * 1024 * 1024  # characters of document text
    persisted_reload_seconds: float = 1.0
    persisted_refresh_seconds: float = 30.0
    # labEvents (scriptlabs.realtime, http/websocket.py): LISTEN needs a direct connection
    # (not a transaction-mode PgBouncer): DATABASE_LISTEN_URL, default DATABASE_URL
    database_listen_url: str | None = None
    ws_init_timeout_seconds: float = 10.0  # connection_init must come within this: else 4408
    # how often a socket's session is checked; a check is shared by the sockets of a session
    # for half of it, so an end is seen within 1.5 of it (contract: within 30 s)
    ws_session_check_seconds: float = 15.0
    ws_max_subscriptions_per_socket: int = 20
    ws_max_subscriptions_per_user: int = 100  # on one worker
    # GET /metrics and the access log (scriptlabs.ops): METRICS off stops counting and the
    # route; METRICS_TOKEN, when set, is the bearer token a scrape must send; at most
    # METRICS_MAX_OPERATIONS operation names per process, the rest counted as `other`
    metrics: bool = True
    metrics_token: str | None = None
    metrics_max_operations: int = 100
    access_log: bool = True
    log_format: str | None = None  # json or text; unset: text on a terminal, else json
    log_level: str = "info"
    # read replicas (scriptlabs.db.replica): read-only operations run on DATABASE_REPLICA_URL,
    # except for a caller who wrote within REPLICA_READ_AFTER_WRITE seconds; a replica that
    # lags more than REPLICA_MAX_LAG_S (or is down) is left until it catches up
    database_replica_url: str | None = None
    replica_read_after_write: int = 10
    replica_max_lag_s: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check the settings; raise SettingsError naming a bad one."""
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL") or None
        secret = env.get("JWT_SECRET") or None
        if secret is not None and len(secret.encode()) < 32:
            raise SettingsError("JWT_SECRET must be at least 32 bytes long")
        default = Argon2Params()
        argon2 = Argon2Params(
            time_cost=_int(env, "ARGON2_TIME_COST", default.time_cost, minimum=1),
            memory_cost=_int(env, "ARGON2_MEMORY_KIB", default.memory_cost, minimum=8),
            parallelism=_int(env, "ARGON2_PARALLELISM", default.parallelism, minimum=1),
        )
        settings = cls(
            database_url=database_url,
            database_admin_url=env.get("DATABASE_ADMIN_URL") or database_url,
            jwt_secret=secret,
            jwt_expiry=_int(env, "JWT_EXPIRY", 3600, minimum=1),
            jwt_issuer=env.get("JWT_ISSUER") or "scriptlabs",
            refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=1),
            refresh_reuse_interval=_int(env, "REFRESH_REUSE_INTERVAL", 10),
            smtp_host=env.get("SMTP_HOST") or None,
            smtp_port=_int(env, "SMTP_PORT", 587, minimum=1),
            smtp_user=env.get("SMTP_USER") or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            smtp_starttls=_bool(env, "SMTP_STARTTLS", True),
            mail_from=env.get("MAIL_FROM") or DEFAULT_MAIL_FROM,
            public_url=(env.get("PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/"),
            mail_poll_seconds=_int(env, "MAIL_POLL_SECONDS", 2, minimum=1),
            mail_retry_max_seconds=_int(env, "MAIL_RETRY_MAX_SECONDS", 45, minimum=1),
            graphql_introspection=_bool(env, "GRAPHQL_INTROSPECTION", True),
            graphql_planner=_bool(env, "GRAPHQL_PLANNER", True),
            db_pool_min=_int(env, "DB_POOL_MIN", 2),
            db_pool_max=_int(env, "DB_POOL_MAX", default_pool_max(), minimum=1),
            db_statement_cache_size=_int(env, "DB_STATEMENT_CACHE_SIZE", 100),
            statement_timeout_ms=_int(env, "STATEMENT_TIMEOUT_MS", 5000),
            data_dir=Path(env.get("SCRIPTLABS_DATA_DIR") or ".scriptlabs"),
            trusted_proxies=_networks(env.get("TRUSTED_PROXIES", "")),
            max_depth=_int(env, "GRAPHQL_MAX_DEPTH", 10, minimum=1),
            max_aliases=_int(env, "GRAPHQL_MAX_ALIASES", 100, minimum=1),
            max_fields=_int(env, "GRAPHQL_MAX_FIELDS", 500, minimum=1),
            max_tokens=_int(env, "GRAPHQL_MAX_TOKENS", 15_000, minimum=100),
            db_pool_wait_seconds=_int(env, "DB_POOL_WAIT_SECONDS", 10, minimum=1),
            db_connect_timeout_s=_int(env, "DB_CONNECT_TIMEOUT_S", 5, minimum=1),
            db_startup_wait_s=_int(env, "DB_STARTUP_WAIT_S", 60),
            shutdown_timeout_s=_int(env, "SHUTDOWN_TIMEOUT_S", 30, minimum=1),
            rate_limit_signin_email=_limit(env, "RATE_LIMIT_SIGNIN_EMAIL", 10),
            rate_limit_signin_ip=_limit(env, "RATE_LIMIT_SIGNIN_IP", 20),
            rate_limit_signin_window=_int(env, "RATE_LIMIT_SIGNIN_WINDOW", 900, minimum=1),
            rate_limit_signup_ip=_int(env, "RATE_LIMIT_SIGNUP_IP", 10),
            rate_limit_reset_ip=_int(env, "RATE_LIMIT_RESET_IP", 5),
            rate_limit_slow_after=_int(env, "RATE_LIMIT_SLOW_AFTER", 3),
            rate_limit_slow_base_ms=_int(env, "RATE_LIMIT_SLOW_BASE_MS", 250),
            export_timeout_s=_int(env, "EXPORT_TIMEOUT_S", 300, minimum=1),
            export_max_concurrent=_int(env, "EXPORT_MAX_CONCURRENT", 0),
            export_max_per_user=_int(env, "EXPORT_MAX_PER_USER", 1, minimum=1),
            import_max_bytes=_int(env, "IMPORT_MAX_BYTES", 50 * 1024 * 1024, minimum=1),
            import_timeout_s=_int(env, "IMPORT_TIMEOUT_S", 300, minimum=1),
            import_max_concurrent=_int(env, "IMPORT_MAX_CONCURRENT", 0),
            import_max_per_user=_int(env, "IMPORT_MAX_PER_USER", 1, minimum=1),
            argon2=argon2,
            persisted_queries=_persisted_queries(env),
            apq_max_entries=_int(env, "APQ_MAX_ENTRIES", 10_000, minimum=1),
            apq_max_bytes=_int(env, "APQ_MAX_BYTES", 16 * 1024 * 1024, minimum=1024),
            database_listen_url=env.get("DATABASE_LISTEN_URL") or None,
            ws_init_timeout_seconds=_int(env, "WS_INIT_TIMEOUT_SECONDS", 10, minimum=1),
            ws_session_check_seconds=_int(env, "WS_SESSION_CHECK_SECONDS", 15, minimum=1),
            ws_max_subscriptions_per_socket=_int(env, "WS_MAX_SUBSCRIPTIONS_PER_SOCKET", 20),
            ws_max_subscriptions_per_user=_int(env, "WS_MAX_SUBSCRIPTIONS_PER_USER", 100),
            metrics=_bool(env, "METRICS", True),
            metrics_token=env.get("METRICS_TOKEN") or None,
            metrics_max_operations=_int(env, "METRICS_MAX_OPERATIONS", 100, minimum=1),
            access_log=_bool(env, "ACCESS_LOG", True),
            log_format=_choice(env, "LOG_FORMAT", ("json", "text")),
            log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS) or "info",
            database_replica_url=env.get("DATABASE_REPLICA_URL") or None,
            replica_read_after_write=_int(env, "REPLICA_READ_AFTER_WRITE", 10, minimum=1),
            replica_max_lag_s=_int(env, "REPLICA_MAX_LAG_S", 3, minimum=1),
        )
        if settings.rate_limit_signin_window > 86400:
            # attempts are kept for a day (db/009_rate_limits.sql)
            raise SettingsError("RATE_LIMIT_SIGNIN_WINDOW must be at most 86400 seconds")
        if settings.ws_session_check_seconds > 20:
            # an ended session must end its subscriptions within 30 s (contract)
            raise SettingsError("WS_SESSION_CHECK_SECONDS must be at most 20")
        if settings.replica_max_lag_s >= settings.replica_read_after_write:
            # a write older than the window must be on the replica the reads go to
            raise SettingsError("REPLICA_MAX_LAG_S must be less than REPLICA_READ_AFTER_WRITE")
        if settings.db_pool_min > settings.db_pool_max:
            raise SettingsError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        return settings

    @property
    def exports_at_once(self) -> int:
        """How many exports one process runs at once, each on a connection of its own."""
        return self.export_max_concurrent or max(1, self.db_pool_max // 4)

    @property
    def imports_at_once(self) -> int:
        """How many imports one process runs at once, each on a connection of its own."""
        return self.import_max_concurrent or max(1, self.db_pool_max // 4)

    @property
    def db_connections_max(self) -> int:
        """The most connections one process opens: DB_POOL_MAX turns for requests (GraphQL
        operations and the API's own bookkeeping), one for each export and import it may run
        at once, so that long streams never take the requests' turns, and one for the checks
        that must not wait for a turn (the outage probe, the replica's lag check)."""
        return self.db_pool_max + self.exports_at_once + self.imports_at_once + 1

    def with_database(self, url: str, admin_url: str | None = None) -> Settings:
        """The same settings pointed at another database (the embedded one)."""
        return replace(self, database_url=url, database_admin_url=admin_url or url)

    def with_secret(self, secret: str) -> Settings:
        return replace(self, jwt_secret=secret)
