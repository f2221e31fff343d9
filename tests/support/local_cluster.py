"""A throwaway PostgreSQL cluster from a given bin directory, with default settings (so no
shared_preload_libraries): for tests of what the gateway does on a server it did not
choose. As root it runs as the devstack's system user, since PostgreSQL refuses root."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.runtime.devstack import pg_account
from tests.support.live_server import free_port


@contextmanager
def local_cluster(bindir: Path) -> Iterator[str]:
    """Starts a cluster of ``bindir``'s PostgreSQL on a free loopback port; yields a
    superuser DSN of its ``postgres`` database; stops and removes it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="iotsphere-cluster-"))
    root.chmod(0o711)  # reachable by the system user PostgreSQL runs as
    data = root / "data"
    account = pg_account()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        uid, gid = account if account else (None, None)
        return subprocess.run([str(a) for a in args], cwd="/", capture_output=True,
                              text=True, check=False, timeout=120, user=uid, group=gid,
                              extra_groups=[] if uid is not None else None)

    try:
        data.mkdir(mode=0o700)
        if account:
            import os
            os.chown(data, *account)
            os.chown(root, *account)
        done = run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C")
        assert done.returncode == 0, done.stdout + done.stderr
        port = free_port()
        done = run(bindir / "pg_ctl", "start", "-D", data, "-l", root / "log", "-w",
                   "-o", f"-p {port} -c listen_addresses=127.0.0.1 "
                         f"-c unix_socket_directories={root}")
        assert done.returncode == 0, done.stdout + done.stderr + (root / "log").read_text()
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(bindir / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w")
    finally:
        shutil.rmtree(root, ignore_errors=True)
