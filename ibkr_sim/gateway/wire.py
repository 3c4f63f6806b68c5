"""The TWS API wire format: length-prefixed frames of NUL-terminated text fields.

Every message between an IB client (TWS API, ``ib_async``) and TWS / IB Gateway is a 4-byte
big-endian length followed by that many bytes of fields, each field text terminated by ``\\0``.
The first field of a client request is the message id, often followed by a message version.
The one exception is the opening handshake: the client sends the bare bytes ``API\\0`` and then a
framed ``v<min>..<max>`` version range; the server answers with its version and connection time.

Values follow the TWS API conventions: booleans are ``1``/``0``, "unset" numbers are empty fields,
floats are written in their shortest round-trip form.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

MAX_FRAME = 16 * 1024 * 1024  # TWS refuses larger messages; so do we
HEADER = struct.Struct(">I")
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1


class ProtocolError(Exception):
    """A client sent bytes that are not a valid TWS API message."""


def field(value: object) -> str:
    """Encode one value as TWS text: ``None``/unset -> empty, bool -> 1/0, inf -> Infinite."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value) or value == UNSET_DOUBLE:
            return ""
        if math.isinf(value):
            return "Infinite"
        return repr(float(value))
    if isinstance(value, int) and value == UNSET_INTEGER:
        return ""
    return str(value)


def frame(fields: Iterable[object]) -> bytes:
    """One framed message from its fields."""
    payload = "".join(field(v) + "\0" for v in fields).encode()
    return HEADER.pack(len(payload)) + payload


def frame_text(texts: list[str]) -> bytes:
    """One framed message from fields already encoded as TWS text (see :func:`field`)."""
    payload = ("\0".join(texts) + "\0").encode()
    return HEADER.pack(len(payload)) + payload


def frame_raw(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete frame payload at the start of ``buffer``."""
    out: list[bytes] = []
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"message length {size} exceeds {MAX_FRAME} bytes")
        if len(buffer) < HEADER.size + size:
            break
        out.append(bytes(buffer[HEADER.size : HEADER.size + size]))
        del buffer[: HEADER.size + size]
    return out


def decode_fields(payload: bytes) -> list[str]:
    """Fields of one frame payload; the payload must end with a NUL terminator."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"message is not UTF-8 text ({exc.reason})") from exc
    if not text.endswith("\0"):
        raise ProtocolError("message does not end with a NUL field terminator")
    return text[:-1].split("\0")


class Reader:
    """Sequential typed access to the fields of one request; a short message is a ProtocolError."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        self.pos = 0

    def str(self) -> str:
        if self.pos >= len(self.fields):
            raise ProtocolError(f"message truncated after {len(self.fields)} fields")
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def int(self, default: int = 0) -> int:
        text = self.str()
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except ValueError as exc:
                raise ProtocolError(f"field {self.pos}: {text!r} is not an integer") from exc

    def float(self, default: float = 0.0) -> float:
        text = self.str()
        if text == "":
            return default
        if text == "Infinite":
            return math.inf
        try:
            return float(text)
        except ValueError as exc:
            raise ProtocolError(f"field {self.pos}: {text!r} is not a number") from exc

    def bool(self) -> bool:
        return self.int() != 0

    def rest(self) -> list[str]:
        out = self.fields[self.pos :]
        self.pos = len(self.fields)
        return out

    def tag_values(self) -> dict[str, str]:
        """A ``tag=value;tag=value;`` list field as a dict."""
        text = self.str()
        out: dict[str, str] = {}
        for item in text.split(";"):
            if "=" in item:
                tag, value = item.split("=", 1)
                out[tag] = value
        return out
