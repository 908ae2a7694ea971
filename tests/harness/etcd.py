"""A throwaway single-member etcd on loopback ports, which can be stopped and started again."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from tests.harness.binaries import etcd_binary, etcdctl_binary
from tests.harness.processes import LOOPBACK, ManagedProcess, ProcessRegistry, free_port, wait_until
from tfscachectl.errors import ProcessError

ETCD_READY_TIMEOUT_S = 20.0
ETCD_PROBE_TIMEOUT_S = 1.0
ETCDCTL_TIMEOUT_S = 10.0
MEMBER_NAME = "tfscache-test"


class EtcdServer:
    """One etcd member with fast elections; ``stop`` and ``start`` keep its ports and data directory."""

    def __init__(self, registry: ProcessRegistry, data_dir: Path, *, name: str = "etcd") -> None:
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: ManagedProcess = registry.create(name, self.argv())

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """``host:port``, as gRPC clients such as aetcd take it."""
        return f"{LOOPBACK}:{self.client_port}"

    def argv(self) -> list[str]:
        return [
            str(etcd_binary()),
            f"--name={MEMBER_NAME}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={MEMBER_NAME}={self.peer_url}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--log-level=warn",
        ]

    def start(self, timeout: float = ETCD_READY_TIMEOUT_S) -> EtcdServer:
        """Start (or restart) and wait until ``/health`` says healthy."""
        self.process.start()
        wait_until(self.healthy, timeout, f"etcd at {self.client_url} to be healthy", process=self.process)
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def kill(self) -> int | None:
        return self.process.kill()

    def restart(self, timeout: float = ETCD_READY_TIMEOUT_S) -> EtcdServer:
        self.stop()
        return self.start(timeout)

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.client_url}/health", timeout=ETCD_PROBE_TIMEOUT_S) as response:
            body = json.load(response)
        return bool(body.get("health") == "true")

    def etcdctl(self, *args: str) -> str:
        """Run ``etcdctl`` (v3 API) against this member; returns its standard output."""
        argv = [str(etcdctl_binary()), f"--endpoints={self.client_url}", *args]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=ETCDCTL_TIMEOUT_S,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"etcdctl {' '.join(args)} timed out") from exc
        if result.returncode != 0:
            raise ProcessError(
                f"etcdctl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout
