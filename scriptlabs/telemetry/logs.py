"""Logs: one JSON object a line (or text for a terminal), each with the request id it belongs to.

`scriptlabs serve` configures logging once through uvicorn's `log_config` (`log_config()`), so
every worker logs alike. The request id lives in a context variable set by the access
middleware (ops/access.py): every line logged while a request is handled carries it, and the
`requestId` of an INTERNAL_SERVER_ERROR is the same id, so an operator finds the cause from
what the client was told.

Nothing here decides what is logged; the callers never log variables, tokens, passwords,
addresses or mail bodies (tests/test_metrics.py checks the flows that handle them).
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from typing import Any

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "scriptlabs_request_id", default=None
)

# LogRecord's own attributes: anything else on a record came from `extra=`
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def request_id() -> str:
    """The id of the request being handled, or a fresh one outside any request."""
    return REQUEST_ID.get() or uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (as `request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


# uvicorn's records carry their message again with terminal colours
_NOT_EXTRA = _RECORD_ATTRIBUTES | {"request_id", "color_message"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extras (`extra=`), in the order given."""
    attributes = record.__dict__
    extra = attributes.keys() - _NOT_EXTRA
    if not extra:
        return {}
    return {k: v for k, v in attributes.items() if k in extra and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, requestId, the record's extras,
    and the exception's traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            line["requestId"] = rid
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message key=value ...` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _fields(record)
        rid = getattr(record, "request_id", None)
        if rid:
            extras["requestId"] = rid
        if not extras:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the line
        pairs = " ".join(f"{k}={v}" for k, v in extras.items() if v is not None)
        return f"{head} {pairs}{sep}{tail}"


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    if _second[0] != seconds:  # once a second, not once a line
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{millis:03d}Z"


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A logging.config.dictConfig for uvicorn's `log_config`: every logger (ours, uvicorn's)
    through one handler on standard error in `log_format`."""
    formatter = "scriptlabs.telemetry.logs.JsonFormatter" if log_format == "json" else None
    formatter = formatter or "scriptlabs.telemetry.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "scriptlabs.telemetry.logs.RequestIdFilter"}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
        },
    }
