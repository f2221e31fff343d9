"""One measured process of bench/instructions.py, run under callgrind with instrumentation
off: builds the gateway app of the tree first on PYTHONPATH (this file imports nothing of
the project's bench/, so an older tree can be measured), answers the query a few times to
warm caches and pools, then switches callgrind's instrumentation on, zeroes its counters,
answers the query ``requests`` times straight through ASGI, and switches it off.

    python bench/_instructions_run.py <key> <body JSON> <requests> [clock]

With ``clock`` (no callgrind) it times the answers instead: the process's CPU seconds
(``time.process_time``) for ``requests`` answers, printed as ``cpu-seconds <s>``.

The stores come from the IOTSPHERE_* variables bench/instructions.py sets.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from typing import Any

WARMUP = 20


def _callgrind(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True,
                   capture_output=True)


async def _request(app: Any, state: Any, body: bytes, key: str) -> bytes:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/graphql", "raw_path": b"/graphql", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        "state": dict(state),  # a server's per-request copy
        "headers": [(b"host", b"gateway"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"authorization", f"Bearer {key}".encode())],
    }
    chunks: list[bytes] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


async def _main(key: str, body: bytes, requests: int, clock: bool = False) -> None:
    from gateway.app import create_app
    from gateway.settings import Settings

    app = create_app(Settings.from_env())
    async with app.router.lifespan_context(app) as state:
        for _ in range(WARMUP):
            answer = await _request(app, state, body, key)
            if b'"errors"' in answer or b'"data"' not in answer:
                raise SystemExit(f"the query failed: {answer[:500]!r}")
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 10, 5)  # as `iotsphere serve` (gateway/runtime/workers.py)
        if clock:
            started = time.process_time()
            for _ in range(requests):
                await _request(app, state, body, key)
            print(f"cpu-seconds {time.process_time() - started:.6f}", flush=True)
            return
        _callgrind("--instr=on")
        _callgrind("--zero")
        for _ in range(requests):
            await _request(app, state, body, key)
        _callgrind("--instr=off")


if __name__ == "__main__":
    import uvloop

    key, body, requests = sys.argv[1:4]
    uvloop.run(_main(key, body.encode(), int(requests), sys.argv[4:] == ["clock"]))
