"""Building the gRPC model-key module with the machine's C compiler (``tfscachectl.envoy_module``).

These use a small stand-in source in a directory of their own (``TFSCACHE_ENVOY_DIR``), so they test the
builder, not the module (``test_grpc_key_module.py`` tests the module in a real Envoy).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tfscachectl.daemon.service import grpc_key_module_path
from tfscachectl.daemon.settings import FastPathSettings
from tfscachectl.envoy_launcher import ENVOY_DIR_ENV
from tfscachectl.envoy_module import COMPILER_ENV, MODULE_DIR_ENV, MODULE_SOURCE, grpc_key_module

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")

SOURCE = "int tfscache_stand_in(void) { return 1; }\n"


def environ(tmp_path: Path, source: str = SOURCE, **extra: str) -> dict[str, str]:
    envoy_dir = tmp_path / "envoy"
    (envoy_dir / MODULE_SOURCE).parent.mkdir(parents=True, exist_ok=True)
    (envoy_dir / MODULE_SOURCE).write_text(source)
    return {ENVOY_DIR_ENV: str(envoy_dir), MODULE_DIR_ENV: str(tmp_path / "built"), **extra}


def test_builds_once_and_again_when_the_source_changes(tmp_path: Path) -> None:
    env = environ(tmp_path)
    built = grpc_key_module(env)
    assert built is not None
    assert built.parent == tmp_path / "built"
    assert built.read_bytes().startswith(b"\x7fELF")
    modified = built.stat().st_mtime_ns
    assert grpc_key_module(env) == built
    assert built.stat().st_mtime_ns == modified
    assert [path.name for path in built.parent.iterdir()] == [built.name]  # no partial file left behind
    changed = grpc_key_module(environ(tmp_path, SOURCE + "int tfscache_other(void) { return 2; }\n"))
    assert changed is not None
    assert changed != built


def test_no_compiler_means_no_module_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert grpc_key_module(environ(tmp_path, **{COMPILER_ENV: "no-such-cc"})) is None
    assert "no C compiler (no-such-cc)" in caplog.text


def test_a_failed_build_means_no_module_and_shows_the_compiler_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert grpc_key_module(environ(tmp_path, "this is not C\n")) is None
    assert "building the gRPC model-key module failed" in caplog.text
    assert "error" in caplog.text
    assert list((tmp_path / "built").iterdir()) == []


def test_a_missing_source_means_no_module(tmp_path: Path) -> None:
    env = {ENVOY_DIR_ENV: str(tmp_path / "nowhere"), MODULE_DIR_ENV: str(tmp_path / "built")}
    assert grpc_key_module(env) is None


def test_the_daemon_setting_chooses_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    built = grpc_key_module_path("auto")
    assert built is not None
    assert Path(built).is_file()
    assert grpc_key_module_path("off") is None
    assert grpc_key_module_path("/opt/envoy/libtfscache_grpc_key.so") == "/opt/envoy/libtfscache_grpc_key.so"
    with pytest.raises(ValueError, match="absolute path"):
        FastPathSettings(grpc_key_module="libtfscache_grpc_key.so")
