"""POST /ingest: NDJSON and CSV, streamed, idempotent, all-or-nothing per request."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest

from gateway.auth.callers import hash_key, new_api_key
from gateway.errors import StoreUnavailable
from gateway.http import ingest
from gateway.stores import Stores
from tests.conftest import AppClient, Gateway, Tenant
from tests.support.telemetry_mode import PARTITIONED, stored_days, telemetry_mode

NOW = datetime.now(UTC).replace(microsecond=0)


async def _device(stores: Stores, tenant: Tenant, serial: str, status: str = "ACTIVE") -> UUID:
    row = await stores.registry.insert_device(tenant.id, serial=serial, name=serial,
                                              type="sensor", status=status)
    device_id: UUID = row["id"]
    return device_id


def _ndjson(*items: Any) -> bytes:
    return b"\n".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items) + b"\n"


def _reading(device: UUID | str, minutes: float, value: Any = 1.0,
             metric: str = "temperature") -> dict[str, Any]:
    return {"deviceId": str(device), "metric": metric,
            "time": (NOW - timedelta(minutes=minutes)).isoformat(), "value": value}


def _ahead(device: UUID, minutes: float) -> dict[str, Any]:
    """A reading ahead of the clock now (NOW is taken at import: a slow run ages it)."""
    return {"deviceId": str(device), "metric": "temperature", "value": 1.0,
            "time": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()}


async def _post(http: httpx.AsyncClient, body: bytes, *, auth: str,
                kind: str = "application/x-ndjson") -> httpx.Response:
    async def chunks() -> AsyncIterator[bytes]:  # streamed in small pieces, lines split
        for start in range(0, len(body), 7):
            yield body[start:start + 7]
    return await http.post("/ingest", content=chunks(),
                           headers={"Authorization": auth, "Content-Type": kind})


async def _stored(stores: Stores, device: UUID) -> int:
    rows = await stores.telemetry.pool.fetch(
        "SELECT count(*) FROM readings WHERE device_id = $1", device)
    return int(rows[0][0])


async def test_ndjson_accepts_good_lines_and_names_bad_ones(
    app_client: AppClient, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await _device(stores, tenant, "N1")
    theirs = await _device(stores, other_tenant, "N2")
    retired = await _device(stores, tenant, "N3", status="DECOMMISSIONED")
    body = _ndjson(
        _reading(mine, 3, 20.5), _reading(mine, 2, 21.0), _reading(mine, 2, 21.0),  # dup
        b"{not json", _reading(theirs, 1), _reading(mine, 1, "NaN"),
        _reading(mine, 1, metric="9lives"), _ahead(mine, minutes=10), _reading(retired, 1),
        {"deviceId": "nope", "metric": "t", "time": NOW.isoformat(), "value": 1},
        _reading(mine, 1, "22.5"), _reading(mine, 4, 1e300),
    )
    async with app_client() as http:
        response = await _post(http, body, auth=f"Bearer {tenant.key}")
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["accepted"], result["duplicates"]) == (3, 1)
        assert {r["line"]: r["reason"] for r in result["rejected"]} == {
            4: "line is not JSON", 5: "unknown device",
            6: "value is not a finite number", 7: "metric '9lives' is not a metric name",
            8: "time is more than 5 minutes in the future", 9: "device is decommissioned",
            10: "deviceId is not a valid ID", 12: "value is beyond 1e+100 in magnitude",
        }
        again = (await _post(http, body, auth=f"Bearer {tenant.key}")).json()
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert await _stored(stores, mine) == 3
    assert await _stored(stores, theirs) == 0


async def test_a_time_the_stores_cannot_keep_is_refused_alone(
    app_client: AppClient, stores: Stores, tenant: Tenant
) -> None:
    # 0001-01-01T00:00:00Z reached PostgreSQL as -infinity and asked for partitions from
    # there until the store timed out (503 STORE_UNAVAILABLE); an offset past it in UTC
    # could not be sent at all (an OverflowError out of the request).
    mine = await _device(stores, tenant, "E1")
    body = _ndjson(_reading(mine, 1, 2.0),
                   {**_reading(mine, 1), "time": "0001-01-01T00:00:00Z"},
                   {**_reading(mine, 1), "time": "0001-01-01T00:30:00+01:00"},
                   {**_reading(mine, 1), "time": "0001-01-01T00:00:00"})
    async with app_client() as http:
        response = await _post(http, body, auth=f"Bearer {tenant.key}")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1
    assert {r["line"]: r["reason"] for r in result["rejected"]} == {
        n: "time is not after 0001-01-01T00:00:00Z" for n in (2, 3, 4)}
    assert await _stored(stores, mine) == 1


async def test_csv_with_any_column_order(app_client: AppClient, stores: Stores, tenant: Tenant,
                                         gateway: Gateway) -> None:
    device = await _device(stores, tenant, "C1")
    t1, t2 = (NOW - timedelta(minutes=2)).isoformat(), (NOW - timedelta(minutes=1)).isoformat()
    body = (f"time,value,deviceId,metric\n{t1},1.5,{device},power\n"
            f'"{t2}",2.5,{device},power\n{t2},3\n').encode()
    async with app_client() as http:
        result = (await _post(http, body, auth=f"Bearer {tenant.key}", kind="text/csv")).json()
        assert (result["accepted"], result["rejectedCount"]) == (2, 1)
        assert result["rejected"] == [{"line": 4, "reason": "expected 4 fields, got 2"}]
        bad = await _post(http, b"a,b\n1,2\n", auth=f"Bearer {tenant.key}", kind="text/csv")
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        unsupported = await _post(http, b"{}", auth=f"Bearer {tenant.key}", kind="text/plain")
        assert unsupported.status_code == 415
    body = await gateway.query(
        'query($d: ID!) { device(id: $d) { lastSeenAt latest { metric value } } }',
        {"d": str(device)}, key=tenant.key)
    node = body["data"]["device"]
    assert node["latest"] == [{"metric": "power", "value": 2.5}]
    assert datetime.fromisoformat(node["lastSeenAt"]) == NOW - timedelta(minutes=1)


@pytest.mark.parametrize(("limits", "lines"), [
    ({"ingest_max_bytes": 2_000}, 40), ({"ingest_max_lines": 10}, 11),
])
async def test_a_body_over_a_limit_is_refused_whole(
    app_client: AppClient, stores: Stores, tenant: Tenant, limits: dict[str, int], lines: int
) -> None:
    device = await _device(stores, tenant, "L1")
    body = _ndjson(*(_reading(device, 100 - n) for n in range(lines)))
    async with app_client(**limits) as http:
        response = await _post(http, body, auth=f"Bearer {tenant.key}")
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert await _stored(stores, device) == 0


async def test_a_limit_crossed_after_a_batch_was_written_stores_nothing(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 413 comes after the request's first batches went into its transaction: the
    body is streamed in two parts, and the second is sent only once the telemetry
    database shows the request's transaction holding a write (a transaction id). Two
    batches, as a request's first batch waits for the next one to know where to go
    (gateway/writes/bulk_ingest.py); a second one makes both go to the staging table."""
    monkeypatch.setattr(ingest, "BATCH", 5)  # a batch of 5 lines instead of 20,000
    device = await _device(stores, tenant, "B1")
    headers = {"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/x-ndjson"}
    wrote = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield _ndjson(*(_reading(device, 100 - n) for n in range(11)))
        await wrote.wait()
        yield _ndjson(*(_reading(device, 50 - n) for n in range(6)))

    async def writing() -> bool:
        return bool(await stores.telemetry.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"))

    async def release_when_written() -> None:
        for _ in range(1000):
            if await writing():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the first batch was never written")
        wrote.set()

    async with app_client(ingest_max_lines=12) as http:
        # The day's partitions exist before (a committed reading of another device), so
        # the transaction id can only come from the batch.
        other = await _device(stores, tenant, "B0")
        assert (await _post(http, _ndjson(_reading(other, 1)),
                            auth=f"Bearer {tenant.key}")).status_code == 200
        watcher = asyncio.ensure_future(release_when_written())
        response = await http.post("/ingest", content=body(), headers=headers)
        await watcher
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert await _stored(stores, device) == 0


async def test_a_store_failure_mid_request_commits_nothing(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await _device(stores, tenant, "F1")

    async def fail(*args: Any) -> None:
        raise StoreUnavailable("telemetry", "injected")

    monkeypatch.setattr(stores.telemetry, "ensure_days", fail)
    async with app_client() as http:
        response = await _post(http, _ndjson(_reading(device, 1), _reading(device, 2)),
                               auth=f"Bearer {tenant.key}")
        assert response.status_code == 503
        assert response.json()["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
        monkeypatch.undo()
        assert await _stored(stores, device) == 0
        ok = await _post(http, _ndjson(_reading(device, 1)), auth=f"Bearer {tenant.key}")
        assert ok.json()["accepted"] == 1


async def test_devices_write_only_their_own_readings(
    app_client: AppClient, gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    register = """mutation($s: String!) { registerDevice(input: {serial: $s, name: $s,
      type: "sensor"}) { device { id } credential { secret } } }"""
    made = [(await gateway.query(register, {"s": s}, key=tenant.key))["data"]["registerDevice"]
            for s in ("D1", "D2")]
    me, other = (UUID(m["device"]["id"]) for m in made)
    basic = base64.b64encode(f"{me}:{made[0]['credential']['secret']}".encode()).decode()
    async with app_client() as http:
        result = (await _post(http, _ndjson(_reading(me, 1), _reading(other, 1)),
                              auth=f"Basic {basic}")).json()
        assert result["accepted"] == 1
        assert result["rejected"] == [
            {"line": 2, "reason": "a device may only write its own readings"}]
        wrong = base64.b64encode(f"{me}:not-the-secret".encode()).decode()
        denied = await _post(http, _ndjson(_reading(me, 2)), auth=f"Basic {wrong}")
        assert denied.status_code == 401
        viewer = new_api_key()
        await stores.registry.create_api_key(tenant.id, "v", hash_key(viewer), "viewer")
        forbidden = await _post(http, _ndjson(_reading(me, 3)), auth=f"Bearer {viewer}")
        assert forbidden.status_code == 403
        anonymous = await http.post("/ingest", content=b"", headers={
            "Content-Type": "application/x-ndjson"})
        assert anonymous.status_code == 401
    assert await _stored(stores, me) == 1 and await _stored(stores, other) == 0


async def test_partitions_are_created_for_past_and_future_data(
    app_client: AppClient, stores: Stores, tenant: Tenant
) -> None:
    device = await _device(stores, tenant, "P1")
    old, soon = 60 * 24 * 40, -4  # 40 days ago; 4 minutes ahead
    async with app_client() as http:
        result = (await _post(http, _ndjson(_reading(device, old), _reading(device, soon)),
                              auth=f"Bearer {tenant.key}")).json()
    assert result["accepted"] == 2
    days = await stored_days(stores)
    assert {(NOW - timedelta(minutes=old)).date(), (NOW + timedelta(minutes=4)).date()} <= days


async def test_a_batch_years_apart_asks_only_for_the_days_it_holds(
    app_client: AppClient, stores: Stores, tenant: Tenant
) -> None:
    # Every day between a reading of 2000 and today's (9,800 of them, two tables each)
    # took the partition call past the store timeout: the request failed with 503.
    device = await _device(stores, tenant, "P2")
    old = {**_reading(device, 0), "time": "2000-01-01T12:00:00+00:00"}
    older = {**_reading(device, 0), "time": "1999-12-31T23:59:00-01:00"}  # 2000-01-01 UTC
    async with app_client() as http:
        response = await _post(http, _ndjson(old, older, _reading(device, 1)),
                               auth=f"Bearer {tenant.key}")
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    days = await stored_days(stores)
    assert {date(2000, 1, 1), NOW.date()} <= days
    assert not {d for d in days if date(2000, 1, 2) <= d <= date(2020, 1, 1)}
    assert await _stored(stores, device) == 3


async def _rolled_up(stores: Stores, device: UUID) -> int:
    """Readings the 5-minute rollup counts for ``device``."""
    return int(await stores.telemetry.pool.fetchval(
        "SELECT coalesce(sum(n), 0) FROM readings_5m WHERE device_id = $1", device))


async def test_batches_with_and_without_duplicates_keep_rollup_and_latest_exact(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.http.ingest.BATCH", 2)
    device = await _device(stores, tenant, "B1")
    body = _ndjson(_reading(device, 9, 1.0), _reading(device, 8, 2.0),  # COPY'd
                   _reading(device, 7, 3.0), _reading(device, 9, 99.0),  # a duplicate
                   _reading(device, 6, 4.0), _reading(device, 5, 5.0))  # COPY'd
    async with app_client() as http:
        result = (await _post(http, body, auth=f"Bearer {tenant.key}")).json()
        assert (result["accepted"], result["duplicates"]) == (5, 1)
        assert await _stored(stores, device) == await _rolled_up(stores, device) == 5
        # A retry: every batch a duplicate, nothing counted twice; the last value stays.
        again = (await _post(http, body, auth=f"Bearer {tenant.key}")).json()
        assert (again["accepted"], again["duplicates"]) == (0, 6)
        late = _ndjson(_reading(device, 30, 7.0), _reading(device, 5, 0.0))
        assert (await _post(http, late, auth=f"Bearer {tenant.key}")).json()["accepted"] == 1
    assert await _stored(stores, device) == await _rolled_up(stores, device) == 6
    value = await stores.telemetry.pool.fetchval(
        "SELECT value FROM latest_readings WHERE device_id = $1", device)
    assert value == 5.0
    total = await stores.telemetry.pool.fetchval(
        "SELECT sum(total) FROM readings_5m WHERE device_id = $1", device)
    assert total == 1.0 + 2.0 + 3.0 + 4.0 + 5.0 + 7.0


async def test_a_failure_after_batches_were_written_commits_nothing(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.http.ingest.BATCH", 2)
    first, second = await _device(stores, tenant, "W1"), await _device(stores, tenant, "W2")
    lookups = stores.registry.devices_by_ids

    async def fail_for_second(tenant_id: UUID, ids: list[UUID]) -> list[Any]:
        if second in ids:
            raise StoreUnavailable("registry", "injected")
        return await lookups(tenant_id, ids)

    monkeypatch.setattr(stores.registry, "devices_by_ids", fail_for_second)
    body = _ndjson(*(_reading(first, 20 - n) for n in range(6)), _reading(second, 1))
    async with app_client() as http:
        response = await _post(http, body, auth=f"Bearer {tenant.key}")
    assert response.status_code == 503
    assert await _stored(stores, first) == 0
    assert await _rolled_up(stores, first) == 0
    assert await stores.telemetry.pool.fetchval(
        "SELECT count(*) FROM latest_readings WHERE device_id = $1", first) == 0


async def test_a_day_reached_mid_request_is_created_without_blocking_readers(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.http.ingest.BATCH", 2)
    device = await _device(stores, tenant, "M1")
    days = (0, 0, 50, 51, 52)  # the second batch reaches days no partition holds yet
    body = _ndjson(*(_reading(device, 60 * 24 * d + n) for n, d in enumerate(days)))
    reader = await stores.telemetry.pool.acquire()
    try:
        async with reader.transaction():
            # An open transaction that has read readings: CREATE TABLE .. PARTITION OF
            # would wait for it; ATTACH PARTITION does not.
            await reader.fetchval("SELECT count(*) FROM readings")
            async with app_client() as http:
                response = await asyncio.wait_for(
                    _post(http, body, auth=f"Bearer {tenant.key}"), timeout=60)
    finally:
        await stores.telemetry.pool.release(reader)
    assert response.json()["accepted"] == 5
    reached = {(NOW - timedelta(days=d)).date() for d in (50, 51, 52)}
    assert reached <= await stored_days(stores)
    if await telemetry_mode(stores) == PARTITIONED:  # the rollup's partitions come along
        assert reached <= await stored_days(stores, "readings_5m")



async def test_concurrent_ingests_over_the_same_rollup_rows_both_succeed(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bodies over the same devices and minutes, in opposite device orders and many
    batches each: written batch by batch, each request locked its first devices' rollup
    rows and then waited for the other's (a deadlock, 503 for one of them). The rollup is
    merged once per request in key order now, so both succeed."""
    monkeypatch.setattr("gateway.http.ingest.BATCH", 10)
    devices = sorted([await _device(stores, tenant, f"C{n}") for n in range(12)])

    def body(order: list[UUID], offset_ms: int) -> bytes:
        return _ndjson(*(
            {"deviceId": str(device), "metric": "t", "value": float(n),
             "time": (NOW - timedelta(minutes=3, milliseconds=20 * n + offset_ms)).isoformat()}
            for device in order for n in range(10)))

    async with app_client() as http:
        ascending, descending = await asyncio.gather(
            _post(http, body(devices, 0), auth=f"Bearer {tenant.key}"),
            _post(http, body(devices[::-1], 10), auth=f"Bearer {tenant.key}"))
    assert (ascending.status_code, descending.status_code) == (200, 200), descending.text
    assert ascending.json()["accepted"] == descending.json()["accepted"] == 120
    raw = await stores.telemetry.pool.fetch(
        "SELECT device_id, count(*) AS n, sum(value) AS total, min(value) AS lo,"
        " max(value) AS hi FROM readings GROUP BY device_id ORDER BY device_id")
    rolled = await stores.telemetry.pool.fetch(
        "SELECT device_id, sum(n) AS n, sum(total) AS total, min(lo) AS lo, max(hi) AS hi"
        " FROM readings_5m GROUP BY device_id ORDER BY device_id")
    assert [tuple(r) for r in raw] == [tuple(r) for r in rolled]
    assert [r["n"] for r in raw] == [20] * 12


INGEST_MUTATION = """mutation($r: [ReadingInput!]!) {
  ingestTelemetry(readings: $r) { accepted duplicates } }"""


@pytest.mark.parametrize("writers", ["bulk one batch", "bulk many batches", "graphql",
                                     "graphql and bulk"])
async def test_the_same_readings_in_opposite_orders_never_deadlock(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch,
    writers: str,
) -> None:
    """Rounds of two concurrent writes of the very same readings (same devices, metrics,
    minutes, times), one in the other's reverse order. Each took the unique index's locks
    of its readings in its own order and waited for the other's (deadlock: one answered
    STORE_UNAVAILABLE). Every writer takes them in one canonical order now: both succeed,
    each reading is stored once, the rollup agrees with the readings. Metrics whose
    byte order and the database collation's order differ ("B" < "a" < "b" in bytes) keep
    the bulk path (sorted in Python) and the GraphQL path (sorted in SQL) in one order."""
    if writers == "bulk many batches":
        monkeypatch.setattr("gateway.http.ingest.BATCH", 25)
    devices = sorted([await _device(stores, tenant, f"O{n}") for n in range(6)])
    metrics = ["b", "B", "a"]
    rounds, per_series = 8, 30
    total = len(devices) * len(metrics) * per_series

    def readings(round_: int) -> list[dict[str, Any]]:
        return [{"deviceId": str(d), "metric": m, "value": float(n + round_),
                 "time": (NOW - timedelta(minutes=30 - 2 * round_, seconds=n)).isoformat()}
                for d in devices for m in metrics for n in range(per_series)]

    async def bulk(http: httpx.AsyncClient, items: list[dict[str, Any]]) -> tuple[int, int]:
        response = await http.post("/ingest", content=_ndjson(*items), headers={
            "Authorization": f"Bearer {tenant.key}", "Content-Type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        return response.json()["accepted"], response.json()["duplicates"]

    async def graphql(http: httpx.AsyncClient, items: list[dict[str, Any]]) -> tuple[int, int]:
        response = await http.post("/graphql", json={"query": INGEST_MUTATION,
                                                     "variables": {"r": items}},
                                   headers={"Authorization": f"Bearer {tenant.key}"})
        body = response.json()
        assert "errors" not in body, body["errors"]
        return (body["data"]["ingestTelemetry"]["accepted"],
                body["data"]["ingestTelemetry"]["duplicates"])

    first_writer = graphql if writers.startswith("graphql") else bulk
    second_writer = bulk if writers in ("graphql and bulk", "bulk one batch",
                                        "bulk many batches") else graphql
    async with app_client() as http:
        for round_ in range(rounds):
            items = readings(round_)
            (a_new, a_dup), (b_new, b_dup) = await asyncio.gather(
                first_writer(http, items), second_writer(http, items[::-1]))
            assert a_new + a_dup == b_new + b_dup == total
            assert a_new + b_new == total, round_  # each reading stored exactly once
    raw = await stores.telemetry.pool.fetch(
        "SELECT device_id, metric, count(*) AS n, sum(value) AS total FROM readings"
        " GROUP BY 1, 2 ORDER BY 1, 2")
    rolled = await stores.telemetry.pool.fetch(
        "SELECT device_id, metric, sum(n) AS n, sum(total) AS total FROM readings_5m"
        " GROUP BY 1, 2 ORDER BY 1, 2")
    assert [tuple(r) for r in raw] == [tuple(r) for r in rolled]
    assert [r["n"] for r in raw] == [rounds * per_series] * len(devices) * len(metrics)
