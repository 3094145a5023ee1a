"""Summarise a py-spy profile (`py-spy record --format raw`): where the API's busy time goes.

    .venv/bin/python bench/profile.py PROFILE.txt [--top N]

Each line of a raw profile is one stack, root first, frames `function (file:line)` joined by
`;`, then the number of samples. py-spy samples only while the thread runs (not while it waits
in epoll), so the shares below are shares of the server's busy time.

Self time goes to the library of the innermost frame; frames of the standard library (other
than asyncio) count for their caller, so `uuid.__str__` called by the planner is the planner's.
Code compiled to C (orjson, uvloop, asyncpg's protocol, httptools' parser) has no frames of
its own: its time shows on the Python line that called it, and the event loop's own C work
(uvloop, socket reads and writes, protocol callbacks written in Cython) on `Runner.run`.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")

# (file fragment, category), first match wins
CATEGORIES = (
    ("scriptlabs/graphql/planner.py", "scriptlabs: planner"),
    ("scriptlabs/http/", "scriptlabs: http endpoint"),
    ("scriptlabs/db/", "scriptlabs: db (operation, pool)"),
    ("scriptlabs/auth/", "scriptlabs: auth (tokens)"),
    ("scriptlabs/labs/", "scriptlabs: labs (store, filters, pagination)"),
    ("scriptlabs/graphql/", "scriptlabs: graphql (resolvers, extensions)"),
    ("scriptlabs/", "scriptlabs: other"),
    ("asyncpg/", "asyncpg (Python part)"),
    ("uvicorn/", "uvicorn (incl. httptools parser)"),
    ("httptools/", "uvicorn (incl. httptools parser)"),
    ("starlette/", "starlette"),
    ("strawberry/", "strawberry"),
    ("graphql/", "graphql-core"),
    ("jwt/", "pyjwt"),
    ("uvloop/", "event loop (uvloop, C I/O)"),
    ("asyncio/", "event loop (uvloop, C I/O)"),
)
STDLIB_MODULES = frozenset(
    {
        "abc",
        "base64",
        "collections",
        "contextlib",
        "copy",
        "dataclasses",
        "datetime",
        "enum",
        "functools",
        "inspect",
        "ipaddress",
        "json",
        "logging",
        "re",
        "typing",
        "uuid",
        "warnings",
        "weakref",
    }
)


def parse_frame(text: str) -> tuple[str, str, str]:
    match = FRAME.match(text.strip())
    if match is None:
        return text.strip(), "", ""
    return match["function"], match["file"], match["line"] or ""


def is_stdlib(file: str) -> bool:
    first = file.split("/", 1)[0].removesuffix(".py")
    return first in STDLIB_MODULES or (
        "/" not in file and file.removesuffix(".py") in STDLIB_MODULES
    )


def category(file: str) -> str | None:
    for fragment, name in CATEGORIES:
        if fragment in file:
            return name
    return None


def summarise(path: Path, top: int) -> str:
    samples = 0
    by_category: Counter[str] = Counter()
    by_line: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for raw in path.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack.split(";")]
        samples += count
        # self time: the innermost frame not in the standard library (asyncio counts as ours)
        owner = None
        for function, file, line in reversed(frames):
            if is_stdlib(file):
                continue
            owner = (function, file, line)
            break
        if owner is None:
            owner = frames[-1]
        function, file, line = owner
        by_category[category(file) or f"other: {file.split('/')[0]}"] += count
        by_line[f"{function} ({file}:{line})"] += count
        for name in {f"{fn} ({fl})" for fn, fl, _ in frames}:
            inclusive[name] += count
    if not samples:
        return f"{path}: no samples"

    def pct(n: int) -> str:
        return f"{100 * n / samples:5.1f} %"

    out = [f"{path}: {samples} samples (busy time only)", "", "self time by library:"]
    out += [f"  {pct(n)}  {name}" for name, n in by_category.most_common()]
    out += ["", f"self time by line (top {top}):"]
    out += [f"  {pct(n)}  {name}" for name, n in by_line.most_common(top)]
    out += ["", f"inclusive time by function (top {top}):"]
    out += [f"  {pct(n)}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
