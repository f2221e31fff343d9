"""A request's loaded rows are freed when it is answered, without the cyclic collector:
graphql-core's execution context is cyclic garbage, and the rows its context's loaders
held waited with it, so under sustained load the process grew by that garbage between
old-generation collections (bench/RESULTS.md, "Memory that levels off")."""

from __future__ import annotations

import gc
from collections import Counter

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

QUERY = """{ devices(first: 10) { edges { node { id name metadata asset { name }
    shadow { version } latest { value } } } } }"""
REGISTER = """mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) {
    device { id } } }"""


async def test_a_requests_rows_need_no_cyclic_collection(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    for n in range(5):
        body = await gateway.query(REGISTER, {"input": {
            "serial": f"SN-{n}", "name": f"d{n}", "type": "t", "metadata": {"n": n}}},
            key=tenant.key)
        assert "errors" not in body, body
    await gateway.query(QUERY, key=tenant.key)  # warm: caches of the first request
    gc.collect()
    gc.disable()
    try:
        body = await gateway.query(QUERY, key=tenant.key)
        assert len(body["data"]["devices"]["edges"]) == 5
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # What the request loaded (device and profile rows, shadows, their futures) was freed;
    # only the execution's own bookkeeping waits for the collector.
    loaded = {k: garbage[k] for k in ("Record", "ShadowDoc", "Future", "UUID")}
    assert loaded == dict.fromkeys(loaded, 0), garbage.most_common(20)
