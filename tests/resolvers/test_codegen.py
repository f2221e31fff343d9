"""GraphQL Code Generator (client preset, strictScalars) with docs/clients.md's scalar map
generates types from schema.graphql that compile under tsc --strict, and without the map
strictScalars refuses: the map is what types DateTime, Interval and JSON
(tests/js/codegen/). Installed on first use; under CI=true a missing tool fails."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.js import JS, npm_ready

CODEGEN = JS / "codegen"
TOOLS = ("@graphql-codegen/cli", "@graphql-codegen/client-preset", "typescript")


def _run(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=CODEGEN, capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, **env})


def test_generated_types_compile_under_tsc_strict() -> None:
    npm_ready(*TOOLS)
    shutil.rmtree(CODEGEN / "generated", ignore_errors=True)
    bin_ = JS / "node_modules" / ".bin"
    refused = _run(str(bin_ / "graphql-codegen"), "--config", "codegen.ts",
                   CODEGEN_NO_SCALARS="1")
    assert refused.returncode != 0
    assert "Unknown scalar type DateTime" in refused.stdout + refused.stderr, (
        refused.stdout + refused.stderr)
    generated = _run(str(bin_ / "graphql-codegen"), "--config", "codegen.ts")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (CODEGEN / "generated" / "graphql.ts").read_text()
    # DateTime and Interval fields typed as the documented wire type, not unknown/any.
    assert "lastSeenAt: string | null" in types and "bucket: string | null" in types
    compiled = _run(str(bin_ / "tsc"), "-p", "tsconfig.json")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
