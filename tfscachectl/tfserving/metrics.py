"""Prometheus metrics in TF Serving's names and text exposition.

Enabled by ``--monitoring_config_file`` with ``prometheus_config { enable: true path: "..." }``; served on
the REST port. TF Serving's metric names are TensorFlow monitoring names with every character outside
``[A-Za-z0-9_]`` turned into ``:``, e.g. ``:tensorflow:serving:request_count``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfscachectl.errors import Code, ConfigError

DEFAULT_PATH = "/monitoring/prometheus/metrics"
_LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = False
    path: str = DEFAULT_PATH


def read_monitoring_config(path: Path | None) -> PrometheusConfig:
    if path is None:
        return PrometheusConfig()
    from google.protobuf import text_format

    config = _monitoring_config_class()()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"Invalid monitoring config file {path}: {exc}") from exc
    prometheus = config.prometheus_config
    return PrometheusConfig(prometheus.enable, prometheus.path or DEFAULT_PATH)


def _monitoring_config_class() -> Any:
    """``tensorflow.serving.MonitoringConfig``, built here: the pip package does not ship its module.

    Same fields and numbers as TF Serving's ``config/monitoring_config.proto``, so the same text parses.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfscache/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)  # bool
    prometheus.field.add(name="path", number=2, type=9, label=1)  # string
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config", number=1, type=11, label=1, type_name=".tensorflow.serving.PrometheusConfig"
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServingMetrics:
    """Request counts and latencies, and model load attempts. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str, str], list[float]] = {}
        self._loads: dict[tuple[str, str], int] = defaultdict(int)

    def record_request(self, model: str, api: str, entrypoint: str, code: Code, seconds: float) -> None:
        status = "OK" if code == Code.OK else code.name
        with self._lock:
            self._requests[(model, status)] += 1
            if code == Code.OK:
                key = (model, api, entrypoint)
                counts = self._latency.setdefault(key, [0.0] * (len(_LATENCY_BUCKETS_US) + 2))
                micros = seconds * 1e6
                for i, bound in enumerate(_LATENCY_BUCKETS_US):
                    if micros <= bound:
                        counts[i] += 1
                counts[-2] += 1
                counts[-1] += micros

    def record_load(self, model_path: str, ok: bool) -> None:
        with self._lock:
            self._loads[(model_path, "success" if ok else "fail")] += 1

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            lines.append("# TYPE :tensorflow:serving:request_count counter")
            for (model, status), value in sorted(self._requests.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{_label(model)}",status="{status}"}} '
                    f"{value}"
                )
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api, entry), counts in sorted(self._latency.items()):
                labels = f'model_name="{_label(model)}",API="{api}",entrypoint="{entry}"'
                for bound, count in zip(_LATENCY_BUCKETS_US, counts, strict=False):
                    lines.append(
                        f':tensorflow:serving:request_latency_bucket{{{labels},le="{bound:g}"}} {count:g}'
                    )
                lines.append(
                    f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} {counts[-2]:g}'
                )
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {counts[-1]:g}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {counts[-2]:g}")
            lines.append("# TYPE :tensorflow:cc:saved_model:load_attempt_count counter")
            for (path, status), value in sorted(self._loads.items()):
                lines.append(
                    f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{_label(path)}",'
                    f'status="{status}"}} {value}'
                )
        return "\n".join(lines) + "\n"
