"""Persisted queries: a document named by its SHA-256, as Apollo clients send them.

A request may carry `extensions.persistedQuery = {"version": 1, "sha256Hash": HEX}`, with or
without the document in `query`. The transport asks `resolve` for the document to run before
the runner sees the request, so the runner (and its parse cache, keyed by the text) never
knows a hash was involved. Two modes (PERSISTED_QUERIES):

- `apq` (Automatic Persisted Queries): hash only and unknown -> PERSISTED_QUERY_NOT_FOUND
  ("PersistedQueryNotFound", Apollo's message, which its link matches too); Apollo Client then
  sends the document with the hash, which must match it (else BAD_USER_INPUT), and the
  document is kept under its hash once it has parsed and validated (`keep`), so garbage is
  never kept. Documents without a hash run as before. The store is per worker, in memory:
  a worker that does not know a hash says so and the client sends the document again, so
  nothing needs sharing, and a restart only costs each client one round trip per document.
  It is an LRU bounded by count and by bytes: a client registering a million documents
  evicts older ones, never grows the process.
- `only`: only documents registered with `scriptlabs persisted add` run (the table
  scriptlabs_private.persisted_queries); anything else, with or without a hash, is FORBIDDEN,
  at once (a hash is not answered NOT_FOUND: the client would send the document only to be
  refused). Each worker loads the registered documents, and again when a request names one
  it does not know, at most once per `reload_seconds`, so a newly registered document is
  served within about a second and a client sending random hashes costs one small
  statement a second at most; and every `refresh_seconds` (30) in any case, so a removed
  document stops running within half a minute.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool
from scriptlabs.errors import Code
from scriptlabs.ops.persisted import sha256_hex

log = logging.getLogger("scriptlabs.http")

VERSION = 1  # the only version of Apollo's protocol
_HASH = re.compile(r"[0-9a-f]{64}")

NOT_FOUND_MESSAGE = "PersistedQueryNotFound"  # Apollo's message: its link matches it

LOAD_REGISTERED = "select hash, document from scriptlabs_private.persisted_documents()"
MAX_REGISTERED = 10_000  # documents a worker loads in `only` mode; more are logged and left out


class PersistedError(Exception):
    """A persisted query that cannot run: the code and message of the one error."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document to run; `register`, the hash to keep it under once it proved valid."""

    query: str
    register: str | None = None


def requested_hash(extensions: dict[str, Any] | None) -> str | None:
    """The hash of `extensions.persistedQuery`, checked; None when there is none."""
    if not extensions or extensions.get("persistedQuery") is None:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict):
        raise PersistedError(Code.BAD_USER_INPUT, "extensions.persistedQuery must be an object")
    version = persisted.get("version")
    if version != VERSION or isinstance(version, bool):
        raise PersistedError(
            Code.BAD_USER_INPUT, "Unsupported persisted query version: only version 1 is known"
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise PersistedError(
            Code.BAD_USER_INPUT,
            "extensions.persistedQuery.sha256Hash must be 64 lower-case hexadecimal digits",
        )
    return digest


def _checked(query: str, digest: str) -> None:
    if sha256_hex(query) != digest:
        raise PersistedError(
            Code.BAD_USER_INPUT,
            "extensions.persistedQuery.sha256Hash does not match the query (SHA-256 of its text)",
        )


class Persisted(Protocol):
    """What the transport asks of a mode."""

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> Resolved:
        """The document to run, or PersistedError."""
        ...

    def keep(self, digest: str, query: str) -> None:
        """`query` parsed and validated: keep it under `digest`, if the mode keeps anything."""
        ...


class AutomaticPersistedQueries:
    """Mode `apq`: hash -> document, learnt from the clients, an LRU bounded twice."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> Resolved:
        digest = requested_hash(extensions)
        if digest is None:
            return Resolved(_required(query))
        if query is None:
            known = self._documents.get(digest)
            if known is None:
                raise PersistedError(Code.PERSISTED_QUERY_NOT_FOUND, NOT_FOUND_MESSAGE)
            self._documents.move_to_end(digest)
            return Resolved(known)
        _checked(query, digest)
        return Resolved(query, None if digest in self._documents else digest)

    def keep(self, digest: str, query: str) -> None:
        size = len(query)  # characters: a fair measure of what the text holds
        if digest in self._documents or size > self.max_bytes:
            return
        self._documents[digest] = query
        self._bytes += size
        while len(self._documents) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._documents.popitem(last=False)
            self._bytes -= len(dropped)

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._documents)


class RegisteredQueries:
    """Mode `only`: the documents registered in the database, and nothing else."""

    def __init__(self, pool: Pool, *, reload_seconds: float, refresh_seconds: float) -> None:
        self.pool = pool
        self.reload_seconds = reload_seconds
        self.refresh_seconds = refresh_seconds
        self._by_hash: dict[str, str] = {}
        self._texts: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self.loads = 0  # for tests: how often the table was read

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> Resolved:
        digest = requested_hash(extensions)
        if digest is not None and query is not None:
            _checked(query, digest)
        loaded_at = self._loaded_at
        if loaded_at is None or time.monotonic() - loaded_at >= self.refresh_seconds:
            await self._reloaded(self.refresh_seconds)  # so removed documents stop running
        if not self._registered(query, digest) and not (
            await self._reloaded(self.reload_seconds) and self._registered(query, digest)
        ):
            raise PersistedError(
                Code.FORBIDDEN,
                "Only registered documents are run here (PERSISTED_QUERIES=only), "
                "and this one is not registered",
            )
        if query is None:
            assert digest is not None
            return Resolved(self._by_hash[digest])
        return Resolved(query)

    def keep(self, digest: str, query: str) -> None:
        """Nothing is learnt from clients in this mode."""

    def _registered(self, query: str | None, digest: str | None) -> bool:
        if query is not None:
            return query in self._texts
        return digest is not None and digest in self._by_hash

    async def _reloaded(self, min_age: float) -> bool:
        """Read the table again unless it was read within `min_age` seconds; True if it was
        read meanwhile, by this request or by one it waited for."""
        seen = self.loads
        async with self._lock:  # one reload at a time
            if self.loads != seen:
                return True
            if self._loaded_at is not None and time.monotonic() - self._loaded_at < min_age:
                return False
            async with self.pool.connection() as conn:
                rows = await conn.fetch(LOAD_REGISTERED + f" limit {MAX_REGISTERED + 1}")
            if len(rows) > MAX_REGISTERED:
                log.warning(
                    "more than %d persisted documents are registered: the newest are not served",
                    MAX_REGISTERED,
                )
                rows = rows[:MAX_REGISTERED]
            self._by_hash = {row["hash"]: row["document"] for row in rows}
            self._texts = frozenset(self._by_hash.values())
            self._loaded_at = time.monotonic()
            self.loads += 1
            return True


def _required(query: str | None) -> str:
    if query is None:
        raise PersistedError(Code.BAD_USER_INPUT, "query must be a non-empty string")
    return query


def persisted_queries(settings: Settings, pool: Pool) -> Persisted:
    """The mode named by PERSISTED_QUERIES."""
    if settings.persisted_queries == "only":
        return RegisteredQueries(
            pool,
            reload_seconds=settings.persisted_reload_seconds,
            refresh_seconds=settings.persisted_refresh_seconds,
        )
    return AutomaticPersistedQueries(
        max_entries=settings.apq_max_entries, max_bytes=settings.apq_max_bytes
    )
