"""Strict tool arguments: an unknown argument, or a boolean where a number belongs, is refused.

MCPServer builds each tool's argument model from the function's signature (``func_metadata``)
with pydantic's defaults: an unknown key is silently dropped, and in lax mode ``true`` validates as
the number 1. For a trading tool both are dangerous: ``place_order(..., dry_run=true)`` would send
a real order and ``quantity: true`` would buy one share. :func:`make_strict` swaps a registered
tool's argument model for a subclass that forbids extra keys (so the published input schema says
``additionalProperties: false``) and that, before pydantic coerces anything, walks the raw
arguments against the parameter types, nested models and lists included, and refuses

* an argument the tool does not take, or a field a nested model (``order``) does not have;
* a boolean where a number is expected, and a number where a boolean is expected.

Every path into a tool (MCP over streamable HTTP and stdio, and the plain ``POST /tools/call``)
validates through that model, and :func:`argument_error` turns a validation failure into one
message naming each argument at fault, so the three refuse alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args, get_origin

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from typing_inspection.introspection import is_union_origin

_ERROR_TYPE = "strict_arguments"
_SEQUENCES = (list, tuple, set, frozenset, Sequence)


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _arms(tp: Any) -> list[Any]:
    """The alternatives a type allows at this level (one, unless it is a union)."""
    tp = _unwrap(tp)
    if is_union_origin(get_origin(tp)):
        return [a for arm in get_args(tp) for a in _arms(arm)]
    return [tp]


def _is_number(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, int | float | Decimal) and tp is not bool


def _admits_bool(tp: Any) -> bool:
    if get_origin(tp) is Literal:
        return any(isinstance(v, bool) for v in get_args(tp))
    return tp is bool or tp is Any or tp is object


def _keys(model: type[BaseModel]) -> dict[str, str]:
    """Every key a model accepts (field names, aliases) -> its field name."""
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        keys[name] = name
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                keys[alias] = name
    return keys


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def model_problems(model: type[BaseModel], data: dict[str, Any], path: str = "") -> Iterator[str]:
    """What is wrong with ``data`` for ``model`` that pydantic's lax mode would let through (keys
    the model does not have, booleans for numbers and numbers for booleans, at any depth), and
    missing required keys, described with their field descriptions."""
    keys = _keys(model)
    for name, info in model.model_fields.items():
        if info.is_required() and not any(keys[k] == name for k in data if k in keys):
            key = info.alias or name
            what = (
                f"missing field {key!r} in argument {path!r}"
                if path
                else (f"missing required argument {key!r}")
            )
            yield f"{what} ({info.description})" if info.description else what
    if model.model_config.get("extra") != "allow":
        accepted = ", ".join(model.model_fields)
        for key in data:
            if key not in keys:
                yield (
                    f"unknown field {key!r} in argument {path!r} (its fields: {accepted})"
                    if path
                    else f"unknown argument {key!r} (accepted: {accepted or 'none'})"
                )
    for key, value in data.items():
        if key in keys:
            annotation = model.model_fields[keys[key]].annotation
            yield from value_problems(annotation, value, _join(path, key))


def value_problems(annotation: Any, value: Any, path: str) -> Iterator[str]:
    """:func:`model_problems` for one value of type ``annotation`` at ``path``."""
    arms = _arms(annotation)
    if value is None or any(a is Any for a in arms):
        return
    if isinstance(value, bool):
        if any(map(_is_number, arms)) and not any(map(_admits_bool, arms)):
            yield f"argument {path!r} must be a number, not a boolean ({json.dumps(value)})"
        return
    if isinstance(value, int | float):
        if bool in arms and not any(map(_is_number, arms)):
            yield f"argument {path!r} must be true or false, not a number ({value!r})"
        return
    if isinstance(value, dict):
        models = [a for a in arms if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            yield from model_problems(models[0], value, path)
            return
        for arm in arms:
            if get_origin(arm) is dict and len(get_args(arm)) == 2:
                for key, item in value.items():
                    yield from value_problems(get_args(arm)[1], item, _join(path, str(key)))
                return
        return
    if isinstance(value, list):
        for arm in arms:
            origin, args = get_origin(arm), get_args(arm)
            if origin in _SEQUENCES and args:
                fixed = origin is tuple and args[-1] is not Ellipsis
                for i, item in enumerate(value):
                    if fixed and i >= len(args):
                        break
                    yield from value_problems(args[i] if fixed else args[0], item, _join(path, i))
                return


class StrictArguments(ArgModelBase):
    """Mixed into a tool's argument model: no unknown keys, no booleans for numbers (or the
    reverse), and validation errors that do not echo the caller's values."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_loose(cls, data: Any) -> Any:
        if isinstance(data, dict):
            problems = list(model_problems(cls, data))
            if problems:
                raise PydanticCustomError(_ERROR_TYPE, "{detail}", {"detail": "; ".join(problems)})
        return data


def strict_model(arg_model: type[ArgModelBase]) -> type[ArgModelBase]:
    """``arg_model`` (as ``func_metadata`` built it) with :class:`StrictArguments` mixed in."""
    if issubclass(arg_model, StrictArguments):
        return arg_model
    return type(arg_model.__name__, (arg_model, StrictArguments), {"__module__": __name__})


def make_strict(server: MCPServer[Any], name: str) -> None:
    """Give the registered tool ``name`` the strict argument model, and publish its schema.

    MCPServer reads a tool's ``fn_metadata.arg_model`` on every call (``FuncMetadata`` documents
    its fields as read live), so replacing it here changes validation on every transport.
    """
    tool = server._tool_manager.get_tool(name)  # MCPServer has no public getter
    if tool is None:
        raise KeyError(f"no tool named {name!r} is registered")
    strict = strict_model(tool.fn_metadata.arg_model)
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema(by_alias=True)


def argument_error(tool: str, exc: ValidationError) -> ToolError:
    """One tool error naming every argument at fault, from a validation failure of ``tool``'s
    argument model."""
    parts = [
        error["msg"]
        if error["type"] == _ERROR_TYPE
        else f"argument {'.'.join(str(p) for p in error['loc'])!r}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return ToolError(f"invalid arguments for {tool}: " + "; ".join(parts))
