"""What the benchmarks read about processes and the machine from /proc: CPU time, memory,
the devstack's processes, load. Imports nothing of the gateway, so the client processes
(bench/_fanout_clients.py) can use it too."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM... of a process, in KiB (empty once it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Vm"):
                name, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[name] = int(parts[0])
    return out


def with_descendants(root: int) -> list[int]:
    """``root`` and every process below it (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def stack_pids(data_dir: Path | None, exe: str) -> list[int]:
    """Processes of an embedded devstack (they work in its data dir) whose executable is
    ``exe*`` (``postgres``, ``valkey``); none for external stores."""
    if data_dir is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            name = Path(os.readlink(f"/proc/{entry}/exe")).name
        except OSError:
            continue
        if cwd.startswith(str(data_dir)) and name.startswith(exe):
            found.append(int(entry))
    return found


def machine_busy_seconds() -> float:
    """CPU time all processes used so far (the first line of /proc/stat, idle and iowait
    excluded): what others use on this shared machine is this minus ours."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def load_average() -> tuple[float, float, float]:
    try:
        one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, ValueError):
        return (0.0, 0.0, 0.0)
    return (float(one), float(five), float(fifteen))


def raise_nofile() -> int:
    """Lifts this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def child_preexec() -> None:
    """In every child before exec: the open-file limit at its hard limit, and SIGTERM when
    the benchmark dies (even by SIGKILL), so nothing outlives it."""
    raise_nofile()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
