"""Envoy's gRPC model-key module (``envoy/modules/grpc_model_key.c``), compiled on first use.

A gRPC request names its model in its body. Envoy's generic ``grpc_field_extraction`` filter can read it, at
about a fifth of Envoy's whole cost per request (bench/RESULTS.md); this small C module, loaded by Envoy's
dynamic-modules HTTP filter, reads only the first message's ``model_spec`` and writes the fast-path key. It
has no dependencies but libc, so it is built here, by the machine's C compiler (``$CC``, else ``cc``), into
a cache directory, under a name that carries a hash of its source and flags: an edited source is rebuilt,
an unchanged one never.

Where no compiler is found (or the build fails) ``grpc_key_module`` answers ``None`` and says why in the log;
the daemon then keeps the generic filter: gRPC hits still take the fast path, at the generic filter's cost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from tfscachectl.envoy_launcher import envoy_file

log = logging.getLogger(__name__)

MODULE_SOURCE: Final = "modules/grpc_model_key.c"
#: Where compiled modules are kept (default: ``$XDG_CACHE_HOME/tfscache/envoy-modules``).
MODULE_DIR_ENV: Final = "TFSCACHE_MODULE_DIR"
COMPILER_ENV: Final = "CC"
DEFAULT_COMPILER: Final = "cc"
CFLAGS: Final = ("-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra")
COMPILE_TIMEOUT_S: Final = 120.0
_LIBRARY_STEM: Final = "libtfscache_grpc_key"
_HASH_CHARS: Final = 16


def module_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where compiled modules are kept."""
    env = os.environ if environ is None else environ
    configured = env.get(MODULE_DIR_ENV, "")
    if configured:
        return Path(configured)
    cache_home = env.get("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
    return Path(cache_home) / "tfscache" / "envoy-modules"


def grpc_key_module(environ: Mapping[str, str] | None = None) -> Path | None:
    """The compiled module's path (built now if needed), or ``None`` when it cannot be built here."""
    env = os.environ if environ is None else environ
    source = envoy_file(MODULE_SOURCE, env)
    try:
        code = source.read_bytes()
    except OSError as exc:
        log.warning("the gRPC model-key module's source %s cannot be read (%s)", source, exc.strerror or exc)
        return None
    compiler_name = env.get(COMPILER_ENV, "") or DEFAULT_COMPILER
    digest = hashlib.sha256(code + " ".join((compiler_name, *CFLAGS)).encode()).hexdigest()[:_HASH_CHARS]
    directory = module_dir(env)
    target = directory / f"{_LIBRARY_STEM}-{digest}.so"
    if target.is_file():
        return target
    compiler = shutil.which(compiler_name)
    if compiler is None:
        log.warning(
            "no C compiler (%s) to build the gRPC model-key module: gRPC hits use the generic filter",
            compiler_name,
        )
        return None
    return _compile(compiler, source, target)


def _compile(compiler: str, source: Path, target: Path) -> Path | None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed over it: a reader never sees half a library, and two builders
        # racing both write whole files.
        handle, partial = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as exc:
        log.warning("cannot write the gRPC model-key module to %s (%s)", target.parent, exc.strerror or exc)
        return None
    try:
        result = subprocess.run(
            [compiler, *CFLAGS, "-o", partial, str(source)],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            log.warning(
                "building the gRPC model-key module failed (%s):\n%s", compiler, result.stderr.strip()
            )
            return None
        os.replace(partial, target)
        return target
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("building the gRPC model-key module failed (%s): %s", compiler, exc)
        return None
    finally:
        Path(partial).unlink(missing_ok=True)
