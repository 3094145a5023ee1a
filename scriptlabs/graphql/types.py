"""Output types: thin Strawberry types built from rows."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any, TypeAlias

import strawberry

from scriptlabs.auth.accounts import SignedIn, UserRow
from scriptlabs.auth.sessions import SessionRow
from scriptlabs.auth.sessions import SignOutScope as StoredSignOutScope
from scriptlabs.labs.columns import LAB_FIELDS
from scriptlabs.labs.columns import ReadingStatus as StoredStatus
from scriptlabs.labs.stats import LabStatsRow

# the domain's enum, registered as the GraphQL enum ReadingStatus (names shown, values stored)
strawberry.enum(StoredStatus, name="ReadingStatus")
ReadingStatus: TypeAlias = StoredStatus


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class LabOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    TITLE = "TITLE"
    AUTHOR = "AUTHOR"
    RATING = "RATING"
    PUBLICATION_YEAR = "PUBLICATION_YEAR"


@strawberry.type
class User:
    id: uuid.UUID
    email: str
    created_at: dt.datetime
    last_sign_in_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=row.id,
            email=row.email,
            created_at=row.created_at,
            last_sign_in_at=row.last_sign_in_at,
        )


@strawberry.type
class Lab:
    id: uuid.UUID
    title: str
    author: str
    category: str | None
    publication_year: int | None
    isbn: str | None
    rating: int | None
    reading_status: ReadingStatus
    notes: str | None
    cover_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> Lab:
        """From a record holding the selected columns; the others stay None, unread."""
        get = row.get
        values = {f.attribute: get(f.column) for f in LAB_FIELDS}
        values["id"] = row["id"]
        if values["reading_status"] is not None:
            values["reading_status"] = StoredStatus(values["reading_status"])
        return cls(**values)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class LabEdge:
    cursor: str
    node: Lab


@strawberry.type
class AuthPayload:
    access_token: str
    token_type: str
    expires_in: int
    expires_at: dt.datetime
    refresh_token: str
    user: User

    @classmethod
    def from_result(cls, result: SignedIn) -> AuthPayload:
        return cls(
            access_token=result.access_token,
            token_type="bearer",
            expires_in=result.expires_in,
            expires_at=result.expires_at,
            refresh_token=result.refresh_token,
            user=User.from_row(result.user),
        )


SignOutScope: TypeAlias = StoredSignOutScope
strawberry.enum(StoredSignOutScope, name="SignOutScope")


@strawberry.type
class Session:
    id: uuid.UUID
    created_at: dt.datetime
    last_activity: dt.datetime
    expires_at: dt.datetime
    user_agent: str | None
    ip_address: str | None
    current: bool

    @classmethod
    def from_row(cls, row: SessionRow) -> Session:
        return cls(
            id=row.id,
            created_at=row.created_at,
            last_activity=row.last_activity,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip_address=row.ip_address,
            current=row.current,
        )


@strawberry.type
class ImportResult:
    inserted: int
    ids: list[uuid.UUID]


@strawberry.type
class CategoryCount:
    """How many labs (of a catalogue, or of a search's matches) have one category."""

    category: str
    count: int


@strawberry.type
class RatingCount:
    """How many labs have one rating (1 to 5)."""

    rating: int
    count: int


@strawberry.type
class LabStats:
    """A catalogue's statistics (contract: Stats); only the selected parts are read."""

    total_labs: int
    labs_read: int
    labs_reading: int
    labs_to_read: int
    average_rating: float | None = strawberry.field(
        description="round(avg(rating), 2) over the rated labs; null when none is rated."
    )
    total_authors: int
    total_categories: int
    by_category: list[CategoryCount] = strawberry.field(
        description="Labs with a category, per category: most labs first, then by name."
    )
    rating_distribution: list[RatingCount] = strawberry.field(
        description="Labs per rating, 1 to 5 in order, zero counts included."
    )

    @classmethod
    def from_row(cls, row: LabStatsRow) -> LabStats:
        average = row.average_rating
        return cls(
            total_labs=row.total_labs,
            labs_read=row.labs_read,
            labs_reading=row.labs_reading,
            labs_to_read=row.labs_to_read,
            # a Float: the numeric's nearest double, which prints as its 2 decimals do
            average_rating=None if average is None else float(average),
            total_authors=row.total_authors,
            total_categories=row.total_categories,
            by_category=[CategoryCount(category=c, count=n) for c, n in row.by_category],
            rating_distribution=[
                RatingCount(rating=r, count=n) for r, n in row.rating_distribution
            ],
        )


@strawberry.type
class StatusCount:
    """How many labs have one reading status."""

    status: ReadingStatus
    count: int


@strawberry.type
class ResetTokenStatus:
    """Whether a password reset token can still be used; `email` is masked (j***@example.com)."""

    valid: bool
    expires_at: dt.datetime | None
    email: str | None
