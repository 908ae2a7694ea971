"""Protocol buffer wire format for the few fields the fast path encodes by hand.

A route configuration with thousands of fast-path routes is re-sent whole whenever one model comes or goes.
Serializing thousands of betterproto2 messages each time would cost the daemon hundreds of milliseconds, so
each route's map entry is encoded once and kept; a configuration is then its entries joined, wrapped in a
few length-delimited fields. Protocol buffers allow this: a message is the concatenation of its fields, in
any order, and a repeated or map field is the concatenation of its entries.
"""

from __future__ import annotations

_LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    """``value`` (not negative) as a base-128 varint."""
    if value < 0:
        raise ValueError(f"a varint here is never negative, not {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def message_field(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (a serialized message, a string's bytes or packed bytes)."""
    return varint((number << 3) | _LENGTH_DELIMITED) + varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    return message_field(number, text.encode())


def map_entry(number: int, key: str, value: bytes) -> bytes:
    """One entry of the ``map<string, Message>`` field ``number``, whose value is already serialized."""
    return message_field(number, string_field(1, key) + message_field(2, value))
