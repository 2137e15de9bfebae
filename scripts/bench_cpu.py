"""CPU time for the benchmarks: the whole machine's, and that of the processes a run is made of.

The machine is shared: a rate moves with what else runs, CPU per job much less. The machine's
figure (/proc/stat) counts everything, other people's work included; the processes' figure
counts only ours (the sender, the worker processes, the PostgreSQL sessions of the benchmark's
database and the server's WAL writer, Redis), so the two bracket what a job costs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float:
    """CPU time spent by the whole machine so far (every process, user and system)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / _TICK


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def process_cpu_s(pid: int) -> float:
    """User and system time of a process (all its threads) so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may hold spaces: fields are counted after its closing parenthesis.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def snapshot(pids: Iterable[int]) -> dict[int, float]:
    return {pid: process_cpu_s(pid) for pid in pids}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots; a process new in `after` counts from 0."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
