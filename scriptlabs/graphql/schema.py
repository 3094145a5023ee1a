"""The schema: Query and Mutation wired to resolvers, and the extensions around them."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import strawberry
from graphql import GraphQLError, ValidationRule
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from scriptlabs.config import Settings
from scriptlabs.errors import AppError
from scriptlabs.graphql.limits import Limits, limits_rule
from scriptlabs.graphql.resolvers import auth
from scriptlabs.graphql.resolvers import events as event_resolvers
from scriptlabs.graphql.resolvers import labs as lab_resolvers
from scriptlabs.graphql.resolvers import reset as reset_resolvers
from scriptlabs.graphql.resolvers import search as search_resolvers
from scriptlabs.graphql.resolvers import stats as stats_resolvers
from scriptlabs.graphql.resolvers.labs import LabConnection
from scriptlabs.graphql.scalars import DateTime
from scriptlabs.graphql.types import (
    AuthPayload,
    ImportResult,
    Lab,
    LabStats,
    ResetTokenStatus,
    Session,
    User,
)

log = logging.getLogger("scriptlabs.graphql")


@strawberry.type
class Query:
    me: User | None = strawberry.field(resolver=auth.me)
    lab: Lab | None = strawberry.field(resolver=lab_resolvers.lab)
    labs: LabConnection = strawberry.field(resolver=lab_resolvers.labs)
    search_labs: search_resolvers.LabSearchConnection = strawberry.field(
        resolver=search_resolvers.search_labs,
        description="The caller's labs matching a text query (web-search syntax: words, "
        '"exact phrase", or, -exclude), best first; an empty query lists them newest first.',
    )
    lab_stats: LabStats = strawberry.field(resolver=stats_resolvers.lab_stats)
    sessions: list[Session] = strawberry.field(resolver=auth.list_sessions)
    reset_token_status: ResetTokenStatus = strawberry.field(
        resolver=reset_resolvers.reset_token_status
    )


@strawberry.type
class Mutation:
    sign_up: AuthPayload = strawberry.mutation(resolver=auth.sign_up)
    sign_in: AuthPayload = strawberry.mutation(resolver=auth.sign_in)
    refresh_session: AuthPayload = strawberry.mutation(resolver=auth.refresh_session)
    sign_out: bool = strawberry.mutation(resolver=auth.sign_out)
    revoke_session: bool = strawberry.mutation(resolver=auth.revoke_session)
    change_password: bool = strawberry.mutation(resolver=auth.change_password)
    request_password_reset: bool = strawberry.mutation(
        resolver=reset_resolvers.request_password_reset
    )
    reset_password: AuthPayload = strawberry.mutation(resolver=reset_resolvers.reset_password)
    create_lab: Lab = strawberry.mutation(resolver=lab_resolvers.create_lab)
    update_lab: Lab = strawberry.mutation(resolver=lab_resolvers.update_lab)
    delete_lab: uuid.UUID = strawberry.mutation(resolver=lab_resolvers.delete_lab)
    import_labs: ImportResult = strawberry.mutation(resolver=lab_resolvers.import_labs)


@strawberry.type
class Subscription:
    lab_events: event_resolvers.LabEvent = strawberry.subscription(  # type: ignore[assignment]
        resolver=event_resolvers.lab_events,
        description="The caller's own lab changes, one event per created, updated or deleted "
        "lab, over the WebSocket at /graphql (graphql-transport-ws).",
    )


class Schema(strawberry.Schema):
    """The Strawberry schema: types and resolvers. Operations run through the runner
    (graphql/execution.py), which parses, validates and executes with graphql-core."""

    validation_rules: list[type[ValidationRule]]  # ours, besides graphql's own; set by build

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # client errors are answers, not faults: PublicErrors logs the unexpected ones
        for error in errors:
            if error.original_error is not None and not isinstance(error.original_error, AppError):
                log.debug("operation error: %s", error.message)


def build_schema(settings: Settings | None = None) -> Schema:
    settings = settings or Settings()
    limits = Limits(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_fields=settings.max_fields,
    )
    rules: list[type[ValidationRule]] = [limits_rule(limits)]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True, scalar_map={dt.datetime: DateTime}),
    )
    schema.validation_rules = rules
    return schema
