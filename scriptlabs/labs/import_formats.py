"""The columns an import reads: the export's header, or a Goodreads library export's.

`header_reader(header)` tells the format from the header row and gives a function from a
row's fields to a lab's values (attribute → value, before createLab's rules), converting each
column as its format writes it (scriptlabs.labs.imports has the rules on Goodreads' columns in
its docstring). A value that is not of its field's type is reported and left out, so every bad
field of a row is named.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from scriptlabs.errors import FieldError
from scriptlabs.labs.columns import ReadingStatus
from scriptlabs.labs.csv_records import QUOTED_EMPTY

# attribute → the Lab field's GraphQL name, as the export's header and errors name it
GRAPHQL_NAMES = {
    "id": "id",
    "title": "title",
    "author": "author",
    "category": "category",
    "publication_year": "publicationYear",
    "isbn": "isbn",
    "rating": "rating",
    "reading_status": "readingStatus",
    "notes": "notes",
    "cover_url": "coverUrl",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
}
BY_GRAPHQL_NAME = {name: attribute for attribute, name in GRAPHQL_NAMES.items()}

STATUS_NAMES = {s.name: s for s in ReadingStatus}
SHELVES = {
    "read": ReadingStatus.READ,
    "currently-reading": ReadingStatus.READING,
    "to-read": ReadingStatus.TO_READ,
}
GOODREADS_ONLY = frozenset(
    {"Exclusive Shelf", "My Rating", "ISBN13", "Year Published", "My Review", "Book Id"}
)
_GOODREADS_TEXT = re.compile(r'^="(.*)"$', re.DOTALL)  # how Goodreads keeps ISBNs as text
_GOODREADS_DATE = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")


class HeaderError(ValueError):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# a row's fields → its values (attribute → value); a value that is not of its field's type
# is left out and its error added to the list, so one row's every bad field is named
Reader = Callable[[list[str], list[FieldError]], dict[str, Any]]
Converter = Callable[[str], Any]


def _convert(
    picks: list[tuple[str, int, Converter]], fields: list[str], problems: list[FieldError]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute, i, convert in picks:
        try:
            values[attribute] = convert(fields[i])
        except FieldError as exc:
            problems.append(exc)
    return values


def _text(raw: str) -> str | None:
    return raw if raw != "" else None


def _whole(name: str) -> Callable[[str], int | None]:
    def read(raw: str) -> int | None:
        raw = raw.strip()
        if not raw:
            return None
        if not raw.isascii() or not raw.lstrip("-").isdigit():
            raise FieldError(name, "{field} must be a whole number")
        return int(raw)

    return read


def _status(raw: str) -> ReadingStatus | None:
    raw = raw.strip()
    if not raw:
        return None
    status = STATUS_NAMES.get(raw.upper())
    if status is None:
        raise FieldError("reading_status", "{field} must be TO_READ, READING or READ")
    return status


def _time(name: str) -> Callable[[str], dt.datetime | None]:
    def read(raw: str) -> dt.datetime | None:
        raw = raw.strip()
        if not raw:
            return None
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise FieldError(name, "{field} must be an ISO 8601 date and time") from None
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    return read


def _notes(raw: str) -> str | None:
    # contract of the export: "" is an empty string, an empty field null
    return raw if raw != "" or raw is QUOTED_EMPTY else None


def _kept(raw: str) -> str:
    return raw  # title and author: blank is refused by the rules, as createLab refuses it


EXPORT_READERS: dict[str, Converter] = {
    "title": _kept,
    "author": _kept,
    "category": _text,
    "publication_year": _whole("publication_year"),
    "isbn": _text,
    "rating": _whole("rating"),
    "reading_status": _status,
    "notes": _notes,
    "cover_url": _text,
    "created_at": _time("created_at"),
    "updated_at": _time("updated_at"),
}


def _goodreads_isbn(raw: str) -> str | None:
    raw = raw.strip()
    match = _GOODREADS_TEXT.match(raw)
    if match:
        raw = match.group(1).strip()
    return raw or None


def _goodreads_rating(raw: str) -> int | None:
    value = _whole("rating")(raw)
    return None if value == 0 else value  # contract: 0 = unrated


def _goodreads_shelf(raw: str) -> ReadingStatus | None:
    raw = raw.strip()
    if not raw:
        return None
    return SHELVES.get(raw.lower(), ReadingStatus.TO_READ)


def _goodreads_date(raw: str) -> dt.datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    match = _GOODREADS_DATE.match(raw)
    try:
        if match:
            y, m, d = (int(g) for g in match.groups())
            return dt.datetime(y, m, d, tzinfo=dt.UTC)
        return _time("created_at")(raw)
    except ValueError:
        raise FieldError("created_at", "{field} must be a date (YYYY/MM/DD)") from None


def header_reader(header: list[str]) -> tuple[str, Reader]:
    """The format of a file ('export' or 'goodreads') and a function from a row's fields to
    the values of a lab (attribute → value); HeaderError when the header will not do."""
    names = [h.strip().lstrip("\ufeff").strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise HeaderError(None, f"the header names the column {name!r} twice")
        seen.add(name)
    index = {name: i for i, name in enumerate(names)}
    width = len(names)
    if seen & GOODREADS_ONLY:
        return "goodreads", _goodreads_reader(index, width)
    picks: list[tuple[str, int, Converter]] = []
    for name, i in index.items():
        attribute = BY_GRAPHQL_NAME.get(name)
        if attribute is not None and attribute in EXPORT_READERS:
            picks.append((attribute, i, EXPORT_READERS[attribute]))
    for required in ("title", "author"):
        if required not in index:
            raise HeaderError(
                required,
                f"the header has no {required!r} column: name the columns as the export "
                "does (title,author,...) or as a Goodreads library export does",
            )

    def read(fields: list[str], problems: list[FieldError]) -> dict[str, Any]:
        _check_width(fields, width)
        return _convert(picks, fields, problems)

    return "export", read


def _goodreads_reader(index: dict[str, int], width: int) -> Reader:
    for required in ("Title", "Author"):
        if required not in index:
            raise HeaderError(required.lower(), f"the header has no {required!r} column")
    simple: list[tuple[str, int, Converter]] = [
        ("title", index["Title"], _kept),
        ("author", index["Author"], _kept),
    ]
    for column, attribute, convert in (
        ("My Rating", "rating", _goodreads_rating),
        ("Exclusive Shelf", "reading_status", _goodreads_shelf),
        ("My Review", "notes", _text),
        ("Date Added", "created_at", _goodreads_date),
    ):
        if column in index:
            simple.append((attribute, index[column], convert))
    isbns = [index[c] for c in ("ISBN13", "ISBN") if c in index]
    years = [index[c] for c in ("Year Published", "Original Publication Year") if c in index]
    year = _whole("publication_year")

    def read(fields: list[str], problems: list[FieldError]) -> dict[str, Any]:
        _check_width(fields, width)
        values = _convert(simple, fields, problems)
        values["isbn"] = next(
            (v for v in (_goodreads_isbn(fields[i]) for i in isbns) if v is not None), None
        )
        try:  # Year Published, else Original Publication Year
            values["publication_year"] = next(
                (v for v in (year(fields[i]) for i in years) if v is not None), None
            )
        except FieldError as exc:
            problems.append(exc)
        return values

    return read


def _check_width(fields: list[str], width: int) -> None:
    if len(fields) != width:
        raise RowShapeError(f"the row has {len(fields)} fields, the header {width}")


class RowShapeError(ValueError):
    """A row whose shape is wrong (no one field to name)."""
