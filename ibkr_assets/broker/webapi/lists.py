"""Price alerts and watchlists through the Web API (IBKR keeps both; the TWS API has neither).

**Alerts.** ``/iserver/account/{acct}/alerts`` lists an account's alerts without their
conditions, so each is read back through ``/iserver/account/alert/{id}?type=Q``. An alert is
created with one price condition (type 1) on the contract's SMART route, GTC, not repeatable;
alerts of other kinds (time, margin, volume, several conditions) are not price alerts and are
left out of :meth:`Lists.alerts`. A delete IBKR answers ``success: false`` is OrderNotFound.

**Watchlists.** ``/iserver/watchlists`` names the lists (IB's own read-only ones too), each read
through ``/iserver/watchlist?id=``. A new list takes the next free id of digits (IBKR: unique,
digits only); saving under an existing id replaces it (IBKR's POST with the same id).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ibkr_assets.broker.errors import BrokerError, InvalidRequest, OrderNotFound
from ibkr_assets.broker.models import Contract, PriceAlert, Watchlist, alert_spec
from ibkr_assets.broker.webapi.accounts import Accounts
from ibkr_assets.broker.webapi.contracts import Contracts
from ibkr_assets.broker.webapi.session import Session, error_text

#: IBKR's price condition type
PRICE_CONDITION = 1
#: IBKR's alert time format (UTC)
ALERT_TIME = "%Y%m%d-%H:%M:%S"


class Lists:
    """Alerts and watchlists over one :class:`Session`."""

    def __init__(self, session: Session, accounts: Accounts, contracts: Contracts) -> None:
        self._s = session
        self._accounts = accounts
        self._contracts = contracts

    # -- alerts ------------------------------------------------------------------------------
    def alerts(self, account_id: str | None) -> list[PriceAlert]:
        """The account's price alerts, active or not."""
        account = self._accounts.account(account_id)
        self._s.iserver_accounts()
        rows = self._s.get(f"/iserver/account/{account}/alerts") or []
        found = [self._alert(account, row) for row in rows]
        return [a for a in found if a is not None]

    def _alert(self, account: str, row: dict[str, Any]) -> PriceAlert | None:
        alert_id = int(row["order_id"])
        detail = self._s.get(f"/iserver/account/alert/{alert_id}", type="Q")
        conditions = detail.get("conditions") or []
        if len(conditions) != 1 or int(conditions[0].get("condition_type", 0)) != PRICE_CONDITION:
            return None
        cond = conditions[0]
        if cond.get("condition_operator") not in (">=", "<="):
            return None
        conid = int(str(cond["conidex"]).partition("@")[0])
        stamp = row.get("order_time")
        created = datetime.strptime(stamp, ALERT_TIME).replace(tzinfo=UTC) if stamp else None
        return PriceAlert(
            alert_id=alert_id,
            account_id=account,
            name=str(row.get("alert_name") or detail.get("alert_name") or ""),
            contract=self._contracts.contract(conid),
            condition=cond["condition_operator"],
            price=float(str(cond["condition_value"]).replace(",", "")),
            active=bool(int(detail.get("alert_active", row.get("alert_active", 1)))),
            triggered=bool(row.get("alert_triggered")),
            message=str(detail.get("alert_message") or ""),
            created=created,
        )

    def create_alert(
        self, contract: Contract, condition: str, price: float, name: str, account_id: str | None
    ) -> PriceAlert:
        """A new active price alert (see the module docstring)."""
        operator, threshold, label = alert_spec(contract, condition, price, name)
        account = self._accounts.account(account_id)
        self._s.iserver_accounts()
        body = {
            "alertName": label,
            "alertMessage": f"{contract.symbol} last price {operator} {threshold:g}",
            "alertRepeatable": 0,
            "outsideRth": 0,
            "tif": "GTC",
            "conditions": [
                {
                    "conidex": f"{contract.conid}@SMART",
                    "type": PRICE_CONDITION,
                    "operator": operator,
                    "value": f"{threshold:.10g}",
                    "logicBind": "n",
                    "triggerMethod": "0",
                }
            ],
        }
        answer = self._s.post(f"/iserver/account/{account}/alert", body)
        if not isinstance(answer, dict) or not answer.get("success"):
            text = error_text(answer) or str(answer)
            raise InvalidRequest(f"alert {label!r} on {contract.symbol} ({account}): {text}")
        alert_id = int(answer["order_id"])
        rows = self._s.get(f"/iserver/account/{account}/alerts") or []
        row = next((r for r in rows if int(r["order_id"]) == alert_id), {"order_id": alert_id})
        made = self._alert(account, row)
        if made is None:
            raise BrokerError(f"alert {alert_id} ({account}) was made but reads back otherwise")
        return made

    def delete_alert(self, alert_id: int, account_id: str | None) -> None:
        """Remove an alert; OrderNotFound when IBKR has no such alert for the account."""
        account = self._accounts.account(account_id)
        self._s.iserver_accounts()
        answer = self._s.request("DELETE", f"/iserver/account/{account}/alert/{alert_id}")
        if not isinstance(answer, dict) or not answer.get("success"):
            text = (answer or {}).get("text") if isinstance(answer, dict) else answer
            raise OrderNotFound(f"alert {alert_id} ({account}): {text}")

    # -- watchlists --------------------------------------------------------------------------
    def _ids(self) -> list[str]:
        body = self._s.get("/iserver/watchlists")
        data = (body.get("data") if isinstance(body, dict) else None) or {}
        entries = [*(data.get("system_lists") or []), *(data.get("user_lists") or [])]
        return [str(e["id"]) for e in entries]

    def watchlist(self, watchlist_id: str) -> Watchlist:
        """One list with its contracts (400 from IBKR for an unknown id: InvalidRequest)."""
        body = self._s.get("/iserver/watchlist", id=watchlist_id)
        rows = body.get("instruments") or []
        return Watchlist(
            watchlist_id=str(body["id"]),
            name=str(body.get("name") or ""),
            contracts=[self._contracts.contract(int(r["conid"])) for r in rows if "conid" in r],
            read_only=bool(body.get("readOnly")),
        )

    def watchlists(self) -> list[Watchlist]:
        """Every list the login has, IB's own included."""
        return [self.watchlist(i) for i in self._ids()]

    def save_watchlist(
        self, name: str, contracts: Sequence[Contract], watchlist_id: str | None
    ) -> Watchlist:
        """Create a list (the next free id) or replace ``watchlist_id``'s contracts."""
        if not name.strip():
            raise InvalidRequest("a watchlist needs a name")
        if watchlist_id is None:
            taken = [int(i) for i in self._ids() if i.isdigit()]
            watchlist_id = str(max(taken, default=0) + 1)
        conids = list(dict.fromkeys(c.conid for c in contracts))  # IBKR: unique rows
        body = {"id": watchlist_id, "name": name.strip(), "rows": [{"C": str(c)} for c in conids]}
        self._s.post("/iserver/watchlist", body)
        return self.watchlist(watchlist_id)

    def delete_watchlist(self, watchlist_id: str) -> None:
        """Remove a list (IBKR refuses its own read-only ones and unknown ids: InvalidRequest)."""
        self._s.request("DELETE", "/iserver/watchlist", params={"id": watchlist_id})


__all__ = ["Lists"]
