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

import asyncio
import atexit
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


class JsonLines:
    """A fast path for lines logged on every request (the access line): the same JSON line
    `JsonFormatter` makes of the record, made without a LogRecord, and written at the end of
    the event loop's turn with the other lines of that turn, so that under load one write
    carries many (logging writes and flushes each line on its own: with the record, a fifth
    of the API's time per request; bench/RESULTS.md).

    Only while the logging configuration is the one `log_config` makes, a single JSON
    StreamHandler at the root that the logger reaches; under any other (a test's capture,
    another handler, a filter) `write` returns False and the caller logs as usual.
    """

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._handler: logging.StreamHandler[Any] | None = None
        self._scheduled = False
        atexit.register(self.flush)

    def write(self, logger: logging.Logger, message: str, fields: dict[str, Any]) -> bool:
        handler = _json_handler(logger)
        if handler is None:
            return False
        line: dict[str, Any] = {
            "ts": _timestamp(time.time()),
            "level": "info",
            "logger": logger.name,
            "message": message,
        }
        rid = REQUEST_ID.get()
        if rid:
            line["requestId"] = rid
        line.update(fields)
        if handler is not self._handler:
            self.flush()
            self._handler = handler
        self._pending.append(orjson.dumps(line, default=str).decode())
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                loop.call_soon(self.flush)
                self._scheduled = True
        return True

    def flush(self) -> None:
        """Write the lines waiting (the loop calls this at the end of its turn)."""
        self._scheduled = False
        handler, pending = self._handler, self._pending
        if handler is None or not pending:
            return
        text = "\n".join(pending) + "\n"
        pending.clear()
        handler.acquire()
        try:
            handler.stream.write(text)
            handler.stream.flush()
        except (OSError, ValueError):  # standard error closed or gone: as logging, go on
            pass
        finally:
            handler.release()


def _json_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler `logger`'s INFO records reach, when that is log_config's JSON one."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (
        type(found) is not logging.StreamHandler
        or not isinstance(found.formatter, JsonFormatter)
        or found.level > logging.INFO
        or any(not isinstance(f, RequestIdFilter) for f in found.filters)
    ):
        return None
    return found


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
