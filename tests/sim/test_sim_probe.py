"""The simulator answers ``capi-stream check``'s token probe (a GET of the pixel) like Graph."""

from __future__ import annotations

import hashlib
import hmac

import httpx

from stream.sim import SimConfig
from tests.sim.conftest import StartSim

GOOD, OTHER = "tok-good", "tok-other"
MINE, THEIRS, NOBODYS = "111", "222", "333"


def _sim_client(start_sim: StartSim, **config: object) -> httpx.Client:
    sim = start_sim(SimConfig(tokens={GOOD: frozenset({MINE}), OTHER: frozenset({THEIRS})},
                              **config))  # type: ignore[arg-type]  # fmt: skip
    return httpx.Client(base_url=sim.url, timeout=5.0)


def _error(resp: httpx.Response) -> tuple[int, int, int | None]:
    error = resp.json()["error"]
    return resp.status_code, error["code"], error.get("error_subcode")


def test_pixel_read_with_a_good_token_returns_id_and_name(start_sim: StartSim) -> None:
    """200 with the requested fields, and no event recorded."""
    with _sim_client(start_sim) as client:
        resp = client.get(f"/v25.0/{MINE}", params={"fields": "id,name", "access_token": GOOD})
        assert resp.status_code == 200
        assert resp.json() == {"id": MINE, "name": f"Simulated pixel {MINE}"}
        stats = client.get("/_sim/stats").json()
        assert stats["accepted"] == stats["requests"] == 0


def test_token_errors_come_before_pixel_errors(start_sim: StartSim) -> None:
    """An unknown token is 190 whatever the pixel; no token is 104."""
    with _sim_client(start_sim) as client:
        for pixel in (MINE, NOBODYS):
            resp = client.get(f"/v25.0/{pixel}", params={"access_token": "nope"})
            assert _error(resp)[1] == 190
        assert _error(client.get(f"/v25.0/{MINE}"))[1] == 104


def test_no_permission_and_unknown_pixel_are_told_apart(start_sim: StartSim) -> None:
    """Another token's pixel: 403 code 200; a pixel nobody has: 400 code 100 subcode 33
    (Graph's "does not exist, cannot be loaded due to missing permissions")."""
    with _sim_client(start_sim) as client:
        assert _error(client.get(f"/v25.0/{THEIRS}", params={"access_token": GOOD})) == (
            403, 200, None)  # fmt: skip
        resp = client.get(f"/v25.0/{NOBODYS}", params={"access_token": GOOD})
        assert _error(resp) == (400, 100, 33)
        assert "does not exist" in resp.json()["error"]["message"]


def test_probe_checks_the_app_secret_proof(start_sim: StartSim) -> None:
    """With an app secret, the probe needs the right appsecret_proof, as the events edge does."""
    with _sim_client(start_sim, app_secret="s3cret") as client:
        params = {"access_token": GOOD, "fields": "id,name"}
        assert _error(client.get(f"/v25.0/{MINE}", params=params))[1] == 100
        proof = hmac.new(b"s3cret", GOOD.encode(), hashlib.sha256).hexdigest()
        resp = client.get(f"/v25.0/{MINE}", params={**params, "appsecret_proof": proof})
        assert resp.status_code == 200


def test_unknown_field_is_refused_like_graph(start_sim: StartSim) -> None:
    """A field the node does not have: code 100 naming it."""
    with _sim_client(start_sim) as client:
        resp = client.get(f"/v25.0/{MINE}", params={"access_token": GOOD, "fields": "id,bogus"})
        assert _error(resp)[1] == 100
        assert "(bogus)" in resp.json()["error"]["message"]
