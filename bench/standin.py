"""A fast stand-in for TF Serving: nginx answering every predict with a fixed response, both protocols.

The bundled serving backend is slow, so measuring Envoy or the cache in front of it mostly measures the
backend. nginx answers in microseconds, which leaves the proxy's own cost visible.

- REST (HTTP/1.1): any ``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`` gets
  ``{"predictions": [2.5, 3.0, 4.5]}`` (other methods 403, other paths 404).
- gRPC (HTTP/2 cleartext, prior knowledge): ``POST /tensorflow.serving.PredictionService/Predict`` gets one
  framed ``PredictResponse`` with ``content-type: application/grpc`` and the trailer ``grpc-status: 0``.

nginx's static file handler refuses POST (405), so each predict location ``return``s an otherwise unused
status whose ``error_page`` is an internal redirect to the response file: the redirect turns the request into
a GET and the file is served with status 200. The request body is read and discarded.

One nginx process (master and its workers, ``daemon off;``) with its own prefix, configuration, PID file,
error log and temporary paths under a work directory, on loopback ports; stopped by PID.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.payloads import (
    GRPC_CONTENT_TYPE,
    GRPC_PREDICT_PATH,
    REST_CONTENT_TYPE,
    grpc_predict_answer,
    rest_predict_answer,
)
from tests.harness.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessRegistry,
    free_port,
    port_accepts,
    wait_until,
)
from tfscachectl.errors import ProcessError

NGINX_PROGRAM = "nginx"
#: Debian installs nginx in /usr/sbin, which is not on every user's PATH.
NGINX_FALLBACK = Path("/usr/sbin/nginx")
NGINX_READY_TIMEOUT_S = 10.0
#: Enough for h2load's connections at the highest concurrency measured, with room to spare.
WORKER_CONNECTIONS = 4096
#: Requests per connection before nginx closes it: never, within a benchmark.
KEEPALIVE_REQUESTS = 1_000_000_000
KEEPALIVE_TIMEOUT_S = 600
#: A status nothing else produces, turned into the fixed answer by ``error_page``.
_ANSWER_STATUS = 418
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: ``/v1/models/<name>[/versions/<v>|/labels/<l>]:predict``, as an nginx regular expression.
_REST_PREDICT_REGEX = r"^/v1/models/[^/]+(/versions/[0-9]+|/labels/[^/]+)?:predict$"


def find_nginx() -> Path:
    found = shutil.which(NGINX_PROGRAM)
    if found is not None:
        return Path(found)
    if NGINX_FALLBACK.is_file():
        return NGINX_FALLBACK
    raise ProcessError(f"{NGINX_PROGRAM} is not installed: run bench/tools.sh (Debian: nginx-light)")


@dataclass(frozen=True, slots=True)
class StandInLayout:
    """Where one stand-in keeps its files, all under ``prefix``."""

    prefix: Path

    @property
    def config(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def rest_answer(self) -> Path:
        return self.prefix / "answers" / "predict.json"

    @property
    def grpc_answer(self) -> Path:
        return self.prefix / "answers" / "predict.grpc"

    def temp_path(self, kind: str) -> Path:
        return self.prefix / "temp" / kind


def _worker_user() -> str:
    """Workers run as whoever runs the bench: started as root, nginx would switch them to ``nobody``,
    who cannot read files under a private temporary directory (pytest's are mode 0700)."""
    if os.geteuid() != 0:
        return ""  # nginx cannot switch users then, and says so if asked to
    user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


def nginx_config(layout: StandInLayout, rest_port: int, grpc_port: int, workers: int) -> str:
    """The whole ``nginx.conf`` of a stand-in listening on ``rest_port`` and ``grpc_port`` (loopback)."""
    temp_paths = "\n".join(f"    {kind}_temp_path {layout.temp_path(kind)};" for kind in _TEMP_PATHS)
    return f"""\
daemon off;
{_worker_user()}worker_processes {workers};
pid {layout.pid_file};
error_log {layout.error_log} warn;

events {{
    worker_connections {WORKER_CONNECTIONS};
}}

http {{
    access_log off;
    server_tokens off;
    etag off;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout {KEEPALIVE_TIMEOUT_S}s;
{temp_paths}

    server {{
        listen {LOOPBACK}:{rest_port};

        location ~ "{_REST_PREDICT_REGEX}" {{
            limit_except POST {{ deny all; }}
            error_page {_ANSWER_STATUS} =200 /.stand-in/rest-predict;
            return {_ANSWER_STATUS};
        }}

        location = /.stand-in/rest-predict {{
            internal;
            default_type {REST_CONTENT_TYPE};
            alias {layout.rest_answer};
        }}
    }}

    server {{
        listen {LOOPBACK}:{grpc_port} http2;

        location = {GRPC_PREDICT_PATH} {{
            error_page {_ANSWER_STATUS} =200 /.stand-in/grpc-predict;
            return {_ANSWER_STATUS};
        }}

        location = /.stand-in/grpc-predict {{
            internal;
            default_type {GRPC_CONTENT_TYPE};
            alias {layout.grpc_answer};
            add_trailer grpc-status 0 always;
        }}
    }}
}}
"""


class NginxStandIn:
    """One nginx stand-in on free loopback ports; ``start`` waits until both ports accept connections."""

    def __init__(
        self, registry: ProcessRegistry, prefix: Path, *, workers: int = 1, name: str = "nginx"
    ) -> None:
        self.layout = StandInLayout(prefix)
        self.rest_port = free_port()
        self.grpc_port = free_port()
        self.workers = workers
        argv = [
            str(find_nginx()),
            "-p",
            str(prefix),
            "-c",
            str(self.layout.config),
            "-e",
            str(self.layout.error_log),
        ]
        self.process: ManagedProcess = registry.create(name, argv)

    @property
    def rest_address(self) -> str:
        return f"{LOOPBACK}:{self.rest_port}"

    @property
    def grpc_address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def write_files(self) -> None:
        layout = self.layout
        for kind in _TEMP_PATHS:
            layout.temp_path(kind).mkdir(parents=True, exist_ok=True)
        layout.rest_answer.parent.mkdir(parents=True, exist_ok=True)
        layout.rest_answer.write_bytes(rest_predict_answer())
        layout.grpc_answer.write_bytes(grpc_predict_answer())
        layout.config.write_text(nginx_config(layout, self.rest_port, self.grpc_port, self.workers))

    def start(self, timeout: float = NGINX_READY_TIMEOUT_S) -> NginxStandIn:
        self.write_files()
        self.process.start()
        wait_until(
            lambda: port_accepts(self.rest_port) and port_accepts(self.grpc_port),
            timeout,
            f"nginx stand-in on {self.rest_address} and {self.grpc_address}",
            process=self.process,
        )
        return self

    def stop(self) -> int | None:
        return self.process.stop()
