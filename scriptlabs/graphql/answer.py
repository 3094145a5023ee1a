"""The response body of an operation, and what the transport needs to send it.

The runner (graphql/execution.py) hands over what it gathered: the JSON of each root field
(built by PostgreSQL for planned fields, by orjson for Strawberry's), the errors, and whether
`data` is null; this module writes the body once, errors first, the fields in the document's
order, so both paths give the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from graphql import GraphQLError

from scriptlabs.errors import INTERNAL_MESSAGE, Code
from scriptlabs.graphql.masking import public_errors
from scriptlabs.telemetry import logs

log = logging.getLogger("scriptlabs.graphql")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The response body, and what the transport needs for the status.

    `request_error`: the request was refused before execution (the document did not parse or
    validate, no operation could be chosen, the variables did not coerce): no `data`.
    `status`: a status the transport must use (401 ended session, 405, 400, 503).
    """

    body: bytes
    request_error: bool = False
    status: int | None = None
    headers: dict[str, str] | None = None


def error_outcome(
    code: Code, message: str, status: int | None, headers: dict[str, str] | None = None
) -> Outcome:
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code.value}}]})
    return Outcome(body, True, status, headers)


def answer(
    keys: Iterable[str],
    values: dict[str, bytes],
    errors: list[GraphQLError],
    null_data: bool,
) -> Outcome:
    order = {key: i for i, key in enumerate(keys)}
    errors = sorted(errors, key=lambda e: order.get(str(e.path[0]), -1) if e.path else -1)
    parts = [b"{"]
    if errors:
        parts += [b'"errors":', orjson.dumps([e.formatted for e in errors]), b","]
    if null_data:
        parts.append(b'"data":null}')
    else:
        fields = b",".join(orjson.dumps(key) + b":" + values.get(key, b"null") for key in order)
        parts += [b'"data":{', fields, b"}}"]
    return Outcome(b"".join(parts))


def request_errors(errors: list[GraphQLError]) -> Outcome:
    formatted = [e.formatted for e in public_errors(errors)]
    return Outcome(orjson.dumps({"errors": formatted}), request_error=True)


def internal(exc: BaseException) -> Outcome:
    request_id = logs.request_id()  # the request's X-Request-Id
    log.error("operation failed at its end (request %s)", request_id, exc_info=exc)
    body = {
        "errors": [
            {
                "message": INTERNAL_MESSAGE,
                "extensions": {"code": Code.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
            }
        ],
        "data": None,
    }
    return Outcome(orjson.dumps(body))
