"""The ASGI application: routes, start-up and shut-down. uvicorn loads `create_app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from scriptlabs.auth.mailer import MailSender
from scriptlabs.auth.passwords import Passwords
from scriptlabs.auth.tokens import TokenVerifier
from scriptlabs.config import Settings
from scriptlabs.db.migrate import pending_migrations
from scriptlabs.db.operation import Pool
from scriptlabs.db.pool import close_pools, open_pools
from scriptlabs.db.replica import create_replica
from scriptlabs.graphiql import ASSETS_URL_PATH, GRAPHIQL_ASSETS_DIR
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.execution import Runner
from scriptlabs.graphql.resolvers import auth as auth_resolvers
from scriptlabs.graphql.resolvers import reset as reset_resolvers
from scriptlabs.graphql.schema import build_schema
from scriptlabs.http.export import ExportEndpoint
from scriptlabs.http.graphql import GraphQLEndpoint
from scriptlabs.http.imports import import_labs_csv
from scriptlabs.http.websocket import GraphQLWebSockets
from scriptlabs.ops import health
from scriptlabs.ops.access import AccessMiddleware
from scriptlabs.ops.scrape import MetricsEndpoint
from scriptlabs.ops.usage import UsageFlusher
from scriptlabs.realtime.listener import Listener
from scriptlabs.telemetry import metrics

log = logging.getLogger("scriptlabs")


class NotReady(RuntimeError):
    """The API cannot start: the message says what to do."""


def create_app(settings: Settings | None = None) -> Starlette:
    """The app for `settings` (default: from the environment, DATABASE_URL and JWT_SECRET set)."""
    settings = settings or Settings.from_env()
    if not settings.database_url:
        raise NotReady("DATABASE_URL is not set: start the API with `scriptlabs serve`")
    if not settings.jwt_secret:
        raise NotReady("JWT_SECRET is not set")
    schema = build_schema(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url is not None and settings.jwt_secret is not None
        pending = await pending_migrations(settings.database_url)
        if pending:
            raise NotReady(
                f"the database has {len(pending)} pending migrations ({', '.join(pending)}): "
                "run `scriptlabs db migrate` first"
            )
        # requests' turns, and the exports' and imports' own, over one asyncpg pool
        requests, streams = await open_pools(settings)
        services = Services(
            settings=settings,
            pool=requests,
            passwords=Passwords(settings.argon2),
            verifier=TokenVerifier(settings.jwt_secret),
            streams=streams,
        )
        app.state.services = services
        services.replica = await create_replica(settings, services.pool)
        runner = Runner(
            schema,
            services,
            schema.validation_rules,
            {**auth_resolvers.PREPARERS, **reset_resolvers.PREPARERS},
            plan=settings.graphql_planner,
        )
        app.state.runner = runner
        endpoint.bind(runner, services)
        gauges = _start_metrics(metrics_endpoint, services.pool, services.streams, settings)
        # the outbox's sender, and the token clean-up: it takes turns at the pool like any request
        mail = MailSender(services.pool, settings)
        mail.start()
        usage = UsageFlusher(
            services.searches, services.pool
        )  # searches counted here, written in batches
        usage.start()
        app.state.usage = usage
        # labEvents: this worker's LISTEN connection, and its WebSocket endpoint
        listener = Listener(settings.database_listen_url or settings.database_url)
        await listener.start()
        sockets = GraphQLWebSockets(runner, services, listener)
        app.state.listener, app.state.sockets = listener, sockets
        websocket.bind(sockets)
        _settle_memory()
        try:
            yield
        finally:
            await sockets.close_all()  # every open subscription gets its close frame
            await listener.stop()
            await _stop_metrics(gauges)
            await mail.stop()
            await usage.stop()
            if services.replica is not None:
                await services.replica.stop()
            await services.pool.breaker.stop()
            await close_pools(requests, streams)

    endpoint = _LateEndpoint()
    websocket = _LateSockets()
    metrics_endpoint = _LateMetrics()
    routes = [
        Route("/graphql", endpoint),  # any method: others get the JSON 405
        WebSocketRoute("/graphql", websocket),  # graphql-transport-ws: subscriptions
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route("/export/labs.csv", ExportEndpoint("csv")),
        Route("/export/labs.json", ExportEndpoint("json")),
        Route("/import/labs.csv", import_labs_csv, methods=["POST"]),
        Mount(ASSETS_URL_PATH, StaticFiles(directory=GRAPHIQL_ASSETS_DIR, check_dir=False)),
    ]
    if settings.metrics:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    recorder = metrics.Recorder(
        enabled=settings.metrics, max_operations=settings.metrics_max_operations
    )
    middleware = [
        Middleware(AccessMiddleware, recorder=recorder, access_log=settings.access_log),
        Middleware(_GraphQLFirst, endpoint=endpoint),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class _GraphQLFirst:
    """HTTP requests to /graphql, nearly all of them, straight to their endpoint; the rest
    through Starlette's exception handling and router. The endpoint answers every error of
    its own (http/graphql.py), so those layers had nothing to do for it but cost a few
    percent of a short read's time (bench/RESULTS.md)."""

    def __init__(self, app: ASGIApp, endpoint: _LateEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/graphql":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _LateMetrics:
    """GET /metrics, bound once the lifespan has made the pool."""

    def __init__(self) -> None:
        self.endpoint: MetricsEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.endpoint is None:
            raise RuntimeError("the app has not started")
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


def _start_metrics(
    late: _LateMetrics, pool: Pool, streams: Pool | None, settings: Settings
) -> asyncio.Task[None] | None:
    """Bind /metrics; with several workers, keep this one's pool gauges current."""
    late.endpoint = MetricsEndpoint(pool, settings.metrics_token, streams)
    if not (settings.metrics and metrics.MULTIPROCESS):
        return None
    metrics.forget_dead_workers()
    return asyncio.create_task(late.endpoint.keep_pool_gauges())


async def _stop_metrics(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    metrics.leave()


def _settle_memory() -> None:
    """Move what start-up made (schema, modules, caches) out of the garbage collector's sight,
    and collect the young generations less often: a request allocates thousands of small
    objects, and a full collection over everything the process holds stalled every request
    in flight for tens of milliseconds (the p99 of bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


class _LateEndpoint:
    """The GraphQL endpoint, bound once the lifespan has made the services."""

    def __init__(self) -> None:
        self._endpoint: GraphQLEndpoint | None = None

    def bind(self, runner: Runner, services: Services) -> None:
        self._endpoint = GraphQLEndpoint(runner, services)

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        if self._endpoint is None:
            raise RuntimeError("the app has not started")
        await self._endpoint(scope, receive, send)


class _LateSockets:
    """The WebSocket endpoint, bound once the lifespan has made the services."""

    def __init__(self) -> None:
        self._sockets: GraphQLWebSockets | None = None

    def bind(self, sockets: GraphQLWebSockets) -> None:
        self._sockets = sockets

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        if self._sockets is None:
            raise RuntimeError("the app has not started")
        await self._sockets(scope, receive, send)
