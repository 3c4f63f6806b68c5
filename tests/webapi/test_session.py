"""The session: 401 before login, the simulated login, the timeout without /tickle, logout, TLS."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from ibkr_sim.gateway import running_clock
from ibkr_sim.webapi import start_webapi
from tests.webapi.conftest import OPEN, SYMBOLS, client
from tests.webapi.spec import validate


def test_unauthenticated_then_login_then_logout(tmp_path):
    gw = start_webapi(
        clock=running_clock(OPEN), symbols=SYMBOLS, data_dir=tmp_path, rate_limits=False
    )
    with gw, client(gw) as api:
        for method, path in (
            ("GET", "/iserver/accounts"),
            ("GET", "/portfolio/accounts"),
            ("POST", "/tickle"),
        ):
            r = api.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (path, r.text)
            assert "log in" in r.json()["error"]
        status = api.post("/sim/login", json={}).json()
        assert status["authenticated"] is True
        r = api.post("/iserver/auth/status", json={})
        assert validate(r)["authenticated"] is True
        accounts = validate(api.get("/iserver/accounts"))
        assert accounts["accounts"] == ["DU1234567"]
        tickle = validate(api.post("/tickle", json={}))
        assert tickle["iserver"]["authStatus"]["authenticated"] is True
        assert len(tickle["session"]) == 32 and tickle["ssoExpires"] > 0
        assert validate(api.post("/logout", json={})) == {"status": True}
        assert api.get("/iserver/accounts").status_code == 401


def test_brokerage_session_times_out_without_tickle_and_reauthenticates(tmp_path):
    with (
        start_webapi(
            clock=running_clock(OPEN),
            authenticated=True,
            rate_limits=False,
            session_timeout=3.0,
            symbols=SYMBOLS,
            data_dir=tmp_path,
        ) as gw,
        client(gw) as api,
    ):
        # tickling every 1 s keeps the session past its 3 s timeout (a margin wide enough for a
        # loaded machine: a request that takes up to 2 s still keeps it alive)
        for _ in range(5):
            time.sleep(1.0)
            validate(api.post("/tickle", json={}))
        assert api.get("/iserver/accounts").status_code == 200
        time.sleep(3.5)
        status = validate(api.post("/iserver/auth/status", json={}))
        assert (status["authenticated"], status["connected"]) == (False, True)
        r = api.get("/iserver/accounts")
        assert r.status_code == 401 and "reauthenticate" in r.json()["error"]
        assert api.get("/portfolio/accounts").status_code == 200  # the SSO session lives on
        assert api.post("/iserver/reauthenticate", json={}).json() == {"message": "triggered"}
        assert validate(api.get("/iserver/accounts"))["accounts"] == ["DU1234567"]


def test_https_with_self_signed_certificate_and_plain_http(tmp_path):
    with start_webapi(
        clock=running_clock(OPEN), authenticated=True, symbols=SYMBOLS, data_dir=tmp_path
    ) as gw:
        assert gw.url.startswith("https://") and gw.cert_path == tmp_path / "sim/webapi/cert.pem"
        with client(gw) as api:
            assert api.post("/iserver/auth/status", json={}).json()["authenticated"] is True
        with (
            httpx.Client(base_url=gw.url) as untrusting,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            untrusting.post("/iserver/auth/status", json={})
    with start_webapi(
        clock=running_clock(OPEN), tls=False, authenticated=True, symbols=SYMBOLS, data_dir=tmp_path
    ) as gw:
        assert gw.url.startswith("http://") and gw.cert_path is None
        with httpx.Client(base_url=gw.url) as api:
            assert api.post("/iserver/auth/status", json={}).json()["authenticated"] is True


def test_post_without_content_length_is_411(api):
    raw = httpx.Request("POST", f"{api.base_url}tickle")
    raw.headers.pop("Content-Length", None)
    r = api.send(raw)
    assert r.status_code == 411 and "Content-Length" in r.json()["error"]
    assert api.post("/tickle", json={}).status_code == 200


def test_rate_limits_answer_429(tmp_path):
    gw = start_webapi(
        clock=running_clock(OPEN), authenticated=True, symbols=SYMBOLS, data_dir=tmp_path
    )
    with gw, client(gw) as api:
        assert api.get("/iserver/account/orders").status_code == 200
        r = api.get("/iserver/account/orders")  # IBKR: 1 request per 5 s
        assert r.status_code == 429 and "1 per 5 s" in r.json()["error"]
        codes = [api.post("/iserver/auth/status", json={}).status_code for _ in range(12)]
        assert 429 in codes  # 10 requests per second across the gateway


def test_the_cli_banner_comes_once_the_gateway_accepts_connections(tmp_path):
    """A supervisor (``ibkr-agent demo``, the bench) connects as soon as it reads the banner."""
    command = ["webapi", "--port", "0", "--no-tls", "--authenticated", "--symbols", str(SYMBOLS)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibkr_sim.cli", *command, "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        url = banner.split("listening on ")[1].split()[0]
        r = httpx.post(f"{url}/iserver/auth/status", timeout=30)  # at once: no retry, no sleep
        assert r.status_code == 200 and r.json()["authenticated"] is True
    finally:
        proc.terminate()
        proc.wait(10)
