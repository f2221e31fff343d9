"""Persisted operations: documents registered ahead of time by their SHA-256 hash, sent
the way Apollo's automatic persisted queries are (``extensions.persistedQuery``).
``PersistedOperations.resolve`` turns a request's hash and/or document into the document
to run, per ``IOTSPHERE_PERSISTED_OPERATIONS`` (off, allow, only; docs/http-and-websocket.md).
Nothing is registered at run time, so no client can plant documents for others. The
manifest is a JSON object of hash -> document, or Apollo's persisted query manifest
(``{"format": "apollo-persisted-query-manifest", "operations": [{"id", "body", ...}]}``).
Build one from .graphql files (one document per file, hashed exactly as written)::

    python -m gateway.http.persisted queries/*.graphql > manifest.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import BadUserInput, Forbidden, GatewayError, NotFound
from gateway.settings import PREFIX, Settings, SettingsError

MODES = ("off", "allow", "only")


def document_hash(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def _hash_of_request(extensions: Mapping[str, Any] | None) -> str | None:
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise BadUserInput("Unsupported persistedQuery: version 1 is the one supported")
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or len(sha) != 64:
        raise BadUserInput("persistedQuery.sha256Hash must be a hex SHA-256")
    return sha.lower()


@dataclass(frozen=True)
class PersistedOperations:
    mode: str
    documents: Mapping[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> PersistedOperations:
        mode, path = settings.persisted_operations, settings.persisted_manifest
        if mode == "only" and path is None:
            raise SettingsError(
                f"{PREFIX}PERSISTED_OPERATIONS=only needs {PREFIX}PERSISTED_MANIFEST")
        return cls(mode, load_manifest(path) if path is not None else {})

    def resolve(self, query: str | None, extensions: Mapping[str, Any] | None) -> str | None:
        """The document to run for a request's ``query`` and ``extensions``; raises a
        GatewayError when it may not run. None only for a request with neither."""
        sha = _hash_of_request(extensions)
        if sha is None:
            if self.mode == "only" and query is not None and (
                    document_hash(query) not in self.documents):
                raise _not_registered()
            return query
        if self.mode == "off":
            if query is None:
                raise BadUserInput("PersistedQueryNotSupported",
                                   persistedQuery="NOT_SUPPORTED")
            _check_hash(query, sha)
            return query
        if query is not None:
            _check_hash(query, sha)
            if self.mode == "only" and sha not in self.documents:
                raise _not_registered()
            return query
        document = self.documents.get(sha)
        if document is None:
            if self.mode == "only":
                raise _not_registered()
            raise NotFound("PersistedQueryNotFound", persistedQuery="NOT_FOUND")
        return document


def _check_hash(query: str, sha: str) -> None:
    if document_hash(query) != sha:
        raise BadUserInput("provided sha does not match query", persistedQuery="MISMATCH")


def _not_registered() -> GatewayError:
    return Forbidden("PersistedQueryNotFound: this gateway runs registered operations only",
                     persistedQuery="NOT_REGISTERED")


def load_manifest(path: Path) -> dict[str, str]:
    """Hash -> document from a manifest file; a missing file, bad JSON or a hash that does
    not match its document stops the gateway at start, naming the setting."""
    where = f"{PREFIX}PERSISTED_MANIFEST ({path})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{where}: {exc}") from None
    if isinstance(raw, dict) and raw.get("format") == "apollo-persisted-query-manifest":
        entries = [(op.get("id"), op.get("body")) for op in raw.get("operations", [])
                   if isinstance(op, dict)]
    elif isinstance(raw, dict):
        entries = list(raw.items())
    else:
        raise SettingsError(f"{where}: expected a JSON object of hash -> document")
    documents: dict[str, str] = {}
    for sha, document in entries:
        if not isinstance(sha, str) or not isinstance(document, str):
            raise SettingsError(f"{where}: every entry must map a hash to a document")
        if document_hash(document) != sha.lower():
            raise SettingsError(f"{where}: {sha} is not the SHA-256 of its document")
        documents[sha.lower()] = document
    return documents


def build_manifest(files: list[Path]) -> dict[str, str]:
    """One entry per file: its whole text, hashed as written."""
    documents = (f.read_text(encoding="utf-8") for f in files)
    return {document_hash(d): d for d in documents}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m gateway.http.persisted FILE.graphql... > manifest.json",
              file=sys.stderr)
        return 2
    json.dump(build_manifest([Path(a) for a in argv]), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
