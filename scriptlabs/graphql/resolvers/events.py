"""The labEvents subscription's types, and its field.

A subscription runs over the WebSocket (http/websocket.py) through the runner's subscribe path
(graphql/execution.py, `Runner.subscribe` and `Runner.deliver`), never through Strawberry's
own subscription machinery: each event is executed against the subscription's document with a
`LabEvent` as the root value, which Strawberry's subscription field hands on as it is.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from scriptlabs.graphql.context import Context
from scriptlabs.graphql.types import Lab


@strawberry.enum
class LabEventType(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@strawberry.type
class LabEvent:
    type: LabEventType
    id: uuid.UUID
    lab: Lab | None = strawberry.field(
        description="The lab after the change, read under the subscriber's own role; "
        "null for DELETED (and when the lab is gone by the time the event is read)."
    )


async def lab_events(info: Info[Context, None]) -> AsyncGenerator[LabEvent, None]:
    """Never iterated: the runner executes each event with it as the root value."""
    raise RuntimeError("labEvents runs over the WebSocket, through the runner")
    yield  # pragma: no cover  (makes this an async generator for Strawberry)
