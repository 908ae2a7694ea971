"""The flags of ``tensorflow_model_server`` the bundled backend understands, parsed the way it parses them.

TF Serving's flags are ``--name=value`` (or ``--name value``); booleans also as bare ``--name`` and as
``--name=true|false|1|0``. Flags of the real binary that have no effect here (batching, thread pools, TPU...)
are accepted with a warning, so a command line written for the real server runs unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from tfscachectl.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    port: int = 8500
    rest_api_port: int = 0
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    file_system_poll_wait_seconds: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    allow_version_labels_for_unavailable_models: bool = False
    rest_api_timeout_in_ms: int = 30_000
    rest_api_enable_cors_support: bool = False
    monitoring_config_file: Path | None = None
    enable_model_warmup: bool = True
    enable_signature_method_name_check: bool = False
    # tfscache's own, not tensorflow_model_server's: the address both servers listen on.
    listen_address: str = "0.0.0.0"

    def __post_init__(self) -> None:
        if self.rest_api_port and self.rest_api_port == self.port:
            raise ConfigError("--port and --rest_api_port cannot be the same")
        if self.model_config_file is None and not self.model_base_path:
            raise ConfigError("Both --model_config_file and --model_base_path are empty: give one of them")


# Flags of the real binary that change nothing here.
IGNORED_FLAGS = frozenset(
    {
        "enable_batching",
        "allow_batching",
        "batching_parameters_file",
        "tensorflow_session_parallelism",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "rest_api_num_threads",
        "grpc_channel_arguments",
        "grpc_max_threads",
        "saved_model_tags",
        "per_process_gpu_memory_fraction",
        "platform_config_file",
        "ssl_config_file",
        "enable_grpc_healthcheck_service",
        "xla_cpu_compilation_enabled",
        "use_tflite_model",
        "num_load_threads",
        "num_unload_threads",
        "flush_filesystem_caches",
        "grpc_socket_path",
        "remove_unused_fields_from_bundle_metagraph",
        "thread_pool_factory_config_file",
        "mixed_precision",
        "skip_initialize_tpu",
        "enable_profiler",
    }
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_flags(argv: list[str]) -> ServerOptions:
    """``ServerOptions`` from a ``tensorflow_model_server`` command line."""
    fields = {f.name: f for f in dataclasses.fields(ServerOptions)}
    values: dict[str, object] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            raise ConfigError(f"Unexpected argument {arg!r}: flags are written --name=value")
        name, has_value, raw = arg.lstrip("-").partition("=")
        if name in IGNORED_FLAGS:
            log.warning("flag_ignored flag=%s (it has no effect on the bundled backend)", name)
            if not has_value and args and not args[0].startswith("--"):
                args.pop(0)
            continue
        field = fields.get(name)
        if field is None:
            raise ConfigError(f"Unknown flag --{name}. Run with --help to see the flags.")
        kind = _kind(field)
        if kind is bool:
            if not has_value:
                values[name] = True
                continue
            values[name] = _parse_bool(name, raw)
            continue
        if not has_value:
            if not args:
                raise ConfigError(f"Flag --{name} needs a value")
            raw = args.pop(0)
        values[name] = _convert(name, kind, raw)
    try:
        return ServerOptions(**values)  # type: ignore[arg-type]
    except TypeError as exc:  # pragma: no cover - guarded by the field lookup above
        raise ConfigError(str(exc)) from exc


def _kind(field: dataclasses.Field[object]) -> type:
    text = str(field.type)
    if text == "bool":
        return bool
    if text == "int":
        return int
    if "Path" in text:
        return Path
    return str


def _parse_bool(name: str, raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"Flag --{name} takes true or false, not {raw!r}")


def _convert(name: str, kind: type, raw: str) -> object:
    if kind is int:
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"Flag --{name} takes an integer, not {raw!r}") from exc
    if kind is Path:
        return Path(raw) if raw else None
    return raw


HELP = """\
Run the bundled TF Serving-compatible backend. Flags are tensorflow_model_server's:

  --port=8500                        gRPC port
  --rest_api_port=0                  REST port (0: no REST API)
  --model_config_file=PATH           text ModelServerConfig (overrides --model_name/--model_base_path)
  --model_config_file_poll_wait_seconds=0   re-read the config file this often (0: read once)
  --model_name=default --model_base_path=PATH   serve one model
  --file_system_poll_wait_seconds=1  how often to look for new versions (0: once, <0: never)
  --max_num_load_retries=5           retries of a failing load
  --load_retry_interval_micros=60000000
  --allow_version_labels_for_unavailable_models=false
  --rest_api_timeout_in_ms=30000
  --rest_api_enable_cors_support=false
  --monitoring_config_file=PATH      MonitoringConfig text proto (prometheus_config { enable: true })
  --enable_model_warmup=true         replay assets.extra/tf_serving_warmup_requests at load
  --enable_signature_method_name_check=false
  --listen_address=0.0.0.0           (tfscache only) the address both servers listen on

Example:
  tfscachectl tf-serving --port=8500 --rest_api_port=8501 \\
      --model_name=half_plus_two --model_base_path=/models/half_plus_two
"""
