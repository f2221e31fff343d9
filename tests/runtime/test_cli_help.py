"""``iotsphere --help`` is help a newcomer can act on, not a module docstring."""

from __future__ import annotations

import pytest

from gateway.runtime.cli import main


def test_help_lists_commands_examples_and_where_the_stores_are(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out  # no reStructuredText from the docstring
    assert out.startswith("usage: iotsphere")
    for command in ("serve", "migrate", "tenant"):
        assert f"    {command}" in out, command
    assert "iotsphere tenant create acme" in out and "iotsphere serve --demo" in out
    assert "IOTSPHERE_DATA_DIR" in out and "docs/configuration.md" in out


def test_subcommand_help_describes_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--host HOST" in out and "address to listen on" in out
    assert "--port PORT" in out and "port to listen on" in out


def test_make_run_passes_port_and_host_to_serve() -> None:
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(["make", "-n", "--always-make", "run", "PORT=8123", "HOST=0.0.0.0"],
                          cwd=root, capture_output=True, text=True, check=True, timeout=60)
    [serve] = [line for line in done.stdout.splitlines() if "iotsphere serve" in line]
    assert serve.split()[-5:] == ["--demo", "--port", "8123", "--host", "0.0.0.0"], serve
    done = subprocess.run(["make", "-n", "--always-make", "run"], cwd=root,
                          capture_output=True, text=True, check=True, timeout=60)
    [serve] = [line for line in done.stdout.splitlines() if "iotsphere serve" in line]
    assert serve.endswith("iotsphere serve --demo"), serve
