"""CORS from IOTSPHERE_ALLOWED_ORIGINS: preflights and responses for listed origins only."""

from __future__ import annotations

from tests.conftest import AppClient, Tenant

ALLOWED = "https://app.example.com"
FOREIGN = "https://evil.example.net"
QUERY = {"query": "{ __typename }"}


def _preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}


async def test_preflight_answers_listed_origins_only(app_client: AppClient) -> None:
    async with app_client(allowed_origins=(ALLOWED,)) as http:
        allowed = await http.options("/graphql", headers=_preflight(ALLOWED))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        granted = {h.strip().lower()
                   for h in allowed.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= granted
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in allowed.headers

        foreign = await http.options("/graphql", headers=_preflight(FOREIGN))
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers

        other_header = await http.options("/graphql", headers={
            **_preflight(ALLOWED), "Access-Control-Request-Headers": "x-forwarded-user"})
        assert other_header.status_code == 400


async def test_responses_carry_cors_headers_for_listed_origins(
    app_client: AppClient, tenant: Tenant
) -> None:
    auth = {"Authorization": f"Bearer {tenant.key}"}
    async with app_client(allowed_origins=(ALLOWED,)) as http:
        ok = await http.post("/graphql", json=QUERY, headers={**auth, "Origin": ALLOWED})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()

        foreign = await http.post("/graphql", json=QUERY, headers={**auth, "Origin": FOREIGN})
        assert "access-control-allow-origin" not in foreign.headers


async def test_no_listed_origin_means_no_cors(app_client: AppClient) -> None:
    async with app_client() as http:
        preflight = await http.options("/graphql", headers=_preflight(ALLOWED))
        assert preflight.status_code == 405
        assert "access-control-allow-origin" not in preflight.headers
