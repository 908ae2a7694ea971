"""Path safety of the model stores: names, versions and file paths never reach outside the store or cache.

Also the pure parts around them: the label file format, store URLs and store settings.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfscachectl.core.refs import MAX_VERSION
from tfscachectl.errors import ConfigError, ModelNotInStoreError, StoreError
from tfscachectl.stores.disk_cache import model_path, version_path
from tfscachectl.stores.labels import MAX_LABELS_FILE_BYTES, format_labels, parse_labels
from tfscachectl.stores.locations import LocalLocation, S3Location, parse_store_url
from tfscachectl.stores.names import (
    STAGING_DIR_NAME,
    checked_name,
    checked_version,
    contained_path,
    relative_file_path,
    version_dir_name,
    version_from_dir_name,
)
from tfscachectl.stores.settings import StoreSettings

ROOT = Path("/srv/cache")

# --- model names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("..", "cannot be '..'"),
        (".", "cannot be '.'"),
        ("../etc", "contains '/'"),
        ("a/../../b", "contains '/'"),
        ("/etc/passwd", "contains '/'"),
        ("..\\windows", "contains '\\\\'"),
        ("model\x00.pb", "control character"),
        ("tab\tname", "whitespace"),
        ("name:7", "contains ':'"),
        ("", "empty"),
        ("x" * 256, "longer than 255"),
        (STAGING_DIR_NAME, "reserved for the disk cache"),
    ],
)
def test_names_that_could_escape_are_not_in_any_store(name: str, reason: str) -> None:
    with pytest.raises(ModelNotInStoreError, match="no model can have this name") as caught:
        checked_name(name)
    assert reason in str(caught.value)
    with pytest.raises(ModelNotInStoreError):
        version_path(ROOT, name, 1)
    with pytest.raises(ModelNotInStoreError):
        model_path(ROOT, name)


@pytest.mark.parametrize(
    "name", ["half_plus_two", "tenant-0001", ".hidden", "..x", "x" * 255, "modèle", "a.b"]
)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert checked_name(name) == name
    assert version_path(ROOT, name, 7) == ROOT / name / "7"


@given(st.text(max_size=300), st.integers(min_value=0, max_value=MAX_VERSION))
def test_a_version_path_is_always_a_grandchild_of_the_cache_root(name: str, version: int) -> None:
    try:
        path = version_path(ROOT, name, version)
    except ModelNotInStoreError:
        return
    normalized = Path(os.path.normpath(path))
    assert normalized == path
    assert normalized.parent.parent == ROOT
    assert normalized.parent.name == name
    assert normalized.name == str(version)


# --- versions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [-1, MAX_VERSION + 1, True])
def test_versions_out_of_range_are_not_in_any_store(version: int) -> None:
    with pytest.raises(ModelNotInStoreError, match="no model version can be"):
        checked_version(version)
    with pytest.raises(ModelNotInStoreError):
        version_path(ROOT, "m", version)


@pytest.mark.parametrize(
    ("dir_name", "version"),
    [
        ("123", 123),
        ("00000123", 123),
        ("0", 0),
        (str(MAX_VERSION), MAX_VERSION),
        (str(MAX_VERSION + 1), None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("12a", None),
        ("", None),
        ("١٢٣", None),  # Arabic-Indic digits: isdigit() but not a TF Serving version
        ("0" * 256 + "1", None),
        ("labels.json", None),
    ],
)
def test_version_directory_names_are_read_as_tf_serving_reads_them(
    dir_name: str, version: int | None
) -> None:
    assert version_from_dir_name(dir_name) == version


def test_the_cache_names_version_directories_in_plain_decimal() -> None:
    assert version_dir_name(123) == "123"
    assert version_path(ROOT, "m", 123) == ROOT / "m" / "123"


# --- file paths inside a version (from S3 keys or directory walks) ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/etc/passwd",
        "../x",
        "variables/../../x",
        "a//b",
        "./saved_model.pb",
        "variables/",
        "a\\b",
        "a\x00b",
        "x" * 256,
        "/".join(["x" * 200] * 21),
    ],
)
def test_unsafe_file_paths_make_a_version_unusable(text: str) -> None:
    with pytest.raises(StoreError):
        relative_file_path(text)


@pytest.mark.parametrize(
    "text",
    ["saved_model.pb", "variables/variables.data-00000-of-00001", "assets.extra/tf_serving_warmup_requests"],
)
def test_safe_file_paths_are_kept_as_given(text: str) -> None:
    path = relative_file_path(text)
    assert path == PurePosixPath(text)
    assert path.as_posix() == text


def test_contained_path_refuses_to_leave_its_root() -> None:
    assert contained_path(ROOT, "m", "1") == ROOT / "m" / "1"
    for parts in (("..",), ("m", "..", ".."), ("/etc",), ()):
        with pytest.raises(StoreError, match="not inside"):
            contained_path(ROOT, *parts)


# --- the label file -----------------------------------------------------------------------------------------


def test_label_file_maps_labels_to_versions() -> None:
    assert parse_labels(b'{"stable": 123, "canary": 124, "also-stable": 123}', "f") == {
        "stable": 123,
        "canary": 124,
        "also-stable": 123,
    }
    assert parse_labels(b"{}", "f") == {}


def test_format_labels_round_trips() -> None:
    labels = {"stable": 1, "canary": 2}
    assert parse_labels(format_labels(labels), "f") == labels


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not valid"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"stable": "123"}', "integer version"),
        (b'{"stable": 1.5}', "integer version"),
        (b'{"stable": true}', "integer version"),
        (b'{"stable": -1}', "out of range"),
        (b'{"stable": 9223372036854775808}', "out of range"),
        (b'{"stable": 1, "stable": 2}', "given twice"),
        (b'{"": 1}', "empty"),
        (b'{"a/b": 1}', "contains '/'"),
        (b'{"a:b": 1}', "contains ':'"),
        (b'{"a b": 1}', "whitespace"),
        (b'{"a\\u0000": 1}', "control character"),
        (b'{"stable": 1', "not valid"),
        (b"\xff\xfe", "not UTF-8"),
        (b" " * (MAX_LABELS_FILE_BYTES + 1), "larger than"),
    ],
)
def test_bad_label_files_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(StoreError, match=r"label file s3://b/m/labels\.json") as caught:
        parse_labels(data, "s3://b/m/labels.json")
    assert problem in str(caught.value)


# --- store URLs and settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/srv/models", LocalLocation(Path("/srv/models"))),
        ("file:///srv/models", LocalLocation(Path("/srv/models"))),
        ("file://localhost/srv/my%20models", LocalLocation(Path("/srv/my models"))),
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://my-bucket/", S3Location("my-bucket", "")),
        ("s3://my.bucket/models/prod/", S3Location("my.bucket", "models/prod")),
    ],
)
def test_store_urls(url: str, location: LocalLocation | S3Location) -> None:
    assert parse_store_url(url) == location


def test_a_relative_path_is_made_absolute() -> None:
    assert parse_store_url("models") == LocalLocation(Path.cwd() / "models")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "s3://",
        "s3://B/x",
        "s3://bucket/a//b",
        "s3://bucket/x?endpoint=http://x",
        "file://otherhost/x",
        "file:relative",
        "gs://bucket/x",
        "/srv/\x00",
    ],
)
def test_bad_store_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="model store URL"):
        parse_store_url(url)


def test_store_settings_defaults_are_valid() -> None:
    settings = StoreSettings()
    assert settings.endpoint_url is None
    assert settings.list_page_size == 1000


@pytest.mark.parametrize(
    "options",
    [
        {"endpoint_url": "localhost:9000"},
        {"endpoint_url": "ftp://x"},
        {"addressing_style": "sideways"},
        {"max_attempts": 0},
        {"max_attempts": True},
        {"multipart_chunk_bytes": 0},
        {"max_concurrency": 0},
        {"list_page_size": 0},
        {"list_page_size": 1001},
        {"read_timeout_s": 0},
        {"connect_timeout_s": -1.0},
    ],
)
def test_bad_store_settings_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        StoreSettings(**options)  # type: ignore[arg-type]
