"""TF Serving's REST JSON: the cases of TF Serving's json_tensor_test.cc and http_rest_api_handler_test.cc,
restated, plus the exact bytes TF Serving writes (RapidJSON's pretty printer, protobuf's JSON printer)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import json_codec
from tfscachectl.tfserving.json_codec import PredictFormat

# ----- helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pb() -> Any:
    """The protos (importing them imports TensorFlow, so once per module)."""
    from google.protobuf import text_format
    from tensorflow.core.example import example_pb2
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        predict_pb2,
        regression_pb2,
    )

    class Protos:
        pass

    protos = Protos()
    for module in (
        text_format,
        example_pb2,
        tensor_pb2,
        types_pb2,
        meta_graph_pb2,
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        predict_pb2,
        regression_pb2,
    ):
        setattr(protos, module.__name__.rsplit(".", 1)[-1], module)
    return protos


def infos(pb: Any, **dtypes: str) -> dict[str, Any]:
    result = {}
    for name, dtype in dtypes.items():
        info = pb.meta_graph_pb2.TensorInfo()
        info.dtype = pb.types_pb2.DataType.Value(dtype)
        result[name] = info
    return result


def predict(pb: Any, body: str | bytes, inputs: dict[str, Any]) -> tuple[PredictFormat, Any]:
    raw = body.encode() if isinstance(body, str) else body
    document = json_codec.parse_document(raw)
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.signature_name = json_codec.signature_name(document)
    fmt = json_codec.fill_predict_request(document, inputs, request)
    return fmt, request


def tensor(pb: Any, text: str) -> Any:
    return pb.text_format.Parse(text, pb.tensor_pb2.TensorProto())


def same_proto(pb: Any, message: Any, text: str) -> None:
    expected = pb.text_format.Parse(text, type(message)())
    assert message == expected, pb.text_format.MessageToString(message)


def failure(call: Any, *args: Any) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call(*args)
    return caught.value


def parse_error(body: bytes) -> str:
    error = failure(json_codec.parse_document, body)
    assert error.code is Code.INVALID_ARGUMENT
    return error.message


# ----- reading JSON as RapidJSON does ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"  \n", "JSON Parse error: The document is empty. at offset: 3"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
        (
            b'{"instances": [1, 2]',
            "JSON Parse error: Missing a comma or '}' after an object member. at offset: 20",
        ),
        (
            b'{"instances": [1 2]}',
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 17",
        ),
        (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
        (b'{"a": 1,}', "JSON Parse error: Missing a name for object member. at offset: 8"),
        (b"{1: 2}", "JSON Parse error: Missing a name for object member. at offset: 1"),
        (b'{"a": [1,]}', "JSON Parse error: Invalid value. at offset: 9"),
        (b'{"a": tru}', "JSON Parse error: Invalid value. at offset: 9"),
        (b'{"a": 1.}', "JSON Parse error: Miss fraction part in number. at offset: 8"),
        (b'{"a": 1e+}', "JSON Parse error: Miss exponent in number. at offset: 9"),
        (b'{"a": 1e309}', "JSON Parse error: Number too big to be stored in double. at offset: 6"),
        (b'{"a": "\\q"}', "JSON Parse error: Invalid escape character in string. at offset: 7"),
        (b'{"a": "x\x01"}', "JSON Parse error: Invalid escape character in string. at offset: 8"),
        (
            b'{"a": "\\u12x4"}',
            "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 7",
        ),
        (b'{"a": "\\ud800x"}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 7"),
        (b'{"a": "open', "JSON Parse error: Missing a closing quotation mark in string. at offset: 11"),
        (b'{"a": Infinitx}', "JSON Parse error: Invalid value. at offset: 13"),
        # A NUL byte ends the input.
        (b'{"a": 1\x00}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7"),
        # The root must be an object.
        (b"[1, 2]", "JSON Value: [1, 2] Is not object"),
        (b'"x"', 'JSON Value: "x" Is not object'),
    ],
)
def test_parse_errors(body: bytes, message: str) -> None:
    assert parse_error(body) == message


def test_non_finite_numbers_are_read() -> None:
    document = json_codec.parse_document(b'{"a": [NaN, -NaN, Inf, -Inf, Infinity, -Infinity]}')
    values = document["a"]
    assert isinstance(values, list)
    assert math.isnan(values[0])
    assert math.isnan(values[1])
    assert values[2:] == [math.inf, -math.inf, math.inf, -math.inf]


def test_anything_after_the_root_value_is_ignored() -> None:
    assert json_codec.parse_document(b'{"a": 1} and then {') == {"a": 1}
    assert json_codec.parse_document(b'\xef\xbb\xbf {"a": 1}') == {"a": 1}


def test_numbers_keep_integer_and_double_apart() -> None:
    document = json_codec.parse_document(
        b'{"i": 1, "d": 1.0, "e": 1e2, "u64": 18446744073709551615, "over": 18446744073709551616,'
        b' "i64": -9223372036854775808, "under": -9223372036854775809, "z": -0}'
    )
    assert document == {
        "i": 1,
        "d": 1.0,
        "e": 100.0,
        "u64": 2**64 - 1,
        "over": float(2**64),
        "i64": -(2**63),
        "under": -float(2**63),
        "z": 0,
    }
    assert [type(document[k]) for k in ("i", "u64", "i64", "z")] == [int, int, int, int]
    assert all(isinstance(document[k], float) for k in ("d", "e", "over", "under"))


def test_long_decimals_are_read_with_rapidjson_s_normal_precision(pb: Any) -> None:
    # RapidJSON rounds 74391500080636083 to a double, then divides by 1e17: one ulp below the correctly
    # rounded value. Doubles keep RapidJSON's value; float32 is the same either way.
    literal = "0.74391500080636083"
    assert float(literal) == 0.7439150008063609
    _, request = predict(pb, f'{{"instances": [{literal}, 1e2]}}', infos(pb, default="DT_DOUBLE"))
    assert list(request.inputs["default"].double_val) == [0.7439150008063607, 100.0]
    _, request = predict(pb, f'{{"instances": [{literal}]}}', infos(pb, default="DT_FLOAT"))
    assert list(request.inputs["default"].float_val) == [0.7439150214195251]
    error = failure(predict, pb, f'{{"instances": [{literal}]}}', infos(pb, default="DT_INT64"))
    assert "JSON Value: 0.7439150008063607 Type: Number is not of expected type: int64" in error.message


def test_strings_keep_their_bytes() -> None:
    document = json_codec.parse_document(
        b'{"raw": "\xff\xfe", "escaped": "\\u00e9\\ud83d\\ude00", "nul": "\\u0000"}'
    )
    assert document["raw"].encode("utf-8", "surrogateescape") == b"\xff\xfe"  # type: ignore[union-attr]
    assert document["escaped"] == "\u00e9\U0001f600"
    assert document["nul"] == "\x00"
    lone = json_codec.parse_document(b'{"s": "\\udc80"}')["s"]
    assert lone.encode("utf-8", "surrogateescape") == b"\xed\xb2\x80"  # type: ignore[union-attr]


def test_deeply_nested_documents_are_read_without_recursion() -> None:
    depth = 100_000
    document = json_codec.parse_document(
        b'{"instances": [1], "nested": ' + b"[" * depth + b"]" * depth + b"}"
    )
    assert document["instances"] == [1]
    malformed = b'{"signature_name": ' + b"[" * depth + b"]" * depth + b"}"
    error = failure(json_codec.signature_name, json_codec.parse_document(malformed))
    assert error.message.endswith(" not formatted correctly. 'signature_name' key must be a string value.")
    head = '{\n    "signature_name": '
    assert error.message == f"JSON Value: {head}{'[' * (256 - len(head))} not formatted correctly. " + (
        "'signature_name' key must be a string value."
    )


def test_deeply_nested_instances_are_converted_without_recursion(pb: Any) -> None:
    depth = 5_000
    _, request = predict(
        pb, '{"instances": [' + "[" * depth + "1" + "]" * depth + "]}", infos(pb, x="DT_INT32")
    )
    assert len(request.inputs["x"].tensor_shape.dim) == depth + 1
    assert list(request.inputs["x"].int_val) == [1]


# ----- values quoted in errors -------------------------------------------------------------------------


def test_debug_string_formats_like_rapidjson() -> None:
    value = {"a": [1.5, 2, "x", None, True, [1e21, 1.5e-7, 1e-6, 123456.0, -0.0, 0.1]], "b": {"b64": "aGk="}}
    assert json_codec.debug_string(value) == (
        '{\n    "a": [1.5, 2, "x", null, true, [1e21, 1.5e-7, 0.000001, 123456.0, -0.0, 0.1]],\n'
        '    "b": {\n        "b64": "aGk="\n    }\n}'
    )
    # RapidJSON's writer refuses NaN: the text stops there.
    assert json_codec.debug_string({"a": math.nan, "b": 1}) == '{\n    "a": '
    # Output stops once 256 bytes are reached (whole values are written).
    assert json_codec.debug_string(["x" * 300, "y"]) == '["' + "x" * 300 + '"'


def test_error_body() -> None:
    assert json_codec.error_json('Bad key: "key"') == b'{\n    "error": "Bad key: \\"key\\""\n}'
    assert json_codec.error_json("a\nb\x01") == b'{\n    "error": "a\\nb\\u0001"\n}'
    assert json_codec.error_json("Bad key: 'key'") == b'{\n    "error": "Bad key: \'key\'"\n}'


# ----- predict requests ----------------------------------------------------------------------------------


def test_row_format_single_unnamed_tensor(pb: Any) -> None:
    fmt, request = predict(pb, '{"instances": [[1,2],[3,4],[5,6]]}', infos(pb, default="DT_INT32"))
    assert fmt is PredictFormat.ROW
    same_proto(
        pb,
        request.inputs["default"],
        "dtype: DT_INT32 tensor_shape { dim { size: 3 } dim { size: 2 } } int_val: [1, 2, 3, 4, 5, 6]",
    )


def test_mixed_numbers_for_float_and_double(pb: Any) -> None:
    _, request = predict(
        pb, '{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', infos(pb, default="DT_FLOAT")
    )
    same_proto(
        pb,
        request.inputs["default"],
        "dtype: DT_FLOAT tensor_shape { dim { size: 7 } } float_val: [1, 2, 3, 4, 5.003, 0.007, 0]",
    )
    _, request = predict(pb, '{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', infos(pb, default="DT_DOUBLE"))
    same_proto(
        pb,
        request.inputs["default"],
        "dtype: DT_DOUBLE tensor_shape { dim { size: 7 } } double_val: [1, 2, 3, 4, 0.662, 0, 0]",
    )


def test_float_precision_loss_is_the_same_for_integers_and_decimals(pb: Any) -> None:
    for literal in ("1435774380", "1435774380.0"):
        _, request = predict(pb, f'{{"instances": [{literal}]}}', infos(pb, default="DT_FLOAT"))
        assert list(request.inputs["default"].float_val) == [1435774336.0]


def test_float_overflow_and_underflow(pb: Any) -> None:
    body = '{"instances": [1.7976931348623157e308, -1.7976931348623157e308, 2.22507e-308, -2.22507e-308]}'
    _, request = predict(pb, body, infos(pb, default="DT_FLOAT"))
    values = list(request.inputs["default"].float_val)
    assert values[:2] == [math.inf, -math.inf]
    assert values[2:] == [0.0, 0.0]
    assert math.copysign(1.0, values[3]) == -1.0


def test_signature_name_is_read(pb: Any) -> None:
    _, request = predict(
        pb, '{"signature_name": "predict_images", "instances": [[1,2]]}', infos(pb, default="DT_INT32")
    )
    assert request.model_spec.signature_name == "predict_images"
    assert list(request.inputs["default"].tensor_shape.dim) == list(
        pb.text_format.Parse("dim { size: 1 } dim { size: 2 }", pb.tensor_pb2.TensorProto().tensor_shape).dim
    )


def test_base64_strings(pb: Any) -> None:
    strings = infos(pb, default="DT_STRING")
    _, request = predict(pb, '{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', strings)
    same_proto(
        pb,
        request.inputs["default"],
        'dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: ["hello", "world"]',
    )
    _, request = predict(pb, '{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', strings)
    same_proto(
        pb,
        request.inputs["default"],
        'dtype: DT_STRING tensor_shape { dim { size: 2 } dim { size: 1 } } string_val: ["hello", "world"]',
    )
    _, request = predict(
        pb, '{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}', strings
    )
    same_proto(
        pb,
        request.inputs["default"],
        "dtype: DT_STRING tensor_shape { dim { size: 1 } dim { size: 2 } dim { size: 1 } } "
        'string_val: ["hello", "world"]',
    )


def test_multiple_named_tensors(pb: Any) -> None:
    body = """{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}"""
    inputs = infos(
        pb, int_tensor="DT_INT32", str_tensor="DT_STRING", float_tensor="DT_FLOAT", dbl_tensor="DT_DOUBLE"
    )
    fmt, request = predict(pb, body, inputs)
    assert fmt is PredictFormat.ROW
    assert len(request.inputs) == 4
    same_proto(
        pb,
        request.inputs["int_tensor"],
        "dtype: DT_INT32 tensor_shape { dim { size: 2 } dim { size: 3 } dim { size: 2 } } "
        "int_val: [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]",
    )
    same_proto(
        pb,
        request.inputs["str_tensor"],
        "dtype: DT_STRING tensor_shape { dim { size: 2 } dim { size: 2 } } "
        'string_val: ["foo", "bar", "baz", "bat"]',
    )
    floats = request.inputs["float_tensor"]
    assert [d.size for d in floats.tensor_shape.dim] == [2, 2]
    assert floats.float_val[0] == 1.0
    assert math.isnan(floats.float_val[1])
    assert list(floats.float_val[2:]) == [2.0, math.inf]
    doubles = request.inputs["dbl_tensor"]
    assert [d.size for d in doubles.tensor_shape.dim] == [2, 1]
    assert math.isnan(doubles.double_val[0])
    assert doubles.double_val[1] == 2.0


def test_columnar_format(pb: Any) -> None:
    single = infos(pb, int_tensor="DT_INT32")
    expected = (
        "dtype: DT_INT32 tensor_shape { dim { size: 1 } dim { size: 3 } dim { size: 2 } } "
        "int_val: [1, 2, 3, 4, 5, 6]"
    )
    fmt, request = predict(pb, '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}', single)
    assert fmt is PredictFormat.COLUMNAR
    same_proto(pb, request.inputs["int_tensor"], expected)
    _, request = predict(pb, '{"inputs": [[[1,2],[3,4],[5,6]]]}', single)
    same_proto(pb, request.inputs["int_tensor"], expected)

    several = infos(pb, int_tensor="DT_INT32", str_tensor="DT_STRING", bin_tensor="DT_STRING")
    body = (
        '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],'
        ' "bin_tensor": {"b64": "aGVsbG8="}}}'
    )
    _, request = predict(pb, body, several)
    same_proto(pb, request.inputs["int_tensor"], expected)
    same_proto(
        pb,
        request.inputs["str_tensor"],
        'dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: ["foo", "bar"]',
    )
    same_proto(pb, request.inputs["bin_tensor"], 'dtype: DT_STRING tensor_shape {} string_val: "hello"')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"signature_name": 5, "instances": [[1,2]]}',
            'JSON Value: {\n    "signature_name": 5,\n    "instances": [[1, 2]]\n} not formatted correctly. '
            "'signature_name' key must be a string value.",
        ),
        (
            '{"instances": [[1,2]], "inputs": [[1,2]]}',
            'JSON Value: {\n    "instances": [[1, 2]],\n    "inputs": [[1, 2]]\n} Not formatted correctly '
            "expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        (
            '{"instances": [[1,2],[3,4],[5,6,7]]}',
            "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 2 but got: 3",
        ),
        (
            '{"instances": [[1,2],[3,4],[[5,6]]]}',
            "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [2] but got: [1,2]",
        ),
        (
            '{"instances": [1, [1]]}',
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [] but got: [1]",
        ),
        (
            '{"instances": [[1,2],["a", "b"]]}',
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "a" Type: String is not of expected type: int32',
        ),
        (
            '{"instances": [1.5]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 1.5 Type: Number is not of expected type: int32",
        ),
        (
            '{"instances": [2147483648]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 2147483648 Type: Number is not of expected type: int32",
        ),
        (
            '{"instances": [[1, [2]]]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Encountered list at unexpected level: 1 expected < 1",
        ),
        (
            '{"instances": [[[1,2],[3]]]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (
            '{"instances": [[[1],2]]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        (
            '{"instances": 1}',
            "JSON Value: {\n    \"instances\": 1\n} Expecting 'instances' to be an list/array",
        ),
        ('{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
        ('{"examples": []}', "Missing 'inputs' or 'instances' key"),
        ('{"inputs": "x"}', 'JSON Value: "x" Type: String is not of expected type: int32'),
    ],
)
def test_single_input_errors(pb: Any, body: str, message: str) -> None:
    error = failure(predict, pb, body, infos(pb, default="DT_INT32"))
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == message


def test_float_type_error(pb: Any) -> None:
    error = failure(predict, pb, '{"instances": ["x", "y"]}', infos(pb, default="DT_FLOAT"))
    assert error.message.endswith('JSON Value: "x" Type: String is not of expected type: float')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4]], "str_tensor": ["a"]}, '
            '{"int_tensor": [[[7,8],[9,0]]], "str_tensor": ["b"]}]}',
            "Failed to process element: 1 key: int_tensor of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [2,2] but got: [1,2,2]",
        ),
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["a"]}, '
            '{"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["b"]}]}',
            "Failed to process element: 1 key: int_tensor of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 8 but got: 6",
        ),
        (
            '{"instances": [{"int_tensor": 1, "str_tensor": "a"}, [1, 20, 30]]}',
            "Expecting object but got list at item 1 of input list",
        ),
        (
            '{"instances": [{"int_tensor": 1}]}',
            "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"int_tensor\": 1\n} "
            "keys must be equal to: int_tensor,str_tensor",
        ),
        (
            '{"instances": [{"int_tensor": 1, "str_tensor": "a", "extra": 2}]}',
            "Failed to process element: 0 key: extra of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON object: does not have named input: extra",
        ),
        (
            '{"instances": [1, 2]}',
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map",
        ),
        (
            '{"inputs": [1, 2]}',
            "inputs is a plain value/list, but expecting an object as multiple input tensors required "
            "as per tensorinfo_map",
        ),
        ('{"inputs": {"int_tensor": 1}}', "Missing named input: str_tensor in 'inputs' object."),
    ],
)
def test_several_inputs_errors(pb: Any, body: str, message: str) -> None:
    error = failure(predict, pb, body, infos(pb, int_tensor="DT_INT32", str_tensor="DT_STRING"))
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == message


def test_list_then_object_is_refused(pb: Any) -> None:
    error = failure(
        predict,
        pb,
        '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
        infos(pb, str_tensor="DT_STRING"),
    )
    assert error.message == "Expecting value/list but got object at item 1 of input list"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"instances": [{"b64": "!!"}]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Unable to base64 decode",
        ),
        (
            '{"inputs": [{"b64": 1}]}',
            'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data',
        ),
    ],
)
def test_base64_errors(pb: Any, body: str, message: str) -> None:
    assert failure(predict, pb, body, infos(pb, default="DT_STRING")).message == message


def test_unsupported_input_type(pb: Any) -> None:
    half = infos(pb, default="DT_HALF")
    error = failure(predict, pb, '{"inputs": [1.0]}', half)
    assert (error.code, error.message) == (Code.UNIMPLEMENTED, "Conversion of JSON Value: 1.0 to type: half")
    error = failure(predict, pb, '{"instances": [1.0]}', half)
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
        "Conversion of JSON Value: 1.0 to type: half"
    )


def test_signature_without_inputs(pb: Any) -> None:
    assert (
        failure(predict, pb, '{"instances": [1]}', {}).message
        == "Failed to get input map for signature: DEFAULT"
    )
    error = failure(predict, pb, '{"signature_name": "get_counter", "instances": [1]}', {})
    assert error.message == "Failed to get input map for signature: get_counter"


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("aGVsbG8=", b"hello"),
        ("aGVsbG8", b"hello"),
        ("aGVs bG8=\n", b"hello"),
        ("aGVsbG8.", b"hello"),
        ("", b""),
        ("aGVsbG8==", None),
        ("aGVsb", None),
        ("aGVs!G8=", None),
        ("aG=Vs", None),
    ],
)
def test_base64_decoding_is_abseil_s(text: str, decoded: bytes | None) -> None:
    assert json_codec.base64_decode(text) == decoded


# ----- predict responses ---------------------------------------------------------------------------------


INT_2x3x2 = (
    "dtype: DT_INT32 tensor_shape { dim { size: 2 } dim { size: 3 } dim { size: 2 } } "
    "int_val: [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]"
)


def test_row_output_puts_each_row_on_one_line(pb: Any) -> None:
    out = json_codec.predict_response_json({"int_tensor": tensor(pb, INT_2x3x2)}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]\n    ]\n}'
    scalars = tensor(pb, "dtype: DT_FLOAT tensor_shape { dim { size: 3 } } float_val: [2.5, 3.0, 4.5]")
    out = json_codec.predict_response_json({"y": scalars}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def test_columnar_output_is_fully_pretty_printed(pb: Any) -> None:
    scalars = tensor(pb, "dtype: DT_FLOAT tensor_shape { dim { size: 2 } } float_val: [3.5, 4.0]")
    out = json_codec.predict_response_json({"y": scalars}, PredictFormat.COLUMNAR)
    assert out == b'{\n    "outputs": [\n        3.5,\n        4.0\n    ]\n}'
    out = json_codec.predict_response_json({"int_tensor": tensor(pb, INT_2x3x2)}, PredictFormat.COLUMNAR)
    assert json.loads(out) == {"outputs": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}
    assert out.startswith(
        b'{\n    "outputs": [\n        [\n            [\n                1,\n                2\n'
    )
    scalar = tensor(pb, "dtype: DT_INT32 int_val: 7")
    assert (
        json_codec.predict_response_json({"y": scalar}, PredictFormat.COLUMNAR) == b'{\n    "outputs": 7\n}'
    )


def test_float_output_formatting(pb: Any) -> None:
    floats = tensor(
        pb,
        "dtype: DT_FLOAT tensor_shape { dim { size: 2 } dim { size: 3 } } "
        "float_val: [9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5]",
    )
    out = json_codec.predict_response_json({"f": floats}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]\n    ]\n}'
    special = tensor(
        pb,
        "dtype: DT_FLOAT tensor_shape { dim { size: 2 } dim { size: 2 } } float_val: [nan, inf, 3, -inf]",
    )
    out = json_codec.predict_response_json({"f": special}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [[NaN, Infinity], [3.0, -Infinity]\n    ]\n}'
    odd = tensor(
        pb, "dtype: DT_FLOAT tensor_shape { dim { size: 4 } } float_val: [0.1, 1435774380, -0.0, 1e-45]"
    )
    out = json_codec.predict_response_json({"f": odd}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [0.1, 1.43577434e+09, -0.0, 1.4013e-45\n    ]\n}'
    doubles = tensor(
        pb, "dtype: DT_DOUBLE tensor_shape { dim { size: 3 } } double_val: [0.30000000000000004, 8, 1e100]"
    )
    out = json_codec.predict_response_json({"d": doubles}, PredictFormat.ROW)
    assert out == b'{\n    "predictions": [0.30000000000000004, 8.0, 1e+100\n    ]\n}'


def test_other_output_types(pb: Any) -> None:
    mixed = {
        "b": tensor(pb, "dtype: DT_BOOL tensor_shape { dim { size: 2 } } bool_val: [true, false]"),
        "i64": tensor(
            pb, "dtype: DT_INT64 tensor_shape { dim { size: 2 } } int64_val: [-9223372036854775808, 5]"
        ),
        "u64": tensor(
            pb, "dtype: DT_UINT64 tensor_shape { dim { size: 2 } } uint64_val: [18446744073709551615, 0]"
        ),
        "s": tensor(
            pb, 'dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: ["caf\\303\\251", "\\"q\\""]'
        ),
    }
    out = json_codec.predict_response_json(mixed, PredictFormat.COLUMNAR)
    assert json.loads(out) == {
        "outputs": {
            "b": [True, False],
            "i64": [-(2**63), 5],
            "u64": [2**64 - 1, 0],
            "s": ["caf\u00e9", '"q"'],
        }
    }


def test_bytes_outputs_are_base64_objects(pb: Any) -> None:
    bytes_tensor = tensor(
        pb,
        "dtype: DT_STRING tensor_shape { dim { size: 2 } dim { size: 2 } } "
        'string_val: ["hello", "world", "tf", "serving"]',
    )
    out = json_codec.predict_response_json({"str_tensor_bytes": bytes_tensor}, PredictFormat.ROW)
    assert json.loads(out) == {
        "predictions": [
            [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
        ]
    }
    assert out.startswith(b'{\n    "predictions": [[{\n                "b64": "aGVsbG8="\n            }, {\n')


def test_several_outputs(pb: Any) -> None:
    outputs = {
        "int_tensor": tensor(pb, INT_2x3x2),
        "str_tensor": tensor(
            pb,
            "dtype: DT_STRING tensor_shape { dim { size: 2 } dim { size: 2 } } "
            'string_val: ["foo", "bar", "baz", "bat"]',
        ),
        "float_tensor": tensor(
            pb, "dtype: DT_FLOAT tensor_shape { dim { size: 2 } dim { size: 1 } } float_val: [1, 2]"
        ),
        "double_scalar_tensor": tensor(
            pb, "dtype: DT_DOUBLE tensor_shape { dim { size: 2 } } double_val: [8, 9]"
        ),
    }
    out = json_codec.predict_response_json(outputs, PredictFormat.ROW)
    assert out == (
        b'{\n    "predictions": [\n        {\n'
        b'            "double_scalar_tensor": 8.0,\n'
        b'            "float_tensor": [1.0],\n'
        b'            "int_tensor": [[1, 2], [3, 4], [5, 6]],\n'
        b'            "str_tensor": ["foo", "bar"]\n'
        b"        },\n        {\n"
        b'            "double_scalar_tensor": 9.0,\n'
        b'            "float_tensor": [2.0],\n'
        b'            "int_tensor": [[7, 8], [9, 0], [1, 2]],\n'
        b'            "str_tensor": ["baz", "bat"]\n'
        b"        }\n    ]\n}"
    )
    out = json_codec.predict_response_json(outputs, PredictFormat.COLUMNAR)
    assert json.loads(out) == {
        "outputs": {
            "double_scalar_tensor": [8.0, 9.0],
            "float_tensor": [[1.0], [2.0]],
            "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
            "str_tensor": [["foo", "bar"], ["baz", "bat"]],
        }
    }


def test_empty_batches(pb: Any) -> None:
    empty = {
        "str_tensor": tensor(
            pb, "dtype: DT_STRING tensor_shape { dim { size: 0 } dim { size: 1 } dim { size: 2 } }"
        ),
        "float_tensor": tensor(
            pb, "dtype: DT_FLOAT tensor_shape { dim { size: 0 } dim { size: 3 } dim { size: 4 } }"
        ),
    }
    assert json_codec.predict_response_json(empty, PredictFormat.ROW) == b'{\n    "predictions": []\n}'


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({}, "Cannot convert empty tensor map to JSON"),
        (
            {"tensor": "dtype: DT_COMPLEX64 tensor_shape { dim { size: 2 } } scomplex_val: [1, 2, 3, 4]"},
            "Failed to write JSON value for tensor type: complex64",
        ),
        ({"tensor": "dtype: DT_INT32 int_val: 1"}, "Tensor name: tensor has no shape information "),
        (
            {
                "a": "dtype: DT_INT32 tensor_shape { dim { size: 2 } dim { size: 1 } } int_val: [1, 2]",
                "b": 'dtype: DT_STRING tensor_shape { dim { size: 1 } dim { size: 1 } } string_val: "f"',
            },
            "Tensor name: b has inconsistent batch size: 1 expecting: 2",
        ),
        (
            {
                "a": "dtype: DT_INT32 tensor_shape { dim { size: 0 } dim { size: 2 } }",
                "b": 'dtype: DT_STRING tensor_shape { dim { size: 1 } dim { size: 2 } } string_val: "f"',
            },
            "Tensor name: b has inconsistent batch size: 1 expecting: 0",
        ),
    ],
)
def test_output_errors(pb: Any, outputs: dict[str, str], message: str) -> None:
    protos = {name: tensor(pb, text) for name, text in outputs.items()}
    error = failure(json_codec.predict_response_json, protos, PredictFormat.ROW)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_tensor_content_outputs(pb: Any) -> None:
    import numpy as np
    import tensorflow as tf

    proto = tf.make_tensor_proto(np.array([[1.5, 2.0]], dtype=np.float32))
    assert proto.tensor_content
    assert json_codec.predict_response_json({"y": proto}, PredictFormat.ROW) == (
        b'{\n    "predictions": [[1.5, 2.0]\n    ]\n}'
    )


# ----- classify and regress --------------------------------------------------------------------------------


def examples(pb: Any, body: str) -> Any:
    document = json_codec.parse_document(body.encode())
    request = pb.classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = json_codec.signature_name(document)
    json_codec.fill_examples(document, request.input)
    return request


def test_examples_without_context(pb: Any) -> None:
    request = examples(
        pb,
        '{"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},'
        ' {"names": ["baz"], "ratings": 6.0}]}',
    )
    same_proto(
        pb,
        request,
        """model_spec {} input { example_list {
          examples { features {
            feature { key: "names" value { bytes_list { value: ["foo", "bar"] } } }
            feature { key: "ratings" value { float_list { value: [8, 9] } } }
            feature { key: "age" value { int64_list { value: 20 } } } } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "baz" } } }
            feature { key: "ratings" value { float_list { value: 6 } } } } } } }""",
    )


def test_examples_with_context_and_signature(pb: Any) -> None:
    request = examples(
        pb,
        '{"signature_name": "custom_signture", "context": {"query": "pizza", "location": ["sfo"]},'
        ' "examples": [{"names": ["baz", {"b64": "aGVsbG8="}], "ratings": -Infinity,'
        ' "intboolmix": [1, true, false]},'
        ' {"names": "bar", "empty": []}]}',
    )
    same_proto(
        pb,
        request,
        """model_spec { signature_name: "custom_signture" }
        input { example_list_with_context {
          context { features {
            feature { key: "query" value { bytes_list { value: "pizza" } } }
            feature { key: "location" value { bytes_list { value: "sfo" } } } } }
          examples { features {
            feature { key: "names" value { bytes_list { value: ["baz", "hello"] } } }
            feature { key: "ratings" value { float_list { value: -inf } } }
            feature { key: "intboolmix" value { int64_list { value: [1, 1, 0] } } } } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "bar" } } }
            feature { key: "empty" value { } } } } } }""",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"signature_name": ["hello"], "examples": [{"names": ["foo"]}]}',
            'JSON Value: {\n    "signature_name": ["hello"],\n    "examples": [{\n'
            '            "names": ["foo"]\n        }]\n} not formatted correctly. '
            "'signature_name' key must be a string value.",
        ),
        ('{"context": [{"names": ["foo", "bar"]}]}', "Example must be JSON object but got JSON Array"),
        (
            '{"context": {"a": 1}}',
            'JSON Value: {\n    "context": {\n        "a": 1\n    }\n} '
            "When method is classify, key 'examples' is expected and was not found",
        ),
        (
            '{"examples": {"names": ["foo", "bar"]}}',
            'JSON Value: {\n    "examples": {\n        "names": ["foo", "bar"]\n    }\n} '
            "Expecting 'examples' value to be an list/array",
        ),
        ('{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
        ('{"examples": [[{"names": ["foo", "bar"]}]]}', "Example must be JSON object but got JSON Array"),
        (
            '{"examples": [{"names": [10, null]}]}',
            "Feature: names has element with unexpected JSON type: Null",
        ),
        (
            '{"examples": [{"names": [10, 10.0]}]}',
            "Unexpected element type in feature: names expecting type: int64",
        ),
        (
            '{"examples": [{"names": ["a", 1.5]}]}',
            "Unexpected element type in feature: names expecting type: bytes",
        ),
        (
            '{"examples": [{"names": [1.5, true]}]}',
            "Unexpected element type in feature: names expecting type: float",
        ),
        (
            '{"examples": [{"names": [10, {"test": 10}]}]}',
            "Feature: names has element with unexpected JSON type: Object",
        ),
        (
            '{"examples": [{"names": [[10], 20]}]}',
            "Feature: names has element with unexpected JSON type: Array",
        ),
        (
            '{"examples": [{"names": [20, 18446744073709551603]}]}',
            "Feature: names has uint64_t element. Only int64_t is supported.",
        ),
        ('{"examples": [{"names": {"b64": "%%"}}]}', "Unable to base64 decode"),
    ],
)
def test_example_errors(pb: Any, body: str, message: str) -> None:
    error = failure(examples, pb, body)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_classification_results(pb: Any) -> None:
    result = pb.text_format.Parse(
        'classifications { classes { label: "car" score: 0.2 } classes { label: "bike" score: 0.7 } }'
        ' classifications { classes { label: "car" score: 0.7 } classes { label: "bike" score: 0.1 } }',
        pb.classification_pb2.ClassificationResult(),
    )
    assert json_codec.classification_json(result) == (
        b'{\n    "results": [[["car", 0.2], ["bike", 0.7]], [["car", 0.7], ["bike", 0.1]]\n    ]\n}'
    )
    scores_only = pb.text_format.Parse(
        "classifications { classes { score: 12 } }", pb.classification_pb2.ClassificationResult()
    )
    assert json_codec.classification_json(scores_only) == b'{\n    "results": [[["", 12.0]]\n    ]\n}'


def test_regression_results(pb: Any) -> None:
    result = pb.text_format.Parse(
        "regressions { value: 0.2 } regressions { value: 0.9 } regressions { value: 1.0 }",
        pb.regression_pb2.RegressionResult(),
    )
    assert json_codec.regression_json(result) == b'{\n    "results": [0.2, 0.9, 1.0]\n}'
    special = pb.text_format.Parse(
        "regressions { value: 42 } regressions { value: inf } "
        "regressions { value: -inf } regressions { value: nan }",
        pb.regression_pb2.RegressionResult(),
    )
    assert json_codec.regression_json(special) == b'{\n    "results": [42.0, Infinity, -Infinity, NaN]\n}'


def test_empty_results(pb: Any) -> None:
    error = failure(json_codec.classification_json, pb.classification_pb2.ClassificationResult())
    assert error.message == "Cannot convert empty ClassificationResults to JSON"
    error = failure(json_codec.regression_json, pb.regression_pb2.RegressionResult())
    assert error.message == "Cannot convert empty RegressionResults to JSON"


# ----- model status and metadata ----------------------------------------------------------------------------


def test_model_status(pb: Any) -> None:
    response = pb.get_model_status_pb2.GetModelStatusResponse()
    available = response.model_version_status.add()
    available.version = 123
    available.state = 30
    available.status.SetInParent()
    failed = response.model_version_status.add()
    failed.version = 7
    failed.state = 50
    failed.status.error_code = 2
    failed.status.error_message = 'Failed to load <"x">'
    assert json_codec.model_status_json(response) == (
        b'{\n "model_version_status": [\n  {\n   "version": "123",\n   "state": "AVAILABLE",\n'
        b'   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  },\n'
        b'  {\n   "version": "7",\n   "state": "END",\n   "status": {\n    "error_code": "UNKNOWN",\n'
        b'    "error_message": "Failed to load \\u003c\\"x\\"\\u003e"\n   }\n  }\n ]\n}\n'
    )


def test_model_metadata(pb: Any) -> None:
    response = pb.get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "half"
    response.model_spec.version.value = 123
    signatures = pb.get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    x = signature.inputs["x"]
    x.name = "x:0"
    x.dtype = pb.types_pb2.DT_FLOAT
    x.tensor_shape.dim.add().size = -1
    response.metadata["signature_def"].Pack(signatures)
    assert json_codec.model_metadata_json(response).decode() == (
        '{\n"model_spec":{\n "name": "half",\n "version": "123",\n "signature_name": ""\n}\n,\n'
        '"metadata": {"signature_def": {\n "signature_def": {\n  "serving_default": {\n'
        '   "inputs": {\n    "x": {\n     "name": "x:0",\n     "dtype": "DT_FLOAT",\n'
        '     "tensor_shape": {\n      "dim": [\n       {\n        "size": "-1",\n        "name": ""\n'
        '       }\n      ],\n      "unknown_rank": false\n     }\n    }\n   },\n   "outputs": {},\n'
        '   "method_name": "tensorflow/serving/predict",\n   "defaults": {}\n  }\n }\n}\n}\n}\n'
    )


def test_metadata_without_signature_defs(pb: Any) -> None:
    error = failure(json_codec.model_metadata_json, pb.get_model_metadata_pb2.GetModelMetadataResponse())
    assert error.code is Code.INTERNAL
