"""The test harness: real processes on free loopback ports, readiness polling, stop by PID.

- ``processes``: ``ManagedProcess``, ``ProcessRegistry``, ``wait_until``, ``free_port``
- ``binaries``: where Envoy, etcd and moto's server are installed
- ``etcd``: ``EtcdServer`` (stop and restart on the same ports and data)
- ``s3``: ``MotoServer``, ``S3Bucket``, ``upload_tree``, ``list_sizes``
- ``envoy``: ``EnvoyProcess`` with a bootstrap the test gives
- ``serving``: ``ServingBackend`` (bundled, or the real ``tensorflow_model_server``)
- ``model_config``: writing a text ``ModelServerConfig``

The fixtures that use these are in ``tests/conftest.py``.
"""

from tests.harness.envoy import EnvoyProcess, write_bootstrap
from tests.harness.etcd import EtcdServer
from tests.harness.model_config import (
    AllVersions,
    LatestVersions,
    ModelConfigEntry,
    SpecificVersions,
    model_server_config_text,
    write_model_config,
)
from tests.harness.processes import (
    LOOPBACK,
    ManagedProcess,
    NotReadyError,
    ProcessRegistry,
    free_port,
    free_ports,
    live_group_members,
    pid_alive,
    port_accepts,
    wait_until,
)
from tests.harness.s3 import MotoServer, S3Bucket, list_sizes, s3_client, s3_credentials_env, upload_tree
from tests.harness.serving import ServingBackend

__all__ = [
    "LOOPBACK",
    "AllVersions",
    "EnvoyProcess",
    "EtcdServer",
    "LatestVersions",
    "ManagedProcess",
    "ModelConfigEntry",
    "MotoServer",
    "NotReadyError",
    "ProcessRegistry",
    "S3Bucket",
    "ServingBackend",
    "SpecificVersions",
    "free_port",
    "free_ports",
    "list_sizes",
    "live_group_members",
    "model_server_config_text",
    "pid_alive",
    "port_accepts",
    "s3_client",
    "s3_credentials_env",
    "upload_tree",
    "wait_until",
    "write_bootstrap",
    "write_model_config",
]
