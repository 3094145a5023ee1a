"""CPU accounting from /proc: per process, for the bench's PostgreSQL, and for the machine."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    # the fields after "(comm)": state, ppid, ..., utime (11), stime (12)
    return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()


def cluster_cpu(pgdata: Path) -> float:
    """CPU seconds used so far by the bench's PostgreSQL: the postmaster, the children it has
    reaped (backends that ended: cutime, cstime) and the children alive now."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text(encoding="ascii").split()[0])
        fields = _stat_fields(postmaster)
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                child = _stat_fields(entry.name)
                if int(child[1]) == postmaster:
                    ticks += int(child[11]) + int(child[12])
    return ticks / CLOCK_TICKS


def descendants(root: int) -> set[int]:
    """`root` and every process under it (the workers of a server), alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat_fields(entry.name)[1]), []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and the processes under it: each one's own time and
    that of the children it has reaped (cutime, cstime), so a worker that ended still counts."""
    ticks = 0
    for pid in descendants(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ticks += sum(int(v) for v in _stat_fields(pid)[11:15])
    return ticks / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def other_cpu(seconds: float = 1.0) -> float:
    """Per cent of the machine's CPU time used over `seconds` while we run nothing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    total = total1 - total0
    return 100.0 * (total - (idle1 - idle0)) / total if total else 0.0
