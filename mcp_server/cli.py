"""``ibkr-agent mcp``: serve the IB tools, and discover or call them from a shell.

    ibkr-agent mcp serve [--transport http|stdio] [--host 127.0.0.1] [--port 8000]
    ibkr-agent mcp tools [--category C] [--json] [--url URL]     # list tools by category
    ibkr-agent mcp call TOOL --args '{"symbols": ["AAPL"]}' [--url URL]
    ibkr-agent mcp health [--url URL]                  # broker, account, paper/live, trading

``tools``, ``call`` and ``health`` are MCP clients: with ``--url`` (e.g. http://127.0.0.1:8000/mcp)
they talk to a running server, sending the secret ``IBKR_MCP_TOKEN`` (or the contents of the file
``IBKR_MCP_TOKEN_FILE`` names, or Vault's) as a bearer token when set; without it
they start a server over stdio with the current environment.

``ibkr-agent mcp`` runs this module (``python -m mcp_server.cli``). ``ibkr-mcp``, the old name of
the command (another published package has a command of that name), still works for one release
and says so in one line on stderr; stdout stays the MCP stream.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from mcp_server.config import LOOPBACK_HOSTS
from mcp_server.security import InsecureBinding, uvicorn_tls

#: The command, as a user types it (``ibkr-agent mcp`` runs this module).
PROG = "ibkr-agent mcp"
#: The command's old name: a deprecated alias, removed in the next release.
OLD_PROG = "ibkr-mcp"


def serve(transport: str, host: str, port: int) -> None:
    """Run the server until interrupted; the broker connection closes on the way out."""
    from ibkr_assets.settings import load_settings
    from mcp_server.server import build_server, http_app

    settings = load_settings().checked("mcp").mcp
    server = build_server(settings)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            import uvicorn

            app = http_app(server, host, port)
            mode = "on" if settings.trading else "off"
            scheme = "https" if settings.tls else "http"
            print(f"{PROG}: {scheme}://{host}:{port}/mcp (trading {mode})", file=sys.stderr)
            if host not in LOOPBACK_HOSTS and not settings.tls:
                print(
                    f"{PROG}: warning: the bearer token crosses the network in clear text; "
                    "set IBKR_MCP_TLS_CERT and IBKR_MCP_TLS_KEY to serve HTTPS",
                    file=sys.stderr,
                )
            uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_tls(settings))
    finally:
        server.app_state.close()


def _client(url: str | None) -> Any:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    if url is None:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_server.cli", "serve", "--transport", "stdio"],
            env=dict(os.environ),
        )
        return Client(params)
    from ibkr_assets.settings.secret import MCP_TOKEN

    token = MCP_TOKEN.read()  # IBKR_MCP_TOKEN, its file or Vault; None when unset
    if token is None:
        return Client(url)
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        timeout=httpx2.Timeout(30.0, read=300.0),
    )
    return Client(streamable_http_client(url, http_client=http))


def example_call(tool: Any) -> str:
    """The first line after "Examples:" in a tool's description."""
    lines = [ln.strip() for ln in (tool.description or "").splitlines()]
    if "Examples:" in lines:
        rest = lines[lines.index("Examples:") + 1 :]
        return next((ln for ln in rest if ln), "")
    return ""


async def _tools(url: str | None, category: str | None, as_json: bool) -> int:
    async with _client(url) as client:
        tools = (await client.list_tools()).tools
    rows = [
        {
            "name": t.name,
            "category": (t.meta or {}).get("category", ""),
            "description": (t.description or "").strip().splitlines()[0],
            "read_only": bool(t.annotations and t.annotations.read_only_hint),
            "destructive": bool(t.annotations and t.annotations.destructive_hint),
            "example": example_call(t),
        }
        for t in tools
        if category is None or (t.meta or {}).get("category") == category
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for cat in sorted({r["category"] for r in rows}):
        print(f"[{cat}]")
        for r in (r for r in rows if r["category"] == cat):
            flag = " (writes)" if not r["read_only"] else ""
            print(f"  {r['name']}{flag}: {r['description']}")
            if r["example"]:
                print(f"      e.g. {r['example']}")
    return 0


async def _call(url: str | None, tool: str, arguments: dict[str, Any]) -> int:
    async with _client(url) as client:
        result = await client.call_tool(tool, arguments)
    if result.is_error:
        print(" ".join(c.text for c in result.content if hasattr(c, "text")), file=sys.stderr)
        return 1
    payload = result.structured_content
    if payload is None:
        payload = [c.model_dump(mode="json") for c in result.content]
    print(json.dumps(payload, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``ibkr-agent mcp``: serve, tools, call, health."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the MCP server")
    p.add_argument("--transport", choices=["http", "stdio"], default="http")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("tools", help="list the tools by category")
    p.add_argument("--category")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000/mcp")
    p = sub.add_parser("call", help="call one tool and print its result as JSON")
    p.add_argument("tool")
    p.add_argument("--args", default="{}", help="arguments as a JSON object")
    p.add_argument("--url")
    p = sub.add_parser("health", help="broker connection, account and mode")
    p.add_argument("--url")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``ibkr-agent mcp ARGS`` (which runs ``python -m mcp_server.cli ARGS``)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.command == "serve":
        from ibkr_assets.errors import ConfigurationError

        try:
            serve(args.transport, args.host, args.port)
        except (InsecureBinding, ConfigurationError) as exc:
            parser.exit(2, f"{PROG}: {exc}\n")
        return 0
    if args.command == "tools":
        return anyio.run(_tools, args.url, args.category, args.json)
    if args.command == "call":
        try:
            arguments = json.loads(args.args)
        except json.JSONDecodeError as exc:
            parser.error(f"--args is not valid JSON: {exc}")
        if not isinstance(arguments, dict):
            parser.error("--args must be a JSON object")
        return anyio.run(_call, args.url, args.tool, arguments)
    return anyio.run(_call, args.url, "health", {})


def deprecated_main(argv: Sequence[str] | None = None) -> int:
    """The ``ibkr-mcp`` console script: :func:`main`, after one line on stderr (never stdout,
    the stdio MCP stream) saying the command is now ``ibkr-agent mcp``."""
    print(
        f"{OLD_PROG}: deprecated, removed in the next release; run `{PROG} ...` with the same "
        "arguments",
        file=sys.stderr,
    )
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
