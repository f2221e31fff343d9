"""JWT bearer tokens: HS256 and RS256, time claims with bounded skew, signatures, algorithm
confusion, required claims, tenants and devices, and the settings that configure them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import create_app
from gateway.settings import Settings, SettingsError
from gateway.stores import Stores
from tests.conftest import AppClient, Tenant
from tests.support.live_server import TransportWS, serve

SECRET = "s" * 32
QUERY = {"query": "{ devices { totalCount edges { node { name } } } }"}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def claims(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"tenant": str(tenant.id), "role": "viewer", "sub": "alice",
                            "iat": now, "exp": now + 300}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.fixture
async def http(
    app_client: AppClient, rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(jwt_secret=SECRET, jwt_public_key=public_pem(rsa_key),
                          jwt_leeway=30) as client:
        yield client


async def ask(http: httpx.AsyncClient, token: str, body: dict[str, Any] | None = None
              ) -> httpx.Response:
    return await http.post("/graphql", json=body or QUERY,
                           headers={"Authorization": f"Bearer {token}"})


def refused(response: httpx.Response, token: str, words: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert words in error["message"], error["message"]
    assert token not in response.text and token.split(".")[1] not in response.text


async def seed(http: httpx.AsyncClient, tenant: Tenant, name: str) -> str:
    response = await http.post(
        "/graphql", headers={"Authorization": f"Bearer {tenant.key}"},
        json={"query": 'mutation($n: String!) { registerDevice(input: {serial: $n, name: $n, '
                       'type: "t"}) { device { id } } }', "variables": {"n": name}})
    device: str = response.json()["data"]["registerDevice"]["device"]["id"]
    return device


async def test_hs256_and_rs256_tokens_see_their_tenant_only(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, rsa_key: rsa.RSAPrivateKey
) -> None:
    await seed(http, tenant, "mine")
    await seed(http, other_tenant, "theirs")
    for token in (hs256(claims(tenant)),
                  jwt.encode(claims(tenant), rsa_key, algorithm="RS256")):
        body = (await ask(http, token)).json()
        assert body == {"data": {"devices": {"totalCount": 1, "edges": [
            {"node": {"name": "mine"}}]}}}
    # The role claim decides: a viewer token cannot write.
    write = {"query": 'mutation { createAsset(input: {name: "a", kind: "k"}) { id } }'}
    body = (await ask(http, hs256(claims(tenant)), write)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = (await ask(http, hs256(claims(tenant, role="operator")), write)).json()
    assert "errors" not in body


async def test_time_claims_with_bounded_skew(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """The leeway is 30 s: 10 s off passes, 60 s off does not."""
    now = int(time.time())
    for name, words in (("exp", "expired"), ("nbf", "not valid yet"), ("iat", "not valid yet")):
        sign = -1 if name == "exp" else 1
        inside = await ask(http, hs256(claims(tenant, **{name: now + sign * 10})))
        assert inside.status_code == 200, (name, inside.text)
        token = hs256(claims(tenant, **{name: now + sign * 60}))
        refused(await ask(http, token), token, words)


async def test_signatures_and_algorithms(http: httpx.AsyncClient, tenant: Tenant,
                                         rsa_key: rsa.RSAPrivateKey) -> None:
    wrong = hs256(claims(tenant), "w" * 32)
    refused(await ask(http, wrong), wrong, "signature does not verify")
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(tenant), other_rsa, algorithm="RS256")
    refused(await ask(http, forged), forged, "signature does not verify")
    unsigned = jwt.encode(claims(tenant), None, algorithm="none")
    refused(await ask(http, unsigned), unsigned, "algorithm 'none' is not accepted")
    hs512 = jwt.encode(claims(tenant), SECRET * 2, algorithm="HS512")
    refused(await ask(http, hs512), hs512, "algorithm 'HS512' is not accepted")
    tampered = hs256(claims(tenant))
    head, body, sig = tampered.split(".")
    admin = hs256(claims(tenant, role="admin")).split(".")[1]
    tampered = f"{head}.{admin}.{sig}"
    refused(await ask(http, tampered), tampered, "signature does not verify")
    odd = _hmac_token(claims(tenant), SECRET, alg="<script>" * 5)
    response = await ask(http, odd)
    refused(response, odd, "algorithm this is not accepted")
    assert "script" not in response.text
    garbage = "eyJhbGciOi.not-a-token.x"
    refused(await ask(http, garbage), garbage, "Malformed")


async def test_rs256_public_key_is_no_hmac_secret(
    app_client: AppClient, tenant: Tenant, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Algorithm confusion: with only a public key configured, an HS256 token signed with
    that public key as the secret is refused before any verification."""
    pem = public_pem(rsa_key)
    async with app_client(jwt_public_key=pem) as http:
        confused = _hmac_token(claims(tenant), pem)
        refused(await ask(http, confused), confused, "algorithm 'HS256' is not accepted")
        good = jwt.encode(claims(tenant), rsa_key, algorithm="RS256")
        assert (await ask(http, good)).status_code == 200


def _hmac_token(payload: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    """An HS256 token keyed by any bytes (PyJWT itself refuses PEM keys as HMAC secrets)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(
        json.dumps(payload).encode())
    mac = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


CLAIM_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"exp": None}, "'exp'"),
    ({"tenant": None}, "'tenant'"),
    ({"role": None}, "'role'"),
    ({"role": "root"}, "must be one of"),
    ({"tenant": "acme"}, "must be a tenant id"),
    ({"tenant": str(uuid4())}, "tenant does not exist"),
    ({"role": "device", "sub": None}, "device id"),
    ({"role": "device", "sub": "thermostat"}, "device id"),
    ({"role": "device", "sub": str(uuid4())}, "device does not exist"),
]


async def test_claims_are_checked(http: httpx.AsyncClient, tenant: Tenant) -> None:
    for change, words in CLAIM_ERRORS:
        payload = claims(tenant)
        for name, value in change.items():
            payload.pop(name, None)
            if value is not None:
                payload[name] = value
        token = hs256(payload)
        refused(await ask(http, token), token, words)


async def test_a_device_token_is_that_device(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await seed(http, tenant, "mine")
    other = await seed(http, tenant, "other")
    theirs = await seed(http, other_tenant, "theirs")
    token = hs256(claims(tenant, role="device", sub=mine))
    own = await ask(http, token, {"query": f'{{ device(id: "{mine}") {{ name }} }}'})
    assert own.json() == {"data": {"device": {"name": "mine"}}}
    report = {"query": f'mutation {{ updateShadow(deviceId: "{mine}", reported: {{on: true}}) '
                       "{ version } }"}
    assert (await ask(http, token, report)).json() == {"data": {"updateShadow": {"version": 1}}}
    for query in (f'{{ device(id: "{other}") {{ name }} }}', "{ devices { totalCount } }"):
        body = (await ask(http, token, {"query": query})).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # A device of another tenant named with this tenant: no such device here.
    stolen = hs256(claims(tenant, role="device", sub=theirs))
    refused(await ask(http, stolen), stolen, "device does not exist")


async def test_issuer_and_audience_when_configured(app_client: AppClient,
                                                   tenant: Tenant) -> None:
    async with app_client(jwt_secret=SECRET, jwt_issuer="https://idp.example",
                          jwt_audience="iotsphere") as http:
        good = hs256(claims(tenant, iss="https://idp.example", aud="iotsphere"))
        assert (await ask(http, good)).status_code == 200
        for bad, words in (
            (claims(tenant, iss="https://evil.example", aud="iotsphere"), "issuer"),
            (claims(tenant, iss="https://idp.example", aud="other"), "audience"),
            (claims(tenant, aud="iotsphere"), "'iss'"),
        ):
            token = hs256(bad)
            refused(await ask(http, token), token, words)


async def test_tokens_are_refused_when_jwt_is_off(app_client: AppClient, tenant: Tenant) -> None:
    async with app_client() as http:
        token = hs256(claims(tenant))
        refused(await ask(http, token), token, "not enabled")


async def test_a_websocket_authenticates_with_a_token(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    import dataclasses

    app = create_app(dataclasses.replace(settings, jwt_secret=SECRET), stores=stores)
    async with serve(app) as address, TransportWS.connect(address, hs256(claims(tenant))) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe("subscription { shadowChanged { kind } }")
        async with TransportWS.connect(address, hs256(claims(tenant, exp=1))) as expired:
            closing = expired.ws
            await closing.wait_closed()
            assert closing.close_code == 4403


def test_settings_refuse_weak_or_malformed_keys(tmp_path: Path,
                                                rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SettingsError, match="IOTSPHERE_JWT_SECRET must be at least 32 bytes"):
        Settings.from_env({"IOTSPHERE_JWT_SECRET": "short-secret"})
    with pytest.raises(SettingsError, match="IOTSPHERE_JWT_LEEWAY"):
        Settings.from_env({"IOTSPHERE_JWT_SECRET": SECRET, "IOTSPHERE_JWT_LEEWAY": "3600"})
    with pytest.raises(SettingsError, match="not a PEM public key"):
        Settings.from_env({"IOTSPHERE_JWT_PUBLIC_KEY": "hello"})
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(SettingsError, match="at least 2048 bits"):
        Settings.from_env({"IOTSPHERE_JWT_PUBLIC_KEY": public_pem(small)})
    pem_file = tmp_path / "jwt.pem"
    pem_file.write_text(public_pem(rsa_key))
    settings = Settings.from_env({"IOTSPHERE_JWT_PUBLIC_KEY_FILE": str(pem_file)})
    assert settings.jwt_public_key == public_pem(rsa_key)
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env({"IOTSPHERE_JWT_PUBLIC_KEY_FILE": str(pem_file),
                           "IOTSPHERE_JWT_PUBLIC_KEY": public_pem(rsa_key)})
    assert Settings.from_env({"IOTSPHERE_JWT_SECRET": SECRET}).jwt_secret == SECRET
