"""Who owns a dev stack's data dir: one process at a time, recorded in the dir itself.

The owner (the process that started the embedded servers, e.g. ``iotsphere serve``) holds
an exclusive ``flock`` on ``DATA_DIR/owner.lock`` for as long as it runs and writes its pid
and the servers' ports to ``DATA_DIR/owner.json``. The kernel drops the lock when the
owner exits however it exits (SIGKILL included), so "the lock is free" means "the owner is
dead": only then are servers found in the dir leftovers. A pid alone could not say that
(pids are reused), and a working directory alone (what devstack checked before) cannot tell
a crashed run's servers from a live gateway's.

The lock's file descriptor is not inherited (Python opens files close-on-exec), so the
servers and uvicorn's worker processes never keep a dead owner's lock alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_FILE = "owner.lock"
STATE_FILE = "owner.json"


@dataclass(frozen=True)
class OwnerRecord:
    pid: int
    pg_port: int
    redis_port: int


class StackOwnership:
    """The lock and record of one data dir, as seen from this process."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Takes the lock if no live process holds it (ours included: a second stack object
        in this process is refused as any other process would be)."""
        if self._fd is not None:
            return True
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        # A record left by a dead owner names servers that are now leftovers.
        with contextlib.suppress(FileNotFoundError):
            (self._dir / STATE_FILE).unlink()
        return True

    def record(self, pg_port: int, redis_port: int) -> None:
        """Publishes the running servers (written whole, then renamed into place)."""
        assert self._fd is not None, "try_acquire() first"
        state = self._dir / STATE_FILE
        partial = state.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(OwnerRecord(os.getpid(), pg_port, redis_port))))
        partial.replace(state)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self._dir / STATE_FILE).unlink()
        os.close(fd)  # drops the lock

    def read(self) -> OwnerRecord | None:
        """The live owner's record; None while it is still starting its servers."""
        try:
            raw = json.loads((self._dir / STATE_FILE).read_text())
            return OwnerRecord(int(raw["pid"]), int(raw["pg_port"]), int(raw["redis_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def wait_for_record(self, timeout: float) -> OwnerRecord | None:
        """The live owner's record, waiting up to ``timeout`` s for an owner that is still
        starting; None if it did not publish one in time."""
        deadline = time.monotonic() + timeout
        while (found := self.read()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def holder_pid(self) -> int | None:
        """The pid holding the lock, from /proc/locks (a record may not be written yet)."""
        try:
            inode = os.stat(self._dir / LOCK_FILE).st_ino
            lines = Path("/proc/locks").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
                with contextlib.suppress(ValueError):
                    return int(fields[4])
        return None
