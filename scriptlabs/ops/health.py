"""`/health/live` (the process answers) and `/health/ready` (the database answers)."""

from __future__ import annotations

import asyncio

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scriptlabs.db.operation import Pool, PoolBusy


async def live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    pool: Pool = request.app.state.services.pool
    try:
        async with asyncio.timeout(2):
            await pool.ping()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, PoolBusy):
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
