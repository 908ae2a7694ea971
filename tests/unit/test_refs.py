"""Model references: parsing, validation, text form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfscachectl.core.refs import MAX_VERSION, ModelKey, ModelRef
from tfscachectl.errors import ConfigError

names = st.text(
    alphabet=st.characters(exclude_categories=("C", "Z"), exclude_characters="/\\:"),
    min_size=1,
    max_size=40,
).filter(lambda n: n not in (".", ".."))


def test_parse_name_only_means_latest() -> None:
    ref = ModelRef.parse("half_plus_two")
    assert ref == ModelRef("half_plus_two", None)
    assert ref.is_latest
    assert str(ref) == "half_plus_two"


def test_parse_name_and_version() -> None:
    ref = ModelRef.parse("half_plus_two:7")
    assert ref == ModelRef("half_plus_two", 7)
    assert not ref.is_latest
    assert str(ref) == "half_plus_two:7"
    assert ref.key() == ModelKey("half_plus_two", 7)


def test_leading_zeros_are_the_same_version() -> None:
    assert ModelRef.parse("m:0007") == ModelRef("m", 7)
    assert ModelRef.parse("m:0").version == 0


def test_largest_version() -> None:
    assert ModelRef.parse(f"m:{MAX_VERSION}").version == MAX_VERSION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty model name"),
        (":7", "empty model name"),
        ("m:", "empty version"),
        ("m:x", "not a non-negative integer"),
        ("m:-1", "not a non-negative integer"),
        ("m:+1", "not a non-negative integer"),
        ("m: 1", "not a non-negative integer"),
        ("m:1_000", "not a non-negative integer"),
        ("m:\u00b2", "not a non-negative integer"),
        ("m:1:2", "not a non-negative integer"),
        (f"m:{MAX_VERSION + 1}", "out of range"),
        ("a/b", "contains '/'"),
        ("a\\b", "contains '\\\\'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x00b", "control character"),
        (".", "cannot be '.'"),
        ("..", "cannot be '..'"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_bad_references_say_why(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelRef.parse(text)
    assert message in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(ConfigError):
        ModelRef("a/b")
    with pytest.raises(ConfigError):
        ModelRef("m", -1)
    with pytest.raises(ConfigError):
        ModelKey("m", True)  # a bool is not a version
    with pytest.raises(ConfigError):
        ModelKey("", 1)


def test_key_needs_a_version() -> None:
    with pytest.raises(ValueError, match="names no version"):
        ModelRef("m").key()
    with pytest.raises(ConfigError, match="no version"):
        ModelKey.parse("m")


def test_resolve_latest() -> None:
    assert ModelRef("m").resolve(latest=12) == ModelKey("m", 12)
    assert ModelRef("m", 3).resolve(latest=12) == ModelKey("m", 3)


def test_key_text_form_and_order() -> None:
    key = ModelKey.parse("m:3")
    assert key == ModelKey("m", 3)
    assert str(key) == "m:3"
    assert key.ref == ModelRef("m", 3)
    assert sorted([ModelKey("b", 1), ModelKey("a", 10), ModelKey("a", 2)]) == [
        ModelKey("a", 2),
        ModelKey("a", 10),
        ModelKey("b", 1),
    ]


def test_values_are_frozen_and_hashable() -> None:
    ref = ModelRef("m", 1)
    with pytest.raises(AttributeError):
        ref.name = "other"  # type: ignore[misc]
    assert {ref, ModelRef("m", 1)} == {ref}


@given(name=names, version=st.none() | st.integers(0, MAX_VERSION))
def test_text_form_round_trips(name: str, version: int | None) -> None:
    ref = ModelRef(name, version)
    assert ModelRef.parse(str(ref)) == ref
    if version is not None:
        assert ModelKey.parse(str(ref)) == ModelKey(name, version)
