"""TF Serving's REST JSON <-> the ``tensorflow_serving.apis`` protos, byte for byte as TF Serving writes it.

Pure: no I/O, no clock. TensorFlow (and the protos, which import it) is imported inside functions only.
The behaviour is that of TF Serving's ``util/json_tensor.cc`` (RapidJSON 1.1.0) and
``model_servers/http_rest_api_util.cc`` (protobuf's JSON printer); the sections below follow it:

- **Reading** (:func:`parse_document`): RapidJSON's iterative parser with ``kParseNanAndInfFlag`` and
  ``kParseStopWhenDoneFlag``: ``NaN``/``Inf``/``Infinity`` are numbers, anything after the root value is
  ignored, a NUL byte ends the input, numbers are converted with RapidJSON's normal (not full) precision and
  keep RapidJSON's integer/double distinction. Python's ``json`` does the common case; any input it refuses
  (or that RapidJSON reads differently) is re-read by an exact emulation, which also yields RapidJSON's error
  message and byte offset.
- **Requests**: ``instances`` (row) or ``inputs`` (columnar) into a ``PredictRequest`` given the signature's
  inputs; ``examples``/``context`` into ``tf.train.Example`` inputs of Classification/Regression requests.
- **Responses**: RapidJSON's ``PrettyWriter`` (4-space indent, with TF Serving's switches to single-line
  arrays), floats as ``%g`` with a full-precision fallback, ``.0`` on whole numbers, bare
  ``NaN``/``Infinity``.
- **Model status and metadata**: protobuf's JSON printer (1-space indent, defaults printed, int64 quoted,
  enums by name, fields in field-number order) and TF Serving's hand-made metadata envelope.
- **Errors**: ``{"error": "..."}`` (:func:`error_json`).

Every string in a parsed document is the request's bytes decoded as UTF-8 with ``surrogateescape``, and every
output is encoded back the same way, so bytes that are not UTF-8 pass through unchanged, as in C++.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving.tensors import dtype_name

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"

SIGNATURE_KEY = "signature_name"
INSTANCES_KEY = "instances"
INPUTS_KEY = "inputs"
CONTEXT_KEY = "context"
EXAMPLES_KEY = "examples"
PREDICTIONS_KEY = "predictions"
OUTPUTS_KEY = "outputs"
RESULTS_KEY = "results"
ERROR_KEY = "error"
BASE64_KEY = "b64"
BYTES_SUFFIX = "_bytes"
SIGNATURE_DEF_FIELD = "signature_def"

# TF Serving shortens JSON values quoted in error messages to about this many bytes.
_MAX_DEBUG_BYTES = 256
_INDENT = "    "

_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


class PredictFormat(enum.Enum):
    """Which key a predict request used; the response answers in the same shape."""

    ROW = "instances"
    COLUMNAR = "inputs"


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def _status_text(error: ServingError) -> str:
    """``absl::Status::ToString()``, as TF Serving embeds a nested error."""
    return f"{error.code.name}: {error.message}"


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _from_bytes(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


# =====================================================================================================
# Reading: RapidJSON 1.1.0, IterativeParse with kParseNanAndInfFlag | kParseStopWhenDoneFlag
# =====================================================================================================

_ERR_DOCUMENT_EMPTY = "The document is empty."
_ERR_ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
_ERR_VALUE_INVALID = "Invalid value."
_ERR_MISS_NAME = "Missing a name for object member."
_ERR_MISS_COLON = "Missing a colon after a name of object member."
_ERR_MISS_COMMA_OR_CURLY = "Missing a comma or '}' after an object member."
_ERR_MISS_COMMA_OR_SQUARE = "Missing a comma or ']' after an array element."
_ERR_BAD_HEX = "Incorrect hex digit after \\u escape in string."
_ERR_BAD_SURROGATE = "The surrogate pair in string is invalid."
_ERR_BAD_ESCAPE = "Invalid escape character in string."
_ERR_MISS_QUOTE = "Missing a closing quotation mark in string."
_ERR_NUMBER_TOO_BIG = "Number too big to be stored in double."
_ERR_MISS_FRACTION = "Miss fraction part in number."
_ERR_MISS_EXPONENT = "Miss exponent in number."


class _ParseFailure(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _NeedsExactParse(Exception):
    """The fast path met something only the exact emulation reads as RapidJSON does."""


_POW10 = tuple(float(f"1e{i}") for i in range(309))
_DIGITS = frozenset(b"0123456789")
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]+')
_SIMPLE_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}


def _fast_path(d: float, exponent: int) -> float:
    if exponent < -308:
        return 0.0
    if exponent >= 0:
        return d * _POW10[exponent]
    return d / _POW10[-exponent]


def _strtod_normal_precision(d: float, exponent: int) -> float:
    if exponent < -308:
        return _fast_path(_fast_path(d, -308), exponent + 308)
    return _fast_path(d, exponent)


def _read_number(data: bytes, pos: int) -> tuple[int | float, int]:
    """RapidJSON's ``ParseNumber`` (normal precision, 64-bit): the value and the position after it."""
    end = len(data)

    def peek(at: int) -> int:
        return data[at] if at < end else 0

    start = pos
    minus = peek(pos) == 0x2D
    if minus:
        pos += 1
    small = 0
    big = 0
    use_64bit = False
    significant = 0
    d = 0.0
    use_nan_or_inf = False
    c = peek(pos)
    if c == 0x30:
        pos += 1
    elif 0x31 <= c <= 0x39:
        small = c - 0x30
        pos += 1
        limit, last = (214748364, 0x38) if minus else (429496729, 0x35)
        while peek(pos) in _DIGITS:
            c = peek(pos)
            if small >= limit and (small != limit or c > last):
                big = small
                use_64bit = True
                break
            small = small * 10 + c - 0x30
            pos += 1
            significant += 1
    elif c in (0x49, 0x4E):  # 'I', 'N'
        use_nan_or_inf = True
        matched = True
        for expected in b"NaN":
            if peek(pos) != expected:
                matched = False
                break
            pos += 1
        if matched:
            d = math.nan
        else:
            matched = True
            for expected in b"Inf":
                if peek(pos) != expected:
                    matched = False
                    break
                pos += 1
            if not matched:
                raise _ParseFailure(_ERR_VALUE_INVALID, pos)
            d = -math.inf if minus else math.inf
            if peek(pos) == 0x69:  # 'i'
                for expected in b"inity":
                    if peek(pos) != expected:
                        raise _ParseFailure(_ERR_VALUE_INVALID, pos)
                    pos += 1
    else:
        raise _ParseFailure(_ERR_VALUE_INVALID, pos)

    use_double = False
    if use_64bit:
        limit64, last = (0x0CCCCCCCCCCCCCCC, 0x38) if minus else (0x1999999999999999, 0x35)
        while peek(pos) in _DIGITS:
            c = peek(pos)
            if big >= limit64 and (big != limit64 or c > last):
                d = float(big)
                use_double = True
                break
            big = big * 10 + c - 0x30
            pos += 1
            significant += 1
    if use_double:
        while peek(pos) in _DIGITS:
            if d >= 1.7976931348623157e307:
                raise _ParseFailure(_ERR_NUMBER_TOO_BIG, start)
            d = d * 10 + (peek(pos) - 0x30)
            pos += 1

    exp_frac = 0
    if peek(pos) == 0x2E:  # '.'
        pos += 1
        if peek(pos) not in _DIGITS:
            raise _ParseFailure(_ERR_MISS_FRACTION, pos)
        if not use_double:
            if not use_64bit:
                big = small
            while peek(pos) in _DIGITS:
                if big > 0x1FFFFFFFFFFFFF:
                    break
                big = big * 10 + peek(pos) - 0x30
                pos += 1
                exp_frac -= 1
                if big != 0:
                    significant += 1
            d = float(big)
            use_double = True
        while peek(pos) in _DIGITS:
            if significant < 17:
                d = d * 10.0 + (peek(pos) - 0x30)
                exp_frac -= 1
                if d > 0.0:
                    significant += 1
            pos += 1

    exponent = 0
    if peek(pos) in (0x65, 0x45):  # 'e', 'E'
        pos += 1
        if not use_double:
            d = float(big if use_64bit else small)
            use_double = True
        exp_minus = False
        if peek(pos) == 0x2B:
            pos += 1
        elif peek(pos) == 0x2D:
            exp_minus = True
            pos += 1
        if peek(pos) not in _DIGITS:
            raise _ParseFailure(_ERR_MISS_EXPONENT, pos)
        exponent = peek(pos) - 0x30
        pos += 1
        if exp_minus:
            while peek(pos) in _DIGITS:
                exponent = exponent * 10 + peek(pos) - 0x30
                pos += 1
                if exponent >= 214748364:
                    while peek(pos) in _DIGITS:
                        pos += 1
            exponent = -exponent
        else:
            max_exponent = 308 - exp_frac
            while peek(pos) in _DIGITS:
                exponent = exponent * 10 + peek(pos) - 0x30
                pos += 1
                if exponent > max_exponent:
                    raise _ParseFailure(_ERR_NUMBER_TOO_BIG, start)

    if use_double:
        d = _strtod_normal_precision(d, exponent + exp_frac)
        return (-d if minus else d), pos
    if use_nan_or_inf:
        return d, pos
    whole = big if use_64bit else small
    return (-whole if minus else whole), pos


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    """RapidJSON's ``ParseString`` from the opening quote, without encoding validation."""
    end = len(data)
    pos += 1
    out = bytearray()
    while True:
        plain = _PLAIN_STRING.match(data, pos)
        if plain is not None:
            out += plain.group()
            pos = plain.end()
        c = data[pos] if pos < end else 0
        if c == 0x5C:  # backslash
            escape_offset = pos
            pos += 1
            e = data[pos] if pos < end else 0
            simple = _SIMPLE_ESCAPES.get(e)
            if simple is not None:
                out += simple
                pos += 1
            elif e == 0x75:  # 'u'
                pos += 1
                codepoint, pos = _read_hex4(data, pos, escape_offset)
                if 0xD800 <= codepoint <= 0xDBFF:
                    if data[pos : pos + 2] != b"\\u":
                        raise _ParseFailure(_ERR_BAD_SURROGATE, escape_offset)
                    low, pos = _read_hex4(data, pos + 2, escape_offset)
                    if not 0xDC00 <= low <= 0xDFFF:
                        raise _ParseFailure(_ERR_BAD_SURROGATE, escape_offset)
                    codepoint = (((codepoint - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                out += chr(codepoint).encode("utf-8", "surrogatepass")
            else:
                raise _ParseFailure(_ERR_BAD_ESCAPE, escape_offset)
        elif c == 0x22:  # closing quote
            return _from_bytes(bytes(out)), pos + 1
        elif c == 0:
            raise _ParseFailure(_ERR_MISS_QUOTE, pos)
        else:  # a control character
            raise _ParseFailure(_ERR_BAD_ESCAPE, pos)


def _read_hex4(data: bytes, pos: int, escape_offset: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        digit = _HEX.get(data[pos]) if pos < len(data) else None
        if digit is None:
            raise _ParseFailure(_ERR_BAD_HEX, escape_offset)
        value = (value << 4) | digit
        pos += 1
    return value, pos


def _read_literal(data: bytes, pos: int, word: bytes, value: JsonValue) -> tuple[JsonValue, int]:
    pos += 1
    for expected in word[1:]:
        if pos >= len(data) or data[pos] != expected:
            raise _ParseFailure(_ERR_VALUE_INVALID, pos)
        pos += 1
    return value, pos


def _read_scalar(data: bytes, pos: int) -> tuple[JsonValue, int]:
    """RapidJSON's ``ParseValue`` for a value that is not an array or object."""
    c = data[pos]
    if c == 0x6E:
        return _read_literal(data, pos, b"null", None)
    if c == 0x74:
        return _read_literal(data, pos, b"true", True)
    if c == 0x66:
        return _read_literal(data, pos, b"false", False)
    if c == 0x22:
        return _read_string(data, pos)
    return _read_number(data, pos)


class _State(enum.IntEnum):
    START = 0
    FINISH = 1
    ERROR = 2
    OBJECT_INITIAL = 3
    MEMBER_KEY = 4
    KEY_VALUE_DELIMITER = 5
    MEMBER_VALUE = 6
    MEMBER_DELIMITER = 7
    OBJECT_FINISH = 8
    ARRAY_INITIAL = 9
    ELEMENT = 10
    ELEMENT_DELIMITER = 11
    ARRAY_FINISH = 12
    VALUE = 13


class _Token(enum.IntEnum):
    LEFT_BRACKET = 0
    RIGHT_BRACKET = 1
    LEFT_CURLY = 2
    RIGHT_CURLY = 3
    COMMA = 4
    COLON = 5
    STRING = 6
    FALSE = 7
    TRUE = 8
    NULL = 9
    NUMBER = 10


_TOKENS = {
    ord("["): _Token.LEFT_BRACKET,
    ord("]"): _Token.RIGHT_BRACKET,
    ord("{"): _Token.LEFT_CURLY,
    ord("}"): _Token.RIGHT_CURLY,
    ord(","): _Token.COMMA,
    ord(":"): _Token.COLON,
    ord('"'): _Token.STRING,
    ord("f"): _Token.FALSE,
    ord("t"): _Token.TRUE,
    ord("n"): _Token.NULL,
}
_S = _State
_E = _State.ERROR
_VALUE_TOKENS = (_Token.STRING, _Token.FALSE, _Token.TRUE, _Token.NULL, _Token.NUMBER)


def _row(default: _State, **moves: _State) -> tuple[_State, ...]:
    row = [default] * len(_Token)
    for token_name, state in moves.items():
        row[_Token[token_name]] = state
    return tuple(row)


def _with_values(state: _State) -> dict[str, _State]:
    return {token.name: state for token in _VALUE_TOKENS}


# RapidJSON's state transition table ``G`` (current state x lookahead token -> next state).
_PREDICT: dict[_State, tuple[_State, ...]] = {
    _S.START: _row(_E, LEFT_BRACKET=_S.ARRAY_INITIAL, LEFT_CURLY=_S.OBJECT_INITIAL, **_with_values(_S.VALUE)),
    _S.OBJECT_INITIAL: _row(_E, RIGHT_CURLY=_S.OBJECT_FINISH, STRING=_S.MEMBER_KEY),
    _S.MEMBER_KEY: _row(_E, COLON=_S.KEY_VALUE_DELIMITER),
    _S.KEY_VALUE_DELIMITER: _row(
        _E, LEFT_BRACKET=_S.ARRAY_INITIAL, LEFT_CURLY=_S.OBJECT_INITIAL, **_with_values(_S.MEMBER_VALUE)
    ),
    _S.MEMBER_VALUE: _row(_E, RIGHT_CURLY=_S.OBJECT_FINISH, COMMA=_S.MEMBER_DELIMITER),
    _S.MEMBER_DELIMITER: _row(_E, RIGHT_CURLY=_S.OBJECT_FINISH, STRING=_S.MEMBER_KEY),
    _S.ARRAY_INITIAL: _row(
        _E,
        LEFT_BRACKET=_S.ARRAY_INITIAL,
        RIGHT_BRACKET=_S.ARRAY_FINISH,
        LEFT_CURLY=_S.OBJECT_INITIAL,
        **_with_values(_S.ELEMENT),
    ),
    _S.ELEMENT: _row(_E, RIGHT_BRACKET=_S.ARRAY_FINISH, COMMA=_S.ELEMENT_DELIMITER),
    _S.ELEMENT_DELIMITER: _row(
        _E,
        LEFT_BRACKET=_S.ARRAY_INITIAL,
        RIGHT_BRACKET=_S.ARRAY_FINISH,
        LEFT_CURLY=_S.OBJECT_INITIAL,
        **_with_values(_S.ELEMENT),
    ),
}

_ERROR_AT_STATE = {
    _S.START: _ERR_DOCUMENT_EMPTY,
    _S.FINISH: _ERR_ROOT_NOT_SINGULAR,
    _S.OBJECT_INITIAL: _ERR_MISS_NAME,
    _S.MEMBER_DELIMITER: _ERR_MISS_NAME,
    _S.MEMBER_KEY: _ERR_MISS_COLON,
    _S.MEMBER_VALUE: _ERR_MISS_COMMA_OR_CURLY,
    _S.KEY_VALUE_DELIMITER: _ERR_VALUE_INVALID,
    _S.ARRAY_INITIAL: _ERR_VALUE_INVALID,
    _S.ELEMENT_DELIMITER: _ERR_VALUE_INVALID,
    _S.ELEMENT: _ERR_MISS_COMMA_OR_SQUARE,
}


class _Frame:
    """An open array or object, the state to return to when it closes, and the pending member name."""

    __slots__ = ("container", "key", "resume")

    def __init__(self, container: list[JsonValue] | dict[str, JsonValue], resume: _State) -> None:
        self.container = container
        self.resume = resume
        self.key = ""


def _skip_whitespace(data: bytes, pos: int) -> int:
    """RapidJSON's ``SkipWhitespace``: space, tab, CR and LF."""
    while pos < len(data) and data[pos] in b" \t\n\r":
        pos += 1
    return pos


def _skip_byte_order_mark(data: bytes) -> int:
    pos = 0
    for byte in (0xEF, 0xBB, 0xBF):
        if pos < len(data) and data[pos] == byte:
            pos += 1
    return pos


def _read_exact(data: bytes) -> JsonValue:
    """RapidJSON's ``IterativeParse``, building the value; raises :class:`_ParseFailure`."""
    end = len(data)
    pos = _skip_whitespace(data, _skip_byte_order_mark(data))
    state = _S.START
    root: JsonValue = None
    stack: list[_Frame] = []

    def attach(src: _State, value: JsonValue) -> None:
        nonlocal root
        if src == _S.START:
            root = value
            return
        frame = stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
        else:
            frame.container[frame.key] = value

    while pos < end and data[pos] != 0:
        token = _TOKENS.get(data[pos], _Token.NUMBER)
        row = _PREDICT.get(state)
        target = row[token] if row is not None else _E
        if target == _E:
            raise _ParseFailure(_ERROR_AT_STATE[state], pos)
        if target in (_S.OBJECT_INITIAL, _S.ARRAY_INITIAL):
            resume = state
            if state in (_S.ARRAY_INITIAL, _S.ELEMENT_DELIMITER):
                resume = _S.ELEMENT
            elif state == _S.KEY_VALUE_DELIMITER:
                resume = _S.MEMBER_VALUE
            container: list[JsonValue] | dict[str, JsonValue] = [] if target == _S.ARRAY_INITIAL else {}
            attach(state, container)
            stack.append(_Frame(container, resume))
            pos += 1
            state = target
        elif target == _S.MEMBER_KEY:
            stack[-1].key, pos = _read_string(data, pos)
            state = target
        elif target in (_S.KEY_VALUE_DELIMITER, _S.MEMBER_DELIMITER, _S.ELEMENT_DELIMITER):
            pos += 1
            state = target
        elif target in (_S.MEMBER_VALUE, _S.ELEMENT, _S.VALUE):
            value, pos = _read_scalar(data, pos)
            attach(state, value)
            state = _S.FINISH if target == _S.VALUE else target
        else:  # OBJECT_FINISH or ARRAY_FINISH
            if state == _S.MEMBER_DELIMITER:
                raise _ParseFailure(_ERR_MISS_NAME, pos)
            if state == _S.ELEMENT_DELIMITER:
                raise _ParseFailure(_ERR_VALUE_INVALID, pos)
            frame = stack.pop()
            state = _S.FINISH if frame.resume == _S.START else frame.resume
            pos += 1
        if state == _S.FINISH:
            return root
        pos = _skip_whitespace(data, pos)
    raise _ParseFailure(_ERROR_AT_STATE[state], pos)


# The fast path: Python's json with hooks that keep RapidJSON's number semantics. Anything it cannot read
# exactly like RapidJSON goes to the emulation above.
_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SHORT_DECIMAL = 15  # at most 14 digits: RapidJSON's division by an exact power of ten rounds correctly


def _number_literal(text: str) -> int | float:
    try:
        value, _ = _read_number(text.encode("ascii"), 0)
    except _ParseFailure as exc:
        raise _NeedsExactParse from exc
    return value


class _LongDecimal(float):
    """A decimal literal whose correctly rounded value may differ in its last bit from RapidJSON's.

    RapidJSON (normal precision) rounds more than once for more than 15 significant digits or an exponent.
    The float value is the correctly rounded one, which is the same once narrowed to float32 (practically
    always); where a double is kept (DT_DOUBLE tensors, values quoted in errors) :func:`_rapidjson_value`
    gives RapidJSON's.
    """

    __slots__ = ("text",)
    text: str


def _rapidjson_value(value: float) -> float:
    """The double RapidJSON reads for a parsed number."""
    if isinstance(value, _LongDecimal):
        return float(_number_literal(value.text))
    return value


def _float_literal(text: str) -> float:
    if len(text) <= _SHORT_DECIMAL and "e" not in text and "E" not in text:
        return float(text)
    value = _LongDecimal(text)
    if math.isinf(value):
        return float(_number_literal(text))  # RapidJSON may refuse it: "Number too big"
    value.text = text
    return value


def _int_literal(text: str) -> int | float:
    value = int(text)
    if _INT64[0] <= value <= _UINT64[1]:
        return value
    return _number_literal(text)


def _constant(text: str) -> float:
    return float(text)  # NaN, Infinity, -Infinity


_FAST_DECODER = json.JSONDecoder(
    parse_float=_float_literal, parse_int=_int_literal, parse_constant=_constant, strict=True
)


def _read_fast(data: bytes) -> JsonValue:
    if b"\x00" in data or _LONE_SURROGATE_ESCAPE.search(data) is not None:
        raise _NeedsExactParse
    start = _skip_whitespace(data, _skip_byte_order_mark(data))
    if start == len(data):
        raise _NeedsExactParse
    value: JsonValue = _FAST_DECODER.raw_decode(_from_bytes(data[start:]))[0]
    return value


def parse_document(body: bytes) -> JsonObject:
    """A request body as RapidJSON reads it; the document must be an object."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        document = _read_fast(body)
    except (_NeedsExactParse, ValueError, RecursionError):
        try:
            document = _read_exact(body)
        except _ParseFailure as failure:
            raise _invalid(f"JSON Parse error: {failure.message} at offset: {failure.offset}") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


def json_type_name(value: JsonValue) -> str:
    """RapidJSON's type of a value, as TF Serving names it in errors."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_int_in(value: JsonValue, bounds: tuple[int, int]) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


# =====================================================================================================
# Writing: RapidJSON's PrettyWriter (4-space indent, optional single-line arrays)
# =====================================================================================================

_RAPIDJSON_ESCAPES: dict[int, str] = {i: f"\\u00{i:02X}" for i in range(0x20)}
_RAPIDJSON_ESCAPES.update(
    {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", ord('"'): '\\"', ord("\\"): "\\\\"}
)


def _quoted(text: str) -> str:
    return '"' + text.translate(_RAPIDJSON_ESCAPES) + '"'


class _PrettyWriter:
    """RapidJSON's ``PrettyWriter``: the same bytes for the same sequence of events.

    ``single_line`` is ``kFormatSingleLineArray``; like RapidJSON's format options it may be switched at any
    point and applies to whatever is written next. With ``limit``, nothing is written once the output has
    reached that many bytes (TF Serving's ``JsonWriterWithLimit``) and the events report ``False``.
    """

    def __init__(self, limit: int | None = None, single_line: bool = False) -> None:
        self.single_line = single_line
        self._parts: list[str] = []
        self._levels: list[list[int]] = []  # [is_array, value_count] of each open container
        self._limit = limit
        self._size = 0

    def _put(self, text: str) -> None:
        self._parts.append(text)
        if self._limit is not None:
            self._size += len(_to_bytes(text))

    def _open(self) -> bool:
        return self._limit is None or self._size < self._limit

    def _prefix(self) -> None:
        if not self._levels:
            return
        level = self._levels[-1]
        if level[0]:
            if level[1] > 0:
                self._put(", " if self.single_line else ",")
            if not self.single_line:
                self._put("\n" + _INDENT * len(self._levels))
        else:
            if level[1] > 0:
                self._put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level[1] % 2 == 0:
                self._put(_INDENT * len(self._levels))
        level[1] += 1

    def start_object(self) -> bool:
        if not self._open():
            return False
        self._prefix()
        self._levels.append([0, 0])
        self._put("{")
        return True

    def end_object(self) -> bool:
        if not self._open():
            return False
        if self._levels.pop()[1]:
            self._put("\n" + _INDENT * len(self._levels))
        self._put("}")
        return True

    def start_array(self) -> bool:
        if not self._open():
            return False
        self._prefix()
        self._levels.append([1, 0])
        self._put("[")
        return True

    def end_array(self) -> bool:
        if not self._open():
            return False
        if self._levels.pop()[1] and not self.single_line:
            self._put("\n" + _INDENT * len(self._levels))
        self._put("]")
        return True

    def raw(self, token: str) -> bool:
        """A number (or ``null``/``true``/``false``) already formatted."""
        if not self._open():
            return False
        self._prefix()
        self._put(token)
        return True

    def raw_many(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self._prefix()
            self._put(token)

    def string(self, text: str) -> bool:
        if not self._open():
            return False
        self._prefix()
        self._put(_quoted(text))
        return True

    key = string

    def double(self, value: float) -> bool:
        """``Writer::Double``: shortest round-trip digits; NaN and infinities are refused, unwritten."""
        if not self._open():
            return False
        self._prefix()
        if not math.isfinite(value):
            return False
        self._put(_rapidjson_dtoa(value))
        return True

    def text(self) -> str:
        return "".join(self._parts)

    def output(self) -> bytes:
        return _to_bytes(self.text())


def _shortest_digits(value: float) -> tuple[str, int]:
    """Digits ``d`` and exponent ``k`` with ``value == int(d) * 10**k``, shortest round-trip, no zero ends."""
    mantissa, _, exponent_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = (int(exponent_text) if exponent_text else 0) - len(fraction)
    trimmed = digits.rstrip("0")
    return trimmed, exponent + len(digits) - len(trimmed)


def _rapidjson_dtoa(value: float) -> str:
    """RapidJSON's ``dtoa`` + ``Prettify`` (Grisu2's digits are the shortest round-trip ones)."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, k = _shortest_digits(abs(value))
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= value < 10^kk
    if k >= 0 and kk <= 21:
        return f"{sign}{digits}{'0' * k}.0"
    if 0 < kk <= 21:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -6 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    if length == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"


def _accept(writer: _PrettyWriter, value: JsonValue) -> bool:
    """RapidJSON's ``GenericValue::Accept``: replay a value into a writer; stops when the writer refuses."""
    if value is None:
        return writer.raw("null")
    if isinstance(value, bool):
        return writer.raw("true" if value else "false")
    if isinstance(value, int):
        return writer.raw(str(value))
    if isinstance(value, float):
        return writer.double(_rapidjson_value(value))
    if isinstance(value, str):
        return writer.string(value)
    if isinstance(value, list):
        if not writer.start_array():
            return False
        for item in value:
            if not _accept(writer, item):
                return False
        return writer.end_array()
    if not writer.start_object():
        return False
    for name, item in value.items():
        if not writer.key(name) or not _accept(writer, item):
            return False
    return writer.end_object()


def debug_string(value: JsonValue) -> str:
    """A JSON value as TF Serving quotes it in error messages (single-line arrays, about 256 bytes)."""
    writer = _PrettyWriter(limit=_MAX_DEBUG_BYTES, single_line=True)
    _accept(writer, value)
    return writer.text()


def _format_error(value: JsonValue, message: str) -> ServingError:
    return _invalid(f"JSON Value: {debug_string(value)} {message}")


def error_json(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "<status message>"}``."""
    writer = _PrettyWriter()
    writer.start_object()
    writer.key(ERROR_KEY)
    writer.string(message)
    writer.end_object()
    return writer.output()


# ----- numbers in responses -------------------------------------------------------------------------


def _decimal_tokens(values: Any, single_precision: bool) -> list[str]:
    """TF Serving's ``WriteDecimal`` for a flat array: ``%g``, or full precision when that does not
    round-trip; ``.0`` on whole numbers; bare ``NaN``/``Infinity``/``-Infinity``."""
    array = np.asarray(values, dtype=np.float32 if single_precision else np.float64)
    wide = array.astype(np.float64).tolist()
    tokens = [f"{x:g}" for x in wide]
    with np.errstate(over="ignore", invalid="ignore"):
        parsed = np.array([float(t) for t in tokens], dtype=np.float64)
        if single_precision:
            parsed = parsed.astype(np.float32)
        inexact = (parsed != array) & np.isfinite(array)
    precision = 9 if single_precision else 17
    for index in np.flatnonzero(inexact).tolist():
        tokens[index] = f"{wide[index]:.{precision}g}"
    for index, token in enumerate(tokens):
        if "." in token or "e" in token:
            continue
        if token == "nan":
            tokens[index] = "NaN"
        elif token == "inf":
            tokens[index] = "Infinity"
        elif token == "-inf":
            tokens[index] = "-Infinity"
        else:
            tokens[index] = token + ".0"
    return tokens


# =====================================================================================================
# Predict requests: "instances" (row) and "inputs" (columnar)
# =====================================================================================================


def _dtypes() -> Any:
    from tensorflow.core.framework import types_pb2

    return types_pb2


def signature_name(document: JsonObject) -> str:
    """The request's ``signature_name`` ('' when absent)."""
    if SIGNATURE_KEY not in document:
        return ""
    value = document[SIGNATURE_KEY]
    if not isinstance(value, str):
        raise _invalid(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return value


def _type_error(value: JsonValue, dtype: int) -> ServingError:
    return _invalid(
        f"JSON Value: {debug_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _is_base64_object(value: JsonValue) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(BASE64_KEY), str)


_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_ASCII_SPACE = frozenset(b" \t\n\v\f\r")
_PADDING = frozenset(b"=.")


def base64_decode(text: str) -> bytes | None:
    """``absl::Base64Unescape``: whitespace skipped, padding optional (``=`` or ``.``), else strict."""
    raw = _to_bytes(text).split(b"\x00", 1)[0]
    data = bytearray()
    pos = 0
    while pos < len(raw):
        c = raw[pos]
        if c in _BASE64_ALPHABET:
            data.append(c)
        elif c in _PADDING:
            break
        elif c not in _ASCII_SPACE:
            return None
        pos += 1
    equals = 0
    for c in raw[pos:]:
        if c in _PADDING:
            equals += 1
        elif c not in _ASCII_SPACE:
            return None
    remainder = len(data) % 4
    if remainder == 1:
        return None
    expected = {0: 0, 2: 2, 3: 1}[remainder]
    if equals not in (0, expected):
        return None
    try:
        return base64.b64decode(bytes(data) + b"=" * expected, validate=True)
    except binascii.Error:
        return None


def _decode_base64_object(value: JsonValue) -> bytes:
    if not _is_base64_object(value):
        raise _invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    assert isinstance(value, dict)
    encoded = value[BASE64_KEY]
    assert isinstance(encoded, str)
    decoded = base64_decode(encoded)
    if decoded is None:
        raise _invalid("Unable to base64 decode")
    return decoded


class _TensorValues:
    """The values of one input tensor as they are collected, and its dtype's conversion."""

    __slots__ = ("convert", "dtype", "field", "values")

    def __init__(self, dtype: int) -> None:
        self.dtype = dtype
        self.values: list[Any] = []
        self.convert, self.field = _converter(dtype)


def _converter(dtype: int) -> tuple[Callable[[JsonValue], Any] | None, str]:
    """TF Serving's ``AddValueToTensor`` for one dtype: the check-and-convert function and the field."""
    types = _dtypes()

    def number(value: JsonValue) -> Any:
        if isinstance(value, float) or type(value) is int:
            return float(value)
        raise _type_error(value, dtype)

    def double(value: JsonValue) -> Any:
        if isinstance(value, float):
            return _rapidjson_value(value)
        if type(value) is int:
            return float(value)
        raise _type_error(value, dtype)

    def ranged(bounds: tuple[int, int]) -> Callable[[JsonValue], Any]:
        def check(value: JsonValue) -> Any:
            if _is_int_in(value, bounds):
                return value
            raise _type_error(value, dtype)

        return check

    def string(value: JsonValue) -> Any:
        if isinstance(value, str):
            return _to_bytes(value)
        raise _type_error(value, dtype)

    def boolean(value: JsonValue) -> Any:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)

    table: dict[int, tuple[Callable[[JsonValue], Any], str]] = {
        types.DT_FLOAT: (number, "float_val"),
        types.DT_DOUBLE: (double, "double_val"),
        types.DT_INT32: (ranged(_INT32), "int_val"),
        types.DT_INT16: (ranged(_INT32), "int_val"),
        types.DT_INT8: (ranged(_INT32), "int_val"),
        types.DT_UINT8: (ranged(_INT32), "int_val"),
        types.DT_STRING: (string, "string_val"),
        types.DT_INT64: (ranged(_INT64), "int64_val"),
        types.DT_BOOL: (boolean, "bool_val"),
        types.DT_UINT32: (ranged(_UINT32), "uint32_val"),
        types.DT_UINT64: (ranged(_UINT64), "uint64_val"),
    }
    if dtype in table:
        return table[dtype]
    return None, ""


def _dense_shape(value: JsonValue) -> list[int]:
    """``GetDenseTensorShape``: the sizes along the first element of each nested list."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _fill_values(root: JsonValue, shape: Sequence[int], tensor: _TensorValues) -> int:
    """``FillTensorProto``: append the values of a dense nested list; returns how many were added.

    Depth first, in TF Serving's order (so the first error is its first error), without recursion.
    """
    rank = len(shape)
    convert = tensor.convert
    count = 0
    stack: list[Iterator[JsonValue]] = [iter((root,))]
    while stack:
        level = len(stack) - 1
        try:
            value = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if not isinstance(value, list):
            if level != rank:
                raise _invalid(
                    f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            if isinstance(value, dict):
                if tensor.dtype != _dtypes().DT_STRING:
                    raise _type_error(value, tensor.dtype)
                tensor.values.append(_decode_base64_object(value))
            elif convert is None:
                raise ServingError(
                    Code.UNIMPLEMENTED,
                    f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(tensor.dtype)}",
                )
            else:
                tensor.values.append(convert(value))
            count += 1
            continue
        if level >= rank:
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(value) != shape[level]:
            raise _invalid(
                f"Encountered list at unexpected size: {len(value)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        if level == rank - 1 and convert is not None and not any(isinstance(v, list | dict) for v in value):
            # The innermost list of scalars: the same checks in the same order, in one go.
            tensor.values.extend([convert(item) for item in value])
            count += len(value)
            continue
        stack.append(iter(value))
    return count


def _write_tensor(proto: Any, tensor: _TensorValues, shape: Sequence[int]) -> None:
    proto.dtype = tensor.dtype
    proto.tensor_shape.Clear()
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    if tensor.values:
        getattr(proto, tensor.field or "string_val").extend(tensor.values)


def _is_element_object(value: JsonValue) -> bool:
    return isinstance(value, dict) and not _is_base64_object(value)


class _InstanceBatch:
    """The tensors of a row-format request as its elements are added (TF Serving's ``AddInstanceItem``)."""

    def __init__(self, infos: Mapping[str, Any]) -> None:
        self._infos = infos
        self.tensors: dict[str, _TensorValues] = {}
        self.sizes: dict[str, int] = {}
        self.shapes: dict[str, list[int]] = {}

    def add(self, item: JsonValue, name: str) -> None:
        if name not in self._infos:
            raise _invalid(f"JSON object: does not have named input: {name}")
        tensor = self.tensors.get(name)
        if tensor is None:
            tensor = self.tensors[name] = _TensorValues(self._infos[name].dtype)
        shape = _dense_shape(item)
        size = _fill_values(item, shape, tensor)
        if name not in self.sizes:
            self.sizes[name] = size
            self.shapes[name] = shape
        elif self.sizes[name] != size:
            raise _invalid(f"Expecting tensor size: {self.sizes[name]} but got: {size}")
        elif self.shapes[name] != shape:
            raise _invalid(f"Expecting shape {_shape_text(self.shapes[name])} but got: {_shape_text(shape)}")


def _fill_from_instances(instances: list[JsonValue], infos: Mapping[str, Any], request: Any) -> None:
    names = sorted(infos)
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    objects = _is_element_object(instances[0])
    batch = _InstanceBatch(infos)
    for count, element in enumerate(instances):
        if objects:
            if not _is_element_object(element):
                raise _invalid(f"Expecting object but got list at item {count} of input list")
            assert isinstance(element, dict)
            for name, item in element.items():
                try:
                    batch.add(item, name)
                except ServingError as exc:
                    raise _invalid(
                        f"Failed to process element: {count} key: {name} of 'instances' list. "
                        f"Error: {_status_text(exc)}"
                    ) from None
            if set(element) != set(names):
                raise _invalid(
                    f"Failed to process element: {count} of 'instances' list. JSON object: "
                    f"{debug_string(element)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_element_object(element):
                raise _invalid(f"Expecting value/list but got object at item {count} of input list")
            try:
                batch.add(element, names[0])
            except ServingError as exc:
                raise _invalid(
                    f"Failed to process element: {count} of 'instances' list. Error: {_status_text(exc)}"
                ) from None
    for name, tensor in batch.tensors.items():
        _write_tensor(request.inputs[name], tensor, [len(instances), *batch.shapes[name]])


def _fill_from_inputs(value: JsonValue, infos: Mapping[str, Any], request: Any) -> None:
    names = sorted(infos)
    if not isinstance(value, dict) or _is_base64_object(value):
        if len(names) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        items = {names[0]: value}
    else:
        items = {}
        for name in names:
            if name not in value:
                raise _invalid(f"Missing named input: {name} in 'inputs' object.")
            items[name] = value[name]
    for name, item in items.items():
        tensor = _TensorValues(infos[name].dtype)
        shape = _dense_shape(item)
        _fill_values(item, shape, tensor)
        _write_tensor(request.inputs[name], tensor, shape)


def fill_predict_request(document: JsonObject, input_infos: Mapping[str, Any], request: Any) -> PredictFormat:
    """Fill ``request.inputs`` from ``instances`` or ``inputs``, given the signature's inputs (name to
    ``TensorInfo``); ``request.model_spec.signature_name`` must already be set from the document."""
    infos = dict(input_infos)
    if not infos:
        name = request.model_spec.signature_name or "DEFAULT"
        raise _invalid(f"Failed to get input map for signature: {name}")
    if INSTANCES_KEY in document:
        if INPUTS_KEY in document:
            raise _format_error(
                document,
                f"Not formatted correctly expecting only one of '{INPUTS_KEY}' or '{INSTANCES_KEY}' keys "
                "to exist ",
            )
        instances = document[INSTANCES_KEY]
        if not isinstance(instances, list):
            raise _format_error(document, f"Expecting '{INSTANCES_KEY}' to be an list/array")
        if not instances:
            raise _format_error(document, f"No values in '{INSTANCES_KEY}' array")
        _fill_from_instances(instances, infos, request)
        return PredictFormat.ROW
    if INPUTS_KEY in document:
        _fill_from_inputs(document[INPUTS_KEY], infos, request)
        return PredictFormat.COLUMNAR
    raise _invalid(f"Missing '{INPUTS_KEY}' or '{INSTANCES_KEY}' key")


# =====================================================================================================
# Classify and Regress requests: "context" and "examples" into tf.train.Example
# =====================================================================================================


class _Feature:
    """One ``tf.train.Feature`` being built: its kind is fixed by its first value."""

    __slots__ = ("kind", "name", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind: str | None = None  # "bytes", "float" or "int64"
        self.values: list[Any] = []

    def _expect(self, kind: str) -> None:
        if self.kind is None:
            self.kind = kind
        elif self.kind != kind:
            raise _invalid(f"Unexpected element type in feature: {self.name} expecting type: {self.kind}")

    def add(self, value: JsonValue) -> None:
        if value is None or isinstance(value, list):
            raise self._unexpected(value)
        if isinstance(value, bool):
            self._expect("int64")
            self.values.append(1 if value else 0)
        elif isinstance(value, dict):
            if not _is_base64_object(value):
                raise self._unexpected(value)
            self._expect("bytes")
            self.values.append(_decode_base64_object(value))
        elif isinstance(value, str):
            self._expect("bytes")
            self.values.append(_to_bytes(value))
        elif isinstance(value, float):
            self._expect("float")
            self.values.append(float(value))
        else:
            self._expect("int64")
            if value > _INT64[1]:
                raise _invalid(f"Feature: {self.name} has uint64_t element. Only int64_t is supported.")
            self.values.append(value)

    def _unexpected(self, value: JsonValue) -> ServingError:
        return _invalid(
            f"Feature: {self.name} has element with unexpected JSON type: {json_type_name(value)}"
        )

    def write(self, feature: Any) -> None:
        if self.kind is not None:
            getattr(feature, f"{self.kind}_list").value.extend(self.values)


def _fill_example(value: JsonValue, example: Any) -> None:
    if not isinstance(value, dict):
        raise _invalid(f"Example must be JSON object but got JSON {json_type_name(value)}")
    for name, content in value.items():
        feature = _Feature(name)
        for item in content if isinstance(content, list) else [content]:
            feature.add(item)
        target = example.features.feature[name]
        target.Clear()
        feature.write(target)


def fill_examples(document: JsonObject, request_input: Any) -> None:
    """Fill a Classification/RegressionRequest's ``input`` from ``context`` and ``examples``."""
    has_context = CONTEXT_KEY in document
    if has_context:
        _fill_example(document[CONTEXT_KEY], request_input.example_list_with_context.context)
    if EXAMPLES_KEY not in document:
        raise _format_error(
            document, f"When method is classify, key '{EXAMPLES_KEY}' is expected and was not found"
        )
    examples = document[EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise _format_error(document, f"Expecting '{EXAMPLES_KEY}' value to be an list/array")
    if not examples:
        raise _format_error(document, f"'{EXAMPLES_KEY}' value is an empty array")
    target = (
        request_input.example_list_with_context.examples
        if has_context
        else request_input.example_list.examples
    )
    for value in examples:
        _fill_example(value, target.add())


# =====================================================================================================
# Responses
# =====================================================================================================

_NUMPY_TYPES = {
    "DT_FLOAT": (np.float32, "float_val"),
    "DT_DOUBLE": (np.float64, "double_val"),
    "DT_INT32": (np.int32, "int_val"),
    "DT_INT16": (np.int16, "int_val"),
    "DT_INT8": (np.int8, "int_val"),
    "DT_UINT8": (np.uint8, "int_val"),
    "DT_INT64": (np.int64, "int64_val"),
    "DT_BOOL": (np.bool_, "bool_val"),
    "DT_UINT32": (np.uint32, "uint32_val"),
    "DT_UINT64": (np.uint64, "uint64_val"),
}


def _padded(values: list[Any], count: int, default: Any) -> list[Any]:
    """A TensorProto may give fewer values than elements: the last one repeats (TensorFlow's convention)."""
    if len(values) >= count:
        return values[:count]
    fill = values[-1] if values else default
    return values + [fill] * (count - len(values))


class _OutputTensor:
    """One output tensor being written: its shape, how its values print, and the next value to print."""

    def __init__(self, name: str, proto: Any) -> None:
        self.name = name
        self.proto = proto
        self.shape = [int(dim.size) for dim in proto.tensor_shape.dim]
        self.is_string = proto.dtype == _dtypes().DT_STRING
        self.as_base64 = self.is_string and name.endswith(BYTES_SUFFIX)
        self.offset = 0
        self._values: list[Any] | None = None

    def values(self) -> list[Any]:
        """Printed tokens (numbers) or raw bytes (strings), computed when the first value is written."""
        if self._values is None:
            self._values = self._decode()
        return self._values

    def _decode(self) -> list[Any]:
        proto = self.proto
        count = int(np.prod(self.shape)) if self.shape else 1
        if self.is_string:
            return _padded(list(proto.string_val), count, b"")
        types = _dtypes()
        dtype_enum = types.DataType.Name(proto.dtype) if proto.dtype in types.DataType.values() else ""
        if dtype_enum not in _NUMPY_TYPES:
            raise _invalid(f"Failed to write JSON value for tensor type: {dtype_name(proto.dtype)}")
        numpy_type, field = _NUMPY_TYPES[dtype_enum]
        array: Any
        if proto.tensor_content:
            array = np.frombuffer(proto.tensor_content, dtype=numpy_type)
        else:
            array = np.array(_padded(list(getattr(proto, field)), count, 0), dtype=numpy_type)
        array = array[:count]
        if dtype_enum in ("DT_FLOAT", "DT_DOUBLE"):
            return _decimal_tokens(array, single_precision=dtype_enum == "DT_FLOAT")
        if dtype_enum == "DT_BOOL":
            return ["true" if v else "false" for v in array.tolist()]
        return [str(v) for v in array.tolist()]

    def write_one(self, writer: _PrettyWriter) -> None:
        value = self.values()[self.offset]
        self.offset += 1
        if not self.is_string:
            writer.raw(value)
        elif self.as_base64:
            writer.start_object()
            writer.key(BASE64_KEY)
            writer.string(base64.b64encode(value).decode("ascii"))
            writer.end_object()
        else:
            writer.string(_from_bytes(value))

    def write_values(self, writer: _PrettyWriter, dim: int) -> None:
        """TF Serving's ``AddTensorValues``: dimensions from ``dim`` on, as nested arrays."""
        rank = len(self.shape)
        if dim > rank - 1:
            self.write_one(writer)
            return
        writer.start_array()
        size = self.shape[dim]
        if dim < rank - 1:
            for _ in range(size):
                self.write_values(writer, dim + 1)
        elif size > 0 and not self.is_string:
            values = self.values()
            writer.raw_many(values[self.offset : self.offset + size])
            self.offset += size
        else:
            for _ in range(size):
                self.write_one(writer)
        writer.end_array()


def predict_response_json(outputs: Mapping[str, Any], fmt: PredictFormat) -> bytes:
    """A PredictResponse's ``outputs`` as ``{"predictions": ...}`` (row) or ``{"outputs": ...}``."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    tensors = [_OutputTensor(name, outputs[name]) for name in sorted(outputs)]
    writer = _PrettyWriter()
    writer.start_object()
    several = len(tensors) > 1
    if fmt is PredictFormat.ROW:
        batch_size = -1
        for tensor in tensors:
            if not tensor.shape:
                raise _invalid(f"Tensor name: {tensor.name} has no shape information ")
            if batch_size >= 0 and batch_size != tensor.shape[0]:
                raise _invalid(
                    f"Tensor name: {tensor.name} has inconsistent batch size: {tensor.shape[0]} "
                    f"expecting: {batch_size}"
                )
            batch_size = tensor.shape[0]
        writer.key(PREDICTIONS_KEY)
        writer.start_array()
        for _ in range(batch_size):
            if several:
                writer.start_object()
            writer.single_line = True
            for tensor in tensors:
                if several:
                    writer.key(tensor.name)
                tensor.write_values(writer, 1)
            writer.single_line = False
            if several:
                writer.end_object()
        writer.end_array()
    else:
        writer.key(OUTPUTS_KEY)
        if several:
            writer.start_object()
        for tensor in tensors:
            if several:
                writer.key(tensor.name)
            tensor.write_values(writer, 0)
        if several:
            writer.end_object()
    writer.end_object()
    return writer.output()


def classification_json(result: Any) -> bytes:
    """A ClassificationResult as ``{"results": [[[label, score], ...], ...]}``."""
    if not result.classifications:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    writer = _PrettyWriter()
    writer.start_object()
    writer.key(RESULTS_KEY)
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line = True
        writer.start_array()
        scores = _decimal_tokens([c.score for c in classifications.classes], single_precision=True)
        for item, score in zip(classifications.classes, scores, strict=True):
            writer.start_array()
            writer.string(item.label)
            writer.raw(score)
            writer.end_array()
        writer.end_array()
        writer.single_line = False
    writer.end_array()
    writer.end_object()
    return writer.output()


def regression_json(result: Any) -> bytes:
    """A RegressionResult as ``{"results": [value, ...]}``."""
    if not result.regressions:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    writer = _PrettyWriter()
    writer.start_object()
    writer.key(RESULTS_KEY)
    writer.single_line = True
    writer.start_array()
    writer.raw_many(_decimal_tokens([r.value for r in result.regressions], single_precision=True))
    writer.end_array()
    writer.end_object()
    return writer.output()


# =====================================================================================================
# Model status and metadata: protobuf's JSON printer (add_whitespace, always_print_fields_with_no_presence)
# =====================================================================================================

_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_PROTO_ESCAPED = re.compile(
    '[\x00-\x1f"\\\\<>\x7f-\x9f\xad\u0600-\u0603\u06dd\u070f\u17b4\u17b5\u200b-\u200f\u2028-\u202e'
    "\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_PROTO_SHORT_ESCAPES = {
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    '"': '\\"',
    "\f": "\\f",
    "\b": "\\b",
    "\\": "\\\\",
}


# int64 in every encoding is printed as a string (JavaScript numbers cannot hold it).
_QUOTED_INTEGER_TYPES = frozenset({3, 4, 6, 16, 18})  # INT64, UINT64, FIXED64, SFIXED64, SINT64


def _proto_escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _PROTO_SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    point = ord(char)
    if point < 0x10000:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def _proto_quoted(text: str) -> str:
    return '"' + _PROTO_ESCAPED.sub(_proto_escape, text) + '"'


def _as_float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _special_float(value: float) -> str | None:
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return None


def _simple_ftoa(value: float) -> str:
    """protobuf's ``SimpleFtoa``: ``%.6g``, or ``%.9g`` when that does not round-trip."""
    text = f"{value:.6g}"
    return text if _as_float32(float(text)) == _as_float32(value) else f"{value:.9g}"


def _simple_dtoa(value: float) -> str:
    """protobuf's ``SimpleDtoa``: ``%.15g``, or ``%.17g`` when that does not round-trip."""
    text = f"{value:.15g}"
    return text if float(text) == value else f"{value:.17g}"


class _ProtoJsonPrinter:
    """protobuf's C++ ``MessageToJsonString`` with ``add_whitespace`` and
    ``always_print_fields_with_no_presence``: 1-space indent, fields in field-number order, every field
    without presence printed, map entries in key order (C++ leaves it unspecified)."""

    def __init__(self, preserve_field_names: bool) -> None:
        self._preserve = preserve_field_names
        self._parts: list[str] = []
        self._indent = 0

    def render(self, message: Any) -> str:
        self._message(message)
        self._newline()
        return "".join(self._parts)

    def _newline(self) -> None:
        self._parts.append("\n" + " " * self._indent)

    def _message(self, message: Any) -> None:
        descriptor = message.DESCRIPTOR
        if descriptor.full_name in _WRAPPERS:
            self._singular(descriptor.fields_by_name["value"], message.value)
            return
        self._parts.append("{")
        self._indent += 1
        first = True
        for field in sorted(descriptor.fields, key=lambda f: f.number):
            if field.has_presence and not field.is_repeated and not message.HasField(field.name):
                continue
            if not first:
                self._parts.append(",")
            first = False
            self._newline()
            name = field.name if self._preserve else field.json_name
            self._parts.append(f"{_proto_quoted(name)}: ")
            self._field(field, getattr(message, field.name))
        self._indent -= 1
        if not first:
            self._newline()
        self._parts.append("}")

    def _field(self, field: Any, value: Any) -> None:
        if field.is_repeated and field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            self._container("{", "}", [(key, value[key]) for key in sorted(value)], key_field, value_field)
        elif field.is_repeated:
            self._container("[", "]", [(None, item) for item in value], None, field)
        else:
            self._singular(field, value)

    def _container(
        self, opening: str, closing: str, items: list[tuple[Any, Any]], key_field: Any, value_field: Any
    ) -> None:
        self._parts.append(opening)
        self._indent += 1
        for index, (key, item) in enumerate(items):
            if index:
                self._parts.append(",")
            self._newline()
            if key_field is not None:
                self._parts.append(f"{self._map_key(key_field, key)}: ")
            self._singular(value_field, item)
        self._indent -= 1
        if items:
            self._newline()
        self._parts.append(closing)

    @staticmethod
    def _map_key(field: Any, key: Any) -> str:
        if field.type == field.TYPE_BOOL:
            return '"true"' if key else '"false"'
        if field.type == field.TYPE_STRING:
            return _proto_quoted(key)
        return f'"{key}"'

    def _singular(self, field: Any, value: Any) -> None:
        kind = field.type
        if kind == field.TYPE_MESSAGE or kind == field.TYPE_GROUP:
            self._message(value)
            return
        if kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            special = _special_float(value)
            if special is not None:
                text = special
            else:
                text = _simple_ftoa(value) if kind == field.TYPE_FLOAT else _simple_dtoa(value)
        elif kind in _QUOTED_INTEGER_TYPES:
            text = f'"{value}"'
        elif kind == field.TYPE_BOOL:
            text = "true" if value else "false"
        elif kind == field.TYPE_STRING:
            text = _proto_quoted(value)
        elif kind == field.TYPE_BYTES:
            text = '"' + base64.b64encode(value).decode("ascii") + '"'
        elif kind == field.TYPE_ENUM:
            known = field.enum_type.values_by_number.get(value)
            text = _proto_quoted(known.name) if known is not None else str(value)
        else:
            text = str(value)
        self._parts.append(text)


def proto_json(message: Any, preserve_field_names: bool) -> str:
    """A message as protobuf's C++ JSON printer writes it for TF Serving (ends with a newline)."""
    return _ProtoJsonPrinter(preserve_field_names).render(message)


def model_status_json(response: Any) -> bytes:
    """A GetModelStatusResponse as TF Serving's REST API returns it."""
    return _to_bytes(proto_json(response, preserve_field_names=False))


def model_metadata_json(response: Any) -> bytes:
    """A GetModelMetadataResponse as TF Serving's REST API returns it: its model spec and its
    ``signature_def`` printed separately and joined by hand, exactly as TF Serving joins them."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    if SIGNATURE_DEF_FIELD not in response.metadata:
        raise ServingError(
            Code.INTERNAL,
            "Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.",
        )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures):
        raise ServingError(Code.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'.")
    model_spec = proto_json(response.model_spec, preserve_field_names=True)
    signature_def = proto_json(signatures, preserve_field_names=True)
    text = f'{{\n"model_spec":{model_spec},\n"metadata": {{"signature_def": {signature_def}}}\n}}\n'
    return _to_bytes(text)
