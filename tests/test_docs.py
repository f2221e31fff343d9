"""The README stays a door and the docs stay true to the tree: README at most 200 lines,
every document it links exists, and every repository path the docs name exists (a moved
module breaks this test, not a reader)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `gateway/http/ingest.py`, `sql/telemetry/`, `tests/process/test_wheel.py`, ...
PATH = re.compile(r"(?<![\w/.-])((?:gateway|resolvers|sql|tests|bench|docs)/[\w./-]*\w/?)")
INSTALLED_ONLY = {"gateway/sql/"}  # where sql/ lands in the wheel


def test_readme_is_at_most_200_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_linked_documents_exist() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links {target}"


def test_paths_named_in_the_docs_exist() -> None:
    missing = []
    for doc in DOCS:
        for path in PATH.findall(doc.read_text()):
            if path in INSTALLED_ONLY or "<" in path or "*" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, missing
