"""compose.yml and the Dockerfile, checked by parsing them (no Docker engine needed).

Every assertion here reads the files as they are, so breaking a DSN, a healthcheck, a
depends_on condition, the Redis flags or the image's CMD/USER makes a test fail.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.settings import KEYS, PREFIX, Settings

ROOT_DIR = Path(__file__).resolve().parents[2]

POSTGRES_STORES = {"registry-db": "registry", "assets-db": "assets", "telemetry-db": "telemetry"}
STORES = (*POSTGRES_STORES, "redis")
DSN_KEYS = {
    "IOTSPHERE_REGISTRY_DSN": "registry-db",
    "IOTSPHERE_ASSETS_DSN": "assets-db",
    "IOTSPHERE_TELEMETRY_DSN": "telemetry-db",
    "IOTSPHERE_REDIS_URL": "redis",
}
POSTGRES_DATA = "/var/lib/postgresql/data"
# Keyspace event classes the shadow subscription needs when "A" (all) is not given:
# g = DEL/EXPIRE/RENAME, $ = string writes, h = hash writes, x = expired keys.
NEEDED_EVENT_CLASSES = set("g$hx")

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?err}``, ``${VAR:+alt}``. With no ``env`` every variable is
    unset, so the file's own defaults are what is checked."""
    env = {} if env is None else env

    def sub(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        present = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return value if present and value is not None else arg
        if op.endswith("?") and not present:
            raise AssertionError(f"${{{name}}} is required and has no default: {arg}")
        if op.endswith("+"):
            return arg if present else ""
        return value or ""

    return _VAR.sub(sub, value)


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT_DIR / "compose.yml").read_text())
    assert isinstance(data, dict), "compose.yml is not a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services = compose().get("services") or {}
    assert name in services, f"compose.yml defines no service {name!r}"
    return services[name]


def environment(name: str) -> dict[str, str]:
    """A service's environment (mapping or list form), interpolated; keys given without a
    value (passed through from the host) count as unset."""
    raw = service(name).get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else (item, None) for item in raw]
    else:
        pairs = list(raw.items())
    return {str(key): interpolate(str(value)) for key, value in pairs if value is not None}


def argv(command: Any) -> list[str]:
    """A command in list or string form as an argument list, interpolated."""
    if command is None:
        return []
    if isinstance(command, str):
        return [interpolate(word) for word in shlex.split(command)]
    return [interpolate(str(word)) for word in command]


def healthcheck_argv(name: str) -> list[str]:
    check = service(name).get("healthcheck")
    assert isinstance(check, dict), f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name} disables its healthcheck"
    test = check.get("test")
    assert test, f"{name}'s healthcheck has no test"
    if isinstance(test, str):
        return shlex.split(interpolate(test))
    words = argv(test)
    assert words[0] != "NONE", f"{name}'s healthcheck is NONE"
    if words[0] == "CMD":
        return words[1:]
    if words[0] == "CMD-SHELL":
        return shlex.split(" ".join(words[1:]))
    return words


def option(words: list[str], *flags: str) -> str | None:
    """The value given to one of ``flags`` (``-p 5``, ``--port 5`` or ``--port=5``)."""
    for index, word in enumerate(words):
        for flag in flags:
            if word == flag and index + 1 < len(words):
                return words[index + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return None


def image(name: str) -> str:
    value = service(name).get("image")
    assert value, f"{name} has no image"
    return str(value)


def is_postgres(name: str) -> bool:
    return image(name).split(":")[0] in ("postgres", "timescale/timescaledb")


def is_redis(name: str) -> bool:
    return image(name).split(":")[0] in ("redis", "valkey/valkey")


def postgres_database(name: str) -> tuple[str, str, str]:
    """(user, password, database) the postgres image creates from its environment."""
    env = environment(name)
    user = env.get("POSTGRES_USER") or "postgres"
    password = env.get("POSTGRES_PASSWORD", "")
    return user, password, env.get("POSTGRES_DB") or user


def listening_port(name: str) -> int:
    """The port a store listens on inside the network: the image default unless the
    command or environment moves it."""
    words = argv(service(name).get("command"))
    if is_postgres(name):
        port = option(words, "-p") or environment(name).get("PGPORT")
        for index, word in enumerate(words):
            if word == "-c" and index + 1 < len(words) and words[index + 1].startswith("port="):
                port = words[index + 1].split("=", 1)[1]
        return int(port or 5432)
    if is_redis(name):
        return int(option(words, "--port") or 6379)
    raise AssertionError(f"{name} is neither a PostgreSQL nor a Redis image: {image(name)}")


def gateway_settings() -> Settings:
    return Settings.from_env(environment("gateway"))


def test_every_service_is_defined() -> None:
    for name in (*STORES, "gateway"):
        service(name)
    assert service("gateway").get("build"), "the gateway must be built from this repository"
    assert "timescale" in image("telemetry-db"), "telemetry needs the TimescaleDB image"
    for name in POSTGRES_STORES:
        assert is_postgres(name), f"{name} does not run PostgreSQL"
    assert is_redis("redis"), "redis does not run Redis/Valkey"


@pytest.mark.parametrize("name", [*STORES, "gateway"])
def test_service_has_a_healthcheck(name: str) -> None:
    assert healthcheck_argv(name)


@pytest.mark.parametrize("name", list(POSTGRES_STORES))
def test_postgres_healthcheck_probes_its_database(name: str) -> None:
    words = healthcheck_argv(name)
    user, _, database = postgres_database(name)
    assert words[0] == "pg_isready", words
    assert option(words, "-U", "--username") == user, words
    assert option(words, "-d", "--dbname") == database, words
    assert database == POSTGRES_STORES[name], f"{name} creates database {database!r}"
    port = option(words, "-p", "--port")
    assert port is None or int(port) == listening_port(name), words


def test_redis_healthcheck_pings() -> None:
    words = healthcheck_argv("redis")
    assert words[0] in ("redis-cli", "valkey-cli") and words[-1].lower() == "ping", words


def test_gateway_healthcheck_hits_readyz_on_its_port() -> None:
    text = " ".join(healthcheck_argv("gateway"))
    assert "curl" not in text and "wget" not in text, "the image has neither curl nor wget"
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/readyz\b", text)
    assert match, f"the gateway healthcheck does not request /readyz: {text}"
    assert int(match[1]) == gateway_settings().port


@pytest.mark.parametrize("name", STORES)
def test_store_keeps_its_data_in_a_named_volume(name: str) -> None:
    declared = compose().get("volumes") or {}
    target = POSTGRES_DATA if is_postgres(name) else "/data"
    mounts = {}
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[volume.get("target")] = volume.get("source")
    assert target in mounts, f"{name} mounts nothing at {target}"
    assert mounts[target] in declared, f"{name}: {mounts[target]!r} is not a named volume"


def test_gateway_sets_every_dsn_and_only_keys_it_reads() -> None:
    env = environment("gateway")
    for key in DSN_KEYS:
        assert env.get(key), f"the gateway's environment does not set {key}"
    known = {PREFIX + key for key in KEYS}
    unknown = sorted(key for key in env if key.startswith(PREFIX) and key not in known)
    assert not unknown, f"the gateway does not read {unknown}"


@pytest.mark.parametrize("key", list(DSN_KEYS))
def test_dsn_points_at_its_store(key: str) -> None:
    url = urlsplit(environment("gateway")[key])
    target = url.hostname
    assert target == DSN_KEYS[key], f"{key} points at {target!r}"
    service(target)  # defined in the file
    assert (url.port or (6379 if url.scheme.startswith("redis") else 5432)) == listening_port(
        target
    ), f"{key} uses port {url.port}, {target} listens on {listening_port(target)}"
    if is_postgres(target):
        user, password, database = postgres_database(target)
        assert url.scheme in ("postgresql", "postgres"), url.scheme
        assert url.path.lstrip("/") == database, f"{key}: {target} creates {database!r}"
        assert url.username == user, f"{key}: {target}'s user is {user!r}"
        assert url.password == password, f"{key}'s password is not {target}'s"
    else:
        assert is_redis(target), f"{key} points at {target}, which is not Redis"
        assert url.scheme in ("redis", "rediss"), url.scheme
        assert url.path in ("", "/") or url.path.lstrip("/").isdigit(), url.path


def test_gateway_settings_build_and_embed_nothing() -> None:
    settings = gateway_settings()
    assert settings.embedded is False, "a store is left to the embedded default"
    assert settings.production
    assert settings.host == "0.0.0.0"
    words = argv(service("gateway").get("command"))
    assert option(words, "--host") in (None, settings.host), words
    assert option(words, "--port") in (None, str(settings.port)), words
    published = set()
    for port in service("gateway").get("ports") or []:
        if isinstance(port, dict):
            published.add(int(port["target"]))
        else:
            published.add(int(str(port).split(":")[-1].split("/")[0]))
    assert settings.port in published, f"port {settings.port} is not published: {published}"


def test_redis_enables_aof_and_keyspace_events() -> None:
    words = argv(service("redis").get("command"))
    assert option(words, "--appendonly") == "yes", words
    flags = option(words, "--notify-keyspace-events") or ""
    assert "K" in flags, f"keyspace notifications are off: {flags!r}"
    assert "A" in flags or NEEDED_EVENT_CLASSES <= set(flags), f"event classes: {flags!r}"


def test_gateway_waits_for_healthy_stores() -> None:
    depends = service("gateway").get("depends_on")
    assert isinstance(depends, dict), "depends_on must use the long form with conditions"
    for name in STORES:
        assert name in depends, f"the gateway does not depend on {name}"
        assert (depends[name] or {}).get("condition") == "service_healthy", name


# --- Dockerfile -------------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last build stage, continuation lines joined."""
    text = (ROOT_DIR / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def instruction_argv(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT_DIR / "pyproject.toml").read_text())["project"]
    return project.get("scripts", {})


def test_image_runs_the_console_script() -> None:
    steps = dockerfile()
    entrypoint = [args for word, args in steps if word == "ENTRYPOINT"]
    cmd = [args for word, args in steps if word == "CMD"]
    command = (instruction_argv(entrypoint[-1]) if entrypoint else []) + (
        instruction_argv(cmd[-1]) if cmd and not entrypoint else []
    )
    assert command, "the image has neither CMD nor ENTRYPOINT"
    assert command[0] in scripts(), f"{command[0]!r} is not a console script in pyproject"
    gateway_command = argv(service("gateway").get("command"))
    assert not gateway_command or gateway_command[0] in scripts(), gateway_command


def test_image_does_not_run_as_root() -> None:
    users = [args for word, args in dockerfile() if word == "USER"]
    assert users, "the Dockerfile has no USER line: the gateway would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"


def test_image_installs_without_dev_or_embedded_extras() -> None:
    installs = [args for word, args in dockerfile() if word == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile never pip-installs the project"
    for args in installs:
        extras = re.findall(r"\.\[([^\]]*)\]", args)
        named = {name.strip() for extra in extras for name in extra.split(",")}
        assert not named & {"dev", "embedded"}, args


def test_image_runs_the_installed_wheel() -> None:
    """The wheel carries the SQL (tests/process/test_wheel.py): the image installs it and
    needs no PYTHONPATH pointing into a source tree."""
    for word, args in dockerfile():
        assert not (word == "ENV" and "PYTHONPATH" in args), args
    copies = [args for word, args in dockerfile() if word == "COPY"]
    assert any("setup.py" in args for args in copies), "setup.py maps sql/ into the wheel"


def test_gateway_stops_after_its_shutdown_grace() -> None:
    """Docker sends SIGKILL after stop_grace_period (10 s when unset): it must outlast the
    gateway's own grace period, or in-flight ingests are killed mid-commit."""
    raw = str(service("gateway").get("stop_grace_period") or "10s")
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", raw)
    assert match and raw, f"stop_grace_period {raw!r} is not in the m/s form"
    seconds = int(match[1] or 0) * 60 + float(match[2] or 0)
    assert seconds > gateway_settings().shutdown_grace, (raw, gateway_settings().shutdown_grace)
