"""Schemathesis (GraphQL mode) against a live gateway, with an admin key and a viewer key.

Schemathesis reads the schema by introspection from the running server and generates
operations for every root query and mutation field (hypothesis-graphql underneath). Every
answer must be below 500, and every error must carry a code, never be INTERNAL (a masked
INTERNAL is an unexpected exception: a bug) and never show a traceback. IDs come from the
seeded data as often as not, so operations reach real devices, assets, shadows and series.

Schemathesis calls are synchronous (requests): they run in a worker thread while the
server runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from gateway.app import create_app
from gateway.auth.callers import hash_key, new_api_key
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import serve

OPERATIONS_PER_KEY = 1_000
MASKED = "Internal server error"


def _register_scalars(ids: list[str]) -> None:
    # Mostly values the gateway accepts, so operations reach the stores; some not.
    known = st.sampled_from(ids)
    schemathesis.graphql.scalar("ID", st.one_of(
        known, known, known, st.uuids().map(str), st.text(max_size=40)).map(nodes.String))
    now = datetime.now(UTC)
    near = st.datetimes(min_value=(now - timedelta(days=2)).replace(tzinfo=None),
                        max_value=(now + timedelta(hours=1)).replace(tzinfo=None))
    schemathesis.graphql.scalar("DateTime", st.one_of(
        near.map(lambda d: d.isoformat() + "Z"), near.map(lambda d: d.isoformat() + "Z"),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.sampled_from(["now", "", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]),
        st.text(max_size=30),
    ).map(nodes.String))
    schemathesis.graphql.scalar("Interval", st.one_of(
        st.sampled_from(["30s", "5m", "15m", "1h", "1d", "7d", "PT5M"]),
        st.sampled_from(["0s", "-5m", "1000000d", "P1Y", "1ms", "5x"]),
        st.text(max_size=12),
    ).map(nodes.String))
    json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                          st.text(max_size=20))
    schemathesis.graphql.scalar("JSON", st.one_of(
        st.dictionaries(st.text(max_size=10), json_leaf, max_size=4).map(_object_node),
        json_leaf.map(_value_node),
    ))


def _value_node(value: Any) -> Any:
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    return nodes.String(value)


def _object_node(value: dict[str, Any]) -> Any:
    import graphql

    return graphql.ObjectValueNode(fields=tuple(
        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=_value_node(v))
        for k, v in value.items() if k.isidentifier() and k.isascii()
    ))


@dataclass
class Report:
    requests: int = 0
    clean: int = 0  # answers without any error
    codes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def check(self, query: str, response: requests.Response) -> None:
        self.requests += 1
        text = response.text
        problem = None
        if response.status_code >= 500:
            problem = f"HTTP {response.status_code}"
        elif "Traceback" in text or 'File "/' in text:
            problem = "traceback text in the answer"
        else:
            errors = response.json().get("errors") or []
            self.clean += not errors
            for error in errors:
                code = (error.get("extensions") or {}).get("code")
                self.codes[str(code)] += 1
                if code is None:
                    problem = f"error without a code: {error}"
                elif code == "INTERNAL" and error.get("message") != MASKED:
                    problem = f"unmasked INTERNAL: {error}"
                elif code == "INTERNAL":
                    problem = f"masked INTERNAL (an unexpected exception): {error}"
        if problem:
            self.failures.append(f"{problem}\n{query}\n{text[:500]}")


def _fuzz(url: str, key: str) -> Report:
    auth = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.graphql.from_url(url, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    per_operation = math.ceil(OPERATIONS_PER_KEY / len(operations))
    report = Report()
    session = requests.Session()
    for operation in operations:
        @settings(max_examples=per_operation, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(base_url=url, session=session, headers=auth, timeout=30)
            report.check(case.body if isinstance(case.body, str) else str(case.body), response)

        run()
    session.close()
    return report


# Hundreds of generated operations: minutes on a busy 2-core machine, past the suite's
# 300 s default.
@pytest.mark.timeout(900)
async def test_fuzzed_operations_never_fail_the_server(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=6, hours=0.25, sites=1, lines=1,
                             machines=2)
    viewer = new_api_key()
    await stores.registry.create_api_key(tenant.id, "viewer", hash_key(viewer), "viewer")
    ids = [str(i) for i in (*fleet.devices, *fleet.assets.values())] + [str(uuid4())]
    _register_scalars(ids)
    # The rate limit would answer 429 to a thousand operations a second from one key.
    app = create_app(dataclasses.replace(settings, rate_limit=0), stores=stores)
    async with serve(app) as address:
        url = f"http://{address}/graphql"
        # Both keys at once: one thread generates while the other waits for the server.
        admin_report, viewer_report = await asyncio.gather(
            asyncio.to_thread(_fuzz, url, tenant.key), asyncio.to_thread(_fuzz, url, viewer))
    for name, report in (("admin", admin_report), ("viewer", viewer_report)):
        print(f"{name}: {report.requests} operations, {report.clean} without errors, "
              f"error codes {dict(report.codes)}")
        assert report.requests >= OPERATIONS_PER_KEY, name
        assert not report.failures, f"{name}: {len(report.failures)} failures, first:\n" + \
            "\n\n".join(report.failures[:5])
    # The viewer's mutations were refused by role, so the run reached the role checks.
    assert viewer_report.codes["FORBIDDEN"] > 0
