"""Schemathesis against the simulated Client Portal gateway: requests generated from IBKR's own
OpenAPI spec (tests/webapi/ibkr-openapi.json, relaxed as :mod:`tests.webapi.spec` says) sent to
``ibkr-sim webapi`` over HTTPS, logged in with ``POST /sim/login``, rate limits off.

Which operations the simulator serves is read from its route table (``build_app``), so a route
added later is fuzzed without touching this file. Per spec tag, one test:

- a served operation gets ``EXAMPLES`` derandomised cases from each of: valid data, valid data
  with this login's account and a known conid wherever it names them, the spec's own examples
  (with those values too), order tickets in IBKR's vocabulary where it takes one, and invalid
  data (schemathesis' negative mode);
- an operation the simulator does not serve gets ``UNSERVED_EXAMPLES`` valid cases and must
  answer 404 (no such path) or 405 (path served, method not), never 5xx.

Every answer: no 5xx but the ones IBKR documents (500 for a wrong accountId: the spec's
``InternalServerError``, "wrong accountId passed ... Error contains reason", which the simulator
answers for every ``{accountId}`` route; the 500s the spec names for one operation; 503 for a
reply invalidated by another request and the status of an order from an earlier session
[V1DOC]); an error status (>= 400) carries a JSON object with an ``error`` field (webapi.md,
"Errors"); a status the spec lists for the operation has a body that matches the spec's schema
for it. :func:`test_rate_limits_answer_429_with_an_error` keeps the limits on and checks the
429s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.routing import BaseRoute, Match, Mount

from ibkr_sim.gateway import running_clock
from ibkr_sim.webapi import WebApiHandle, start_webapi
from ibkr_sim.webapi.app import build_app
from ibkr_spec.webapi import GLOBAL_LIMIT
from tests.webapi.conftest import ACCOUNT, OPEN, SYMBOLS, client
from tests.webapi.spec import relaxed_spec, validate

#: derandomised cases per served operation and source of data (valid, known values, the spec's
#: examples, order tickets, invalid): 5 x 6 requests at most per operation
EXAMPLES = 6
#: valid cases per operation the simulator does not serve
UNSERVED_EXAMPLES = 2
#: Apple's conid, one of the simulated world's symbols
AAPL = 265598
#: values that reach past the simulator's validation: parameter name -> value
KNOWN_VALUES: dict[str, Any] = {
    "accountId": ACCOUNT,
    "acctId": ACCOUNT,
    "conid": AAPL,
    "conids": str(AAPL),
}
#: an order ticket in IBKR's vocabulary (webapi.md, "Orders": the spec types ``orderType`` as a free
#: string, so generated tickets never pass it): valid ones and ones the gateway must refuse
TICKET = st.fixed_dictionaries(
    {
        "conid": st.sampled_from([AAPL, AAPL, 1]),
        "side": st.sampled_from(["BUY", "SELL"]),
        "orderType": st.sampled_from(["MKT", "LMT", "STP", "STOP_LIMIT", "MIDPRICE", "TRAIL"]),
        "tif": st.sampled_from(["DAY", "GTC", "IOC", "OPG"]),
        "quantity": st.one_of(st.integers(-1, 1000), st.floats(0, 1e6, allow_nan=False)),
    },
    optional={
        "acctId": st.just(ACCOUNT),
        "price": st.floats(-1, 1e4, allow_nan=False),
        "auxPrice": st.floats(-1, 1e4, allow_nan=False),
        "outsideRTH": st.booleans(),
        "cOID": st.text(max_size=12),
    },
)
#: 500s the spec documents for one operation (besides a wrong accountId)
DOCUMENTED_500 = {
    "GET /iserver/account/alert/{alertId}": "orderId is not parsable; unable to process request",
}
#: 503s IBKR documents beyond "the request took more than 10 s" (which the simulator never does)
DOCUMENTED_503 = {
    "POST /iserver/reply/{replyId}": "a reply invalidated by another request [V1DOC]",
    "GET /iserver/account/order/status/{orderId}": "an order of an earlier session [V1DOC]",
}

#: marks the simulator's 500 boundary: an exception escaped a route (app.py)
CRASH = "internal server error"

SCHEMA = schemathesis.openapi.from_dict(relaxed_spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
TAGS = sorted({(op.definition.raw.get("tags") or ["untagged"])[0] for op in OPERATIONS})


def _tag(operation: schemathesis.APIOperation) -> str:
    return (operation.definition.raw.get("tags") or ["untagged"])[0]


def _template(path: str) -> str:
    """A path with every parameter as ``{}``: the spec and the simulator name them differently."""
    return re.sub(r"\{[^}]*\}", "{}", path)


@dataclass
class Sweep:
    """The gateway under test and what the sweep found."""

    handle: WebApiHandle
    http: httpx.Client
    #: the simulator's routes under /v1/api
    routes: list[BaseRoute]
    #: (METHOD, path template) the simulator serves
    served: set[tuple[str, str]]
    #: one connection pool for every case (a TLS handshake per request would triple the time)
    session: requests.Session
    #: one line per distinct failure: (operation, check, status, what) -> the first case showing it
    failures: dict[tuple[str, str, int, str], str] = field(default_factory=dict)
    requests: int = 0

    def fail(self, case: Case, check: str, status: int, detail: str) -> None:
        what = re.sub(r"'[^']*'|\d+", "_", detail)[:60]
        key = (case.operation.label, check, status, what)
        if key not in self.failures:
            request = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"
            self.failures[key] = (
                f"{case.operation.label}: {check} ({status}) for {request}: {detail}"
            )

    def relogin(self) -> None:
        """Log in again when a case logged out or ended the brokerage session."""
        session = self.handle.state.session
        if not (session.logged_in and session.brokerage):
            self.http.post("/sim/login").raise_for_status()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    """One ib-paper gateway for the module, rate limits off, logged in through ``/sim/login``."""
    with (
        start_webapi(
            rate_limits=False,
            symbols=SYMBOLS,
            data_dir=tmp_path_factory.mktemp("webapi"),
            clock=running_clock(OPEN),
            profile="ib-paper",
        ) as handle,
        client(handle) as http,
    ):
        assert http.get("/iserver/accounts").status_code == 401
        status = http.post("/sim/login").json()
        assert status["authenticated"] is True, status
        mount = next(r for r in build_app(handle.state).routes if isinstance(r, Mount))
        served = {
            (method, _template(route.path))
            for route in mount.routes
            for method in getattr(route, "methods", None) or ()
            if method != "HEAD"
        }
        with requests.Session() as session:
            session.verify = str(handle.cert_path)
            yield Sweep(handle, http, list(mount.routes), served, session)


def _served(sweep: Sweep, operation: schemathesis.APIOperation) -> bool:
    return (operation.method.upper(), _template(operation.path)) in sweep.served


def _error_body(response: schemathesis.Response) -> str:
    """'' when the body is a JSON object with a string ``error``, else what is wrong with it."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:120]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return f"no 'error' field: {response.text[:120]!r}"
    return ""


def _documented_5xx(case: Case, response: schemathesis.Response) -> bool:
    """IBKR's documented 5xx: see the module docstring."""
    label = case.operation.label
    if response.status_code == 503:
        return label in DOCUMENTED_503
    if response.status_code != 500:
        return False
    if label in DOCUMENTED_500:
        return True
    account = (case.path_parameters or {}).get("accountId")
    body = response.json() if not _error_body(response) else {}
    return (
        account is not None
        and account != ACCOUNT
        and bool(body)
        and not body["error"].startswith(CRASH)
    )


def _judge(sweep: Sweep, case: Case, response: schemathesis.Response, served: bool) -> None:
    status = response.status_code
    if status >= 500 and not _documented_5xx(case, response):
        sweep.fail(case, "server error", status, response.text[:300])
    if status >= 400 and (wrong := _error_body(response)):
        sweep.fail(case, "error body", status, wrong)
    if not served:
        expected = _unserved_status(sweep, case)
        if expected and status != expected:
            sweep.fail(case, f"unserved, expected {expected}", status, response.text[:200])
        return
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except FailureGroup as exc:
        sweep.fail(case, "response schema", status, str(exc)[:800])


def _unserved_status(sweep: Sweep, case: Case) -> int:
    """404 when no route has the case's path, 405 when one has it for another method, 0 when a
    route serves it (a parameter of a served route matched the spec's literal segment)."""
    path = case.formatted_path
    scope = {"type": "http", "path": path, "root_path": "", "method": case.method.upper()}
    matches = {route.matches(scope)[0] for route in sweep.routes}
    if Match.FULL in matches:
        return 0
    return 405 if Match.PARTIAL in matches else 404


def _known(value: Any) -> Any:
    """``value`` (a JSON body, or a parameter mapping) with every field named in ``KNOWN_VALUES``
    set to its known value where the types agree (so a valid case stays valid)."""
    if isinstance(value, dict):
        return {
            key: (
                KNOWN_VALUES[key]
                if key in KNOWN_VALUES and type(item) is type(KNOWN_VALUES[key])
                else _known(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_known(item) for item in value]
    return value


def _with_known_values(case: Case) -> Case:
    """``case`` with this login's account and a known conid wherever it names them."""
    for part in ("path_parameters", "query", "body"):
        value = getattr(case, part)
        if isinstance(value, dict | list):
            setattr(case, part, _known(value))
    return case


def _strategies(
    sweep: Sweep, operation: schemathesis.APIOperation
) -> Iterator[tuple[st.SearchStrategy[Case], int]]:
    """(strategy, examples) for one operation; see the module docstring."""
    if not _served(sweep, operation):
        yield operation.as_strategy(), UNSERVED_EXAMPLES
        return
    yield operation.as_strategy(), EXAMPLES
    yield operation.as_strategy().map(_with_known_values), EXAMPLES
    examples = SCHEMA.get_strategies_from_examples(operation)
    if examples:
        yield st.one_of(examples).map(_with_known_values), EXAMPLES
    ticket = _ticket_body(operation)
    if ticket is not None:
        pairs = st.tuples(operation.as_strategy().map(_with_known_values), ticket)
        yield pairs.map(_with_body), EXAMPLES
    yield operation.as_strategy(GenerationMode.NEGATIVE), EXAMPLES


def _ticket_body(operation: schemathesis.APIOperation) -> st.SearchStrategy[Any] | None:
    """Bodies of order tickets for an operation that takes one (place, what-if, modify)."""
    body = operation.definition.raw.get("requestBody", {})
    ref = body.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    if ref.endswith("/ordersSubmissionRequest"):
        return TICKET.map(lambda ticket: {"orders": [ticket]})
    if ref.endswith("/singleOrderSubmissionRequest"):
        return TICKET
    return None


def _with_body(pair: tuple[Case, Any]) -> Case:
    case, body = pair
    case.body = body
    return case


def _fuzz(sweep: Sweep, operation: schemathesis.APIOperation) -> None:
    served = _served(sweep, operation)
    verify = str(sweep.handle.cert_path)
    for strategy, examples in _strategies(sweep, operation):

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Case) -> None:
            response = case.call(
                base_url=sweep.handle.url, session=sweep.session, verify=verify, timeout=30
            )
            sweep.requests += 1
            _judge(sweep, case, response, served)
            sweep.relogin()

        try:
            run()
        except Unsatisfiable:  # nothing of this kind to generate (e.g. no parameter to break)
            continue


@pytest.mark.parametrize("tag", TAGS)
def test_spec_operations_against_the_simulator(sweep: Sweep, tag: str) -> None:
    """Every operation of ``tag`` in IBKR's spec, fuzzed: see the module docstring."""
    sweep.failures.clear()
    for operation in OPERATIONS:
        if _tag(operation) == tag:
            _fuzz(sweep, operation)
    assert not sweep.failures, "\n".join(sweep.failures.values())


def test_rate_limits_answer_429_with_an_error(tmp_path: Path) -> None:
    """IBKR's limits on: past a per-endpoint limit (``/iserver/account/orders``, 1 per 5 s) and
    past the global 10 per second, 429 ``{"error": ...}`` naming the limit (webapi.md, "Rate
    limits"; the spec lists no 429), and the answer before it is the spec's."""
    with (
        start_webapi(symbols=SYMBOLS, data_dir=tmp_path, clock=running_clock(OPEN)) as handle,
        client(handle) as http,
    ):
        assert http.post("/sim/login").json()["authenticated"] is True
        validate(http.get("/iserver/account/orders"))
        refused = http.get("/iserver/account/orders")
        assert refused.status_code == 429, refused.text
        assert "/iserver/account/orders allows 1 per 5 s" in refused.json()["error"]
        answers = [http.get("/iserver/accounts") for _ in range(GLOBAL_LIMIT[0] + 1)]
        statuses = [r.status_code for r in answers]
        assert statuses[-1] == 429 and set(statuses) == {200, 429}, statuses
        assert "10 requests per second" in answers[-1].json()["error"]
        assert answers[-1].headers["content-type"] == "application/json"
