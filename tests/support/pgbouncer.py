"""A PgBouncer in transaction pooling mode in front of the test PostgreSQL.

The binary is Debian's package ``pgbouncer``, installed here with apt-get when missing
(the machine runs the tests as root; CI is a fresh Debian machine). Where it cannot be had,
the test is skipped with the reason printed; under ``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from gateway.runtime.devstack import free_port

HOST = "127.0.0.1"


def pgbouncer_binary() -> str:
    """The pgbouncer binary, installed with apt-get if needed; skips (fails on CI) when it
    cannot be had."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "-q", "pgbouncer"],
                        ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "pgbouncer"]):
            subprocess.run(command, env=env, capture_output=True, check=False, timeout=600)
            found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
            if found:
                break
    if found is None:
        reason = "pgbouncer is not installed and apt-get could not install it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _account() -> str | None:
    """PgBouncer refuses to run as root: as root it runs as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "iotsphere-pg", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


@contextlib.contextmanager
def pgbouncer(pg_dsn: str, *, pool_size: int = 4) -> Iterator[str]:
    """Runs PgBouncer (pool_mode = transaction) in front of the server of ``pg_dsn``; yields
    ``pg_dsn`` pointed at PgBouncer. Every database is served (``*``), as the server's user."""
    binary = pgbouncer_binary()
    parts = urlsplit(pg_dsn)
    port = free_port()
    login = f"user={unquote(parts.username or 'postgres')}"
    if parts.password:
        login += f" password={unquote(parts.password)}"
    with tempfile.TemporaryDirectory(prefix="iotsphere-pgbouncer-") as tmp:
        directory = Path(tmp)
        config = directory / "pgbouncer.ini"
        config.write_text(f"""[databases]
* = host={parts.hostname or HOST} port={parts.port or 5432} {login}

[pgbouncer]
listen_addr = {HOST}
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {directory / "pgbouncer.log"}
pidfile = {directory / "pgbouncer.pid"}
""")
        account = _account()
        if account is not None:
            entry = pwd.getpwnam(account)
            directory.chmod(0o755)
            for path in (directory, config):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        process = subprocess.Popen(
            [binary, str(config)], user=account, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_listening(port, process, directory / "pgbouncer.log")
            netloc = f"{parts.username or 'postgres'}@{HOST}:{port}"
            yield urlunsplit(parts._replace(netloc=netloc))
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            if process.stderr is not None:
                process.stderr.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited: {err}{text}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError("pgbouncer did not start listening")
