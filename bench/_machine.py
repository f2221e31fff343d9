"""The facts a benchmark section records about what it measured: code and machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "gateway", "resolvers",
                  "sql")
    return f"{commit}" + (" + uncommitted changes in gateway/resolvers/sql" if changed else "")


def machine_info(stores: str, libraries: tuple[str, ...]) -> dict[str, str]:
    """Code, CPU, cores (and any cgroup quota), RAM, OS, Python, stores, library versions."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    cores = f"{os.cpu_count()} logical"
    with contextlib.suppress(AttributeError):
        cores += f", {len(os.sched_getaffinity(0))} usable"
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores += f", cgroup quota {int(quota) / int(period):g} CPUs"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "Code": code_version(),
        "CPU": model, "Cores": cores, "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Stores": stores,
        "Libraries": ", ".join(f"{d} {version(d)}" for d in libraries),
    }
