"""What every resolver receives: the services, the caller, and the operation's database work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info

from scriptlabs.auth.accounts import Client
from scriptlabs.auth.passwords import Passwords
from scriptlabs.auth.tokens import Claims, TokenVerifier
from scriptlabs.config import Settings
from scriptlabs.db.operation import Isolation, Operation, Pool
from scriptlabs.db.replica import Replica
from scriptlabs.errors import AppError, Code
from scriptlabs.ops.usage import SearchCounts


@dataclass(slots=True)
class Services:
    """Made once at start-up."""

    settings: Settings
    pool: Pool  # DB_POOL_MAX turns: GraphQL operations, the API's own bookkeeping
    passwords: Passwords
    verifier: TokenVerifier
    # exports and imports: turns of their own over the same connections (Settings
    # .db_connections_max), so long streams never hold the requests' turns
    streams: Pool | None = None
    searches: SearchCounts = field(default_factory=SearchCounts)  # for `scriptlabs report`
    replica: Replica | None = None  # DATABASE_REPLICA_URL (db.replica)

    def operation(
        self,
        claims: Claims,
        *,
        readonly: bool,
        pool: Pool | None = None,
        isolation: Isolation | None = None,
        timeout_ms: int | None = None,
    ) -> Operation:
        """A new operation for `claims` (its transaction begins at its first statement), on
        the primary unless another pool (the replica's, the streams') is given; its deadline is
        STATEMENT_TIMEOUT_MS unless `timeout_ms` says otherwise (exports, imports)."""
        return Operation(
            pool or self.pool,
            role=claims.role,
            claims_json=claims.json,
            user_id=claims.sub,
            session_id=claims.session_id,
            readonly=readonly,
            isolation=isolation,
            timeout_ms=timeout_ms,
        )


@dataclass(slots=True)
class Context:
    services: Services
    claims: Claims
    client: Client
    op: Operation
    # what the preparers of mutation fields did before the transaction began, by response
    # key: a value for the resolver, or the error it must raise (execution.Runner)
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def operation(self) -> Operation:
        return self.op

    def user_operation(self) -> Operation:
        """The operation, for fields that need a signed-in caller (else UNAUTHENTICATED)."""
        if self.claims.role == "anon":
            raise AppError(Code.UNAUTHENTICATED, "Authentication required")
        return self.op

    def prepared_for(self, info: Info[Context, None]) -> Any:
        """What this field's preparer made; raises the error it met instead, if any."""
        key = info.path.key
        assert isinstance(key, str)
        if key not in self.prepared:
            raise RuntimeError(f"no preparation for {key!r}")
        value = self.prepared[key]
        if isinstance(value, BaseException):
            raise value
        return value


@dataclass(frozen=True, slots=True)
class Preparation:
    """What a preparer may use: the caller and the operation, before its transaction began
    (so `op.apart()` is allowed and no connection is held while passwords are hashed)."""

    services: Services
    claims: Claims
    client: Client
    op: Operation


# a mutation field's work that must happen before the operation takes its connection
# (password hashing, bookkeeping that outlives a refusal): called with the field's
# arguments (GraphQL names, coerced); what it returns reaches the resolver through
# Context.prepared_for(info)
Preparer = Callable[[Preparation, dict[str, Any]], Awaitable[Any]]
