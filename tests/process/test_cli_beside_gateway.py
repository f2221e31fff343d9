"""A newcomer's second terminal: with ``iotsphere serve --demo`` running on the embedded
stores, ``iotsphere tenant create``, ``tenant list`` and ``migrate`` on the same DATA_DIR
use that gateway's stores and never stop them; a second ``serve`` is refused, naming the
running one's pid. The gateway keeps answering throughout, and the new tenant's key works
against it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.serve_process import ROOT, embedded_environment, serve_process

KEY = re.compile(r"^admin key \(shown once, store it now\): (iot_\S+)$", re.MULTILINE)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp dirs: as root, PostgreSQL runs as a system user that must
    # reach its data dir.
    top = Path(tempfile.mkdtemp(prefix="iotsphere-beside-"))
    top.chmod(0o711)
    try:
        yield top / "data"
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.runtime.cli", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_beside_a_live_gateway_uses_its_stores_and_never_stops_them(
    data_dir: Path
) -> None:
    env = embedded_environment(data_dir)
    async with serve_process(env, "--demo", within=300) as gateway, httpx.AsyncClient(
        base_url=f"http://{gateway.address}", timeout=30
    ) as http:
        assert (await http.get("/readyz")).status_code == 200

        code, out, err = await cli(env, "tenant", "create", "acme")
        assert code == 0, err
        key = KEY.search(out)
        assert key, out
        assert "leftover" not in err
        assert (await http.get("/readyz")).status_code == 200, gateway.output

        code, out, err = await cli(env, "tenant", "list")
        assert code == 0 and "  acme  " in out, err
        code, out, err = await cli(env, "migrate")
        assert code == 0 and "registry: up to date" in out, err

        answer = await http.post("/graphql", json={"query": "{ devices { totalCount } }"},
                                 headers={"Authorization": f"Bearer {key[1]}"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": {"devices": {"totalCount": 0}}}

        # A second `make run` on the same DATA_DIR: refused, naming the running one.
        code, out, err = await cli(env, "serve", "--port", "1")
        assert code == 1
        assert f"pid {gateway.proc.pid}" in err and f"kill {gateway.proc.pid}" in err, err
        assert "Traceback" not in err

        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
    assert os.listdir(data_dir / "postgres")  # the data stays for the next start
