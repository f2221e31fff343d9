"""schema.graphql is generated from the Strawberry schema and stays compatible with the
contract in ../shared/api/contract.graphql."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from resolvers.schema import schema
from tests.support.tools import unavailable

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT.parent / "shared" / "tools" / "check_contract.py"


def test_schema_file_matches_the_code() -> None:
    exported = schema.as_str() + "\n"
    on_disk = (ROOT / "schema.graphql").read_text()
    assert on_disk == exported, (
        "schema.graphql drifted from the code: regenerate it with `make schema`"
    )


def test_schema_is_compatible_with_the_contract() -> None:
    if not CHECKER.exists():
        unavailable(f"{CHECKER} (the contract check) is not present")
    result = subprocess.run(
        [sys.executable, str(CHECKER), str(ROOT / "schema.graphql")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compatible with contract.graphql" in result.stdout, result.stdout
