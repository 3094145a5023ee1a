"""Documents: parsed under a token limit and validated, once per request at most, cached.

Every request's document goes through `Documents.get`: a hit costs a dictionary look-up; a
miss parses (refusing a document of more than GRAPHQL_MAX_TOKENS lexical tokens before the
parser goes further) and validates with graphql-core's rules and ours (limits, introspection
off). The planner and the Strawberry path share the result, so no document is parsed or
validated twice (contract, Errors).

The cache is bounded by an estimate of the memory its syntax trees hold, not only by their
number, and neither a large document nor a refused one is ever kept: a client sending a
hundred distinct hostile documents makes the process no larger.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)

from scriptlabs.errors import Code

# a syntax tree takes roughly this many bytes per byte of document text (measured with
# tracemalloc on the standard introspection query and on lab queries: 25-40)
TREE_BYTES_PER_CHAR = 40
LARGEST_CACHED = 32 * 1024  # characters; larger documents are parsed for their request only
# documents larger than this are parsed in a worker thread: the GIL still serialises the
# work, but the event loop keeps answering others between the thread's turns
PARSE_IN_THREAD = 16 * 1024

# one match per lexical token of GraphQL (strings, block strings and comments whole, so a word
# inside them is not counted); the parser's own count stays the authority, this only refuses
# a document that is clearly over the limit at the speed of the regex engine
_TOKEN = re.compile(
    r'#[^\n\r]*+|"""(?:[^"\\]++|\\"""|\\|"(?!""))*+"""|"(?:[^"\\\n\r]++|\\.)*+"'
    r"|\.\.\.|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[_A-Za-z][_0-9A-Za-z]*"
    r"|[!$&()\[\]{}:=@|]"
)


def over_token_limit(query: str, limit: int) -> bool:
    """Whether `query` has clearly more than `limit` lexical tokens (comments not counted)."""
    if len(query) <= limit:
        return False  # every token takes at least one character
    count = 0
    for match in _TOKEN.finditer(query):
        if not match.group().startswith("#"):
            count += 1
            if count > limit:
                return True
    return False


@dataclass(slots=True)
class Document:
    """A parsed and validated document, or the errors that refuse it."""

    node: DocumentNode | None
    errors: list[GraphQLError]
    # what the planner derived from it, by operation name (planner.Planner keeps it here so
    # that a document's plans leave the cache with it)
    plans: dict[Any, Any] = field(default_factory=dict)

    def shapes(self, name: str | None) -> dict[str, Any]:
        """The planner's response shapes of operation `name`, by response key (kept here so
        that they leave the cache with the document)."""
        shapes: dict[str, Any] = self.plans.setdefault(("shapes", name), {})
        return shapes

    def operation(self, name: str | None) -> OperationDefinitionNode | GraphQLError:
        """The operation to run, as GetOperation in the specification chooses it."""
        assert self.node is not None
        operations = [d for d in self.node.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            if len(operations) == 1:
                return operations[0]
            return _request_error(
                "Must provide operationName if the document contains several operations"
            )
        for operation in operations:
            if operation.name is not None and operation.name.value == name:
                return operation
        return _request_error(f"Unknown operation named '{name}'")


def _request_error(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": Code.BAD_USER_INPUT.value})


class Documents:
    """The parse-and-validate cache of one schema."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: list[type[ValidationRule]],
        *,
        max_tokens: int,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.schema = schema
        self.limits = list(rules)
        self.rules = list(specified_rules)
        self.max_tokens = max_tokens
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, tuple[Document, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the cache is also used from worker threads (tests)

    async def get(self, query: str) -> Document:
        with self._lock:
            hit = self._cache.get(query)
            if hit is not None:
                self._cache.move_to_end(query)
                return hit[0]
        if over_token_limit(query, self.max_tokens):
            return Document(None, [_too_complex(self.max_tokens)])
        if len(query) > PARSE_IN_THREAD:
            document = await asyncio.to_thread(self._load, query)
        else:
            document = self._load(query)
        # a refused document is not kept: its errors hold its whole syntax tree, and a client
        # could fill the cache with refusals as cheaply as it sends them
        if document.node is not None and len(query) <= LARGEST_CACHED:
            self._keep(query, document)
        return document

    def _load(self, query: str) -> Document:
        try:
            node = parse(query, max_lexical_tokens=self.max_tokens)
        except GraphQLSyntaxError as error:
            if "tokens" in error.message and "Parsing aborted" in error.message:
                return Document(None, [_too_complex(self.max_tokens)])
            return Document(None, [error])
        # our limits first, alone: some of graphql-core's rules take time quadratic in the
        # number of fields (overlapping fields), so a document is measured before they run
        errors = validate(self.schema, node, self.limits)
        if not errors:
            errors = validate(self.schema, node, self.rules)
        if errors:
            return Document(None, list(errors))
        return Document(node, [])

    def _keep(self, query: str, document: Document) -> None:
        size = len(query) * TREE_BYTES_PER_CHAR
        with self._lock:
            if query in self._cache:
                return
            self._cache[query] = (document, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._cache:
                _, (_, dropped) = self._cache.popitem(last=False)
                self._bytes -= dropped

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._cache)


def _too_complex(max_tokens: int) -> GraphQLError:
    return GraphQLError(
        f"Document has more than {max_tokens} tokens; the limit is {max_tokens}",
        extensions={"code": Code.QUERY_TOO_COMPLEX.value},
    )
