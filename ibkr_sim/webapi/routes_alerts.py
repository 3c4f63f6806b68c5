"""Price alerts (IBKR's spec, "Trading Alerts"; webapi.md, "Alerts"), kept by the paper
exchange with the accounts (:mod:`ibkr_sim.exchange.alerts`: when an alert triggers):

- ``GET /iserver/account/{accountId}/alerts``: the account's alerts, ``[]`` when none;
- ``POST /iserver/account/{accountId}/alert``: create, or modify the alert named by ``orderId``;
- ``POST /iserver/account/{accountId}/alert/activate`` ``{"alertId", "alertActive": 0|1}``;
- ``DELETE /iserver/account/{accountId}/alert/{alertId}``;
- ``GET /iserver/account/alert/{alertId}?type=Q``: one alert with its condition.

The simulator evaluates one price condition (type 1) with operator ``>=`` or ``<=``; any other
condition type, operator, or more than one condition is a 400 naming it. Times are UTC,
``YYYYMMDD-HH:mm:ss``.

**Shapes** follow the spec's schemas where they and its examples disagree: the detail's
``alert_triggered`` is 0/1 (int32; the list's is a boolean), ``condition_trigger_method`` an
integer; ``condition_logic_bind`` (typed boolean, shown "n") and fields IBKR shows as null
without a nullable type (``request_id``, ``order_status``, ``warning_message``, ``tool_id``) are
left out. The detail names the alert both ``alert_name`` (example) and ``alertName`` (schema).

**Errors**: an empty or malformed body, an unknown conid, a bad condition: 400; an unknown alert:
400 for the detail, ``{"success": false, "text": ...}`` for delete and activate; an account the
login does not have: 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ibkr_sim.exchange.alerts import AlertInfo
from ibkr_sim.webapi.state import (
    WebApiState,
    account_route,
    bad_request,
    error,
    json_body,
    ok,
    web_state,
)
from ibkr_spec.errors import IBError

#: IBKR's time format in alerts (UTC)
TIME_FORMAT = "%Y%m%d-%H:%M:%S"
#: fields IBKR requires of a new alert (spec: createAlert)
REQUIRED = ("alertMessage", "alertName", "alertRepeatable", "conditions", "outsideRth", "tif")
PRICE_CONDITION = 1


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime(TIME_FORMAT)


def _summary(a: AlertInfo) -> dict[str, Any]:
    """One row of the alerts list."""
    return {
        "order_id": a.alert_id,
        "account": a.account_id,
        "alert_name": a.name,
        "alert_active": int(a.active),
        "order_time": _stamp(a.created),
        "alert_triggered": a.triggered is not None,
        "alert_repeatable": int(a.repeatable),
    }


def _detail(st: WebApiState, a: AlertInfo) -> dict[str, Any]:
    """One alert with its condition (see the module docstring for the shapes)."""
    inst = st.world.market.universe.by_conid(a.conid)
    out: dict[str, Any] = {
        "account": a.account_id,
        "order_id": a.alert_id,
        "alert_name": a.name,
        "alertName": a.name,
        "alert_message": a.message,
        "alert_active": int(a.active),
        "alert_triggered": int(a.triggered is not None),
        "alert_repeatable": int(a.repeatable),
        "alert_send_message": 0,
        "alert_show_popup": 0,
        "condition_outside_rth": int(a.outside_rth),
        "condition_size": 1,
        "conditions": [
            {
                "condition_type": PRICE_CONDITION,
                "condition_operator": a.operator,
                "condition_value": f"{a.price:.10g}",
                "condition_trigger_method": 0,
                "conidex": f"{inst.conid}@{inst.primary_exchange or inst.exchange}",
                "contract_description_1": inst.local_symbol,
            }
        ],
        "itws_orders_only": 0,
        "order_not_editable": False,
        "order_status": "Submitted" if a.active else "Presubmitted",
        "tif": a.tif,
    }
    if a.expires is not None:
        out["expire_time"] = _stamp(a.expires)
    return out


def _int64_id(raw: object) -> int | None:
    """``raw`` as a positive int64 id (an alert id, a conid), or None."""
    try:
        number = int(str(raw))
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None


def _condition(body: dict[str, Any]) -> tuple[int, str, float]:
    """(conid, operator, price) of the body's one price condition; ValueError naming a problem."""
    conditions = body.get("conditions")
    if not isinstance(conditions, list) or len(conditions) != 1:
        raise ValueError("conditions must hold exactly one price condition (the simulator's)")
    cond = conditions[0]
    if not isinstance(cond, dict):
        raise ValueError("a condition must be an object with conidex, type, operator, value")
    if cond.get("type") != PRICE_CONDITION:
        raise ValueError(
            f"condition type {cond.get('type')!r}: the simulator evaluates price conditions "
            "(type 1) only"
        )
    conid = _int64_id(str(cond.get("conidex", "")).partition("@")[0])
    if conid is None:
        raise ValueError(f"conidex {cond.get('conidex')!r} must be 'conid@EXCHANGE'")
    try:
        price = float(str(cond.get("value")))
    except ValueError:
        raise ValueError(f"condition value {cond.get('value')!r} must be a price") from None
    return conid, str(cond.get("operator", "")), price


async def list_alerts(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``GET /iserver/account/{accountId}/alerts``."""
    return ok([_summary(a) for a in st.world.exchange.alerts.alerts(account)])


async def create_alert(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``POST /iserver/account/{accountId}/alert``: a new alert, or ``orderId``'s modified."""
    body = await json_body(request)
    if not body:
        return bad_request("the alert body must be a JSON object (IBKR's createAlert)")
    missing = [f for f in REQUIRED if f not in body]
    if missing:
        return bad_request(f"the alert is missing {', '.join(missing)}")
    try:
        conid, operator, price = _condition(body)
        tif = str(body["tif"]).upper()
        expires = None
        if tif == "GTD":
            text = str(body.get("expireTime", ""))
            expires = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        return bad_request(str(exc))
    raw_id = body.get("orderId")
    alert_id = None if raw_id in (None, "", 0) else _int64_id(raw_id)
    if raw_id not in (None, "", 0) and alert_id is None:
        return bad_request(f"orderId {raw_id!r} is not an alert id")
    try:
        made = st.world.exchange.alerts.create(
            account,
            conid,
            operator,
            price,
            name=str(body["alertName"]),
            message=str(body["alertMessage"]),
            repeatable=bool(body["alertRepeatable"]),
            outside_rth=bool(body["outsideRth"]),
            tif=tif,
            expires=expires,
            alert_id=alert_id,
        )
    except IBError as exc:
        return bad_request(exc.message)
    return ok({"order_id": made.alert_id, "success": True, "text": "Submitted"})


def _not_found(alert_id: object, text: str) -> JSONResponse:
    found = _int64_id(alert_id)
    body: dict[str, Any] = {"success": False, "text": text}
    if found is not None:
        body["order_id"] = found
    return ok(body)


async def activate_alert(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``POST /iserver/account/{accountId}/alert/activate`` ``{"alertId", "alertActive"}``."""
    body = await json_body(request)
    if body is None or body.get("alertActive") not in (0, 1) or "alertId" not in body:
        return bad_request('the body must be {"alertId": <id>, "alertActive": 1 or 0}')
    alert_id = _int64_id(body["alertId"])
    if alert_id is None:
        return bad_request(f"alertId {body['alertId']!r} is not an alert id")
    try:
        st.world.exchange.alerts.activate(account, alert_id, bool(body["alertActive"]))
    except IBError as exc:
        return _not_found(alert_id, exc.message)
    return ok({"order_id": alert_id, "success": True, "text": "Request was submitted"})


async def delete_alert(request: Request, st: WebApiState, account: str) -> JSONResponse:
    """``DELETE /iserver/account/{accountId}/alert/{alertId}``."""
    raw = request.path_params["alertId"]
    alert_id = _int64_id(raw)
    if alert_id is None:
        return bad_request(f"alertId {raw!r} is not an alert id")
    try:
        st.world.exchange.alerts.delete(account, alert_id)
    except IBError as exc:
        return _not_found(alert_id, exc.message)
    return ok({"order_id": alert_id, "success": True, "text": "Request was submitted"})


async def alert_detail(request: Request) -> JSONResponse:
    """``GET /iserver/account/alert/{alertId}?type=Q``: one alert of the login's accounts."""
    st = web_state(request)
    if request.query_params.get("type") != "Q":
        return bad_request("type=Q is required (IBKR's only query type for an alert)")
    raw = request.path_params["alertId"]
    alert_id = _int64_id(raw)
    if alert_id is None:
        if raw.strip().lstrip("-").isdigit():  # a number, but no alert id (IBKR: int64)
            return bad_request(f"alertId {raw!r} is not an alert id")
        # IBKR's spec: "500 orderId is not parsable; unable to process request"
        return error(f"orderId {raw!r} is not parsable; unable to process request", 500)
    try:
        alert = st.world.exchange.alerts.alert(alert_id)
    except IBError as exc:
        return bad_request(exc.message)
    if alert.account_id not in st.accounts():
        return bad_request(f"alert {alert_id} is not found")
    return ok(_detail(st, alert))


ROUTES = [
    Route("/iserver/account/{accountId}/alerts", account_route(list_alerts), methods=["GET"]),
    Route("/iserver/account/{accountId}/alert", account_route(create_alert), methods=["POST"]),
    Route(
        "/iserver/account/{accountId}/alert/activate",
        account_route(activate_alert),
        methods=["POST"],
    ),
    Route(
        "/iserver/account/{accountId}/alert/{alertId}",
        account_route(delete_alert),
        methods=["DELETE"],
    ),
    Route("/iserver/account/alert/{alertId}", alert_detail, methods=["GET"]),
]

__all__ = ["ROUTES"]
