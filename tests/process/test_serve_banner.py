"""``iotsphere serve``'s banner: printed once the port is bound (a port clash shows only
the error), with a URL a browser can open, advertising GraphiQL only in development; and
a warning when embedded mode listens beyond this machine."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.runtime.banner import banner, exposure_warning
from gateway.settings import Settings
from tests.support.serve_process import ROOT, embedded_environment


def test_banner_in_development_shows_graphiql_and_the_key() -> None:
    text = banner(Settings(host="127.0.0.1"), 8000, "iot_key")
    assert "GraphiQL:  http://127.0.0.1:8000/graphql" in text
    assert "iot_key" in text


def test_banner_for_every_interface_shows_a_url_a_browser_can_open() -> None:
    for host in ("0.0.0.0", "::", ""):
        text = banner(Settings(host=host), 8123, None)
        assert "http://127.0.0.1:8123/graphql" in text and "0.0.0.0:" not in text, host
    assert "http://[::1]:8000/graphql" in banner(Settings(host="::1"), 8000, None)


def test_banner_in_production_does_not_advertise_graphiql() -> None:
    text = banner(Settings(host="127.0.0.1", env="production"), 8000, None)
    assert "GraphiQL" not in text.replace("GraphiQL is off", "")
    assert "http://127.0.0.1:8000/graphql" in text and "off in production" in text


def test_exposure_warning_only_for_embedded_mode_beyond_loopback() -> None:
    embedded = Settings(host="0.0.0.0")
    assert embedded.embedded
    warning = exposure_warning(embedded)
    assert warning is not None and "0.0.0.0" in warning and "--host 127.0.0.1" in warning
    assert exposure_warning(Settings(host="127.0.0.1")) is None
    assert exposure_warning(Settings(host="::1")) is None
    external = Settings(host="0.0.0.0", registry_dsn="postgresql://r", assets_dsn="postgresql://a",
                        telemetry_dsn="postgresql://t", redis_url="redis://x")
    assert exposure_warning(external) is None


@pytest.fixture
def data_dir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="iotsphere-banner-"))
    top.chmod(0o711)  # as root, PostgreSQL's system user must reach its data dir
    try:
        yield top / "data"
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def test_a_port_clash_shows_the_error_and_no_banner(data_dir: Path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.runtime.cli", "serve", "--host", "0.0.0.0",
            "--port", str(port), env=embedded_environment(data_dir), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    output = out.decode() + err.decode()
    assert proc.returncode == 1, output
    assert f"cannot listen on 0.0.0.0:{port}" in err.decode(), output
    assert "Address already in use" in err.decode(), output
    assert "GraphiQL:" not in output and "Admin key" not in output
    assert "listening on http" not in output
    assert "warning: embedded mode listens on 0.0.0.0" in err.decode(), output
    assert "Traceback" not in output
