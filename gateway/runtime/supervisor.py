"""Several worker processes on one port, each with its own listening socket.

uvicorn's ``--workers`` hands one shared listening socket to every worker, and whichever
worker's event loop wakes first accepts the next connection. Keep-alive clients stay on
the connection they got, so with 8 clients one worker often holds most of them and the
second core idles (issue 13 measured `--workers 2` no faster than one worker at c8).
Here every worker gets its own socket bound with SO_REUSEPORT to the same address: the
kernel spreads new connections across the sockets by a hash of the 4-tuple, so
connections, and with them the load, are spread evenly.

The parent binds all the sockets (a port clash fails here, before any worker starts),
spawns one process per socket, restarts a worker that dies, and on SIGTERM or Ctrl-C
passes SIGTERM on and waits out the workers' own graceful shutdown. A socket stays open
in the parent while its worker restarts, so connections the kernel queued on it wait for
the new worker instead of being refused.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import time
from multiprocessing.context import SpawnProcess

import uvicorn

log = logging.getLogger("uvicorn.error")

multiprocessing.allow_connection_pickling()
_spawn = multiprocessing.get_context("spawn")
# A worker that dies this soon after starting is failing to start, not crashing under
# load: restarting it in a loop would only spin.
_MIN_UPTIME = 5.0


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, each its own accept queue."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # SO_REUSEPORT would also let a second gateway (same user) join this port silently and
    # take half its connections. A plain bind first fails while anyone holds the port.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the rest join the first one's port
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _worker(config: uvicorn.Config, sock: socket.socket) -> None:
    config.configure_logging()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group; the parent handles it


def run(config: uvicorn.Config, sockets: list[socket.socket], grace: float) -> None:
    """Serves ``config`` from one process per socket (``reuseport_sockets``, bound by the
    caller so it can report a port clash before anything starts) until SIGTERM or Ctrl-C,
    then waits up to ``grace`` seconds (plus a margin) for them to finish their requests."""
    workers = len(sockets)
    port = sockets[0].getsockname()[1]
    log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", config.host, port)
    log.info("%d workers, one SO_REUSEPORT socket each", workers)

    def start(sock: socket.socket) -> tuple[SpawnProcess, float]:
        proc = _spawn.Process(target=_worker, args=(config, sock), daemon=False)
        proc.start()
        return proc, time.monotonic()

    procs = [start(sock) for sock in sockets]
    try:
        while True:
            time.sleep(0.5)
            for i, (proc, started) in enumerate(procs):
                if proc.is_alive():
                    continue
                if time.monotonic() - started < _MIN_UPTIME:
                    raise RuntimeError(
                        f"worker {proc.pid} exited with {proc.exitcode} while starting")
                log.warning("worker %s exited with %s; starting another", proc.pid,
                            proc.exitcode)
                procs[i] = start(sockets[i])
    finally:
        _stop([proc for proc, _ in procs], grace)
        for sock in sockets:
            sock.close()


def _stop(procs: list[SpawnProcess], grace: float) -> None:
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            # SIGTERM, not Ctrl-C's SIGINT twice: uvicorn exits at once on a second signal.
            try:
                proc.terminate()
            except ProcessLookupError:
                pass  # exited meanwhile
    deadline = time.monotonic() + grace + 5
    for proc in procs:
        proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            log.warning("worker %s still running after the grace period; killing it", proc.pid)
            proc.kill()
            proc.join()
