"""The SQL under ``sql/``: numbered migrations and named queries per store.

Named queries live in ``sql/<store>/queries.sql`` as blocks headed ``-- name: <name>``,
so the SQL is read as SQL and reviewed in one place, and is loaded once at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path


def _sql_dir() -> Path:
    """``gateway/sql`` in an installed wheel (pyproject maps sql/ there); the repository's
    top-level ``sql/`` in a checkout or an editable install."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "sql"
    return installed if installed.is_dir() else package.parent / "sql"


SQL_DIR = _sql_dir()
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{3})_(\w+?)(?:\.(\w+))?\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


@cache
def queries(store: str) -> dict[str, str]:
    text = (SQL_DIR / store / "queries.sql").read_text()
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    named = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(named) != len(parts[1::2]):
        raise ValueError(f"sql/{store}/queries.sql names a query twice")
    return named


def migrations(store: str, variant: str | None = None) -> list[Migration]:
    """Migrations in order. A file ``NNN_name.<variant>.sql`` applies only to that variant
    (telemetry has ``timescale`` and ``partitioned``); unsuffixed files apply to all."""
    found: list[Migration] = []
    for path in sorted((SQL_DIR / store).glob("[0-9][0-9][0-9]_*.sql")):
        match = _MIGRATION.match(path.name)
        if match is None:
            raise ValueError(f"unexpected migration file name: {path}")
        version, name, file_variant = match.groups()
        if file_variant is not None and file_variant != variant:
            continue
        found.append(Migration(version=version, name=name, sql=path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"sql/{store} has two migrations with one version for {variant}")
    return found
