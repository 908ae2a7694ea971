"""Memory of the bundled backend per loaded model, and whether unloading gives it back.

Starts ``tfscachectl tf-serving`` with no model, loads N generated tenant models through
``HandleReloadConfigRequest``, unloads them all, loads them again, and reads the process's RSS
(``/proc/<pid>/status``) at each step. Prints a Markdown table.

    .venv/bin/python bench/backend_memory.py --models 50
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from tfscachectl.modelgen.store import write_model_store
from tfscachectl.modelgen.tenants import tenant_name
from tfscachectl.tfserving.launcher import bundled_backend_command

READY_TIMEOUT_S = 120.0
RELOAD_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def reload(stub: model_service_pb2_grpc.ModelServiceStub, root: Path, names: list[str]) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.SetInParent()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(root / name), "tensorflow"
    request = model_management_pb2.ReloadConfigRequest(config=config)
    stub.HandleReloadConfigRequest(request, timeout=RELOAD_TIMEOUT_S)


def wait_unloaded(stub: model_service_pb2_grpc.ModelServiceStub, pid: int, settle_s: float = 2.0) -> None:
    # Unloads are asynchronous: wait until RSS stops moving.
    last, stable_since = rss_mib(pid), time.monotonic()
    while time.monotonic() - stable_since < settle_s:
        time.sleep(0.2)
        now = rss_mib(pid)
        if abs(now - last) > 0.5:
            last, stable_since = now, time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        write_model_store(root, [], tenant_count=args.models)
        (Path(tmp) / "empty").mkdir()
        names = [tenant_name(n) for n in range(1, args.models + 1)]
        port, rest = free_port(), free_port()
        config = Path(tmp) / "models.config"
        config.write_text("model_config_list {}\n")
        argv = bundled_backend_command().argv(
            [
                f"--port={port}",
                f"--rest_api_port={rest}",
                f"--model_config_file={config}",
                "--file_system_poll_wait_seconds=1",
                "--listen_address=127.0.0.1",
            ]
        )
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            rows = [("started, no model", rss_mib(process.pid))]
            reload(stub, root, names[:1])
            rows.append(("1 model loaded", rss_mib(process.pid)))
            reload(stub, root, names)
            rows.append((f"{args.models} models loaded", rss_mib(process.pid)))
            reload(stub, root, [])
            wait_unloaded(stub, process.pid)
            rows.append(("all unloaded", rss_mib(process.pid)))
            reload(stub, root, names)
            rows.append((f"{args.models} models loaded again", rss_mib(process.pid)))
            reload(stub, root, [])
            wait_unloaded(stub, process.pid)
            rows.append(("all unloaded again", rss_mib(process.pid)))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(f"| step ({os.cpu_count()} cores) | RSS MiB |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.0f} |")
    per_model = (rows[2][1] - rows[1][1]) / max(args.models - 1, 1)
    print(f"\nper model: {per_model:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
