"""What every resolver receives: the services, the caller, and the operation's transaction."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from scriptlabs.auth.accounts import Client
from scriptlabs.auth.passwords import Passwords
from scriptlabs.auth.tokens import Claims, TokenVerifier
from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation
from scriptlabs.errors import AppError, Code


@dataclass(slots=True)
class Services:
    """Made once at start-up."""

    settings: Settings
    pool: asyncpg.Pool
    passwords: Passwords
    verifier: TokenVerifier
    gate: asyncio.Semaphore  # fair turns at the pool: see Operation._acquire

    def operation(self, claims: Claims, *, readonly: bool) -> Operation:
        """A new operation (its transaction begins at its first statement)."""
        return Operation(
            self.pool,
            claims,
            readonly=readonly,
            statement_timeout_ms=self.settings.statement_timeout_ms,
            gate=self.gate,
        )


@dataclass(slots=True)
class Context:
    services: Services
    claims: Claims
    client: Client
    op: Operation | None = None  # set by OperationTransaction when execution starts
    executed: bool = False
    extensions: dict[str, object] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def operation(self) -> Operation:
        if self.op is None:
            raise RuntimeError("no operation: OperationTransaction is not installed")
        return self.op

    def user_operation(self) -> Operation:
        """The operation, for fields that need a signed-in caller (else UNAUTHENTICATED)."""
        if self.claims.role == "anon":
            raise AppError(Code.UNAUTHENTICATED, "Authentication required")
        return self.operation()
