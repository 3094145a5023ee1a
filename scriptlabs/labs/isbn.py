"""ISBN normalisation and check digits (ISBN-10: mod 11, ISBN-13: mod 10 with weights 1, 3)."""

from __future__ import annotations

import re

_DROP = re.compile(r"[\s-]+")
# [0-9], not \d: \d, str.isdigit() and int() also take other scripts' digits ('٠', '０')
_ISBN10 = re.compile(r"[0-9]{9}[0-9X]")
_ISBN13 = re.compile(r"[0-9]{13}")


def normalize(raw: str) -> str:
    """Drop spaces and hyphens, upper-case `x`."""
    return _DROP.sub("", raw).upper()


def is_valid(isbn: str) -> bool:
    """True for a normalised ISBN-10 or ISBN-13 whose check digit is right."""
    if _ISBN10.fullmatch(isbn):
        total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(isbn))
        return total % 11 == 0
    if _ISBN13.fullmatch(isbn):
        total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(isbn))
        return total % 10 == 0
    return False
