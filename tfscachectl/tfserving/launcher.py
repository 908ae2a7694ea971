"""Which program runs a serving backend: the bundled TF Serving-compatible backend, or the real binary.

By default a backend is ``python -m tfscachectl tf-serving`` with ``tensorflow_model_server``'s flags. When
the environment variable ``TFSCACHE_TF_SERVING_BINARY`` names a program (a path, or a name looked up on
``PATH``), that program is run instead with the same flags: the real ``tensorflow_model_server``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.errors import ConfigError

TF_SERVING_BINARY_ENV = "TFSCACHE_TF_SERVING_BINARY"

FlagValue = str | int | float | bool | Path


@dataclass(frozen=True, slots=True)
class ServingBackendCommand:
    """The program part of a serving backend's command line; ``bundled`` when it is tfscache's own."""

    program: tuple[str, ...]
    bundled: bool

    def argv(self, flags: Iterable[str]) -> list[str]:
        """The full command line: the program, then flags already written as ``--name=value``."""
        return [*self.program, *flags]


def bundled_backend_command() -> ServingBackendCommand:
    """``python -m tfscachectl tf-serving``, run by the interpreter running this code."""
    return ServingBackendCommand(program=(sys.executable, "-m", "tfscachectl", "tf-serving"), bundled=True)


def serving_backend_command(environ: Mapping[str, str] | None = None) -> ServingBackendCommand:
    """The backend to run: the program ``TFSCACHE_TF_SERVING_BINARY`` names, else the bundled one.

    Raises ``ConfigError`` if the variable names a program that does not exist or cannot be run.
    """
    env = os.environ if environ is None else environ
    named = env.get(TF_SERVING_BINARY_ENV, "").strip()
    if not named:
        return bundled_backend_command()
    return ServingBackendCommand(program=(_resolve_program(named, env),), bundled=False)


def serving_backend_argv(flags: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The command line that runs a serving backend with ``flags`` (``tensorflow_model_server``'s)."""
    return serving_backend_command(environ).argv(flags)


def format_flag(name: str, value: FlagValue) -> str:
    """One flag as ``tensorflow_model_server`` reads it: ``--name=value``, booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return f"--{name}={'true' if value else 'false'}"
    return f"--{name}={value}"


def _resolve_program(named: str, env: Mapping[str, str]) -> str:
    if os.sep in named or (os.altsep is not None and os.altsep in named):
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{TF_SERVING_BINARY_ENV}={named}: no such file")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{TF_SERVING_BINARY_ENV}={named}: the file is not executable")
        return str(path.resolve())
    found = shutil.which(named, path=env.get("PATH", os.defpath))
    if found is None:
        raise ConfigError(f"{TF_SERVING_BINARY_ENV}={named}: no program of that name on PATH")
    return found
