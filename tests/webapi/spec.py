"""IBKR's OpenAPI spec (v2.29.0) as the judge of every JSON answer of the simulated Web API.

``openapi-core`` validates a response against the spec's schema for its path, method and status.
Two readings of the spec, both for defects of the spec itself, are applied to a copy of it:

- ``oneOf`` is read as ``anyOf``: the spec's alternatives overlap (``failedTickleResponse`` has
  no required field, so every successful tickle matches both and strict ``oneOf`` fails);
- ``format: int32`` is read as ``int64``: the spec types epoch-millisecond fields (``_updated``,
  ``timestamp``, ``t``, ``accountStatus``) as int32, which cannot hold them; IBKR sends ms
  (webapi.md, "Market data snapshot").

The spec does not validate itself under openapi-spec-validator (``components.extensions``), so
spec validation is off.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import PathNotFound, ServerNotFound
from openapi_core.testing import MockRequest, MockResponse
from werkzeug.datastructures import ImmutableMultiDict

#: IBKR's own OpenAPI description of the Web API, version 2.29.0, kept unchanged beside the tests
#: (as IBKR serves it from its API documentation site) so a fresh clone validates against it.
SPEC_PATH = Path(__file__).with_name("ibkr-openapi.json")
HOST = "https://api.ibkr.com"
PREFIX = "/v1/api"


def _relax(node: Any) -> Any:
    if isinstance(node, dict):
        out = {("anyOf" if k == "oneOf" else k): _relax(v) for k, v in node.items()}
        if out.get("format") == "int32":
            out["format"] = "int64"
        return out
    if isinstance(node, list):
        return [_relax(x) for x in node]
    return node


def relaxed_spec() -> dict[str, Any]:
    """A fresh copy of the spec, relaxed as the module docstring says."""
    return _relax(json.loads(SPEC_PATH.read_text()))


@cache
def openapi() -> OpenAPI:
    """The relaxed spec, for openapi-core."""
    return OpenAPI(SchemaPath.from_dict(relaxed_spec()), config=Config(spec_validator_cls=None))


def validate(response: httpx.Response) -> Any:
    """Validate ``response`` (to a request under ``/v1/api``) against the spec and return its
    JSON; raises openapi-core's error naming the schema violation."""
    request = response.request
    path = request.url.path
    assert path.startswith(PREFIX), path
    args = ImmutableMultiDict(list(request.url.params.multi_items()))
    mock_response = MockResponse(
        response.content,
        status_code=response.status_code,
        content_type=response.headers.get("content-type", "application/json").split(";")[0],
    )
    # operations with their own servers (https://api.ibkr.com/v1/api) match the full path; the
    # rest (e.g. /tickle) the spec's top-level server, without the prefix
    for candidate in (path, path[len(PREFIX) :]):
        mock_request = MockRequest(HOST, request.method.lower(), candidate, args=args)
        try:
            openapi().validate_response(mock_request, mock_response)
        except (PathNotFound, ServerNotFound):
            continue
        except OpenAPIError as exc:
            raise AssertionError(
                f"{request.method} {path} -> {response.status_code} breaks IBKR's spec: "
                + "; ".join(_reasons(exc))
            ) from exc
        return response.json()
    raise AssertionError(f"{request.method} {path} is not a path of IBKR's spec")


def _reasons(exc: BaseException) -> list[str]:
    """The schema violations behind an openapi-core error, each with where it is."""
    seen: BaseException | None = exc
    while seen is not None:
        errors = getattr(seen, "schema_errors", None)
        if errors:
            return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in errors]
        seen = seen.__cause__
    return [str(exc)]
