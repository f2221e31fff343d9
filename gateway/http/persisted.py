"""Persisted operations: documents registered ahead of time by their SHA-256 hash, sent
the way Apollo's automatic persisted queries are (``extensions.persistedQuery``).
``PersistedOperations.resolve`` turns a request's hash and/or document into the document
to run, per ``IOTSPHERE_PERSISTED_OPERATIONS`` (off, allow, only; docs/http-and-websocket.md).
In ``allow`` mode a document sent with its matching hash is also learned, as Apollo's
automatic persisted queries expect, so the client's next call sends the hash alone: per
tenant (no client can plant documents for another tenant), at most
``LEARNED_PER_TENANT`` documents of at most ``LEARNED_MAX_BYTES`` each per tenant and
process (the oldest is forgotten first; another replica answers
PERSISTED_QUERY_NOT_FOUND once and learns it on the retry). ``only`` mode learns nothing:
it runs the manifest alone.

The manifest is a JSON object of hash -> document, or Apollo's persisted query manifest
(``{"format": "apollo-persisted-query-manifest", "operations": [{"id", "body", ...}]}``).
Apollo Client hashes the document as it prints it, with ``__typename`` added, so build the
manifest for Apollo clients with Apollo's own generator
(``npx generate-persisted-query-manifest``, package
``@apollo/generate-persisted-query-manifest``), which writes that format; a manifest built
from .graphql files as written only matches clients that send the files' exact text::

    python -m gateway.http.persisted queries/*.graphql > manifest.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from gateway.errors import (
    BadUserInput,
    Forbidden,
    GatewayError,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
)
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


LEARNED_PER_TENANT = 1_000
LEARNED_MAX_BYTES = 64 * 1024


class LearnedDocuments:
    """Documents learned in ``allow`` mode, per tenant, each tenant's bounded (LRU)."""

    def __init__(self, per_tenant: int = LEARNED_PER_TENANT) -> None:
        self._per_tenant = per_tenant
        self._by_tenant: dict[UUID | None, OrderedDict[str, str]] = {}

    def learn(self, tenant: UUID | None, sha: str, document: str) -> None:
        if len(document.encode()) > LEARNED_MAX_BYTES:
            return
        known = self._by_tenant.setdefault(tenant, OrderedDict())
        known[sha] = document
        known.move_to_end(sha)
        while len(known) > self._per_tenant:
            known.popitem(last=False)

    def get(self, tenant: UUID | None, sha: str) -> str | None:
        known = self._by_tenant.get(tenant)
        document = known.get(sha) if known is not None else None
        if document is not None and known is not None:
            known.move_to_end(sha)
        return document


@dataclass(frozen=True)
class PersistedOperations:
    mode: str
    documents: Mapping[str, str]
    learned: LearnedDocuments = field(default_factory=LearnedDocuments)

    @classmethod
    def from_settings(cls, settings: Settings) -> PersistedOperations:
        mode, path = settings.persisted_operations, settings.persisted_manifest
        if mode == "only" and path is None:
            raise SettingsError(
                f"{PREFIX}PERSISTED_OPERATIONS=only needs {PREFIX}PERSISTED_MANIFEST")
        return cls(mode, load_manifest(path) if path is not None else {})

    def resolve(self, query: str | None, extensions: Mapping[str, Any] | None,
                tenant: UUID | None = None) -> str | None:
        """The document to run for a request's ``query`` and ``extensions`` (from a caller
        of ``tenant``); raises a GatewayError when it may not run. None only for a request
        with neither."""
        sha = _hash_of_request(extensions)
        if sha is None:
            if self.mode == "only" and query is not None and (
                    document_hash(query) not in self.documents):
                raise _not_registered()
            return query
        if self.mode == "off":
            if query is None:
                raise PersistedQueryNotSupported("PersistedQueryNotSupported",
                                                 persistedQuery="NOT_SUPPORTED")
            _check_hash(query, sha)
            return query
        if query is not None:
            _check_hash(query, sha)
            if self.mode == "only" and sha not in self.documents:
                raise _not_registered()
            if self.mode == "allow" and sha not in self.documents:
                self.learned.learn(tenant, sha, query)
            return query
        document = self.documents.get(sha)
        if document is None and self.mode == "allow":
            document = self.learned.get(tenant, sha)
        if document is None:
            if self.mode == "only":
                raise _not_registered()
            raise PersistedQueryNotFound("PersistedQueryNotFound", persistedQuery="NOT_FOUND")
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
