"""The published output schemas are pydantic's, compacted (mcp_server/schemas.py): no ``$ref``
or nullable ``anyOf`` left where they can go, and a client's jsonschema accepts and refuses
exactly what it did with pydantic's own schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from mcp_server.market_data import QuoteList
from mcp_server.schemas import compact_schema

_QUOTE = {
    "contract": {"conid": 265598, "symbol": "AAPL", "sec_type": "STK"},
    "time": "2026-11-20T15:30:00Z",
    "bid": 228.1,
    "ask": 228.12,
    "last": None,
    "market_data_type": 1,
}
_ROW = {"quote": _QUOTE, "mid": 228.11, "spread": 0.02, "price": 228.11, "change_pct": None}


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A quote list of one row with the value at ``path`` replaced (or removed: ``...``)."""
    doc = {"quotes": [copy.deepcopy(_ROW)]}
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_CASES = [
    ({"quotes": [_ROW]}, True),
    ({"quotes": []}, True),
    (_with(("quotes", 0, "mid"), "228.11"), False),  # a string for a nullable number
    (_with(("quotes", 0, "quote", "bid"), None), True),
    (_with(("quotes", 0, "quote", "bid"), True), False),
    (_with(("quotes", 0, "quote", "contract", "conid"), 1.5), False),  # nested model's type
    (_with(("quotes", 0, "quote", "contract", "sec_type"), "SWAP"), False),  # an enum
    (_with(("quotes", 0, "quote", "contract", "extra"), 1), False),  # additionalProperties
    (_with(("quotes", 0, "quote", "contract"), ...), False),  # a required nested model
    (_with(("quotes", 0, "price"), ...), False),  # a required nullable field
]


def _accepts(schema: dict[str, Any], doc: dict[str, Any]) -> bool:
    return Draft202012Validator(schema).is_valid(doc)


def test_the_quote_list_schema_has_no_refs_or_nullable_any_of():
    compact = compact_schema(QuoteList.model_json_schema())
    text = repr(compact)
    assert "$defs" not in compact and "$ref" not in text and "anyOf" not in text
    quote = compact["properties"]["quotes"]["items"]["properties"]["quote"]
    assert quote["properties"]["bid"]["type"] == ["number", "null"]
    assert quote["properties"]["contract"]["required"] == ["conid", "symbol", "sec_type"]


@pytest.mark.parametrize(("doc", "valid"), _CASES)
def test_a_compacted_schema_accepts_and_refuses_as_pydantics(doc, valid):
    original = QuoteList.model_json_schema()
    assert _accepts(original, doc) is valid
    assert _accepts(compact_schema(original), doc) is valid


class _Node(BaseModel):
    """A tree: the model refers to itself."""

    name: str
    children: list[_Node] = []
    weight: float | None = None


def test_a_self_referring_model_keeps_its_refs_and_still_checks_the_same():
    original = _Node.model_json_schema()
    snapshot = copy.deepcopy(original)
    compact = compact_schema(original)
    assert original == snapshot  # not changed in place
    assert compact["$defs"]["_Node"]["properties"]["weight"]["type"] == ["number", "null"]
    good = {"name": "a", "children": [{"name": "b", "children": [], "weight": None}]}
    bad = {"name": "a", "children": [{"name": "b", "weight": "heavy"}]}
    for schema in (original, compact):
        assert _accepts(schema, good) and not _accepts(schema, bad)


class _Inner(BaseModel):
    x: int


class _Outer(BaseModel):
    inner: _Inner = Field(description="a nested model with a description beside its $ref")


def test_annotations_beside_a_ref_are_kept_when_it_is_inlined():
    compact = compact_schema(_Outer.model_json_schema())
    inner = compact["properties"]["inner"]
    assert inner["description"] == "a nested model with a description beside its $ref"
    assert inner["properties"]["x"]["type"] == "integer" and "$defs" not in compact


def test_a_constraint_beside_a_ref_that_the_model_also_sets_keeps_every_ref():
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A", "required": ["y"]}},
        "$defs": {"A": {"type": "object", "required": ["x"]}},
    }
    compact = compact_schema(schema)
    assert compact == schema  # both "required" must hold: a merge would keep one
    assert not _accepts(compact, {"a": {"x": 1}}) and not _accepts(compact, {"a": {"y": 1}})
