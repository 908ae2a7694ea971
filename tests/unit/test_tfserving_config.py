"""Pure parts of the bundled backend: version directories, policies, config checks, flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfscachectl.errors import Code, ConfigError, ServingError
from tfscachectl.tfserving import model_config
from tfscachectl.tfserving.model_config import ModelEntry
from tfscachectl.tfserving.options import parse_flags
from tfscachectl.tfserving.versions import (
    AllVersions,
    Latest,
    Specific,
    aspired_versions,
    parse_version_dir,
    versions_on_disk,
)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),
        ("0", 0),
        ("abc", None),
        ("1a", None),
        ("-1", None),
        ("", None),
        (str(2**63), None),
        (str(2**63 - 1), 2**63 - 1),
        ("١٢", None),
    ],
)
def test_version_dir_names_are_parsed_like_simpleatoi(name: str, version: int | None) -> None:
    assert parse_version_dir(name) == version


def test_duplicate_version_dirs_keep_one() -> None:
    assert versions_on_disk(["123", "00000123", "x", "7"]) == {123: "123", 7: "7"}


def test_version_policies() -> None:
    on_disk = [1, 5, 3]
    assert aspired_versions(Latest(1), on_disk) == {5}
    assert aspired_versions(Latest(2), on_disk) == {5, 3}
    assert aspired_versions(AllVersions(), on_disk) == {1, 3, 5}
    assert aspired_versions(Specific(frozenset({3, 9})), on_disk) == {3}
    assert aspired_versions(Latest(1), []) == frozenset()


CONFIG = """
model_config_list {
  config { name: "a" base_path: "/models/a" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 2 } }
           version_labels { key: "stable" value: 1 } }
  config { name: "b" base_path: "/models/b" model_version_policy { all {} } }
  config { name: "c" base_path: "s3://bucket/c" model_version_policy { latest { num_versions: 2 } } }
}
"""


def test_config_text_is_read_into_entries() -> None:
    entries = model_config.entries(model_config.parse_text(CONFIG))
    assert entries == [
        ModelEntry("a", "/models/a", "tensorflow", Specific(frozenset({1, 2})), (("stable", 1),)),
        ModelEntry("b", "/models/b", "tensorflow", AllVersions()),
        ModelEntry("c", "s3://bucket/c", "tensorflow", Latest(2)),
    ]


def test_bad_config_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Invalid ModelServerConfig"):
        model_config.parse_text("model_config_list { nonsense: 1 }")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [ModelEntry("a", "/x"), ModelEntry("a", "/y")],
            "Illegal to list model a multiple times in config list",
        ),
        (
            [ModelEntry("a", "relative/x")],
            "Expected model a to have an absolute path or URI; got base_path()=relative/x",
        ),
    ],
)
def test_validation_refuses_before_changing_anything(entries: list[ModelEntry], message: str) -> None:
    with pytest.raises(ServingError) as caught:
        model_config.validate(entries, {})
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == message


def test_platform_change_is_refused_and_unknown_platform_reported() -> None:
    with pytest.raises(ServingError, match="platform"):
        model_config.validate([ModelEntry("a", "/x", "other")], {"a": ModelEntry("a", "/x")})
    with pytest.raises(ServingError, match="Model a requests unsupported platform other"):
        model_config.check_platforms([ModelEntry("a", "/x", "other")])


def test_flags_are_parsed_like_tensorflow_model_server() -> None:
    options = parse_flags(
        [
            "--port=9000",
            "--rest_api_port",
            "9001",
            "--model_config_file=/tmp/models.config",
            "--allow_version_labels_for_unavailable_models",
            "--enable_model_warmup=false",
            "--enable_batching=true",
        ]
    )
    assert options.port == 9000
    assert options.rest_api_port == 9001
    assert options.model_config_file == Path("/tmp/models.config")
    assert options.allow_version_labels_for_unavailable_models is True
    assert options.enable_model_warmup is False
    assert options.file_system_poll_wait_seconds == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_base_path=/m", "--nope=1"], "Unknown flag --nope"),
        (["--model_base_path=/m", "--port=x"], "takes an integer"),
        (["--model_base_path=/m", "--enable_model_warmup=maybe"], "takes true or false"),
        (["--port=1"], "Both --model_config_file and --model_base_path are empty"),
        (["--model_base_path=/m", "--port=1", "--rest_api_port=1"], "cannot be the same"),
        (["--model_base_path=/m", "stray"], "Unexpected argument"),
    ],
)
def test_bad_flags_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_flags(argv)
