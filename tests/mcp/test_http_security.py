"""HTTP security: bearer token off loopback (32 characters at least), Host/Origin validation
(the Origin must be the server's own), HTTPS, plain-HTTP routes and malformed bodies."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from mcp import Client
from pydantic import ValidationError

from ibkr_assets.settings import MCPSettings, SecretError
from mcp_server.security import InsecureBinding
from mcp_server.server import build_server, http_app

from .conftest import serve_http, sim_broker_factory

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests-only-0123456789"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("open")
    with serve_http(MCPSettings(data_dir=data), broker_factory=sim_broker_factory(data)) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("tok")
    # Configured as if listening on a LAN address (the socket itself stays on loopback).
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IBKR_MCP_TOKEN", TOKEN)
        with serve_http(MCPSettings(data_dir=data), "192.168.1.20", sim_broker_factory(data)) as up:
            yield up


def test_non_loopback_without_token_refuses_to_start(tmp_path):
    server = build_server(MCPSettings(data_dir=tmp_path))
    with pytest.raises(InsecureBinding, match="IBKR_MCP_TOKEN"):
        http_app(server, "0.0.0.0")


def test_plain_tools_list_on_loopback(open_server):
    r = httpx.get(open_server.base + "/tools/list")
    assert r.status_code == 200
    names = {t["name"] for t in r.json()["tools"]}
    assert {"quotes", "preview_order", "ping"} <= names
    assert "place_order" not in names  # trading off by default


def test_plain_tools_call(open_server):
    r = httpx.post(open_server.base + "/tools/call", json={"name": "ping", "arguments": {}})
    assert r.status_code == 200
    assert r.json()["structuredContent"] == {"ok": True}
    bad = httpx.post(open_server.base + "/tools/call", content=b"not json")
    assert bad.status_code == 400 and "body must be JSON" in bad.json()["error"]
    unknown = httpx.post(open_server.base + "/tools/call", json={"name": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


def test_deeply_nested_json_is_a_400_and_the_server_keeps_serving(open_server):
    depth = 100_000
    body = b'{"name": "ping", "arguments": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    r = httpx.post(open_server.base + "/tools/call", content=body)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
    nested: list = []
    for _ in range(500):  # deep, but within what the JSON parser takes: refused by validation
        nested = [nested]
    r = httpx.post(
        open_server.base + "/tools/call", json={"name": "quotes", "arguments": {"symbols": nested}}
    )
    assert r.status_code == 400 and "symbols" in r.json()["error"]
    ping = httpx.post(open_server.base + "/tools/call", json={"name": "ping"})
    assert ping.status_code == 200


def test_origin_must_be_the_servers_own_host_and_port(open_server):
    port = open_server.port
    for path in ("/tools/list", "/mcp"):
        for origin in (
            "http://evil.example",
            f"http://localhost:{port + 1}",  # a page served by another local port
            f"http://127.0.0.1:{port - 1}",
            f"https://127.0.0.1:{port}",  # wrong scheme: this server speaks plain HTTP
        ):
            r = httpx.get(open_server.base + path, headers={"Origin": origin})
            assert r.status_code == 403, (path, origin)
            assert origin in r.json()["error"]
    for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}"):
        ok = httpx.get(open_server.base + "/tools/list", headers={"Origin": origin})
        assert ok.status_code == 200, origin


def test_short_or_half_configured_secrets_refused_at_startup(tmp_path, monkeypatch):
    short = "x" * 31
    monkeypatch.setenv("IBKR_MCP_TOKEN", short)
    server = build_server(MCPSettings(data_dir=tmp_path))
    with pytest.raises(SecretError, match="IBKR_MCP_TOKEN is 31 characters; use at least 32") as e:
        http_app(server, "0.0.0.0")
    assert short not in str(e.value)  # the token is never echoed
    cert = tmp_path / "cert.pem"
    cert.write_text("-")
    with pytest.raises(ValidationError, match="needs both IBKR_MCP_TLS_CERT and IBKR_MCP_TLS_KEY"):
        MCPSettings(data_dir=tmp_path, tls_cert=cert)
    with pytest.raises(ValidationError, match=r"IBKR_MCP_TLS_KEY: .* is not a readable file"):
        MCPSettings(data_dir=tmp_path, tls_cert=cert, tls_key=tmp_path / "missing.pem")


def test_foreign_host_rejected(open_server):
    r = httpx.get(open_server.base + "/tools/list", headers={"Host": "attacker.example:80"})
    assert r.status_code == 421


def test_token_required_on_every_route(token_server):
    base = token_server.base
    for method, path in (("GET", "/tools/list"), ("POST", "/tools/call"), ("POST", "/mcp")):
        r = httpx.request(method, base + path, json={"name": "ping"})
        assert r.status_code == 401, path
        assert TOKEN not in r.text
    wrong = httpx.get(base + "/tools/list", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    ok = httpx.get(base + "/tools/list", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


async def test_mcp_client_with_bearer_token(token_server):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    async with Client(streamable_http_client(token_server.url, http_client=http)) as client:
        result = await client.call_tool("ping", {})
    assert not result.is_error and result.structured_content == {"ok": True}


# -- HTTPS off loopback ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost and its key, as PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ibkr-mcp test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_with_token_off_loopback(tls_files, tmp_path, monkeypatch):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    cert, key = tls_files
    monkeypatch.setenv("IBKR_MCP_TOKEN", TOKEN)
    settings = MCPSettings(data_dir=tmp_path, tls_cert=cert, tls_key=key)
    trust = ssl.create_default_context(cafile=str(cert))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # Configured as if listening on a LAN address (the socket itself stays on loopback).
    with serve_http(settings, "192.168.1.20", sim_broker_factory(tmp_path)) as running:
        base = f"https://127.0.0.1:{running.port}"
        r = httpx.get(base + "/tools/list", headers=auth, verify=trust)
        assert r.status_code == 200 and r.json()["tools"]
        own = httpx.get(
            base + "/tools/list",
            headers={**auth, "Origin": f"https://192.168.1.20:{running.port}"},
            verify=trust,
        )
        assert own.status_code == 200
        clear = httpx.get(
            base + "/tools/list",
            headers={**auth, "Origin": f"http://192.168.1.20:{running.port}"},
            verify=trust,
        )
        assert clear.status_code == 403
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served at all
            httpx.get(running.base + "/tools/list", headers=auth)
        http = httpx2.AsyncClient(headers=auth, verify=trust)
        async with Client(streamable_http_client(base + "/mcp", http_client=http)) as client:
            result = await client.call_tool("ping", {})
    assert not result.is_error and result.structured_content == {"ok": True}
