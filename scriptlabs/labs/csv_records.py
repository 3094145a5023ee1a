"""CSV text in, records out with their physical line numbers, a piece at a time.

The import reads a file or an HTTP body as it arrives, so the text comes in pieces that may
end anywhere: inside a line, inside a quoted field that spans lines. `CsvRecords.feed` keeps
the unfinished part and hands back only whole records, each with the number of the line it
starts on (the header is line 1; a quoted field with line breaks spans several lines).

- A record ends at a line break where the double quotes seen since its start are even in
  number (RFC 4180 doubles a quote inside a quoted field), or, when they are odd (a quoted
  field that goes on, or a stray quote inside an unquoted field: `12" Singles`), where the
  csv module says the record is whole. Whole records are then parsed by the csv module
  (strict: `"abc"def` is an error), one reader per piece, so its speed is C's.
- Memory stays bounded: a record may hold at most `max_record_chars` characters; an
  unterminated quoted field therefore ends the file with an error at its first line instead
  of reading the rest into memory.
- Blank lines are skipped. Line breaks are LF or CRLF (a lone CR is not a line break).
- An empty field written quoted (`""`) comes out as `QUOTED_EMPTY`, a str equal to '' that
  can be told apart (`is QUOTED_EMPTY`): the export writes an empty string so and null as
  nothing, and the csv module alone reads both as ''.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass

MAX_RECORD_CHARS = 1024 * 1024

# the csv module's own limit is 128 KiB per field; a record's own bound is the one above
csv.field_size_limit(MAX_RECORD_CHARS)


class QuotedEmpty(str):
    """An empty field that was written `""`."""

    __slots__ = ()


QUOTED_EMPTY = QuotedEmpty()


class CsvError(ValueError):
    """The text cannot be read on: unterminated quotes, a record too long, bad encoding."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    fields: list[str] | None  # None: the record is not valid CSV
    error: str | None = None


class CsvRecords:
    """Whole CSV records from text fed in pieces."""

    def __init__(self, max_record_chars: int = MAX_RECORD_CHARS) -> None:
        self.max_record_chars = max_record_chars
        self._partial = ""  # text after the last line break seen
        self._pending: list[str] = []  # the lines of a record still open (odd quotes)
        self._pending_chars = 0
        self._quotes = 0
        self._line = 0  # physical lines completed so far
        self._start = 1  # the line the open record starts on

    @property
    def lines(self) -> int:
        """Physical lines read so far."""
        return self._line

    def feed(self, text: str) -> list[Record]:
        """The records completed by `text`; CsvError when the text cannot be read on."""
        if not text:
            return []
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        if len(self._partial) + self._pending_chars > self.max_record_chars:
            raise CsvError(self._start, "the record is too long (an unterminated quote?)")
        return self._records(pieces)

    def close(self) -> list[Record]:
        """The last records, once the text has ended."""
        pieces = [self._partial] if self._partial else []
        self._partial = ""
        records = self._records(pieces)
        if self._pending:
            raise CsvError(self._start, "a quoted field is not closed")
        return records

    def _records(self, pieces: list[str]) -> list[Record]:
        ready: list[str] = []
        first = 0
        pending = self._pending
        for piece in pieces:
            self._line += 1
            if not pending:
                self._start = self._line
            pending.append(piece + "\n")
            self._pending_chars += len(piece) + 1
            self._quotes += piece.count('"')
            if self._quotes % 2 == 0 or _is_complete(pending):
                first = first or self._start
                ready.extend(pending)
                pending.clear()
                self._pending_chars = 0
                self._quotes = 0
            elif self._pending_chars > self.max_record_chars:
                raise CsvError(self._start, "the record is too long (an unterminated quote?)")
        if not ready:
            return []
        return list(_parse(ready, first))


def _is_complete(lines: list[str]) -> bool:
    """False while `lines` end inside a quoted field."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" not in str(exc)
    return True


def _parse(lines: list[str], first: int) -> Iterator[Record]:
    """Parse whole records, the first starting on line `first`."""
    reader = csv.reader(lines, strict=True)
    while True:
        before = reader.line_num
        line = first + before
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(line, None, str(exc))
            continue
        if fields and not (len(fields) == 1 and not fields[0].strip(" \t\r")):
            if "" in fields:
                raw = "".join(lines[before : reader.line_num])
                if '""' in raw:
                    for index in _quoted_empties(raw):
                        if index < len(fields) and fields[index] == "":
                            fields[index] = QUOTED_EMPTY
            yield Record(line, fields)


def _quoted_empties(raw: str) -> set[int]:
    """The indexes of the fields of one record written `""` (a slow path: only records with
    an empty field and a doubled quote somewhere come here)."""
    found: set[int] = set()
    index, i, n, start = 0, 0, len(raw), True
    while i < n:
        c = raw[i]
        if start and c == '"':
            j, empty = i + 1, True
            while j < n:
                if raw[j] == '"':
                    if j + 1 < n and raw[j + 1] == '"':
                        j, empty = j + 2, False
                        continue
                    break
                j, empty = j + 1, False
            if empty:
                found.add(index)
            i, start = j + 1, False
            continue
        if c == ",":
            index, start = index + 1, True
        else:
            start = False
        i += 1
    return found
