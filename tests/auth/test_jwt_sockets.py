"""A WebSocket opened with a JWT ends with the token: closed 4401 "Token expired" at
``exp`` (plus JWT_LEEWAY), while a socket of a longer-lived token on the same server goes
on."""

from __future__ import annotations

import dataclasses
import time

import pytest
import websockets

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.auth.test_jwt import SECRET, claims, hs256
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve

PING = {"type": "ping"}


async def test_a_jwt_socket_is_closed_at_exp(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    jwt_settings = dataclasses.replace(settings, jwt_secret=SECRET, jwt_leeway=0)
    short = hs256(claims(tenant, exp=int(time.time()) + 2))
    long = hs256(claims(tenant, sub="bob"))
    async with serve(create_app(jwt_settings, stores=stores)) as address, \
            TransportWS.connect(address, short) as ending, \
            TransportWS.connect(address, long) as staying:
        assert (await ending.receive())["type"] == "connection_ack"
        assert (await staying.receive())["type"] == "connection_ack"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ending.receive(timeout=30)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "Token expired")
        # The other token's socket is still served.
        await staying.send(PING)
        assert (await staying.receive())["type"] == "pong"

